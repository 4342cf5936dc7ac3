"""The particle size, read off the micrograph itself: the scale at which its dark blobs are
most lopsided.

Particles are darker than the ice around them, and noise is as often bright as dark. Filtered
with the scale-normalised Laplacian of Gaussian at the scale of a particle, a micrograph's
response is therefore skewed towards dark values, and most so at the particles' own scale;
at finer scales the response is dominated by symmetric shot noise, at coarser ones particles
blur into each other. The estimate is the scale of greatest skew.

Ice gradients, carbon and contamination are also dark, and larger than any particle: before
filtering, the micrograph is flattened (its local mean and spread over several particle
diameters removed) and clipped at a few standard deviations, so neither they nor hot pixels
can carry the skew.

The skew has a clear interior maximum only when particles are resolved: weak crowded data
(a hollow apoferritin shell in thin ice, say) shows no such peak. Then the estimate is reported
as unsure, and the caller falls back to another source or asks for ``--diameter``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from cryosegnet.masks.log_blobs import log_response
from cryosegnet.preprocessing.filters import gaussian_filter, on_shrunk_copy


@dataclass(frozen=True)
class SizeEstimateSettings:
    """How the micrograph's own size estimate searches and when it is trusted.

    Sizes are in working pixels (the U-Net's input, 1024 px on the long side by default).
    """

    min_diameter: float = 8.0  # a working image cannot resolve smaller particles
    # The search runs on a copy shrunk so that its smallest scale spans this many pixels:
    # the skew of 8-px blobs is as clear at 4 px, and a 1024-px image costs 4x less.
    min_pixels: float = 4.0
    max_fraction: float = 1 / 8  # largest diameter searched / the image's short side
    scales_per_octave: int = 6
    # Flattening: local mean and spread over this many times the largest diameter searched.
    flatten_fraction: float = 1.25
    clip_sigma: float = 3.0  # contamination and hot pixels saturate here
    # Trusted only when the skew peaks inside the range, at least this high, and falls by this
    # fraction of the peak on both sides: a monotonic or flat curve has no particle scale.
    min_skew: float = 0.2
    min_drop: float = 0.25  # 0.2 lets an apoferritin train micrograph through at 1.8 x its size
    # One size per batch (micrographs of one protein): the median of the sure estimates of up
    # to ``batch_sample`` micrographs spread over the batch, used when at least
    # ``min_sure_fraction`` of them are sure; ``per_micrograph`` estimates each on its own.
    per_micrograph: bool = False
    batch_sample: int = 8
    min_sure_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not self.batch_sample >= 1:
            raise ValueError(f"batch_sample must be at least 1, got {self.batch_sample}")
        if not 0 < self.min_sure_fraction <= 1:
            raise ValueError(
                f"min_sure_fraction must be within (0, 1], got {self.min_sure_fraction}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SizeEstimate:
    """A particle diameter read off one micrograph (working px) and whether to trust it."""

    diameter: float
    sure: bool
    peak_skew: float
    diameters: tuple[float, ...] = ()
    skews: tuple[float, ...] = ()
    scope: str = "micrograph"  # "batch": the median of several micrographs' estimates
    # The size range the user gave, in working px (searched here, and by the blob stages blob
    # by blob); None without one.
    bounds: tuple[float, float] | None = None


def flatten(image: np.ndarray, sigma: float, clip_sigma: float) -> np.ndarray:
    """``image`` minus its local mean over ``sigma`` px, over its local spread, clipped."""
    img = np.asarray(image, dtype=np.float32)
    sample = img[:: max(1, img.shape[0] // 256), :: max(1, img.shape[1] // 256)]
    centre = float(np.median(sample))
    spread = 1.4826 * float(np.median(np.abs(sample - centre))) or float(np.std(sample)) or 1.0
    img = np.clip((img - centre) / spread, -2 * clip_sigma, 2 * clip_sigma)
    high = img - on_shrunk_copy(img, sigma, gaussian_filter)
    local = np.sqrt(on_shrunk_copy(high * high, sigma, gaussian_filter)) + 1e-3
    return np.clip(high / local, -clip_sigma, clip_sigma)


def dark_skew(image: np.ndarray, diameter: float) -> float:
    """Skewness of the LoG response at ``diameter`` (positive: dark blobs stand out).

    The response is smooth over a few pixels at this scale, so a sample every third of a
    diameter measures its skew as well as every pixel, at a fraction of the cost.
    """
    response = log_response(image, diameter)
    step = max(1, round(diameter / 3))
    values = response[::step, ::step].astype(np.float64).ravel()
    centred = values - values.mean()
    squared = centred * centred
    var = float(squared.mean())
    return float((squared * centred).mean() / var**1.5) if var > 0 else 0.0


def estimate_size(
    image: np.ndarray,
    settings: SizeEstimateSettings | None = None,
    bounds: tuple[float, float] | None = None,
) -> SizeEstimate:
    """The particle diameter of a micrograph (working px), from its own pixels.

    Parameters
    ----------
    image : ndarray
        The micrograph at working resolution (raw or denoised; dark particles).
    settings : SizeEstimateSettings or None
        Search range and trust rule; defaults when None.
    bounds : tuple of float or None
        (smallest, largest) diameter to search, in the image's pixels (a size range the user
        gave); None searches the whole range of ``settings``.

    Returns
    -------
    SizeEstimate
        The diameter of greatest dark skew, and whether its peak is clear (``sure``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> image = rng.normal(size=(512, 512)).astype(np.float32)
    >>> yy, xx = np.mgrid[:512, :512]
    >>> for cy, cx in rng.uniform(30, 482, size=(60, 2)):
    ...     image[(yy - cy) ** 2 + (xx - cx) ** 2 < 12**2] -= 1.0   # dark disks, 24 px wide
    >>> estimate = estimate_size(image)
    >>> estimate.sure, 20 < estimate.diameter < 29
    (True, True)
    """
    s = settings or SizeEstimateSettings()
    img = np.nan_to_num(np.asarray(image, dtype=np.float32))
    shrink = max(1, int(s.min_diameter // s.min_pixels)) if s.min_pixels > 0 else 1
    if shrink > 1 and min(img.shape) // shrink >= 64:
        small = (img.shape[1] // shrink, img.shape[0] // shrink)
        shrunk = cv2.resize(img, small, interpolation=cv2.INTER_AREA)
        factor = img.shape[1] / small[0]
        inner = None if bounds is None else (bounds[0] / factor, bounds[1] / factor)
        return _scaled(estimate_size(shrunk, _shrunk(s, shrink), inner), factor)
    short = min(img.shape)
    smallest, largest = s.min_diameter, short * s.max_fraction
    if bounds is not None:  # a range the user gave: searched a step beyond each end
        step = 2.0 ** (1 / s.scales_per_octave)
        smallest, largest = max(smallest, bounds[0] / step), min(largest, bounds[1] * step)
    if largest <= smallest:
        return SizeEstimate(float("nan"), False, 0.0)
    n = int(np.floor(np.log2(largest / smallest) * s.scales_per_octave)) + 1
    diameters = smallest * 2.0 ** (np.arange(n) / s.scales_per_octave)
    flat = flatten(img, s.flatten_fraction * short * s.max_fraction, s.clip_sigma)
    skews = np.array([dark_skew(flat, d) for d in diameters])
    best = int(np.argmax(skews))
    peak = float(skews[best])
    interior = 0 < best < n - 1
    drop = s.min_drop * peak
    # Within a range the user gave, a peak inside it is the answer; over the whole search a
    # broad hump could be the ice, so the curve must also fall clearly on both sides.
    clear = interior and (
        bounds is not None
        or (skews[:best].min() <= peak - drop and skews[best + 1 :].min() <= peak - drop)
    )
    sure = bool(interior and peak >= s.min_skew and clear)
    return SizeEstimate(
        float(diameters[best]),
        sure,
        peak,
        tuple(float(d) for d in diameters),
        tuple(float(v) for v in skews),
    )


def _shrunk(settings: SizeEstimateSettings, factor: int) -> SizeEstimateSettings:
    """The same search on a copy shrunk ``factor`` times (no further shrinking)."""
    import dataclasses

    return (
        dataclasses.replace(settings, min_diameter=settings.min_diameter / factor, min_pixels=0.0)
        if factor > 1
        else settings
    )


def _scaled(estimate: SizeEstimate, factor: float) -> SizeEstimate:
    """``estimate`` of a shrunk copy in the pixels of the image it was shrunk from."""
    return SizeEstimate(
        estimate.diameter * factor,
        estimate.sure,
        estimate.peak_skew,
        tuple(d * factor for d in estimate.diameters),
        estimate.skews,
    )
