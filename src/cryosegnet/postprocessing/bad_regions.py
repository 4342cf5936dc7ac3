"""Bad regions of a micrograph: contamination, carbon and thick ice, where no pick belongs.

A dark-blob picker sees a contamination patch as the darkest thing on the micrograph, and its
rim, a carbon edge or a small ice ball as particle-sized dark blobs; experts never pick there.
Two cues mark such regions on the denoised image, each scaled by the particle diameter so that
one setting serves every micrograph:

* **dark regions**: the image low-passed over a particle diameter has a nearly opaque core
  (far below the micrograph's median level), grown out to its greyer rim, over an area of
  several particles: contamination patches, carbon, ice too thick to see through;
* **outlier blobs**: particle-sized blobs far darker against the ice round them than the
  picks themselves are: small ice balls and crystals (grown out to their greyer rim).

Darkness is a fraction of a level of the denoised image, whose grey levels the denoiser
standardises (z-scored, clipped, stretched to 0..255). Robust noise units of the low-passed
image did not separate contamination from clean fields (an ice meniscus beside carbon spreads
the image's own levels as much as the carbon step); fractions of the median did, with room on
both sides (:class:`BadRegionSettings` gives the figures). Ice that is only thicker, as in
the corners of several real micrographs whose particles are still visible, is left alone.
A third cue, strong edges of the low-passed image (carbon edges), is available
(``edge_strength``) but off: the regions' margin already covers the edges it finds, and its
wide band cost particles next to contamination.

The union is widened by a margin (half a particle diameter), so that picks on the rim of a
region go too. Everything is computed on a copy shrunk to about a dozen pixels per particle
diameter: tens of milliseconds on a 1024-px working image (bench/bad_regions.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import pandas as pd
from skimage.filters import apply_hysteresis_threshold

from cryosegnet.preprocessing.filters import gaussian_filter

# A robust standard deviation from the median absolute deviation of a normal distribution.
MAD_TO_STD = 1.4826
# Fewer picks than this make no population to judge a blob against (blob_level alone).
MIN_POPULATION = 20


@dataclass(frozen=True)
class BadRegionSettings:
    """How bad regions are found: every scale a fraction of the particle diameter, every
    darkness a fraction of the denoised image's median level.

    Parameters
    ----------
    pixels_per_diameter : float
        The mask is computed on a copy shrunk so that a particle spans about this many pixels:
        enough to resolve a particle-sized blob, few enough to keep the filters cheap.
    region_scale : float
        Gaussian sigma of the low-pass for dark regions (and edges), in diameters: wide enough
        to average a particle, and a crowded field's particle texture, away.
    region_core : float
        A dark region holds a core whose low-passed level is below this fraction of the
        median: contamination and carbon reach 0.3 or less (nearly opaque), while clean
        fields at the picker's working size stay above 0.68 (apoferritin ``train``,
        simulations) and the thicker-ice corners of real micrographs whose particles are
        still visible (FEI, T20S examples) above 0.45: those are left alone.
    region_level : float
        The region reaches as far as the connected area below this fraction of the median
        round its core (hysteresis: grown out to the greyer rim); the margin adds the rest.
    min_region_area : float
        A dark region covers at least this many particle disks (a crowd of a few dark
        particles is not a region; smaller dark things are left to the blob cue).
    edge_strength : float or None
        Off (None) by default. Else the low-passed image's gradient this many times its
        median marks an edge (noise alone rarely exceeds 4 times): measured, it added nothing
        the dark regions' margin did not cover and cost particles beside contamination.
    blob_scale : float
        Gaussian sigma of the particle-scale low-pass for outlier blobs, in diameters: about
        the particle's dark core.
    background_scale : float
        Gaussian sigma of the blobs' local background, in diameters: wide enough that one
        blob barely darkens it.
    blob_level : float
        An outlier blob's core is below this fraction of its local background: the UCSF
        micrograph's ice balls lie at 0.25-0.46 (two greyer ones at 0.53-0.58 are missed),
        the labelled apoferritin particles above 0.75.
    blob_spread : float
        ... and this many robust standard deviations (1.4826 MAD) below the median of the
        picks' own blob levels, so that a protein of high contrast, whose particles range
        down to 0.42 (the 80S ribosome micrograph), keeps its darkest particles: the ice balls
        lie 5.6-11 deviations below their micrograph's picks, dark particles within 4.
    blob_extent : float
        The blob reaches as far as the connected area below this fraction of the background
        round its core (hysteresis: grown out from the core to its greyer rim).
    margin : float
        The mask is widened by this fraction of the diameter, so picks on a region's rim go
        too: a particle centred half a diameter from contamination touches it.
    """

    pixels_per_diameter: float = 12.0
    region_scale: float = 1.0
    region_core: float = 0.35
    region_level: float = 0.6
    min_region_area: float = 3.0
    edge_strength: float | None = None
    blob_scale: float = 0.25
    background_scale: float = 2.0
    blob_level: float = 0.5
    blob_spread: float = 5.0
    blob_extent: float = 0.75
    margin: float = 0.5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is None and name == "edge_strength":
                continue
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value}")
        for name in ("pixels_per_diameter", "region_scale", "blob_scale", "background_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("region_core", "region_level", "blob_level", "blob_extent"):
            if not getattr(self, name) < 1:
                raise ValueError(f"{name} must be below 1 (a fraction of a level)")
        if self.region_core > self.region_level:
            raise ValueError("region_core must not exceed region_level (the region grows it)")
        if self.blob_level > self.blob_extent:
            raise ValueError("blob_level must not exceed blob_extent (the blob grows it)")

    def to_dict(self) -> dict:
        return asdict(self)


def bad_region_mask(
    denoised: np.ndarray,
    diameter: float,
    settings: BadRegionSettings | None = None,
    particles: np.ndarray | None = None,
) -> np.ndarray:
    """Where contamination, carbon and thick ice lie, widened by the margin.

    Parameters
    ----------
    denoised : ndarray
        The denoised micrograph (working pixels; particles dark).
    diameter : float
        Particle diameter in working pixels.
    settings : BadRegionSettings or None
        Thresholds (default: :class:`BadRegionSettings`).
    particles : ndarray or None
        Picks (N x 2: x, y in working pixels) whose darkness is the particles' own: a blob
        must be far darker than they are (``blob_spread``). None: blobs are judged by
        ``blob_level`` alone, which takes the darkest particles of a high-contrast protein
        too.

    Returns
    -------
    ndarray of bool
        True on bad regions, the shape of ``denoised``.

    Raises
    ------
    ValueError
        For an image that is not 2-D or a diameter that is not a positive number.
    """
    mask = shrunk_bad_region_mask(denoised, diameter, settings, particles)
    return enlarge_mask(mask, np.asarray(denoised).shape)


def shrunk_bad_region_mask(
    denoised: np.ndarray,
    diameter: float,
    settings: BadRegionSettings | None = None,
    particles: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`bad_region_mask` at the reduced scale it is computed on (a dozen pixels per
    particle, the aspect ratio of ``denoised``): what a :class:`PickResult` keeps, small
    enough to hold for every micrograph of a batch; :func:`enlarge_mask` brings it to any
    shape."""
    settings = settings or BadRegionSettings()
    small, shrink = _shrunk(denoised, diameter, settings)
    points = None if particles is None else np.asarray(particles, dtype=float) / shrink
    return bad_region_mask_small(small, diameter / shrink, settings, points)


def bad_region_mask_small(
    small: np.ndarray,
    diameter: float,
    settings: BadRegionSettings,
    particles: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`bad_region_mask` on an image already shrunk (``diameter`` and ``particles`` in
    its pixels)."""
    regions = dark_regions(small, diameter, settings)
    if particles is not None:  # the population: picks off the dark regions
        particles = particles[~_at(widen(regions, diameter), particles)]
    regions |= outlier_blobs(small, diameter, settings, particles)
    if settings.edge_strength is not None:
        regions |= strong_edges(small, diameter, settings)
    return widen(regions, settings.margin * diameter)


def _at(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``mask`` at each (x, y) point (pixel centres at integers)."""
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    col = np.clip(np.round(points[:, 0]).astype(int), 0, mask.shape[1] - 1)
    row = np.clip(np.round(points[:, 1]).astype(int), 0, mask.shape[0] - 1)
    return mask[row, col]


def _shrunk(
    denoised: np.ndarray, diameter: float, settings: BadRegionSettings
) -> tuple[np.ndarray, float]:
    """An area-shrunk float32 copy with about ``pixels_per_diameter`` px per particle, and the
    shrink factor (working px per shrunk px)."""
    image = np.asarray(denoised, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"bad-region mask: a 2-D image is needed, got shape {image.shape}")
    if not (np.isfinite(diameter) and diameter > 0):
        raise ValueError(f"bad-region mask: diameter must be a positive number, got {diameter}")
    shrink = max(1.0, float(diameter) / settings.pixels_per_diameter)
    if shrink <= 1.0:
        return image, 1.0
    height, width = image.shape
    size = (max(1, round(width / shrink)), max(1, round(height / shrink)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, width / size[0]


def dark_regions(image: np.ndarray, diameter: float, settings: BadRegionSettings) -> np.ndarray:
    """Areas of several particles, low-passed far below the median level round a nearly
    opaque core."""
    low = gaussian_filter(image, settings.region_scale * diameter)
    median = float(np.median(low))
    if not median > 0:
        return np.zeros(image.shape, dtype=bool)
    dark = apply_hysteresis_threshold(
        -low, -settings.region_level * median, -settings.region_core * median
    )
    min_area = settings.min_region_area * np.pi * (diameter / 2) ** 2
    return _large_components(dark, min_area)


def strong_edges(image: np.ndarray, diameter: float, settings: BadRegionSettings) -> np.ndarray:
    """Where the low-passed image's gradient is many times its median: carbon and patch edges."""
    low = gaussian_filter(image, settings.region_scale * diameter)
    gx = cv2.Sobel(low, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(low, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    magnitude = np.hypot(gx, gy)
    typical = float(np.median(magnitude))
    assert settings.edge_strength is not None
    if not typical > 0:
        return np.zeros(image.shape, dtype=bool)
    return magnitude > settings.edge_strength * typical


def outlier_blobs(
    image: np.ndarray,
    diameter: float,
    settings: BadRegionSettings,
    particles: np.ndarray | None = None,
) -> np.ndarray:
    """Particle-sized blobs far darker than the particles on their surroundings: small ice
    balls and crystals. Measured against the local background (a few diameters round the
    blob), so particles in a darker stretch of ice are not taken for them; and, given the
    ``particles`` (x, y), against their spread, so a high-contrast protein keeps its darkest
    particles."""
    low = gaussian_filter(image, settings.blob_scale * diameter)
    background = gaussian_filter(image, settings.background_scale * diameter)
    ratio = low / np.maximum(background, 1e-3 * max(float(background.max()), 1e-6))
    core = settings.blob_level
    if particles is not None and len(particles) >= MIN_POPULATION:
        # Each pick's darkest point within a quarter diameter: its core.
        radius = max(1, int(round(diameter / 4)))
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        levels = _at(cv2.erode(ratio, disk), particles)
        median = float(np.median(levels))
        spread = MAD_TO_STD * float(np.median(np.abs(levels - median)))
        core = min(core, median - settings.blob_spread * spread)
    if core <= 0:
        return np.zeros(image.shape, dtype=bool)
    return apply_hysteresis_threshold(-ratio, -settings.blob_extent, -core)


def widen(mask: np.ndarray, margin: float) -> np.ndarray:
    """``mask`` grown by ``margin`` px (a Euclidean disk)."""
    if margin <= 0 or not mask.any():
        return mask
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    return distance <= margin


def enlarge_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A mask computed on a shrunk copy, brought to ``shape`` (nearest neighbour)."""
    if mask.shape == tuple(shape):
        return mask
    height, width = int(shape[0]), int(shape[1])
    out = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return out.astype(bool)


def _large_components(mask: np.ndarray, min_area: float) -> np.ndarray:
    if not mask.any():
        return mask
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.asarray(stats)[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False  # the background
    return keep[np.asarray(labels)]


def drop_picks_in_mask(picks: pd.DataFrame, mask: np.ndarray, scale: float = 1.0) -> pd.DataFrame:
    """The picks whose centre lies outside ``mask``.

    Parameters
    ----------
    picks : DataFrame
        Picks with ``x`` (column) and ``y`` (row), in the micrograph's pixels.
    mask : ndarray of bool
        Bad regions (with their margin), in pixels ``scale`` times the picks' pixels.
    scale : float
        Mask pixels per pick pixel (the working image's scale).

    Returns
    -------
    DataFrame
        The picks outside the mask, re-indexed from 0.
    """
    if picks.empty or not mask.any():
        return picks
    height, width = mask.shape
    # Pixel j of the picks' frame spans [j, j + 1): its centre j + 0.5 falls in mask pixel
    # floor((j + 0.5) * scale).
    col = np.floor((picks["x"].to_numpy(float) + 0.5) * scale).astype(int)
    row = np.floor((picks["y"].to_numpy(float) + 0.5) * scale).astype(int)
    col, row = np.clip(col, 0, width - 1), np.clip(row, 0, height - 1)
    return picks[~mask[row, col]].reset_index(drop=True)


def drop_bad_region_picks(
    picks: pd.DataFrame,
    denoised: np.ndarray,
    diameter: float | None,
    original_shape: tuple[int, int],
    settings: BadRegionSettings | None = None,
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The picker's step: find the bad regions of one micrograph and drop the picks in them.

    Parameters
    ----------
    picks : DataFrame
        Picks in the micrograph's pixels (``x``, ``y``, ``diameter``).
    denoised : ndarray
        The denoised working image the picks came from.
    diameter : float or None
        Particle diameter in the micrograph's pixels; None or NaN: the picks' median diameter,
        and with neither (no pick) there is nothing to drop.
    original_shape : tuple of int
        The micrograph's shape as read.
    settings : BadRegionSettings or None
        Thresholds (default: :class:`BadRegionSettings`).

    Returns
    -------
    (DataFrame, ndarray of bool or None)
        The picks outside the bad regions, and the mask at its reduced scale (None when no
        diameter was known).
    """
    if not (diameter and np.isfinite(diameter) and diameter > 0) and len(picks):
        diameter = float(np.nanmedian(picks["diameter"].to_numpy(float)))
    if not (diameter and np.isfinite(diameter) and diameter > 0):
        return picks, None
    scale = denoised.shape[1] / original_shape[1]  # working px per micrograph px
    particles = (picks[["x", "y"]].to_numpy(float) + 0.5) * scale - 0.5
    mask = shrunk_bad_region_mask(denoised, diameter * scale, settings, particles)
    return drop_picks_in_mask(picks, mask, mask.shape[1] / original_shape[1]), mask
