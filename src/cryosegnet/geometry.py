"""Pixel geometry shared by every layer: the one definition of a particle's disk.

The simulator draws its ground-truth masks with it, training turns labels into targets with
it and evaluation measures pixel Dice with it, so all three must agree to the pixel. It lives
here, at the bottom of the package and with numpy as its only dependency, so that none of
those layers has to import another to get it (evaluation must not import training).
"""

from __future__ import annotations

import numpy as np

__all__ = ["disk_mask"]


def disk_mask(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    diameter: np.ndarray | float,
) -> np.ndarray:
    """Union of filled disks as a boolean image.

    A pixel belongs to a disk when its centre lies within the radius:
    ``(col - x) ** 2 + (row - y) ** 2 <= (diameter / 2) ** 2``, with pixel centres at integer
    indices (x = column, y = row), the coordinate convention of the package.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` of the mask.
    x, y : array_like
        Disk centres in pixels (column, row).
    diameter : array_like or float
        Disk diameters in pixels, one per centre or one for all.

    Returns
    -------
    numpy.ndarray
        Boolean ``(height, width)`` array. Disks are clipped at the image border; disks with
        a non-finite centre or a diameter that is not positive are left out.

    Examples
    --------
    >>> int(disk_mask((9, 9), [4], [4], 5).sum())
    21
    """
    height, width = int(shape[0]), int(shape[1])
    mask = np.zeros((height, width), dtype=bool)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    diam = np.broadcast_to(np.asarray(diameter, dtype=np.float64), x.shape)
    for cx, cy, d in zip(x, y, diam, strict=True):
        r = d / 2.0
        if not (np.isfinite(cx) and np.isfinite(cy) and np.isfinite(r)) or r <= 0:
            continue
        r0, r1 = max(int(np.floor(cy - r)), 0), min(int(np.ceil(cy + r)) + 1, height)
        c0, c1 = max(int(np.floor(cx - r)), 0), min(int(np.ceil(cx + r)) + 1, width)
        if r0 >= r1 or c0 >= c1:
            continue
        rows = np.arange(r0, r1)[:, None] - cy
        cols = np.arange(c0, c1)[None, :] - cx
        mask[r0:r1, c0:c1] |= rows**2 + cols**2 <= r * r
    return mask
