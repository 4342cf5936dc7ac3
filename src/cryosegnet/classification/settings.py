"""Settings of 2D classification and class selection: every default is defined here once."""

from __future__ import annotations

from dataclasses import dataclass

from cryosegnet.errors import SettingsError


@dataclass(frozen=True)
class ClassifySettings:
    """How picks are boxed, aligned and classified.

    Attributes
    ----------
    n_classes : int
        K, the number of classes.
    iterations : int
        Alignment/averaging rounds.
    box_factor : float
        Box side in particle diameters (cut from the micrograph before downsampling).
    working_box : int
        Side in pixels the boxes are downsampled to; classification runs at this size.
    mask_factor : float
        Diameter of the circular mask in particle diameters: the background outside it sets
        each box's normalisation (zero mean, unit SD, as RELION), and class averages are
        masked with it.
    angle_step : float
        In-plane rotation sampling in degrees (360 / angle_step rotated references per class).
    max_shift : float
        Largest shift searched, in particle diameters (each axis).
    shift_step : float
        Shift sampling in working pixels; the peak is refined to sub-pixel by a parabola.
    band_limit : float
        Highest spatial frequency used for alignment, in cycles per particle diameter
        (``band_limit x box_factor`` Fourier pixels of the working box). Alignment at low
        resolution is what noisy particles support, and it keeps the search cheap.
    band_start : float
        Band limit of the first iteration (cycles per particle diameter); it grows linearly
        to ``band_limit`` at the first full iteration. ``band_limit`` or more: fixed band.
    rotational_start : bool
        Start from the rotational averages of the random subsets' averages
        (:func:`.classify2d.rotational_average`) instead of the averages themselves.
    soft_temperature : float
        0: hard assignment (each particle adds itself to its best class only). Above 0: in
        the subset iterations each particle is shared among its ``soft_classes`` most likely
        classes in proportion to ``exp(log-likelihood / T)`` (white noise of the particles'
        in-band power, each class at its best pose: an EM step, as RELION's), with ``T``
        falling linearly from this value at the first iteration towards 0 at the first full
        iteration; the full iterations assign hard.
    soft_classes : int
        Classes a particle is shared among under soft assignment.
    low_snr : bool
        Low-SNR mode, for particles too weak to show a pose each (apoferritin): each pose is
        weighed by its posterior under white noise of the particles' in-band power
        (:class:`.align.Alignment`): a particle adds its rotational average to its class in
        the share its rotation is uncertain, an uncertain shift shrinks to the posterior
        mean, and the decoy test compares pose-marginalised evidence instead of best
        correlations. Without it, noise is aligned into structure at such SNR ("Einstein
        from noise"); with it, clear particles of a symmetric protein are blurred, so it is
        not the default.
    dark_particles : bool
        Particles are darker than the ice (raw micrographs, no contrast inversion): the
        centre of mass used to centre averages, and the quality's particle size, follow the
        dark part of an average.
    particles_per_class : int
        Early iterations align a random subset of ``n_classes x particles_per_class``
        particles (as CryoSPARC's batch size per class): averages need not many members to
        improve, and the search is the cost. The last ``full_iterations`` use every particle.
    full_iterations : int
        Final iterations over the whole stack (the reported classes and poses are theirs).
    decoys : int
        Noise images with the particles' median power spectrum aligned after the last
        iteration, so the correlation noise reaches is known (``decoy_scores`` of the
        result).
    min_class_size : int
        A class with fewer members is re-seeded from half of the largest class.
    batch_size : int
        Particles aligned at once (memory: batch x shifts x K x rotations floats).
    seed : int
        Seed of the initial random subsets and of re-seeding: same seed, same result.
    device : str
        ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda[:N]``.
    """

    n_classes: int = 20
    iterations: int = 15
    box_factor: float = 1.5
    working_box: int = 48
    mask_factor: float = 1.1
    angle_step: float = 10.0
    max_shift: float = 0.2
    shift_step: float = 3.0
    band_limit: float = 4.5
    band_start: float = 4.5
    rotational_start: bool = False
    soft_temperature: float = 0.0
    soft_classes: int = 3
    low_snr: bool = False
    dark_particles: bool = True
    particles_per_class: int = 100
    full_iterations: int = 2
    decoys: int = 2000
    min_class_size: int = 2
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        checks = [
            (self.n_classes >= 1, "the number of classes must be at least 1"),
            (self.iterations >= 1, "iterations must be at least 1"),
            (self.box_factor >= 1.0, "the box must be at least one particle diameter"),
            (self.working_box >= 16 and self.working_box % 2 == 0, "working box: even, >= 16"),
            (0 < self.mask_factor <= self.box_factor, "mask must fit in the box"),
            (0 < self.angle_step <= 180, "angle step must be in (0, 180] degrees"),
            (0 <= self.max_shift < 0.5, "max shift must be in [0, 0.5) particle diameters"),
            (self.shift_step > 0, "shift step must be positive"),
            (self.band_limit > 0, "band limit must be positive"),
            (self.band_start > 0, "starting band limit must be positive"),
            (self.soft_temperature >= 0, "soft assignment temperature must be >= 0"),
            (self.soft_classes >= 1, "soft assignment needs at least 1 class per particle"),
            (self.particles_per_class >= 1, "particles per class must be at least 1"),
            (1 <= self.full_iterations <= self.iterations, "full iterations: 1..iterations"),
            (self.decoys >= 1, "decoys must be at least 1"),
            (self.min_class_size >= 1, "min class size must be at least 1"),
            (self.batch_size >= 1, "batch size must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)

    @property
    def diameter_px(self) -> float:
        """Particle diameter in working pixels."""
        return self.working_box / self.box_factor

    @property
    def mask_radius_px(self) -> float:
        """Mask radius in working pixels."""
        return self.mask_factor * self.diameter_px / 2

    @property
    def n_rotations(self) -> int:
        """Rotated references per class."""
        return max(1, round(360.0 / self.angle_step))

    @property
    def growing_iterations(self) -> int:
        """Iterations before the full ones: on subsets, the band growing, the temperature
        falling."""
        return self.iterations - self.full_iterations

    @property
    def band_radius(self) -> float:
        """Alignment band limit in Fourier pixels of the working box."""
        return min(self.working_box / 2 - 1, self.band_limit * self.box_factor)


@dataclass(frozen=True)
class SelectionSettings:
    """What ``--auto`` keeps (the measures: :mod:`cryosegnet.classification.quality`).

    A class is kept when all hold. Of a kept class, a member is kept when it is above the
    decoys (and, with ``evidence_test``, its evidence is too), its residual against the class
    average is no outlier, and no better-correlating kept particle sits at the same
    re-centred place (:func:`.selection.keep_particles`).
    Chosen on simulated micrographs with junk (``bench/classify.py`` reports other ones).

    Attributes
    ----------
    decoy_quantile : float
        A particle is above the decoys when its correlation beats this quantile of the noise
        decoys' correlations.
    min_above_decoys : float
        At least this fraction of the class's members is above the decoys.
    min_contrast : float
        Particle-circle contrast of the average, in background-fluctuation units.
    max_background_sd : float
        Background fluctuation of the average in units of the noise left after averaging
        (flat background: about 1; carbon edges, contamination, aggregates: more).
    min_fraction : float
        The class holds at least this fraction of an average class's members (1 / K of
        all); a handful of boxes averages to noise or to one piece of junk.
    max_residual_z : float
        A member is dropped when its residual's low-frequency share
        (:func:`.classify2d.residual_lowpass_fraction`) lies more than this many robust SDs
        (1.4826 x the median absolute deviation) above the median of the kept classes'
        members above the decoys: particles in aggregates, touching neighbours, or on an
        edge. ``inf`` turns the test off.
    evidence_test : bool
        A kept particle's pose-marginalised evidence (``evidence`` in ``particles.csv``)
        must also beat the ``decoy_quantile`` quantile of the decoys' evidence. The default
        decoy test compares best correlations, and a box of empty ice reaches a decoy's best
        correlation by fitting its noise with the best of many poses (its own spectrum is not
        the decoys' median one); its evidence, which averages over the poses, stays where
        noise's does. (In low-SNR mode the decoy test is on the evidence already.)
    duplicate_distance : float
        Two kept particles whose re-centred centres are closer than this many particle
        diameters are one particle picked twice: the better-correlating one is kept (RELION's
        "remove duplicates"). 0 turns it off.
    """

    decoy_quantile: float = 0.999
    min_above_decoys: float = 0.4
    min_contrast: float = 2.0
    max_background_sd: float = 1.3
    min_fraction: float = 0.25
    max_residual_z: float = 2.0
    evidence_test: bool = True
    duplicate_distance: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.decoy_quantile < 1:
            raise SettingsError("decoy quantile must be in (0, 1)")
        if not 0 <= self.min_above_decoys <= 1:
            raise SettingsError("min fraction above decoys must be in [0, 1]")
        if not self.max_residual_z > 0:
            raise SettingsError("max residual z must be positive (inf: no residual test)")
        if not 0 <= self.duplicate_distance < 2:
            raise SettingsError("duplicate distance must be in [0, 2) particle diameters")
