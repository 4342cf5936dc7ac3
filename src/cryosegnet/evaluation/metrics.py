"""Particle-level precision, recall, F1, best F1, AUPRC and pixel Dice, per micrograph and pooled.

Pooled figures sum true positives over all micrographs (a micrograph with 300 particles weighs
more than one with 3); the precision-recall curve is built from every pick of every micrograph
ranked by score. Dice, the paper's secondary pixel figure, is the *mean* over micrographs —
the authors' code reported the maximum, which only measures the luckiest micrograph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from cryosegnet.evaluation.centring import centring_figures
from cryosegnet.evaluation.matching import MatchResult, match_picks
from cryosegnet.geometry import disk_mask


def precision_recall_f1(tp: int, n_picks: int, n_labels: int) -> tuple[float, float, float]:
    """Precision, recall and F1 of ``tp`` true picks among ``n_picks``, for ``n_labels``.

    Conventions for empty sets: no picks and no labels is perfect; no picks is precision 1
    only when there was nothing to find; no labels makes recall vacuously 1.
    """
    precision = tp / n_picks if n_picks else (1.0 if n_labels == 0 else 0.0)
    recall = tp / n_labels if n_labels else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f1)


@dataclass
class PRCurve:
    """Precision and recall when keeping picks with score >= ``thresholds[k]`` (descending)."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    n_labels: int

    @property
    def f1(self) -> np.ndarray:
        """F1 at each threshold (0 where precision and recall are both 0)."""
        p, r = self.precision, self.recall
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
        return f1

    def best_f1(self) -> tuple[float, float | None]:
        """(best F1, the score threshold that gives it); threshold None when there are no picks."""
        if len(self.thresholds) == 0:
            return (1.0 if self.n_labels == 0 else 0.0), None
        f1 = self.f1
        k = int(np.argmax(f1))  # first maximum = highest threshold reaching it
        return float(f1[k]), float(self.thresholds[k])

    def auprc(self) -> float:
        """Area under the step PR curve (average precision): sum of P_k * (R_k - R_{k-1}).

        Recall is relative to all labels, so particles never picked cap the area below 1.
        """
        if self.n_labels == 0:
            return float("nan")
        if len(self.thresholds) == 0:
            return 0.0
        recall_steps = np.diff(np.concatenate([[0.0], self.recall]))
        return float(np.sum(self.precision * recall_steps))


def pr_curve(scores: np.ndarray, is_tp: np.ndarray, n_labels: int) -> PRCurve:
    """Curve from picks' scores and match flags; one point per distinct score (ties together)."""
    scores = np.asarray(scores, dtype=np.float64)
    is_tp = np.asarray(is_tp, dtype=bool)
    ranked = np.where(np.isfinite(scores), scores, -np.inf)
    order = np.argsort(-ranked, kind="stable")
    ranked, tp_sorted = ranked[order], is_tp[order]
    cum_tp = np.cumsum(tp_sorted)
    n_kept = np.arange(1, len(ranked) + 1)
    # The last index of each run of equal scores: a threshold keeps all ties or none.
    last = np.zeros(0, dtype=np.int64)
    if len(ranked):
        last = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True)).astype(np.int64)
    precision = cum_tp[last] / n_kept[last] if len(last) else np.zeros(0)
    recall = cum_tp[last] / n_labels if n_labels else np.ones(len(last))
    return PRCurve(ranked[last], precision.astype(float), np.asarray(recall, float), n_labels)


def pixel_dice(
    picks: pd.DataFrame,
    labels: pd.DataFrame,
    pick_diameter: float,
    label_diameter: float,
    shape: tuple[int, int] | None = None,
) -> float:
    """Dice of the disk masks of picks and labels.

    Without the micrograph's ``shape`` the frame is the bounding box of all disks, which gives
    the same Dice except that disks are not clipped at the image border.
    """
    pd_ = _diameters(picks, pick_diameter)
    ld = _diameters(labels, label_diameter)
    px, py = picks["x"].to_numpy(float), picks["y"].to_numpy(float)
    lx, ly = labels["x"].to_numpy(float), labels["y"].to_numpy(float)
    if len(px) == 0 and len(lx) == 0:
        return 1.0
    if shape is None:
        all_x = np.concatenate([px - pd_ / 2, px + pd_ / 2, lx - ld / 2, lx + ld / 2])
        all_y = np.concatenate([py - pd_ / 2, py + pd_ / 2, ly - ld / 2, ly + ld / 2])
        x0, y0 = np.floor(np.nanmin(all_x)) - 1, np.floor(np.nanmin(all_y)) - 1
        shape = (int(np.ceil(np.nanmax(all_y) - y0)) + 2, int(np.ceil(np.nanmax(all_x) - x0)) + 2)
        px, lx, py, ly = px - x0, lx - x0, py - y0, ly - y0
    a = disk_mask(shape, px, py, pd_)
    b = disk_mask(shape, lx, ly, ld)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def _diameters(table: pd.DataFrame, fallback: float) -> np.ndarray:
    d = table["diameter"].to_numpy(float) if "diameter" in table else np.full(len(table), np.nan)
    return np.where(np.isfinite(d) & (d > 0), d, fallback)


@dataclass
class MicrographMetrics:
    """Figures for one micrograph; counts are at the evaluated threshold."""

    micrograph: str
    n_picks: int
    n_labels: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    best_f1: float
    best_threshold: float | None
    auprc: float
    dice: float
    radius: float
    mean_match_distance: float


@dataclass
class EvaluationResult:
    """Per-micrograph and pooled metrics plus what could not be paired."""

    per_micrograph: list[MicrographMetrics]
    pooled: dict
    curve: PRCurve
    settings: dict = field(default_factory=dict)
    picks_without_labels: list[str] = field(default_factory=list)
    labels_without_picks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        """Per-micrograph table (one row per micrograph)."""
        rows = [asdict(m) for m in self.per_micrograph]
        columns = list(MicrographMetrics.__dataclass_fields__)
        return pd.DataFrame(rows, columns=columns)

    def to_dict(self) -> dict:
        """The result as JSON-ready data (the thinned PR curve included), for the report."""
        return {
            "pooled": self.pooled,
            "per_micrograph": [asdict(m) for m in self.per_micrograph],
            "settings": self.settings,
            "picks_without_labels": self.picks_without_labels,
            "labels_without_picks": self.labels_without_picks,
            "warnings": self.warnings,
            "pr_curve": self.curve_points(),
        }

    def curve_points(self, max_points: int = 2000) -> dict:
        """The pooled PR curve for JSON, thinned to ``max_points``.

        The ends and the best-F1 point are kept, so a dataset of 10^5 picks does not produce a
        30 MB report.
        """
        curve = self.curve
        index = np.arange(len(curve.thresholds))
        if len(index) > max_points:
            keep = np.linspace(0, len(index) - 1, max_points).round().astype(int)
            index = np.unique(np.append(keep, int(np.argmax(curve.f1))))
        return {
            "threshold": curve.thresholds[index].tolist(),
            "precision": curve.precision[index].tolist(),
            "recall": curve.recall[index].tolist(),
        }


def label_radius(labels: pd.DataFrame, fallback_diameter: float | None) -> float | None:
    """Half the median labelled diameter, else half the fallback."""
    d = labels["diameter"].to_numpy(float) if "diameter" in labels else np.zeros(0)
    d = d[np.isfinite(d) & (d > 0)]
    if len(d):
        return float(np.median(d)) / 2
    return fallback_diameter / 2 if fallback_diameter else None


def check_match_options(
    radius: float | None = None,
    threshold: float | None = None,
    diameter: float | None = None,
    prefix: str = "",
) -> None:
    """Refuse matching options that cannot give an honest score, naming the option.

    Parameters
    ----------
    radius, threshold, diameter : float or None
        As :func:`evaluate_picks` takes them (None: not given).
    prefix : str, optional
        Put before each option's name (``"--"`` on the command line).

    Raises
    ------
    ValueError
        A radius or diameter that is not a positive finite number of pixels (an infinite
        radius matches every pick to any label), or a threshold that is NaN.
    """
    for name, value in (("radius", radius), ("diameter", diameter)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ValueError(
                f"{prefix}{name} {value:g}: must be a positive, finite number of pixels"
            )
    if threshold is not None and np.isnan(threshold):
        raise ValueError(f"{prefix}threshold {threshold}: not a number")


def evaluate_picks(
    picks_by_mic: dict[str, pd.DataFrame],
    labels_by_mic: dict[str, pd.DataFrame],
    radius: float | None = None,
    threshold: float | None = None,
    diameter: float | None = None,
    shapes: dict[str, tuple[int, int]] | None = None,
    missing_picks: str = "empty",
    picks_threshold: float | None = None,
) -> EvaluationResult:
    """Score picks against labels, micrograph by micrograph, and pooled.

    ``radius``: match distance in pixels; default half the particle diameter (``diameter``, else
    the labels' median diameter). ``threshold``: keep picks with score >= it for the counts and
    Dice (the PR curve, best F1 and AUPRC always use every pick). ``missing_picks``: a labelled
    micrograph without picks counts as zero picks ("empty", the honest default: the picker
    found nothing there) or is left out ("skip"); either way it is listed in the result.
    ``picks_threshold``: the threshold the picks were made with, when known (see
    :func:`curve_warnings`).

    Parameters
    ----------
    picks_by_mic : dict of str to pandas.DataFrame
        Picks (``x``, ``y``, ``score``) per micrograph name.
    labels_by_mic : dict of str to pandas.DataFrame
        Labelled particles (``x``, ``y``, optionally ``diameter``) per micrograph name.
    radius : float, optional
        Match distance in pixels (see above).
    threshold : float, optional
        Score cut for the counts (see above).
    diameter : float, optional
        Particle diameter in pixels, for the default radius.
    shapes : dict of str to tuple of int, optional
        Micrograph shapes, for the pixel Dice.
    missing_picks : {"empty", "skip"}, optional
        How a labelled micrograph without picks counts (see above).
    picks_threshold : float, optional
        The threshold the picks were made with (see above).

    Returns
    -------
    EvaluationResult
        Per-micrograph and pooled counts, precision, recall, F1, best F1, AUPRC and the PR
        curve.

    Examples
    --------
    Two labelled particles, one found (within half a diameter) and one false pick:

    >>> import pandas as pd
    >>> labels = {"mic": pd.DataFrame({"x": [10.0, 100.0], "y": [10.0, 100.0],
    ...                                "diameter": [20.0, 20.0]})}
    >>> picks = {"mic": pd.DataFrame({"x": [12.0, 50.0], "y": [11.0, 50.0],
    ...                               "score": [0.9, 0.4], "diameter": [20.0, 20.0]})}
    >>> pooled = evaluate_picks(picks, labels).pooled
    >>> pooled["tp"], pooled["fp"], pooled["fn"], round(pooled["f1"], 2)
    (1, 1, 1, 0.5)
    """
    if missing_picks not in ("empty", "skip"):
        raise ValueError("missing_picks must be 'empty' or 'skip'")
    check_match_options(radius, threshold, diameter)
    shapes = shapes or {}
    global_d = diameter or _median_label_diameter(labels_by_mic)

    picks_without_labels = sorted(set(picks_by_mic) - set(labels_by_mic))
    labels_without_picks = sorted(set(labels_by_mic) - set(picks_by_mic))
    names = sorted(labels_by_mic)
    if missing_picks == "skip":
        names = [n for n in names if n in picks_by_mic]

    rows: list[MicrographMetrics] = []
    radii: dict[str, float] = {}
    match_distances: list[np.ndarray] = []  # of the matched picks kept, for the centre error
    scores_all, tp_all = [], []
    for name in names:
        labels = labels_by_mic[name]
        picks = picks_by_mic.get(name)
        if picks is None:
            picks = pd.DataFrame({"x": [], "y": [], "score": [], "diameter": []}, dtype=float)
        r = _match_radius(name, labels, radius, diameter, global_d)
        radii[name] = float(r)
        label_d = global_d if global_d else 2 * r
        row, result, distances = _micrograph_metrics(
            name, picks, labels, r, threshold, label_d, shapes.get(name)
        )
        match_distances.append(distances)
        rows.append(row)
        scores_all.append(result.scores)
        tp_all.append(result.is_tp)

    pooled_curve = pr_curve(
        np.concatenate(scores_all) if scores_all else np.zeros(0),
        np.concatenate(tp_all) if tp_all else np.zeros(0, bool),
        sum(m.n_labels for m in rows),
    )
    pooled = {**_pooled_figures(rows, pooled_curve), **curve_extent(pooled_curve)}
    best_t = pooled["best_threshold"]
    pooled.update(
        centring_figures(picks_by_mic, labels_by_mic, radii, match_distances, best_t, shapes)
    )
    settings = {
        "radius": radius,
        "diameter": diameter,
        "threshold": threshold,
        "missing_picks": missing_picks,
        "matching": "greedy one-to-one, descending score, nearest free label within radius",
        "dice_frame": "image" if shapes else "bounding box of disks (no --images)",
    }
    return EvaluationResult(
        per_micrograph=rows,
        pooled=pooled,
        curve=pooled_curve,
        settings=settings,
        picks_without_labels=picks_without_labels,
        labels_without_picks=labels_without_picks,
        warnings=curve_warnings(pooled_curve, picks_threshold),
    )


def _pooled_figures(rows: list[MicrographMetrics], curve: PRCurve) -> dict:
    """The counts and figures pooled over every micrograph, and the means over micrographs.

    ``curve`` is the PR curve of every micrograph's picks together.
    """
    picks_sum = sum(m.n_picks for m in rows)
    n_labels_all = sum(m.n_labels for m in rows)
    tp_sum = sum(m.tp for m in rows)
    precision, recall, f1 = precision_recall_f1(tp_sum, picks_sum, n_labels_all)
    best, best_t = curve.best_f1()
    dice_values = np.array([m.dice for m in rows], float)
    return {
        "n_micrographs": len(rows),
        "n_picks": picks_sum,
        "n_labels": n_labels_all,
        "tp": tp_sum,
        "fp": picks_sum - tp_sum,
        "fn": n_labels_all - tp_sum,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "best_f1": best,
        "best_threshold": best_t,
        "auprc": curve.auprc(),
        "dice_mean": float(np.nanmean(dice_values)) if len(dice_values) else float("nan"),
        "f1_mean_over_micrographs": float(np.mean([m.f1 for m in rows])) if rows else float("nan"),
    }


def _median_label_diameter(labels_by_mic: dict[str, pd.DataFrame]) -> float | None:
    """The median particle diameter over every label that has one (None: no label has)."""
    all_label_d = np.concatenate(
        [t["diameter"].to_numpy(float) for t in labels_by_mic.values() if "diameter" in t]
        or [np.zeros(0)]
    )
    all_label_d = all_label_d[np.isfinite(all_label_d) & (all_label_d > 0)]
    return float(np.median(all_label_d)) if len(all_label_d) else None


def _match_radius(
    name: str,
    labels: pd.DataFrame,
    radius: float | None,
    diameter: float | None,
    global_d: float | None,
) -> float:
    """The match distance on micrograph ``name``.

    ``radius``, else half ``diameter``, else half its labels' diameter (:func:`label_radius`).
    """
    r = radius
    if r is None:
        r = diameter / 2 if diameter else label_radius(labels, global_d)
    if r is None:
        if len(labels) == 0:
            r = 1.0  # nothing to match against: any radius gives the same answer
        else:
            raise ValueError(
                f"labels for '{name}' carry no particle diameter: give a radius or diameter"
            )
    return r


def _micrograph_metrics(
    name: str,
    picks: pd.DataFrame,
    labels: pd.DataFrame,
    r: float,
    threshold: float | None,
    label_d: float,
    shape: tuple[int, int] | None,
) -> tuple[MicrographMetrics, MatchResult, np.ndarray]:
    """One micrograph's figures, its matches, and the distances of its kept matched picks.

    The distances give the centre error; ``label_d`` is the disk diameter of the pixel Dice.
    """
    xy = picks[["x", "y"]].to_numpy(float)
    scores = picks["score"].to_numpy(float) if "score" in picks else np.ones(len(picks))
    result: MatchResult = match_picks(xy, scores, labels[["x", "y"]].to_numpy(float), r)
    curve = pr_curve(result.scores, result.is_tp, result.n_labels)
    kept = np.ones(result.n_picks, bool) if threshold is None else result.scores >= threshold
    tp = int(result.is_tp[kept].sum())
    n_picks = int(kept.sum())
    precision, recall, f1 = precision_recall_f1(tp, n_picks, len(labels))
    best, best_t = curve.best_f1()
    kept_picks = picks if threshold is None else picks[scores >= threshold]
    dice = pixel_dice(kept_picks, labels, label_d, label_d, shape)
    distances = result.distance[kept & result.is_tp]
    row = MicrographMetrics(
        micrograph=name,
        n_picks=n_picks,
        n_labels=len(labels),
        tp=tp,
        fp=n_picks - tp,
        fn=len(labels) - tp,
        precision=precision,
        recall=recall,
        f1=f1,
        best_f1=best,
        best_threshold=best_t,
        auprc=curve.auprc(),
        dice=dice,
        radius=float(r),
        mean_match_distance=float(distances.mean()) if len(distances) else float("nan"),
    )
    return row, result, distances


def curve_extent(curve: PRCurve) -> dict:
    """Where the PR curve ends: the lowest score among the picks and the recall there.

    The curve (and so best F1 and AUPRC) can only rank the picks the files contain. Picks
    thresholded when they were made stop it at that threshold, so the same picker scores a
    lower AUPRC when run with a higher ``--threshold``.
    """
    finite = curve.thresholds[np.isfinite(curve.thresholds)]
    return {
        "lowest_score": float(finite.min()) if len(finite) else None,
        "max_recall": float(curve.recall[-1]) if len(curve.recall) else 0.0,
    }


def curve_warnings(curve: PRCurve, picks_threshold: float | None = None) -> list[str]:
    """What a reader of AUPRC / best F1 must know about this curve (empty when nothing).

    ``picks_threshold``: the score threshold the picks were made with, when known; at 0 (or
    below) every candidate was kept, so a curve that stops short of full recall was not cut
    by a threshold and there is nothing to warn about.
    """
    if curve.n_labels == 0 or len(curve.thresholds) == 0:
        return []
    extent = curve_extent(curve)
    if len(curve.thresholds) == 1:
        return [
            "every pick has the same score: there is no ranking, so the PR curve is one "
            "point and AUPRC is precision x recall there"
        ]
    if extent["max_recall"] >= 1.0 or extent["lowest_score"] is None:
        return []
    if picks_threshold is not None and picks_threshold <= 0:
        return []
    return [
        f"the PR curve stops at score {extent['lowest_score']:.4g}, the lowest among the "
        f"picks (recall {extent['max_recall']:.3f}): best F1 and AUPRC see no pick below it. "
        "If the picks were thresholded when made (cryosegnet pick keeps score >= "
        "--threshold), AUPRC depends on that threshold; pick with --threshold 0 for "
        "threshold-free figures"
    ]
