"""Algorithm 1 against hand-computed cases."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from cryosegnet.io.coordinates import PICK_COLUMNS
from cryosegnet.masks.base import InstanceMask
from cryosegnet.postprocessing.algorithm1 import (
    PostprocessSettings,
    postprocess,
    robust_mode,
    working_to_original,
)

SQUARE_WORK, SQUARE_ORIG = (1024, 1024), (4096, 4096)  # scale 1/4 on both axes


def box(x, y, w, h=None, score=0.99):
    h = w if h is None else h
    return InstanceMask(bbox=(x, y, w, h), score=score, area=int(w * h))


def spaced(widths, score=0.99):
    """One square box per width, 50 working px apart so nothing counts as a duplicate."""
    return [box(50 * i, 10, w, score=score) for i, w in enumerate(widths)]


def test_robust_mode_ties_and_fallbacks():
    assert robust_mode([20, 20, 20, 21, 22, 19, 30]) == 20
    assert robust_mode([20.4, 19.6, 20.2, 25, 31]) == 20  # rounded before counting
    assert robust_mode([20, 20, 22, 22, 30]) == 22  # tie -> nearest the median (22)
    assert robust_mode([20, 20, 24, 24, 22, 22]) == 22  # three-way tie, median 22
    assert robust_mode([18, 18, 22, 22, 19, 21]) == 18  # equidistant tie -> smaller
    assert robust_mode([10, 30, 31]) == 30  # fewer than 5 boxes -> median
    assert robust_mode([10, 11, 12, 13, 14, 15]) == 12.5  # no repeats -> median
    assert math.isnan(robust_mode([]))


def test_modal_size_window_and_diameter():
    # widths 19 20 20 20 21 22 30 -> m_w = m_h = 20 working px.
    # th = 0.1 * sqrt(20^2 + 20^2) = 2.828; window 20 - 0.943 < w < 20 + 2.828 = (19.06, 22.83)
    masks = spaced([19, 20, 20, 20, 21, 22, 30])
    # eq. 2-4 exactly as printed (th factor 0.1), no quantisation floor
    paper = PostprocessSettings(tolerance_factor=0.1, min_tolerance_px=0.0)
    result = postprocess(masks, SQUARE_WORK, SQUARE_ORIG, paper)
    assert result.modal_size == (20, 20)
    assert result.diameter == pytest.approx(80.0)  # 20 working px * 4
    assert result.box_diagonal == pytest.approx(math.hypot(80, 80))  # eq. 1 as printed
    assert (result.n_candidates, result.n_after_score, result.n_after_size) == (7, 7, 5)
    assert result.n_after_duplicates == 5 and result.n_picks == 5
    assert list(result.picks.columns) == PICK_COLUMNS
    assert (result.picks["diameter"] == 80.0).all()
    # the dropped ones are the 19 (index 0) and the 30 (index 6): check by x position
    kept_x = sorted(result.picks["x"].round(1))
    expected = [
        (50 * i + (w - 1) / 2 + 0.5) * 4 - 0.5
        for i, w in [(1, 20), (2, 20), (3, 20), (4, 21), (5, 22)]
    ]
    assert kept_x == pytest.approx(sorted(expected))


def test_quantisation_floor_keeps_one_pixel_under_the_mode():
    # paper's th factor 0.1 with the default floor 1.5 working px: window (18.5, 22.83)
    # instead of (19.06, 22.83)
    masks = spaced([18, 19, 20, 20, 20, 21, 22, 23])
    printed = PostprocessSettings(tolerance_factor=0.1)
    assert postprocess(masks, SQUARE_WORK, SQUARE_ORIG, printed).n_after_size == 6  # 19..22
    exact = PostprocessSettings(tolerance_factor=0.1, min_tolerance_px=0.0)
    assert postprocess(masks, SQUARE_WORK, SQUARE_ORIG, exact).n_after_size == 5  # 20..22
    # the default 0.4 (th = 11.3): the authors' effective window
    assert postprocess(masks, SQUARE_WORK, SQUARE_ORIG).n_after_size == 8


def test_width_and_height_are_filtered_independently():
    masks = spaced([20] * 6) + [box(400, 10, 20, 26), box(450, 10, 26, 20)]
    result = postprocess(masks, SQUARE_WORK, SQUARE_ORIG, PostprocessSettings(tolerance_factor=0.1))
    assert result.n_after_size == 6


def test_score_filter_keeps_score_at_threshold_and_is_configurable():
    """One rule everywhere (pick, evaluate, validation): a pick is kept when score >= t."""
    masks = [box(0, 0, 20, score=0.94), box(60, 0, 20, score=0.941), box(120, 0, 20, score=0.5)]
    result = postprocess(masks, SQUARE_WORK, SQUARE_ORIG)
    assert result.n_after_score == 2
    assert result.picks["score"].tolist() == [0.941, 0.94]
    low = postprocess(masks, SQUARE_WORK, SQUARE_ORIG, PostprocessSettings(score_threshold=0.0))
    assert low.n_picks == 3
    assert low.picks["score"].tolist() == sorted(low.picks["score"], reverse=True)


def test_centre_rescaling_matches_area_shrink_on_a_non_square_image():
    # A 4x4 bright block in a 40 x 80 (rows x cols) image, area-shrunk by 4 -> one working pixel.
    original = np.zeros((40, 80), np.float32)
    original[8:12, 20:24] = 1.0  # true centre: row 9.5, col 21.5
    working = cv2.resize(original, (20, 10), interpolation=cv2.INTER_AREA)
    row, col = np.argwhere(working == working.max())[0]
    masks = [InstanceMask(bbox=(float(col), float(row), 1.0, 1.0), score=1.0, area=1)]
    result = postprocess(
        masks,
        working.shape,
        original.shape,
        PostprocessSettings(score_threshold=0.0, size_filter=False),
    )
    assert result.picks.loc[0, "x"] == pytest.approx(21.5)
    assert result.picks.loc[0, "y"] == pytest.approx(9.5)


def test_per_axis_scales_and_box_centre_convention():
    # working 512 x 1024 from original 1000 x 4000: s_x = 0.256, s_y = 0.512
    masks = [box(100, 50, 10, 6, score=1.0)]
    settings = PostprocessSettings(score_threshold=0.0, size_filter=False)
    result = postprocess(masks, (512, 1024), (1000, 4000), settings)
    cx, cy = 100 + 4.5, 50 + 2.5  # x + (w - 1) / 2
    assert result.picks.loc[0, "x"] == pytest.approx((cx + 0.5) / 0.256 - 0.5)
    assert result.picks.loc[0, "y"] == pytest.approx((cy + 0.5) / 0.512 - 0.5)
    assert result.diameter == pytest.approx((10 / 0.256 + 6 / 0.512) / 2)
    assert working_to_original(np.array([0.0]), 512, 1000)[0] == pytest.approx(0.5 / 0.512 - 0.5)


def test_diameter_override_replaces_estimate_and_recentres_window():
    # override 100 original px = 25 working px; th = 0.1 * 25 * sqrt(2) = 3.54 -> (23.8, 28.5)
    masks = spaced([20, 20, 20, 23, 24, 25, 28, 29])
    settings = PostprocessSettings(tolerance_factor=0.1, diameter_override=100.0)
    result = postprocess(masks, SQUARE_WORK, SQUARE_ORIG, settings)
    assert result.diameter == 100.0
    assert result.n_after_size == 3  # 24, 25, 28
    assert (result.picks["diameter"] == 100.0).all()
    with pytest.raises(ValueError):
        postprocess(masks, SQUARE_WORK, SQUARE_ORIG, PostprocessSettings(diameter_override=0))


def test_duplicates_merged_keeping_the_higher_score():
    masks = spaced([20] * 5)  # m_w = 20 -> diameter 80 original px, merge radius 40
    masks += [box(3, 12, 20, score=0.999)]  # centre 3.6 working px (~14 original) from box 0
    result = postprocess(masks, SQUARE_WORK, SQUARE_ORIG)
    assert result.n_after_size == 6 and result.n_after_duplicates == 5
    assert result.picks["score"].max() == 0.999
    assert result.picks["x"].min() == pytest.approx((3 + 9.5 + 0.5) * 4 - 0.5)
    off = postprocess(masks, SQUARE_WORK, SQUARE_ORIG, PostprocessSettings(duplicate_fraction=0))
    assert off.n_picks == 6


def test_no_masks_or_none_surviving():
    empty = postprocess([], SQUARE_WORK, SQUARE_ORIG)
    assert empty.n_picks == 0 and list(empty.picks.columns) == PICK_COLUMNS
    assert math.isnan(empty.diameter)
    low = postprocess(spaced([20] * 3, score=0.5), SQUARE_WORK, SQUARE_ORIG)
    assert (low.n_candidates, low.n_after_score, low.n_picks) == (3, 0, 0)


def test_no_jittered_extra_picks_for_very_confident_masks():
    masks = spaced([20] * 6, score=0.99999)
    result = postprocess(masks, SQUARE_WORK, SQUARE_ORIG)
    assert result.n_picks == 6


def test_centroid_is_preferred_when_the_stage_reports_one():
    mask = InstanceMask(bbox=(10, 20, 6, 6), score=1.0, area=30, centroid=(12.25, 22.75))
    settings = PostprocessSettings(score_threshold=0.0, size_filter=False)
    result = postprocess([mask], SQUARE_WORK, SQUARE_ORIG, settings)
    assert (result.picks.loc[0, "x"], result.picks.loc[0, "y"]) == pytest.approx((50.5, 92.5))
    boxed = postprocess(
        [mask],
        SQUARE_WORK,
        SQUARE_ORIG,
        PostprocessSettings(score_threshold=0.0, size_filter=False, use_centroid=False),
    )
    assert boxed.picks.loc[0, "x"] == pytest.approx((10 + 2.5 + 0.5) * 4 - 0.5)


@pytest.mark.parametrize("use_centroid, tolerance", [(True, 1.0), (False, 2.5)])
def test_round_trip_from_original_pixels_through_watershed(use_centroid, tolerance):
    """Disks drawn in a non-square 'micrograph' come back where they were, at their size."""
    from cryosegnet.masks.watershed import WatershedMaskGenerator
    from cryosegnet.preprocessing.denoise import resize, working_shape

    rng = np.random.default_rng(3)
    original_shape, diameter = (1500, 2000), 60
    centres: list[np.ndarray] = []
    while len(centres) < 25:
        c = rng.uniform(diameter, [original_shape[1] - diameter, original_shape[0] - diameter])
        if all(np.hypot(*(c - d)) > 1.2 * diameter for d in centres):
            centres.append(c)
    micrograph = np.zeros(original_shape, np.float32)
    for x, y in centres:  # sub-pixel centres via cv2's fixed-point shift
        cv2.circle(micrograph, (round(x * 16), round(y * 16)), diameter * 8, 1.0, -1, shift=4)
    small = resize(micrograph, working_shape(original_shape, 512))  # 384 x 512, s = 0.256
    masks = WatershedMaskGenerator().generate(small)
    settings = PostprocessSettings(score_threshold=0.0, use_centroid=use_centroid)
    result = postprocess(masks, small.shape, original_shape, settings)
    assert result.n_picks == len(centres)
    assert result.diameter == pytest.approx(diameter, rel=0.1)
    truth = np.array(centres)
    picks = result.picks[["x", "y"]].to_numpy()
    errors = np.min(np.hypot(*(picks[:, None, :] - truth[None, :, :]).transpose(2, 0, 1)), axis=1)
    assert errors.max() < tolerance
