"""Are the picks on the particles' centres? Figures the half-diameter match radius hides.

Matched within half a diameter, a pick on a particle's rim counts as fully right, and on a
crowded micrograph so does a point laid down blindly: the half-diameter figures alone cannot
tell a centred picker from one that finds the right neighbourhood. Beside them:

* best F1 and AUPRC at a quarter diameter (half the usual radius): a centred picker loses
  little there, a rim picker most of its matches;
* the median centre error: the distance from each matched pick (half-diameter radius, picks at
  the evaluated threshold) to its label;
* a blind grid: as many points per micrograph as the picks kept at the pooled best-F1
  threshold, laid on a square grid over the micrograph, with no look at the image. A picker
  is only as good as its margin over this grid at the same density.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cryosegnet.evaluation.matching import match_picks


def _pr(scores: list[np.ndarray], hits: list[np.ndarray], n_labels: int) -> tuple[float, float]:
    """(best F1, AUPRC) of picks pooled over micrographs."""
    from cryosegnet.evaluation.metrics import pr_curve

    curve = pr_curve(
        np.concatenate(scores) if scores else np.zeros(0),
        np.concatenate(hits) if hits else np.zeros(0, bool),
        n_labels,
    )
    return curve.best_f1()[0], curve.auprc()


def grid_points(count: int, shape: tuple[float, float]) -> np.ndarray:
    """About ``count`` (x, y) points on a square grid filling a ``shape`` (rows, cols) field."""
    height, width = float(shape[0]), float(shape[1])
    if count <= 0 or height <= 0 or width <= 0:
        return np.zeros((0, 2))
    step = math.sqrt(height * width / count)
    xs = np.arange(step / 2, width, step)
    ys = np.arange(step / 2, height, step)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    return grid[:count]


def centring_figures(
    picks_by_mic: dict[str, pd.DataFrame],
    labels_by_mic: dict[str, pd.DataFrame],
    radii: dict[str, float],
    match_distances: list[np.ndarray],
    best_threshold: float | None,
    shapes: dict[str, tuple[int, int]] | None = None,
) -> dict:
    """Quarter-diameter figures, median centre error and a blind grid, pooled.

    Parameters
    ----------
    picks_by_mic, labels_by_mic : dict of DataFrame
        Picks (x, y, score) and labels (x, y) by micrograph.
    radii : dict of float
        Each micrograph's match radius (half a diameter); the quarter-diameter figures use half.
    match_distances : list of ndarray
        Distances from each matched pick (half-diameter radius, picks at the evaluated
        threshold) to its label, as :func:`~cryosegnet.evaluation.metrics.evaluate_picks`
        matched them: the centre error is their median.
    best_threshold : float or None
        The pooled best-F1 threshold: the grid has as many points as picks at or above it.
    shapes : dict or None
        Micrograph shapes (rows, cols) for the grid; else the extent of picks and labels.

    Returns
    -------
    dict
        ``best_f1_quarter``, ``auprc_quarter``, ``median_centre_error`` (px),
        ``grid_best_f1`` and ``grid_best_f1_quarter`` (the grid's F1: its points have no score).
    """
    shapes = shapes or {}
    quarter_scores, quarter_hits = [], []
    grid_hits_half = grid_hits_quarter = grid_points_total = n_labels = 0
    for name, radius in radii.items():
        labels = labels_by_mic[name][["x", "y"]].to_numpy(float)
        picks = picks_by_mic.get(name)
        n_labels += len(labels)
        xy = np.zeros((0, 2)) if picks is None else picks[["x", "y"]].to_numpy(float)
        score = (
            np.ones(len(xy))
            if picks is None or "score" not in picks
            else picks["score"].to_numpy(float)
        )
        quarter = match_picks(xy, score, labels, radius / 2)
        quarter_scores.append(quarter.scores)
        quarter_hits.append(quarter.is_tp)
        n_grid = int((score >= best_threshold).sum()) if best_threshold is not None else 0
        known = shapes.get(name)
        if known is None:
            extent = np.vstack([labels, xy]) if len(xy) or len(labels) else np.zeros((1, 2))
            field = (float(extent[:, 1].max()) + 1, float(extent[:, 0].max()) + 1)
        else:
            field = (float(known[0]), float(known[1]))
        grid = grid_points(n_grid, field)
        ones = np.ones(len(grid))
        grid_hits_half += int(match_picks(grid, ones, labels, radius).is_tp.sum())
        grid_hits_quarter += int(match_picks(grid, ones, labels, radius / 2).is_tp.sum())
        grid_points_total += len(grid)
    best_quarter, auprc_quarter = _pr(quarter_scores, quarter_hits, n_labels)
    all_errors = np.concatenate(match_distances) if match_distances else np.zeros(0)

    def f1(hits: int) -> float:
        total = grid_points_total + n_labels
        return 2 * hits / total if total else float("nan")

    return {
        "best_f1_quarter": best_quarter,
        "auprc_quarter": auprc_quarter,
        "median_centre_error": float(np.median(all_errors)) if len(all_errors) else float("nan"),
        "grid_best_f1": f1(grid_hits_half),
        "grid_best_f1_quarter": f1(grid_hits_quarter),
        "grid_points": grid_points_total,
    }
