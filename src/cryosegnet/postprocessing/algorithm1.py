"""The paper's Algorithm 1 (Methods 2.3): from instance masks to particle picks.

Steps, and where this implementation deliberately departs from the text as printed:

1. Keep masks whose score is at least ``score_threshold`` (0.94 = SAM predicted IoU in the
   paper, which prints ``>``; ``>=`` here is the one rule ``evaluate`` and training validation
   use too, so a threshold means the same everywhere; the other stages pass their own).
2.-3. Modal box width ``m_w`` and height ``m_h``: the mode of the box sizes rounded to whole
   working pixels. Ties go to the tied value closest to the median (then the smaller one), and
   with too few boxes for a meaningful mode (``min_boxes_for_mode``) or no repeated size at all,
   the median is used. Either way the result is deterministic.
4. Eq. 1 as printed, ``sqrt(m_w'^2 + m_h'^2)`` (primes = rescaled to the original micrograph), is
   the *diagonal* of the modal box, about sqrt(2) times the particle diameter. We keep it as the
   quantity behind the size tolerance (eq. 2, ``th = 0.1 * d``), exactly as the authors did, but
   the diameter reported per particle is the particle diameter ``(m_w' + m_h') / 2`` in original
   pixels, which is what RELION/CryoSPARC users mean by "diameter" (and what the CryoPPP ground
   truth stores).
5.-6. Size window ``m - th/3 < size < m + th`` (eq. 3-4). All of it is evaluated in **working
   pixels**: ``th`` is computed from the working-pixel diagonal. (The authors' code compares
   working-pixel widths with a ``th`` computed in original pixels, i.e. a window ~4x wider for a
   4k micrograph; ``tolerance_factor`` reproduces that if wanted: 0.1 * original/working.)
   Box sizes are whole working pixels, and for particles under ~30 working px the paper's
   lower margin ``th/3`` is below one pixel, so a box one pixel under the mode (pure
   quantisation) would be dropped: about half of the true particles on simulated maps of 20 px
   particles. ``min_tolerance_px`` (default 1.5) floors both margins; 0 restores eq. 3-4 exactly.
7. Centres: eq. 5-6 as printed multiply by the *box* width, which is wrong. We map the working
   pixel centre to the original micrograph with the working->original scale of the area-average
   shrink: working pixel ``i`` covers original ``[i/s, (i+1)/s)``, so its centre is original pixel
   ``(i + 0.5)/s - 0.5``, with ``s = working/original`` per axis.
   The box centre in working pixels is ``x + (w - 1)/2`` because boxes count pixels (a mask whose
   columns are 3..7 has ``x = 3, w = 5`` and centre column 5). See ``InstanceMask``.
   When a stage reports the mask centroid (the watershed does, SAM records do not) it is used
   instead (``use_centroid``): it is sub-pixel, where a box centre is quantised to half a
   working pixel (~2 original px on a 4k micrograph).
8. Picks closer than ``duplicate_fraction * diameter`` are merged, keeping the higher score (SAM's
   multi-mask output and the watershed can both produce near-identical candidates). The authors'
   random jittered extra picks for IoU > 0.99 are not reproduced.

``diameter_override`` (the user's ``--diameter``, original pixels) replaces the estimate: the
size window is then centred on it (``m_w = m_h = override`` converted to working pixels).

``sizes_from_masks`` is for stages that size each candidate themselves within a range the user
gave (the blob stages with ``--diameter 100-160A``): a pick keeps its own mask's diameter,
steps 5.-6. are skipped (the range already bounds the sizes, and a window round the mode would
drop the very particles of other sizes), step 8 merges picks within ``duplicate_fraction`` x
the larger of the two diameters, and the micrograph's diameter is the median pick's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cryosegnet.io.coordinates import empty_picks, make_picks
from cryosegnet.masks.base import InstanceMask


@dataclass(frozen=True)
class PostprocessSettings:
    """Parameters of Algorithm 1, with the defaults ``cryosegnet pick`` uses for SAM's masks.

    ``score_threshold`` is the paper's predicted-IoU filter. ``tolerance_factor`` is not the
    0.1 the paper prints: the authors' code compared working-pixel box sizes with a window
    computed in original pixels, which on their 4k micrographs made it about 4x wider, and 0.4
    reproduces the window they actually used (0.1 drops a particle whose mask is 2 px short of
    the mode).
    """

    score_threshold: float = 0.94  # step 1: keep score >= this
    tolerance_factor: float = 0.4  # eq. 2: th = factor * modal-box diagonal
    lower_tolerance_divisor: float = 3.0  # eq. 3-4: lower bound is m - th / divisor
    min_tolerance_px: float = 1.5  # floor on both sides of the window (working px); 0 = paper
    size_filter: bool = True  # apply eq. 3-4 at all
    min_boxes_for_mode: int = 5  # fewer boxes than this -> median instead of mode
    diameter_override: float | None = None  # original px; replaces the estimate
    duplicate_fraction: float = 0.5  # merge picks closer than this * diameter; 0 disables
    use_centroid: bool = True  # mask centroid (sub-pixel) instead of box centre when known
    sizes_from_masks: bool = False  # each pick keeps its own mask's size (a size range)


@dataclass
class PostprocessResult:
    """Picks in original-micrograph pixels plus what each step removed (for logs and summaries)."""

    picks: pd.DataFrame
    diameter: float  # particle diameter, original px (NaN when nothing to estimate from)
    box_diagonal: float  # eq. 1 as printed, original px (NaN when unknown)
    modal_size: tuple[float, float]  # (m_w, m_h) in working px, as used by the size window
    n_candidates: int
    n_after_score: int
    n_after_size: int
    n_after_duplicates: int

    @property
    def n_picks(self) -> int:
        return len(self.picks)


def robust_mode(values: np.ndarray, min_count: int = 5) -> float:
    """Mode of ``values`` rounded to integers, with deterministic fallbacks.

    Ties resolve to the tied value nearest the median (then the smaller); with fewer than
    ``min_count`` values, or when no rounded value repeats, the median is returned instead —
    a "mode" of all-distinct values is just an arbitrary sample.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    median = float(np.median(values))
    if values.size < max(1, min_count):
        return median
    rounded = np.round(values).astype(np.int64)
    uniques, counts = np.unique(rounded, return_counts=True)
    best = counts.max()
    if best < 2 and values.size > 1:
        return median
    tied = uniques[counts == best]
    order = np.lexsort((tied, np.abs(tied - median)))  # nearest the median, then smaller
    return float(tied[order[0]])


def working_to_original(coord: np.ndarray, working_len: int, original_len: int) -> np.ndarray:
    """Map working-pixel centres to original-pixel centres along one axis (area-average shrink)."""
    scale = working_len / float(original_len)
    return (np.asarray(coord, dtype=np.float64) + 0.5) / scale - 0.5


def remove_duplicates(
    x: np.ndarray, y: np.ndarray, score: np.ndarray, radius: float | np.ndarray
) -> np.ndarray:
    """Indices to keep after greedy suppression of picks within ``radius`` (higher score wins).

    Candidates are visited in decreasing score (stable for ties, so earlier masks win), each
    kept pick suppresses every not-yet-visited neighbour within ``radius``. With one radius
    per pick, two picks are duplicates within the larger of their two radii.
    """
    n = len(x)
    if n == 0:
        return np.arange(n)
    if np.ndim(radius) == 0:
        if radius <= 0:
            return np.arange(n)
        radii = None
        reach = float(radius)
    else:
        radii = np.nan_to_num(np.asarray(radius, dtype=np.float64), nan=0.0)
        reach = float(radii.max())
        if reach <= 0:
            return np.arange(n)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    tree = cKDTree(np.column_stack([x, y]))
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        for j in tree.query_ball_point((x[i], y[i]), r=reach):
            if radii is None or np.hypot(x[j] - x[i], y[j] - y[i]) <= max(radii[i], radii[j]):
                suppressed[j] = True
    return np.array(sorted(keep), dtype=np.int64)


def _modal_size(
    boxes: np.ndarray, settings: PostprocessSettings, sx: float, sy: float
) -> tuple[float, float]:
    """Steps 2.-3.: (m_w, m_h) in working px, from the boxes kept by score (the override when
    given; their median when each mask keeps its own size; NaN without boxes)."""
    override = settings.diameter_override
    if override is not None and settings.sizes_from_masks:
        raise ValueError("a diameter override and sizes from the masks exclude each other")
    if override is not None:
        if not override > 0:
            raise ValueError(f"diameter override must be positive, got {override}")
        return override * sx, override * sy
    if not len(boxes):
        return float("nan"), float("nan")
    if settings.sizes_from_masks:  # sizes vary on purpose: their middle, not a mode
        return float(np.median(boxes[:, 2])), float(np.median(boxes[:, 3]))
    return (
        robust_mode(boxes[:, 2], settings.min_boxes_for_mode),
        robust_mode(boxes[:, 3], settings.min_boxes_for_mode),
    )


def postprocess(
    masks: list[InstanceMask],
    working_shape: tuple[int, int],
    original_shape: tuple[int, int],
    settings: PostprocessSettings | None = None,
) -> PostprocessResult:
    """Run Algorithm 1 on one micrograph's masks.

    ``working_shape`` / ``original_shape`` are (rows, cols) of the map the masks came from and of
    the micrograph as read. Returns picks (x, y, score, diameter) in original pixels, sorted by
    decreasing score.
    """
    settings = settings or PostprocessSettings()
    wh, ww = int(working_shape[0]), int(working_shape[1])
    oh, ow = int(original_shape[0]), int(original_shape[1])
    sx, sy = ww / float(ow), wh / float(oh)  # working px per original px, per axis

    n_candidates = len(masks)
    boxes = np.array([m.bbox for m in masks], dtype=np.float64).reshape(-1, 4)
    scores = np.array([m.score for m in masks], dtype=np.float64)
    # step 7's centre: box centre x + (w - 1)/2, or the mask centroid when the stage knows it
    centres = boxes[:, :2] + (boxes[:, 2:] - 1.0) / 2.0
    if settings.use_centroid:
        for k, m in enumerate(masks):
            if m.centroid is not None:
                centres[k] = m.centroid

    keep = scores >= settings.score_threshold
    boxes, scores, centres = boxes[keep], scores[keep], centres[keep]
    n_after_score = len(scores)

    override = settings.diameter_override
    own_sizes = settings.sizes_from_masks
    mw, mh = _modal_size(boxes, settings, sx, sy)

    # eq. 1 (diagonal, original px) and the particle diameter we actually report
    box_diagonal = float(np.hypot(mw / sx, mh / sy))
    diameter = float(override) if override is not None else float((mw / sx + mh / sy) / 2.0)

    if settings.size_filter and n_after_score and not own_sizes:
        th = settings.tolerance_factor * float(np.hypot(mw, mh))  # eq. 2, working px
        floor = settings.min_tolerance_px
        low, high = max(th / settings.lower_tolerance_divisor, floor), max(th, floor)
        w, h = boxes[:, 2], boxes[:, 3]
        inside = (mw - low < w) & (w < mw + high) & (mh - low < h) & (h < mh + high)
        boxes, scores, centres = boxes[inside], scores[inside], centres[inside]
    n_after_size = len(scores)

    if n_after_size == 0:
        return PostprocessResult(
            empty_picks(),
            diameter,
            box_diagonal,
            (mw, mh),
            n_candidates,
            n_after_score,
            n_after_size,
            0,
        )

    x = working_to_original(centres[:, 0], ww, ow)
    y = working_to_original(centres[:, 1], wh, oh)

    own = (boxes[:, 2] / sx + boxes[:, 3] / sy) / 2.0  # each pick's own size (a size range)
    if own_sizes:
        kept = remove_duplicates(x, y, scores, settings.duplicate_fraction * own)
    else:
        radius = settings.duplicate_fraction * diameter
        kept = remove_duplicates(x, y, scores, radius if np.isfinite(radius) else 0.0)
    x, y, scores, own = x[kept], y[kept], scores[kept], own[kept]

    order = np.argsort(-scores, kind="stable")
    picks = make_picks(x[order], y[order], scores[order], own[order] if own_sizes else diameter)
    return PostprocessResult(
        picks,
        diameter,
        box_diagonal,
        (float(mw), float(mh)),
        n_candidates,
        n_after_score,
        n_after_size,
        len(picks),
    )
