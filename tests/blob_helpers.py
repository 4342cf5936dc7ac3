"""Synthetic dark-disk images for the tests of the blob stages (LoG, hybrid)."""

from __future__ import annotations

import numpy as np


def dark_disks(shape, centres, radius, contrast, noise, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = rng.normal(0.0, noise, shape)
    for cx, cy in centres:
        image[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2] -= contrast
    return image.astype(np.float32)


CENTRES = [(60, 60), (180, 70), (100, 170), (200, 200), (60, 230)]
