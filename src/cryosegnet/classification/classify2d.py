"""Reference-free 2D classification: iterate alignment and averaging (k-means style).

Each iteration: centre and mask the class averages, align every particle to all ``K x R``
rotated averages (:mod:`.align`), give each particle to the class (and pose) it correlates
with best (hard assignment; or, with ``soft_temperature``, share it among its likeliest
classes in the early iterations), and average the aligned members. The start is ``K`` disjoint
random subsets' plain averages. A class left with fewer than ``min_class_size`` members takes
over a random half of the largest class, so ``K`` classes survive to the end.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from cryosegnet.classification.align import (
    Aligner,
    Alignment,
    Band,
    sample_images,
    shift_grid,
    shift_images,
)
from cryosegnet.classification.settings import ClassifySettings
from cryosegnet.errors import SettingsError
from cryosegnet.model.device import resolve_device


@dataclass
class ClassificationResult:
    """Class averages and each particle's class and pose.

    Attributes
    ----------
    averages : numpy.ndarray
        ``(K, B, B)`` masked class averages (units: the normalised particles').
    raw_averages : numpy.ndarray
        ``(K, B, B)`` the same without the mask (the background is needed to judge them).
    half_averages : numpy.ndarray
        ``(2, K, B, B)`` unmasked averages of the odd and even members (by position in the
        stack), for the split-half quality measure.
    classes : numpy.ndarray
        ``(N,)`` class of each particle, 0-based.
    scores : numpy.ndarray
        ``(N,)`` normalised cross-correlation with its class average at its pose.
    angles : numpy.ndarray
        ``(N,)`` psi in degrees (see :mod:`cryosegnet.classification.align`).
    shifts : numpy.ndarray
        ``(N, 2)`` shift (x, y) in working pixels: where the particle's centre sits relative
        to the box centre.
    sizes : numpy.ndarray
        ``(K,)`` members per class.
    decoy_scores : numpy.ndarray
        Best correlation of noise decoys (:func:`noise_decoys`: the particles' median
        power spectrum, random phases) with the last iteration's references at any class and
        pose: what noise reaches, for judging the particles' ``scores``.
    changed : list of float
        Fraction of particles that changed class at each iteration (convergence record).
    settings : ClassifySettings
        What produced it.
    certainty : numpy.ndarray
        ``(N,)`` posterior probability of each particle's rotation (``Alignment.certainty``)
        in low-SNR mode, where an uncertain particle adds its rotational average to its class
        in that proportion; all 1 otherwise.
    evidence : numpy.ndarray
        ``(N,)`` each particle's pose-marginalised log-likelihood ratio against noise
        (``Alignment.evidence``).
    decoy_evidence : numpy.ndarray
        The same of the noise decoys.
    low_snr : bool
        It ran in low-SNR mode (``ClassifySettings.low_snr``): poses weighed by their
        posterior, and the decoy test on the evidence (:func:`.quality.judged_scores`).
    residual_lowpass : numpy.ndarray
        ``(N,)`` how much of what is left of each aligned particle after subtracting its
        scaled class average is low-frequency structure (:func:`residual_lowpass_fraction`):
        a neighbour, an aggregate or an edge in the box leaves more than noise does.
    """

    averages: np.ndarray
    raw_averages: np.ndarray
    half_averages: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    angles: np.ndarray
    shifts: np.ndarray
    sizes: np.ndarray
    decoy_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    changed: list[float] = field(default_factory=list)
    settings: ClassifySettings = field(default_factory=ClassifySettings)
    residual_lowpass: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    certainty: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    evidence: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    decoy_evidence: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    low_snr: bool = False


#: Gaussian low-pass (sigma, working pixels) of the residual test: structure about a tenth of
#: a particle diameter and larger (at the default box) is what a neighbour or an edge leaves.
RESIDUAL_SIGMA_PX = 2.0


def circular_mask(size: int, radius: float, soft: float = 2.0) -> torch.Tensor:
    """A soft-edged disk: averages are masked with it (noise outside a particle is no signal).

    Parameters
    ----------
    size : int
        Box side B.
    radius : float
        Radius in pixels from the box centre (pixel ``B // 2``).
    soft : float
        Width in pixels of the cosine edge outside ``radius``.

    Returns
    -------
    torch.Tensor
        ``(B, B)``: 1 inside, 0 beyond ``radius + soft``.
    """
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    distance = torch.sqrt(xx**2 + yy**2)
    edge = ((distance - radius) / soft).clamp(0, 1)
    return 0.5 * (1 + torch.cos(torch.pi * edge))


def centre_images(images: torch.Tensor, mask: torch.Tensor, dark: bool) -> torch.Tensor:
    """Shift each image so that its dark (or bright) part is centred in the box.

    The centre of mass of that part inside ``mask`` goes to the box centre, so classes do not
    drift off centre over the iterations.

    Parameters
    ----------
    images : torch.Tensor
        ``(n, B, B)`` class averages.
    mask : torch.Tensor
        ``(B, B)`` weights of the pixels that count.
    dark : bool
        Follow the part darker than 0 (else the brighter part).

    Returns
    -------
    torch.Tensor
        ``(n, B, B)`` shifted images (Fourier shift, sub-pixel).
    """
    size = images.shape[-1]
    signal = -images if dark else images
    weight = signal.clamp_min(0) * mask
    total = weight.sum(dim=(1, 2)).clamp_min(1e-12)
    coords = torch.arange(size, dtype=images.dtype, device=images.device) - size // 2
    cx = (weight.sum(dim=1) * coords).sum(dim=1) / total
    cy = (weight.sum(dim=2) * coords).sum(dim=1) / total
    return shift_images(images, torch.stack((cx, cy), dim=-1))


def rotational_average(images: torch.Tensor) -> torch.Tensor:
    """Each image replaced by its average over all in-plane rotations about the box centre.

    A random subset's average of few very noisy particles is mostly noise; aligned to, that
    noise is what the particles' noise reinforces ("Einstein from noise"). Its rotational
    average keeps the particles' common radial profile (a disk, a ring) with the noise
    averaged along each circle, so classes start from the particle and not from noise.

    Parameters
    ----------
    images : torch.Tensor
        ``(k, B, B)`` images.

    Returns
    -------
    torch.Tensor
        ``(k, B, B)``, each a function of the distance from pixel ``B // 2`` only (linear
        between whole-pixel radii).
    """
    k, size = images.shape[0], images.shape[-1]
    coords = torch.arange(size, dtype=images.dtype, device=images.device) - size // 2
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    radius = torch.sqrt(xx**2 + yy**2).reshape(-1)
    low = radius.floor().long()
    frac = radius - low
    n_bins = int(low.max()) + 2
    flat = images.reshape(k, -1)
    weight = torch.zeros(n_bins, dtype=images.dtype, device=images.device)
    weight.index_add_(0, low, 1 - frac).index_add_(0, low + 1, frac)
    total = torch.zeros(k, n_bins, dtype=images.dtype, device=images.device)
    total.index_add_(1, low, flat * (1 - frac)).index_add_(1, low + 1, flat * frac)
    profile = total / weight.clamp_min(1e-12)
    smooth = profile[:, low] * (1 - frac) + profile[:, low + 1] * frac
    return smooth.reshape(k, size, size)


def band_radius(settings: ClassifySettings, iteration: int) -> float:
    """Alignment band limit (Fourier pixels) at ``iteration`` (0-based).

    With ``band_start`` below ``band_limit`` the band grows linearly from ``band_start`` at
    the first iteration to ``band_limit`` at the first full iteration, as RELION lets its
    resolution grow: noisy early averages are trusted only at low resolution.

    Parameters
    ----------
    settings : ClassifySettings
        ``band_start``, ``band_limit``, ``iterations``, ``full_iterations``.
    iteration : int
        0-based iteration.

    Returns
    -------
    float
        In Fourier pixels of the working box, below its Nyquist frequency.
    """
    last_growing = settings.growing_iterations
    start = min(settings.band_start, settings.band_limit)
    if last_growing <= 0 or iteration >= last_growing:
        limit = settings.band_limit
    else:
        limit = start + (settings.band_limit - start) * iteration / last_growing
    return min(settings.working_box / 2 - 1, limit * settings.box_factor)


def _coefficients(particles: torch.Tensor, band: Band, batch: int) -> torch.Tensor:
    return torch.cat(
        [band.coefficients(particles[i : i + batch]) for i in range(0, len(particles), batch)]
    )


def noise_decoys(images: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` images of random phases and the median Fourier amplitude of ``images``.

    The median over boxes follows the background, not the few strong objects (contamination,
    carbon) whose power would make every decoy look like a blob.

    Parameters
    ----------
    images : torch.Tensor
        ``(N, B, B)`` particle boxes.
    n : int
        Decoys to make.
    generator : torch.Generator
        Source of the random phases (seeded: same decoys for the same seed).

    Returns
    -------
    torch.Tensor
        ``(n, B, B)``.
    """
    size = images.shape[-1]
    amplitude = torch.fft.rfft2(images).abs().median(dim=0).values
    noise = torch.randn((n, size, size), generator=generator).to(images.device)
    phases = torch.angle(torch.fft.rfft2(noise))
    return torch.fft.irfft2(torch.polar(amplitude.expand_as(phases), phases), s=(size, size))


# Long on purpose: one loop over iterations that updates a dozen tensors of state together
# (classes, poses, certainty, half sums); split, each part would pass them all around.
def classify_particles(
    stack: np.ndarray,
    settings: ClassifySettings,
    progress: bool | None = None,
    on_iteration: Callable[[int, float], None] | None = None,
) -> ClassificationResult:
    """Classify a stack of normalised particle boxes into ``settings.n_classes`` classes.

    Parameters
    ----------
    stack : numpy.ndarray
        ``(N, B, B)`` boxes, ``B == settings.working_box``, normalised (zero mean, unit SD
        outside the mask), particle centres near the box centre.
    settings : ClassifySettings
        Classes, iterations, sampling, seed, device.
    progress : bool, optional
        Show a progress bar over iterations (default: only when stderr is a terminal).
    on_iteration : callable, optional
        Called as ``on_iteration(iteration, fraction_changed)`` after each iteration.

    Returns
    -------
    ClassificationResult

    Raises
    ------
    SettingsError
        If the stack is not ``(N, B, B)`` with the settings' box, or holds fewer than
        ``2 x n_classes`` particles.
    """
    from tqdm import tqdm

    stack = np.asarray(stack, dtype=np.float32)
    size = settings.working_box
    if stack.ndim != 3 or stack.shape[1:] != (size, size):
        raise SettingsError(f"particle stack of shape {stack.shape}; expected (N, {size}, {size})")
    n, k = stack.shape[0], settings.n_classes
    if n < 2 * k:
        raise SettingsError(f"{n} particles are too few for {k} classes (at least {2 * k} needed)")
    device = resolve_device(settings.device)
    generator = torch.Generator().manual_seed(settings.seed)
    particles = torch.from_numpy(stack).to(device)
    mask = circular_mask(size, settings.mask_radius_px).to(device)
    angles = torch.arange(settings.n_rotations, dtype=torch.float32) * (
        360.0 / settings.n_rotations
    )
    shifts = shift_grid(settings.max_shift * settings.diameter_px, settings.shift_step)
    classes, averages = _starting_classes(particles, settings, generator)

    show = sys.stderr.isatty() if progress is None else progress
    changed: list[float] = []
    angle = torch.zeros(n, device=device)
    shift = torch.zeros(n, 2, device=device)
    score = torch.zeros(n, device=device)
    certainty = torch.ones(n, device=device)
    evidence = torch.zeros(n, device=device)
    marginal = False
    halves = torch.zeros(2, k, size, size, device=device)
    band_now = -1.0
    subset_size = k * settings.particles_per_class
    for iteration in tqdm(range(settings.iterations), desc="2D classification", disable=not show):
        last = iteration >= settings.growing_iterations
        if last or subset_size >= n:
            members = torch.arange(n, device=device)
        else:  # an early iteration on a random subset (like CryoSPARC's batch per class)
            members = torch.sort(torch.randperm(n, generator=generator)[:subset_size]).values
            members = members.to(device)
        references = centre_images(averages, mask, settings.dark_particles) * mask
        radius = band_radius(settings, iteration)
        if radius != band_now:  # the band grows in early iterations (``band_start``)
            band, band_now = Band.disk(size, radius, device=device), radius
            coefficients = _coefficients(particles, band, settings.batch_size)
        # The noise's power per band coefficient: the median particle's (at low SNR the
        # particles are nearly all noise; the background's own spectrum is not white).
        noise_power = float(band.power(coefficients).median() / band.weight.sum())
        aligner = Aligner(references, band, angles, shifts, settings.shift_step, noise_power)
        temperature = assignment_temperature(settings, iteration)
        parts, shares = [], []
        for i in range(0, len(members), settings.batch_size):
            batch = coefficients[members[i : i + settings.batch_size]]
            alignment, per_class = aligner.align(batch)
            parts.append(alignment)
            if temperature > 0:
                shares.append(
                    _soft_shares(
                        aligner, batch, per_class, alignment, temperature, settings.soft_classes
                    )
                )
        new_classes = torch.cat([p.reference for p in parts])
        fraction = float((new_classes != classes[members]).float().mean()) if iteration else 1.0
        classes[members] = new_classes
        angle[members] = torch.cat([p.angle for p in parts])
        score[members] = torch.cat([p.score for p in parts])
        sure = torch.cat([p.certainty for p in parts])  # type: ignore[misc]
        evidence[members] = torch.cat([p.evidence for p in parts])  # type: ignore[misc]
        marginal = settings.low_snr
        shrink = torch.cat([p.shift_shrink for p in parts])  # type: ignore[misc]
        shift[members] = torch.cat([p.shift for p in parts]) + (shrink if marginal else 0)
        certainty[members] = sure if marginal else torch.ones_like(sure)
        best = classes[members].clone()
        classes[members] = _reseed_small_classes(
            classes[members], k, settings.min_class_size, generator
        )
        if shares:
            share = SoftShares.joined(shares, shift[members], classes[members], best)
            halves, weights = _soft_sums(
                particles, members, share, k, settings.batch_size, certainty
            )
        else:
            halves = _aligned_sums(
                particles, members, classes, angle, shift, k, settings.batch_size, certainty
            )
            weights = torch.bincount(classes[members], minlength=k).float()
        averages = halves.sum(dim=0) / weights.clamp_min(1)[:, None, None]
        changed.append(fraction)
        if on_iteration is not None:
            on_iteration(iteration, fraction)
    decoy_scores, decoy_evidence = _decoy_alignment(particles, settings, generator, aligner)
    residual = residual_lowpass_fraction(
        particles, classes, angle, shift, averages, mask, settings.batch_size
    )
    half_counts = torch.stack(
        [torch.bincount(classes[parity::2], minlength=k) for parity in (0, 1)]
    ).clamp_min(1)
    half_averages = halves / half_counts[:, :, None, None].float()
    sizes = torch.bincount(classes, minlength=k)
    return ClassificationResult(
        averages=(averages * mask).cpu().numpy(),
        raw_averages=averages.cpu().numpy(),
        half_averages=half_averages.cpu().numpy(),
        classes=classes.cpu().numpy(),
        scores=score.cpu().numpy(),
        angles=angle.cpu().numpy(),
        shifts=shift.cpu().numpy(),
        sizes=sizes.cpu().numpy(),
        decoy_scores=decoy_scores.cpu().numpy(),
        changed=changed,
        settings=settings,
        residual_lowpass=residual.cpu().numpy(),
        certainty=certainty.cpu().numpy(),
        evidence=evidence.cpu().numpy(),
        decoy_evidence=decoy_evidence.cpu().numpy(),
        low_snr=marginal,
    )


def _starting_classes(
    particles: torch.Tensor, settings: ClassifySettings, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random classes of equal size, and their averages.

    The averages are rotationally averaged with ``rotational_start``.
    """
    n, k, size = len(particles), settings.n_classes, settings.working_box
    device = particles.device
    order = torch.randperm(n, generator=generator).to(device)
    start = torch.arange(n, device=device) % k
    classes = torch.empty(n, dtype=torch.long, device=device)
    classes[order] = start
    sums = torch.zeros(k, size, size, device=device).index_add_(0, classes, particles)
    averages = sums / torch.bincount(classes, minlength=k).clamp_min(1)[:, None, None].float()
    if settings.rotational_start:
        averages = rotational_average(averages)
    return classes, averages


def _decoy_alignment(
    particles: torch.Tensor,
    settings: ClassifySettings,
    generator: torch.Generator,
    aligner: Aligner,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best correlation and the evidence noise decoys reach against the final references.

    The decoys are :func:`noise_decoys` of the particles.
    """
    decoys = noise_decoys(particles, settings.decoys, generator)
    decoy_coefficients = aligner.band.coefficients(decoys)
    decoy_parts = [
        aligner.align(decoy_coefficients[i : i + settings.batch_size])[0]
        for i in range(0, len(decoys), settings.batch_size)
    ]
    decoy_scores = torch.cat([p.score for p in decoy_parts])
    decoy_evidence = torch.cat([p.evidence for p in decoy_parts])  # type: ignore[misc]
    return decoy_scores, decoy_evidence


def residual_lowpass_fraction(
    particles: torch.Tensor,
    classes: torch.Tensor,
    angle: torch.Tensor,
    shift: torch.Tensor,
    averages: torch.Tensor,
    mask: torch.Tensor,
    batch: int,
    sigma: float = RESIDUAL_SIGMA_PX,
) -> torch.Tensor:
    """Low-frequency share of each particle's residual against its class average.

    Each particle is aligned to its class, its class average is scaled to it (least squares
    inside ``mask``) and subtracted, and the residual's power after a Gaussian low-pass of
    ``sigma`` pixels is divided by its whole power. A lone particle leaves mostly noise (a
    low share, much the same for every member of a class); a neighbouring particle, an
    aggregate, a carbon edge or contamination in the box leaves smooth structure (a high
    share). The ratio does not depend on how each box was scaled.

    Parameters
    ----------
    particles : torch.Tensor
        ``(N, B, B)`` normalised boxes.
    classes : torch.Tensor
        ``(N,)`` class of each particle (0-based).
    angle, shift : torch.Tensor
        ``(N,)`` and ``(N, 2)`` each particle's pose (:class:`ClassificationResult`).
    averages : torch.Tensor
        ``(K, B, B)`` unmasked class averages, in the aligned frame.
    mask : torch.Tensor
        ``(B, B)`` weights of the pixels the scale is fitted on.
    batch : int
        Particles at once.
    sigma : float
        Low-pass width in pixels.

    Returns
    -------
    torch.Tensor
        ``(N,)`` in [0, 1].
    """
    size = particles.shape[-1]
    ky = torch.fft.fftfreq(size, device=particles.device)
    kx = torch.fft.rfftfreq(size, device=particles.device)
    gain = torch.exp(-2 * (torch.pi * sigma) ** 2 * (ky[:, None] ** 2 + kx[None, :] ** 2))
    out = torch.empty(particles.shape[0], device=particles.device)
    for i in range(0, particles.shape[0], batch):
        part = slice(i, i + batch)
        aligned = sample_images(particles[part], angle[part], shift[part])
        model = averages[classes[part]]
        scale = (aligned * model * mask).sum(dim=(1, 2)) / (model * model * mask).sum(
            dim=(1, 2)
        ).clamp_min(1e-12)
        residual = aligned - scale[:, None, None] * model
        smooth = torch.fft.irfft2(torch.fft.rfft2(residual) * gain, s=(size, size))
        total = (residual**2).sum(dim=(1, 2)).clamp_min(1e-12)
        out[part] = (smooth**2).sum(dim=(1, 2)) / total
    return out


def assignment_temperature(settings: ClassifySettings, iteration: int) -> float:
    """Soft-assignment temperature at ``iteration`` (0-based); 0 means hard assignment.

    ``soft_temperature`` at the first iteration, falling linearly towards 0 at the first full
    iteration (annealing: early averages are shaped by every plausible member, the later
    ones by the best); 0 from then on.

    Parameters
    ----------
    settings : ClassifySettings
        ``soft_temperature``, ``iterations``, ``full_iterations``.
    iteration : int
        0-based iteration.

    Returns
    -------
    float
        0 from the first full iteration on (hard assignment).
    """
    last_growing = settings.growing_iterations
    if settings.soft_temperature <= 0 or iteration >= last_growing:
        return 0.0
    return settings.soft_temperature * (1 - iteration / last_growing)


@dataclass
class SoftShares:
    """Each particle's share of its ``m`` likeliest classes, and its pose in each.

    Attributes
    ----------
    classes : torch.Tensor
        ``(n, m)`` classes (0-based); column 0 is the particle's best class.
    weights : torch.Tensor
        ``(n, m)`` shares, summing to 1 per particle.
    angles : torch.Tensor
        ``(n, m)`` rotation in each (degrees): refined in the best class, sampled elsewhere.
    shifts : torch.Tensor
        ``(n, m, 2)`` shift in each: refined in the best class, coarse elsewhere.
    """

    classes: torch.Tensor
    weights: torch.Tensor
    angles: torch.Tensor
    shifts: torch.Tensor

    @classmethod
    def joined(
        cls, parts: list[SoftShares], shift: torch.Tensor, classes: torch.Tensor, best: torch.Tensor
    ) -> SoftShares:
        """The batches' shares as one.

        The best class's shift is the one finally chosen (``shift``: low-SNR mode shrinks
        it), and a particle that re-seeding moved (``classes`` differs from ``best``) goes
        wholly to its new class.
        """
        joined = cls(
            classes=torch.cat([p.classes for p in parts]),
            weights=torch.cat([p.weights for p in parts]),
            angles=torch.cat([p.angles for p in parts]),
            shifts=torch.cat([p.shifts for p in parts]),
        )
        joined.shifts[:, 0] = shift
        moved = classes != best
        joined.classes[moved, 0] = classes[moved]
        joined.weights[moved] = 0
        joined.weights[moved, 0] = 1
        return joined


def _soft_shares(
    aligner: Aligner,
    coefficients: torch.Tensor,
    per_class: torch.Tensor,
    alignment: Alignment,
    temperature: float,
    top: int,
) -> SoftShares:
    """A batch's shares of its ``top`` likeliest classes at ``temperature``."""
    n, k = per_class.shape
    rows = torch.arange(n, device=per_class.device)
    log_likelihood = aligner.class_log_likelihoods(coefficients, per_class)
    others = log_likelihood.clone()
    others[rows, alignment.reference] = -torch.inf
    m = min(top, k)
    rest = others.topk(m - 1, dim=1).indices
    chosen = torch.cat((alignment.reference[:, None], rest), dim=1)  # (n, m)
    weights = torch.softmax(log_likelihood.gather(1, chosen) / temperature, dim=1)
    assert alignment.class_angle is not None and alignment.class_shift is not None
    angles = alignment.class_angle.gather(1, chosen)
    angles[:, 0] = alignment.angle
    shifts = alignment.class_shift[rows[:, None], chosen]
    shifts[:, 0] = alignment.shift
    return SoftShares(classes=chosen, weights=weights, angles=angles, shifts=shifts)


def _soft_sums(
    particles: torch.Tensor,
    members: torch.Tensor,
    shares: SoftShares,
    k: int,
    batch: int,
    certainty: torch.Tensor,
    least: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums ``(2, K, B, B)`` of the ``members`` aligned in each of their classes.

    Each is weighed by its share (shares under ``least`` are skipped); also each class's total
    share ``(K,)``. Rotation certainty mixes in rotational averages as in
    :func:`_aligned_sums`.
    """
    size = particles.shape[-1]
    halves = torch.zeros(2, k, size, size, device=particles.device)
    for i in range(0, len(members), batch):
        part = members[i : i + batch]
        for j in range(shares.classes.shape[1]):
            weight = shares.weights[i : i + batch, j]
            used = weight >= least
            if not bool(used.any()):
                continue
            chosen = part[used]
            aligned = sample_images(
                particles[chosen],
                shares.angles[i : i + batch, j][used],
                shares.shifts[i : i + batch, j][used],
            )
            sure = certainty[chosen][:, None, None]
            if bool((sure < 1).any()):
                aligned = sure * aligned + (1 - sure) * rotational_average(aligned)
            target = (chosen % 2) * k + shares.classes[i : i + batch, j][used]
            halves.view(2 * k, size, size).index_add_(
                0, target, aligned * weight[used][:, None, None]
            )
    used = shares.weights >= least
    totals = torch.zeros(k, device=particles.device).index_add_(
        0, shares.classes[used], shares.weights[used]
    )
    return halves, totals


def _aligned_sums(
    particles: torch.Tensor,
    members: torch.Tensor,
    classes: torch.Tensor,
    angle: torch.Tensor,
    shift: torch.Tensor,
    k: int,
    batch: int,
    certainty: torch.Tensor,
) -> torch.Tensor:
    """Sums ``(2, K, B, B)`` of the aligned ``members``, odd and even stack positions apart.

    A member adds ``c x`` itself aligned plus ``(1 - c) x`` its rotational average, ``c`` its
    rotation ``certainty``: the expectation over its rotation posterior when that is peaked
    or flat (a sharp peak within a step of the best rotation, the rest spread evenly).
    """
    size = particles.shape[-1]
    halves = torch.zeros(2, k, size, size, device=particles.device)
    for i in range(0, len(members), batch):
        part = members[i : i + batch]
        aligned = sample_images(particles[part], angle[part], shift[part])
        weight = certainty[part][:, None, None]
        if bool((weight < 1).any()):
            aligned = weight * aligned + (1 - weight) * rotational_average(aligned)
        halves.view(2 * k, size, size).index_add_(0, (part % 2) * k + classes[part], aligned)
    return halves


def _reseed_small_classes(
    classes: torch.Tensor, k: int, min_size: int, generator: torch.Generator
) -> torch.Tensor:
    """Give each class with fewer than ``min_size`` members a random half of the largest."""
    classes = classes.clone()
    for _ in range(k):
        counts = torch.bincount(classes, minlength=k)
        small = torch.nonzero(counts < min_size).reshape(-1)
        if len(small) == 0:
            break
        largest = int(counts.argmax())
        if int(counts[largest]) < 2 * min_size:
            break
        members = torch.nonzero(classes == largest).reshape(-1)
        chosen = members[torch.randperm(len(members), generator=generator)[: len(members) // 2]]
        classes[chosen.to(classes.device)] = int(small[0])
    return classes
