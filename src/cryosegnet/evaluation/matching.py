"""One-to-one matching of picks to labelled particle centres.

Greedy in descending score order: the most confident pick claims the nearest free label
within the radius, then the next pick, and so on. Because the order is fixed by score, the
matching of "every pick with score >= t" is a prefix of the full matching, so a single pass
gives the whole precision-recall curve and every threshold is scored consistently.
A duplicate pick therefore never counts twice, and a pick between two particles claims one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass
class MatchResult:
    """Outcome for one micrograph, picks in descending-score order.

    ``order`` maps that order back to the input rows; ``label_index[k]`` is the label claimed by
    the k-th most confident pick (-1: false positive); ``distance[k]`` its distance (NaN if none).
    """

    order: np.ndarray
    scores: np.ndarray
    label_index: np.ndarray
    distance: np.ndarray
    n_labels: int

    @property
    def is_tp(self) -> np.ndarray:
        """Whether each pick (descending score) matched a label."""
        return self.label_index >= 0

    @property
    def n_picks(self) -> int:
        """The number of picks."""
        return len(self.order)


def match_picks(
    pick_xy: np.ndarray,
    scores: np.ndarray,
    label_xy: np.ndarray,
    radius: float,
) -> MatchResult:
    """Match picks to labels one to one, most confident pick first.

    Ties in score keep the input order (stable sort), so the result is deterministic.

    Parameters
    ----------
    pick_xy : numpy.ndarray
        Pick centres, shape (N, 2), pixels.
    scores : numpy.ndarray
        One score per pick, shape (N,); NaN ranks last.
    label_xy : numpy.ndarray
        Labelled centres, shape (M, 2), pixels.
    radius : float
        A pick matches an unclaimed label within this many pixels.

    Returns
    -------
    MatchResult
        The picks in descending-score order with the label each claimed (-1: none) and its
        distance.

    Raises
    ------
    ValueError
        When the scores do not match the picks, or ``radius`` is not positive.
    """
    pick_xy = np.asarray(pick_xy, dtype=np.float64).reshape(-1, 2)
    label_xy = np.asarray(label_xy, dtype=np.float64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(pick_xy):
        raise ValueError("one score per pick is needed")
    if not radius > 0:
        raise ValueError(f"matching radius must be positive, got {radius}")
    # NaN scores rank last rather than poisoning the sort.
    ranked = np.where(np.isfinite(scores), scores, -np.inf)
    order = np.argsort(-ranked, kind="stable")
    label_index = np.full(len(order), -1, dtype=np.int64)
    distance = np.full(len(order), np.nan)
    if len(order) and len(label_xy):
        tree = cKDTree(label_xy)
        taken = np.zeros(len(label_xy), dtype=bool)
        neighbours = tree.query_ball_point(pick_xy[order], r=radius)
        for k, candidates in enumerate(neighbours):
            if not candidates:
                continue
            candidates = np.sort(np.asarray(candidates, dtype=np.int64))
            candidates = candidates[~taken[candidates]]
            if len(candidates) == 0:
                continue
            d = np.hypot(*(label_xy[candidates] - pick_xy[order[k]]).T)
            best = int(np.argmin(d))
            label_index[k] = candidates[best]
            distance[k] = d[best]
            taken[candidates[best]] = True
    return MatchResult(
        order=order,
        scores=scores[order],
        label_index=label_index,
        distance=distance,
        n_labels=len(label_xy),
    )
