"""Projections of densities at random orientations, precomputed in banks for speed.

Rotating and splatting a few thousand pseudo-atoms costs well under a millisecond, but a
crowded micrograph holds hundreds of particles; a bank of views per density (times the 8
in-plane rotations/flips of the pixel grid, which are free) gives plenty of variety at the
cost of copying arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from cryosegnet.simulation.densities import Density


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` rotation matrices uniform on SO(3) (normalised Gaussian quaternions)."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return Rotation.from_quat(q).as_matrix()


def project(
    density: Density, rotation: np.ndarray, pixel_size: float, size: int | None = None
) -> np.ndarray:
    """Projected density along z after ``rotation``, on a ``size``² grid centred at size//2.

    Points are splatted bilinearly onto the pixel grid (so sub-pixel positions are kept) and
    then smoothed by the density's own ``blur``; the sum over the image equals the total weight.
    """
    if size is None:
        size = projection_size(density, pixel_size)
    xy = density.points @ rotation.T
    u = xy[:, 0] / pixel_size + size // 2
    v = xy[:, 1] / pixel_size + size // 2
    u0 = np.floor(u).astype(np.int64)
    v0 = np.floor(v).astype(np.int64)
    fu, fv = u - u0, v - v0
    w = density.weights
    img: np.ndarray = np.zeros(size * size, dtype=np.float64)
    for du, dv, ww in (
        (0, 0, (1 - fu) * (1 - fv)),
        (1, 0, fu * (1 - fv)),
        (0, 1, (1 - fu) * fv),
        (1, 1, fu * fv),
    ):
        uu, vv = u0 + du, v0 + dv
        ok = (uu >= 0) & (uu < size) & (vv >= 0) & (vv < size)
        img += np.bincount(vv[ok] * size + uu[ok], weights=(w * ww)[ok], minlength=size * size)
    img = img.reshape(size, size).astype(np.float32)
    sigma = density.blur / pixel_size
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_CONSTANT)
    return img


def projection_size(density: Density, pixel_size: float) -> int:
    """Odd box size that holds the projection at any orientation, blur tail included."""
    half = (density.radius + 3.0 * density.blur) / pixel_size + 2
    return int(2 * np.ceil(half) + 1)


@dataclass
class ProjectionBank:
    """Views of one density at one pixel size.

    ``views`` (n, s, s) float32 projected potential (sum = total weight), centred at s//2;
    ``footprints`` (n, s, s) bool: where the projection is significant (the particle's true
    outline, used for the footprint mask and for overlap decisions).
    """

    density: Density
    pixel_size: float
    views: np.ndarray
    footprints: np.ndarray

    @property
    def diameter_px(self) -> float:
        return self.density.diameter / self.pixel_size

    @property
    def box(self) -> int:
        return int(self.views.shape[-1])

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random view and its footprint, with one of 8 free in-plane symmetries applied."""
        i = int(rng.integers(len(self.views)))
        k = int(rng.integers(4))
        view, foot = np.rot90(self.views[i], k), np.rot90(self.footprints[i], k)
        if rng.random() < 0.5:
            view, foot = view.T, foot.T
        return view, foot


def make_bank(
    density: Density, pixel_size: float, n_views: int, rng: np.random.Generator
) -> ProjectionBank:
    """Project ``density`` at ``n_views`` uniformly random orientations."""
    size = projection_size(density, pixel_size)
    rots = random_rotations(rng, n_views)
    views = np.stack([project(density, r, pixel_size, size) for r in rots])
    # Footprint: above a fraction of a typical in-particle value (robust to a few hot pixels).
    level = np.percentile(views.reshape(n_views, -1), 99, axis=1)[:, None, None]
    footprints = views > 0.08 * level
    return ProjectionBank(density, pixel_size, views.astype(np.float32), footprints)
