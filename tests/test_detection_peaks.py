"""Plateau-safe local maxima and the one greedy suppression every stage uses."""

from __future__ import annotations

import time

import numpy as np
from scipy.spatial import cKDTree

from cryosegnet.detection.peaks import local_maxima, suppress_close_peaks
from cryosegnet.masks.log_blobs import blob_peaks


def _pairwise_greedy(x, y, scores, radius):
    """The reference rule, written the slow obvious way."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = np.zeros(len(scores), bool)
    tree = cKDTree(np.column_stack([x, y]))
    for i in order:
        near = tree.query_ball_point([x[i], y[i]], radius)
        if not any(keep[j] for j in near):
            keep[i] = True
    return keep


def test_a_flat_region_is_one_maximum_not_one_per_pixel():
    score = np.zeros((300, 300), np.float32)
    score[:, :150] = 1.0  # a saturated half: 45 000 tied pixels
    cols, rows, values = local_maxima(score, 9)
    assert len(cols) == 1
    assert values[0] == 1.0
    assert cols[0] < 150


def test_strict_maxima_are_all_found_in_raster_order():
    rng = np.random.default_rng(3)
    score = rng.normal(size=(64, 64)).astype(np.float32)
    cols, rows, values = local_maxima(score, 5)
    from cryosegnet.preprocessing.filters import maximum_filter

    expected_rows, expected_cols = np.nonzero((score == maximum_filter(score, 5)) & (score > 0))
    assert np.array_equal(rows, expected_rows) and np.array_equal(cols, expected_cols)


def test_suppression_matches_the_pairwise_greedy_rule():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 200, 800), rng.uniform(0, 200, 800)
    scores = rng.integers(0, 20, 800).astype(float)  # many ties: the earlier peak wins
    keep = suppress_close_peaks(x, y, scores, 7.5)
    assert np.array_equal(keep, _pairwise_greedy(x, y, scores, 7.5))


def test_suppression_of_a_dense_cluster_stays_fast():
    # 90 000 candidates within a few radii of each other: a pairwise method needs billions of
    # pairs; the grid visits each candidate once.
    rows, cols = np.mgrid[:300, :300]
    x, y = cols.ravel().astype(float), rows.ravel().astype(float)
    start = time.perf_counter()
    keep = suppress_close_peaks(x, y, np.zeros(x.size), 30.0)
    assert time.perf_counter() - start < 20  # generous: a guard against quadratic blow-up
    kept = np.flatnonzero(keep)
    distances, _ = cKDTree(np.column_stack([x[kept], y[kept]])).query(
        np.column_stack([x[kept], y[kept]]), k=2
    )
    assert distances[:, 1].min() > 30.0


def test_a_half_zeroed_micrograph_gives_a_handful_of_blobs():
    rng = np.random.default_rng(1)
    score = rng.normal(size=(512, 512)).astype(np.float32)
    score[:, :256] = 0.5  # a flat zeroed half, above the candidate floor
    cols, rows, values = blob_peaks(score, 10)
    flat = cols < 250
    assert flat.sum() <= 2


def test_a_micrograph_with_a_zeroed_half_is_picked_with_a_few_candidates(tiny_model):
    """A flat half (a failed detector readout) once gave ~250 000 tied candidates and a
    MemoryError in the suppression; now it holds a handful (the denoiser's ripples by its
    edge)."""
    from cryosegnet import Picker

    rng = np.random.default_rng(4)
    image = rng.normal(size=(1024, 1024)).astype(np.float32)
    image[:, :512] = 0.0
    result = Picker(tiny_model, device="cpu", stage="hybrid", diameter=40).pick_result(image)
    assert result.counts["candidates"] < 2000
    assert (result.picks["x"] < 500).sum() <= 5  # the denoiser leaves a few ripples
