"""Is there anything on this micrograph? Dark blobs tested against bright ones.

Every stage's score is relative to the micrograph it came from (noise units, a band-passed
map), so a micrograph of empty ice yields as many candidates above the threshold as one full
of particles: the noise has its own darkest spots. What an empty micrograph lacks is an
*asymmetry*. Particles are darker than the ice; noise, ice texture and CTF fringes are as often
bright as dark. So the bright blobs of the same micrograph — local maxima of the negated LoG
response, found exactly as the dark ones — are a null sample drawn from that micrograph's own
noise (the target-decoy idea of proteomics): on empty ice dark and bright blobs above any level
come in equal numbers, and particles show as an excess of dark ones.

The evidence is that excess in standard errors, ``(dark - bright) / sqrt(dark + bright + 1)``,
at a few LoG scales around the particle's and a few response levels, and the largest of them is
kept. A micrograph whose evidence stays below :attr:`EmptySettings.min_evidence` is reported as
empty and keeps no pick.

What it cannot do: a crowded field of very weak particles (the apoferritin micrographs shared
with the project, per-pixel SNR ~0.01) shows no excess either, because the gaps between
touching particles are as bright as the particles are dark; such micrographs are judged empty
too. The test is therefore an option (``cryosegnet pick --skip-empty``), not the default. The
scales, levels and cut were chosen on micrographs that are not evaluation sets: simulated empty
fields and fields with particles, the apoferritin ``train`` split and the unlabelled real
micrographs shared with the project (BENCHMARKS.md, "Empty micrographs").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cryosegnet.masks.log_blobs import blob_peaks, log_response, noise_units


@dataclass(frozen=True)
class EmptySettings:
    """The dark-versus-bright blob test (LoG scales as fractions of the stage's LoG diameter,
    levels in noise standard deviations, the cut in standard errors of the excess)."""

    scale_fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    levels: tuple[float, ...] = (2.0, 3.0, 4.0)
    min_evidence: float = 3.0
    suppression_fraction: float = 0.5  # blobs at least this fraction of their LoG size apart

    def __post_init__(self) -> None:
        if not self.scale_fractions or not all(f > 0 for f in self.scale_fractions):
            raise ValueError(f"scale_fractions must be positive, got {self.scale_fractions}")
        if not self.levels or not all(np.isfinite(t) and t > 0 for t in self.levels):
            raise ValueError(f"levels must be positive numbers, got {self.levels}")
        if not np.isfinite(self.min_evidence):
            raise ValueError(f"min_evidence must be a finite number, got {self.min_evidence}")

    def to_dict(self) -> dict:
        return asdict(self)


def particle_evidence(
    image: np.ndarray, log_diameter: float, settings: EmptySettings | None = None
) -> float:
    """How far the dark blobs of ``image`` outnumber its bright ones, in standard errors.

    Parameters
    ----------
    image : ndarray
        The denoised micrograph (2-D; particles dark), at the working resolution.
    log_diameter : float
        The LoG diameter the stage looks for blobs at (working px): the hybrid stage's.
    settings : EmptySettings, optional
        Scales, levels and suppression distance (defaults: :class:`EmptySettings`).

    Returns
    -------
    float
        The largest ``(dark - bright) / sqrt(dark + bright + 1)`` over the scales and levels;
        about 0 on empty ice, several units where particles stand out. 0 when the image is
        too small for any scale.

    Examples
    --------
    Pure noise has no excess of dark blobs; a field of dark disks has:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> noise = rng.normal(size=(256, 256)).astype(np.float32)
    >>> bool(particle_evidence(noise, 10) < 3)
    True
    >>> yy, xx = np.mgrid[:256, :256]
    >>> disks = noise.copy()
    >>> for cy in range(24, 240, 32):
    ...     for cx in range(24, 240, 32):
    ...         disks[(yy - cy) ** 2 + (xx - cx) ** 2 < 36] -= 2.0
    >>> bool(particle_evidence(disks, 10) > 3)
    True
    """
    s = settings or EmptySettings()
    img = np.nan_to_num(np.asarray(image, dtype=np.float32))
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    best = 0.0
    for fraction in s.scale_fractions:
        diameter = float(log_diameter) * fraction
        margin = int(np.ceil(diameter))  # the response near the edge sees the padding
        if diameter <= 0 or min(img.shape) <= 4 * margin:
            continue
        score = noise_units(log_response(img, diameter))[margin:-margin, margin:-margin]
        distance = diameter * s.suppression_fraction
        dark = blob_peaks(score, distance)[2]
        bright = blob_peaks(-score, distance)[2]
        for level in s.levels:
            n_dark, n_bright = int((dark > level).sum()), int((bright > level).sum())
            best = max(best, (n_dark - n_bright) / float(np.sqrt(n_dark + n_bright + 1)))
    return best


def looks_empty(evidence: float, settings: EmptySettings | None = None) -> bool:
    """True when ``evidence`` (:func:`particle_evidence`) is below the settings' cut."""
    return evidence < (settings or EmptySettings()).min_evidence


def response_asymmetry(response: np.ndarray, level: float = 3.0) -> float:
    """How much more often ``response`` stands ``level`` noise units above its median than
    below it: the tail ratio of a particle detector's response over one micrograph.

    A detector's response to noise alone (empty ice, or the micrograph's own phase-randomised
    copy, whose power spectrum is the same) is about as often far below its median as far
    above it, so the ratio is near 1. Particles the detector matches add only to the upper
    tail. Unlike :func:`particle_evidence` it counts pixels, not blobs, so a filter matched to
    the particle (a crowded field of weak particles, where dark and bright LoG blobs come in
    equal numbers) still shows it.

    Parameters
    ----------
    response : ndarray
        The detector's response over the micrograph (2-D; high = particle-like), the border
        it sees the padding in already cut off.
    level : float
        The tails start this many robust standard deviations
        (:func:`~cryosegnet.masks.log_blobs.robust_spread`) from the median.

    Returns
    -------
    float
        ``P(z > level) / P(z < -level)`` with ``z`` the response in noise units; the upper
        tail's fraction over one pixel when the lower tail is empty.

    Raises
    ------
    ValueError
        When ``response`` is not 2-D or ``level`` is not positive.

    Examples
    --------
    Noise is symmetric; noise with bright spots added is not:

    >>> import numpy as np
    >>> noise = np.random.default_rng(0).normal(size=(512, 512)).astype(np.float32)
    >>> bool(0.7 < response_asymmetry(noise) < 1.4)
    True
    >>> spots = noise.copy()
    >>> spots[::16, ::16] += 6.0
    >>> bool(response_asymmetry(spots) > 2)
    True
    """
    values = np.asarray(response, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"response must be 2-D, got shape {values.shape}")
    if not (np.isfinite(level) and level > 0):
        raise ValueError(f"level must be a positive number, got {level}")
    score = noise_units(np.nan_to_num(values))
    upper = int(np.count_nonzero(score > level))
    lower = int(np.count_nonzero(score < -level))
    return upper / max(lower, 1)
