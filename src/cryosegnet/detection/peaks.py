"""Local maxima that stay few on flat regions, and greedy suppression linear in their number.

``score == maximum_filter(score)`` marks *every* pixel of a flat region as a maximum: a zeroed
half of a micrograph, a saturated contamination patch or a clipped map gives hundreds of
thousands of tied "peaks", and a suppression that compares pairs then needs tens of GB. Here
each connected plateau of tied maxima counts once (its pixel nearest the plateau's centroid),
and the suppression visits each candidate once against a grid of the peaks already kept.
"""

from __future__ import annotations

import cv2
import numpy as np

from cryosegnet.preprocessing.filters import maximum_filter


def local_maxima(
    score: np.ndarray, window: int, floor: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maxima of ``score`` over a ``window`` x ``window`` neighbourhood, above ``floor``.

    Parameters
    ----------
    score : ndarray
        2-D score map.
    window : int
        Side of the square neighbourhood a maximum must dominate (at least 3).
    floor : float
        Only maxima strictly above it are returned.

    Returns
    -------
    cols, rows, values : ndarray
        One entry per maximum; a connected plateau of equal maxima gives one entry, at its
        pixel nearest the plateau's centroid.

    Examples
    --------
    >>> import numpy as np
    >>> score = np.zeros((40, 40), np.float32)
    >>> score[5:25, 5:25] = 1.0                     # a flat square: one maximum, not 400
    >>> score[32, 32] = 2.0
    >>> cols, rows, values = local_maxima(score, 5)
    >>> sorted(zip(cols.tolist(), rows.tolist()))
    [(14, 14), (32, 32)]
    """
    values = np.asarray(score)
    window = max(3, int(window))
    is_peak = (values == maximum_filter(values, window)) & (values > floor)
    count, labels = cv2.connectedComponents(is_peak.astype(np.uint8), connectivity=8)
    rows, cols = np.nonzero(is_peak)
    if count - 1 == len(rows):  # no plateau: every maximum is its own component
        return cols, rows, values[rows, cols]
    label = labels[rows, cols]
    n = count
    centre_row = np.bincount(label, rows, minlength=n) / np.maximum(
        np.bincount(label, minlength=n), 1
    )
    centre_col = np.bincount(label, cols, minlength=n) / np.maximum(
        np.bincount(label, minlength=n), 1
    )
    distance = (rows - centre_row[label]) ** 2 + (cols - centre_col[label]) ** 2
    order = np.lexsort((distance, label))  # by component, nearest its centroid first
    first = order[np.r_[True, label[order][1:] != label[order][:-1]]]
    first = np.sort(first)  # raster order, as without plateaus
    rows, cols = rows[first], cols[first]
    return cols, rows, values[rows, cols]


def suppress_close_peaks(
    x: np.ndarray, y: np.ndarray, scores: np.ndarray, radius: float | np.ndarray
) -> np.ndarray:
    """Boolean mask keeping each peak unless a higher-scoring kept peak is within ``radius``.

    Greedy non-maximum suppression in score order (ties: the earlier peak wins), the rule every
    built-in stage uses. Kept peaks are filed in a grid of cells as wide as the largest radius,
    so each candidate is checked against the few kept peaks of its 3 x 3 cells: time and memory
    grow linearly with the number of candidates, however they cluster.

    Parameters
    ----------
    x, y : ndarray
        Peak positions.
    scores : ndarray
        Higher is better.
    radius : float or ndarray
        Peaks at this distance or closer to a kept, higher-scoring peak are dropped. One radius
        per peak (blobs of several sizes): two peaks are too close within the larger of their
        two radii, so a small blob inside a large particle's radius goes, and so does a large
        one centred inside a small one's.

    Returns
    -------
    ndarray of bool
        True for the peaks kept.
    """
    n = len(scores)
    keep = np.zeros(n, bool)
    if n == 0:
        return keep
    radii = np.broadcast_to(np.asarray(radius, dtype=float), (n,))
    cell = float(radii.max())
    if not (np.isfinite(cell) and cell > 0):
        keep[:] = True
        return keep
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    cell_x = np.floor(xs / cell).astype(np.int64)
    cell_y = np.floor(ys / cell).astype(np.int64)
    grid: dict[tuple[int, int], list[int]] = {}
    for i in order.tolist():
        cx, cy = int(cell_x[i]), int(cell_y[i])
        xi, yi, ri = xs[i], ys[i], radii[i]
        close = False
        for gx in (cx - 1, cx, cx + 1):
            for gy in (cy - 1, cy, cy + 1):
                for j in grid.get((gx, gy), ()):
                    limit = max(ri, radii[j])
                    if (xs[j] - xi) ** 2 + (ys[j] - yi) ** 2 <= limit * limit:
                        close = True
                        break
                if close:
                    break
            if close:
                break
        if not close:
            keep[i] = True
            grid.setdefault((cx, cy), []).append(i)
    return keep
