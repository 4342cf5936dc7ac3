"""Synthetic probability maps for the instance-stage tests."""

from __future__ import annotations

import numpy as np


def disks(shape, centres, radius, value=1.0):
    """Filled disks drawn patch by patch (a full-image mask per disk would be slow)."""
    out = np.zeros(shape, dtype=np.float32)
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    for cx, cy in centres:
        x0, y0 = round(cx), round(cy)
        inside = (dx + x0 - cx) ** 2 + (dy + y0 - cy) ** 2 <= radius**2
        rows, cols = dy[inside] + y0, dx[inside] + x0
        ok = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
        out[rows[ok], cols[ok]] = value
    return out
