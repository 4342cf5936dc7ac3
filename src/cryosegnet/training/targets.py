"""Disk masks: the paper's segmentation targets, and the pixel frame for Dice.

A labelled particle becomes a filled disk of its diameter centred on its coordinate; pixels
belong to a disk when their centre lies within the radius (x = column, y = row).
"""

from __future__ import annotations

import numpy as np


def disk_mask(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    diameter: np.ndarray | float,
) -> np.ndarray:
    """Union of disks as a bool (H, W) array; disks are clipped at the image border."""
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
