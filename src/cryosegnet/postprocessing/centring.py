"""Centred picks: move each pick to the centre of the particle it sits on.

A dark-blob detector tuned to a particle's dark core finds the darkest spot on a particle, and
on a hollow particle (apoferritin's protein shell, a ring seen end-on) that spot lies on the
shell, about a third of a diameter from the centre. Averaging the picks to make a reference
does not help: the average of shell picks is a dark blob, and re-centring on it moves nothing.

The particle's centre is instead where a disk the size of the particle is darkest against its
surround: the disk covers the whole shell only when it is centred on it, while on a filled
particle its centre is the darkest disk too. So each pick moves to the maximum, within
``search_fraction`` of a diameter, of the *disk contrast*: the mean of the denoised image in a
ring of ``surround_fraction`` x the diameter round the point minus the mean in the disk of
``disk_fraction`` x the diameter (uniform weights: a Gaussian or LoG weighting favours the
centre pixels, which are light on a hollow particle, and keeps the picks on the shell). Two
picks on one particle then meet at its centre, so the picks are suppressed again, keeping the
higher score. Scores are not changed.

A move is kept only where the particle does not look clearly less rotationally symmetric from
its new place than from its old one (:func:`radial_asymmetry`). Where a filled particle's dark
core is smaller than the disk, the contrast is flat over the core and noise or a neighbour in
the surround decides where its maximum falls; seen from there the core is lopsided, so an
already centred pick stays. A pick on a hollow particle's shell sees the shell lopsided, and
its centre sees it even, so it moves.

Chosen on the apoferritin ``train`` split told its labelled size and on simulated shells and
globular particles (bench/centring.py): a disk of 1.1 diameters and a surround of 1.6. The
contrast map is one correlation of the working image (tens of milliseconds on a 1024-px
image), computed on a copy shrunk to ``pixels_per_diameter`` when the particle is larger.

Off by default (``cryosegnet pick --centre-picks`` turns it on), because it needs the
particle's true outer size: with a size far too small (the size estimated on apoferritin is
about 0.6 of the labelled one) the disk sits inside a hollow particle's light interior and the
picks stay on the shell, and on the default route (size estimated) it changes best F1 by
-0.03 to +0.01 over the benchmark sets. Measured in bench/centring.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import pandas as pd

from cryosegnet.detection.peaks import suppress_close_peaks


@dataclass(frozen=True)
class CentringSettings:
    """How picks are moved to their particle's centre (every length a fraction of the diameter).

    Parameters
    ----------
    disk_fraction : float
        Radius of the disk whose darkness is measured: a little over half a diameter, so the
        disk holds the whole particle, its shell included, when centred on it.
    surround_fraction : float
        Outer radius of the surround the disk is compared with (the local ice level).
    search_fraction : float
        A pick moves at most this far: half a diameter reaches the centre from any point on
        the particle and does not reach a neighbour's centre in a crowded field.
    suppression_fraction : float
        After moving, picks closer than this are merged (the higher score stays), as the
        stages' own suppression does.
    pixels_per_diameter : float
        The contrast is computed on a copy shrunk so that a particle spans about this many
        pixels (never enlarged): the centre to a few percent of a diameter, at a fixed cost.
    symmetric_moves_only : bool
        A pick moves only where the particle does not look clearly less rotationally symmetric
        from its new place than from its old one (:func:`radial_asymmetry` within
        ``disk_fraction`` of a diameter, on the image smoothed over ``symmetry_smoothing`` of
        a diameter): a pick on a hollow particle's shell moves to its centre, while one
        already centred on a filled particle whose dark core is smaller than the disk (the
        disk contrast is then flat over the core, and noise or a neighbour decides its
        maximum) stays put.
    symmetry_smoothing : float
        Gaussian sigma of that smoothing, a fraction of the diameter: the comparison then
        sees the particle's shape rather than the pixel noise.
    asymmetry_tolerance : float
        A move is refused when the asymmetry at the new place exceeds the old one by more
        than this factor (1: only moves to a more symmetric place).
    """

    disk_fraction: float = 0.55
    surround_fraction: float = 0.8
    search_fraction: float = 0.5
    suppression_fraction: float = 0.5
    pixels_per_diameter: float = 40.0
    symmetric_moves_only: bool = True
    symmetry_smoothing: float = 0.1
    asymmetry_tolerance: float = 1.3

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool):
                continue
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if self.surround_fraction <= self.disk_fraction:
            raise ValueError("surround_fraction must exceed disk_fraction (a ring round the disk)")

    def to_dict(self) -> dict:
        return asdict(self)


def disk_contrast_kernel(disk_radius: float, outer_radius: float) -> np.ndarray:
    """Zero-sum kernel: mean over the ring ``disk_radius``..``outer_radius`` minus the mean over
    the disk, so that correlating an image with it is high where a dark disk lies."""
    half = int(np.ceil(outer_radius))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    radius = np.hypot(xx, yy)
    disk = radius <= disk_radius
    ring = (radius > disk_radius) & (radius <= outer_radius)
    if not disk.any() or not ring.any():
        raise ValueError(f"radii {disk_radius:g} and {outer_radius:g} px leave no disk or ring")
    kernel = ring / ring.sum() - disk / disk.sum()
    return kernel.astype(np.float32)


def disk_contrast(
    image: np.ndarray, diameter: float, settings: CentringSettings | None = None
) -> tuple[np.ndarray, float]:
    """The disk-contrast map of a dark-particle image and its pixel size relative to ``image``.

    Parameters
    ----------
    image : ndarray
        Working image, particles dark (the denoised micrograph).
    diameter : float
        Particle diameter in ``image`` pixels.
    settings : CentringSettings or None
        Radii and the shrink (default: :class:`CentringSettings`).

    Returns
    -------
    (ndarray, float)
        The map (high at the centre of a dark disk the particle's size) and the shrink factor
        (``image`` pixels per map pixel, at least 1).
    """
    s = settings or CentringSettings()
    factor = max(1.0, float(diameter) / s.pixels_per_diameter)
    img: np.ndarray = np.nan_to_num(np.asarray(image, dtype=np.float32))
    d = float(diameter) / factor
    img = _shrunk(img, factor)
    kernel = disk_contrast_kernel(s.disk_fraction * d, s.surround_fraction * d)
    return cv2.filter2D(img, cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT), factor


def _shrunk(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` (float32, finite) area-shrunk ``factor`` times; itself when ``factor`` <= 1."""
    img: np.ndarray = np.nan_to_num(np.asarray(image, dtype=np.float32))
    if factor <= 1.0:
        return img
    size = (max(1, round(img.shape[1] / factor)), max(1, round(img.shape[0] / factor)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def move_to_maximum(
    x: np.ndarray, y: np.ndarray, score: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each point (map pixels) moved to the highest ``score`` pixel within ``radius`` of it.

    Parameters
    ----------
    x, y : ndarray
        Points in the map's pixels (column, row).
    score : ndarray
        2-D map.
    radius : float
        Search radius in map pixels.

    Returns
    -------
    (ndarray, ndarray)
        The new columns and rows (integers as float); a point outside the map keeps its place.
    """
    height, width = score.shape
    half = max(0, int(np.floor(radius)))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    outside = (xx * xx + yy * yy) > radius * radius
    padded = np.pad(score.astype(np.float32), half, mode="constant", constant_values=-np.inf)
    new_x, new_y = np.array(x, dtype=float), np.array(y, dtype=float)
    cols, rows = np.rint(new_x).astype(np.int64), np.rint(new_y).astype(np.int64)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    for i in np.flatnonzero(inside):
        window = padded[rows[i] : rows[i] + 2 * half + 1, cols[i] : cols[i] + 2 * half + 1]
        window = np.where(outside, -np.inf, window)
        best = int(np.argmax(window))
        dy, dx = divmod(best, window.shape[1])
        new_x[i], new_y[i] = cols[i] + dx - half, rows[i] + dy - half
    return new_x, new_y


def radial_asymmetry(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
    n_radii: int = 8,
    n_angles: int = 24,
) -> np.ndarray:
    """How far ``image`` round each point is from rotationally symmetric.

    The mean, over circles of ``n_radii`` radii up to ``radius``, of the variance of the image
    along each circle (``n_angles`` samples, bilinear). Seen from a particle's centre every
    circle crosses it evenly, so only the noise varies along it; seen from a point off the
    centre, the circles cut across the particle's edge and the variance grows.

    Parameters
    ----------
    image : ndarray
        2-D image (the contrast map's shrunk copy, or any image).
    x, y : ndarray
        Points in ``image`` pixels (column, row).
    radius : float
        Largest circle's radius, ``image`` pixels.
    n_radii, n_angles : int
        Circles, and samples on each.

    Returns
    -------
    ndarray
        One value per point (``image`` grey levels squared).
    """
    from scipy.ndimage import map_coordinates

    radii = radius * (np.arange(n_radii) + 1.0) / n_radii
    angles = 2 * np.pi * np.arange(n_angles) / n_angles
    dx = radii[:, None] * np.cos(angles)[None, :]  # (radii, angles)
    dy = radii[:, None] * np.sin(angles)[None, :]
    cols = np.asarray(x, dtype=float)[:, None, None] + dx[None]
    rows = np.asarray(y, dtype=float)[:, None, None] + dy[None]
    values = map_coordinates(
        np.asarray(image, dtype=np.float32), [rows.ravel(), cols.ravel()], order=1, mode="reflect"
    ).reshape(rows.shape)
    return values.var(axis=2).mean(axis=1)


def centre_picks(
    picks: pd.DataFrame,
    denoised: np.ndarray,
    diameter: float | None,
    original_shape: tuple[int, int],
    settings: CentringSettings | None = None,
) -> pd.DataFrame:
    """The picker's step: move each pick to its particle's centre, then merge picks that meet.

    Parameters
    ----------
    picks : DataFrame
        Picks in the micrograph's pixels (``x``, ``y``, ``score``, ``diameter``), best first.
    denoised : ndarray
        The denoised working image the picks came from (particles dark).
    diameter : float or None
        Particle diameter in the micrograph's pixels; None or NaN: the picks' median diameter,
        and with neither (no pick) nothing moves.
    original_shape : tuple of int
        The micrograph's shape as read.
    settings : CentringSettings or None
        Radii and search (default: :class:`CentringSettings`).

    Returns
    -------
    DataFrame
        The same columns, the picks moved and merged, in their original order.
    """
    s = settings or CentringSettings()
    if picks.empty:
        return picks
    if not (diameter and np.isfinite(diameter) and diameter > 0):
        diameter = float(np.nanmedian(picks["diameter"].to_numpy(float)))
    if not (diameter and np.isfinite(diameter) and diameter > 0):
        return picks
    scale_x = denoised.shape[1] / original_shape[1]  # working px per micrograph px
    scale_y = denoised.shape[0] / original_shape[0]
    contrast, factor = disk_contrast(denoised, diameter * scale_x, s)
    # micrograph px -> map px (pixel centres), and back
    map_x = ((picks["x"].to_numpy(float) + 0.5) * scale_x) / factor - 0.5
    map_y = ((picks["y"].to_numpy(float) + 0.5) * scale_y) / factor - 0.5
    radius = s.search_fraction * diameter * scale_x / factor
    new_x, new_y = move_to_maximum(map_x, map_y, contrast, radius)
    if s.symmetric_moves_only:
        map_diameter = diameter * scale_x / factor
        small = _shrunk(denoised, factor)
        small = cv2.GaussianBlur(small, (0, 0), s.symmetry_smoothing * map_diameter)
        ring = s.disk_fraction * map_diameter
        before = radial_asymmetry(small, map_x, map_y, ring)
        after = radial_asymmetry(small, new_x, new_y, ring)
        stay = after > s.asymmetry_tolerance * before
        new_x, new_y = np.where(stay, map_x, new_x), np.where(stay, map_y, new_y)
    moved = picks.copy()
    moved["x"] = ((new_x + 0.5) * factor) / scale_x - 0.5
    moved["y"] = ((new_y + 0.5) * factor) / scale_y - 0.5
    keep = suppress_close_peaks(
        moved["x"].to_numpy(float),
        moved["y"].to_numpy(float),
        moved["score"].to_numpy(float),
        s.suppression_fraction * diameter,
    )
    return moved[keep].reset_index(drop=True)
