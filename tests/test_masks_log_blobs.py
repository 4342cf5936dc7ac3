"""Training-free LoG stage: dark blobs of the denoised image, scored in noise units."""

from __future__ import annotations

import numpy as np
import pytest
from blob_helpers import CENTRES, dark_disks

from cryosegnet.masks.log_blobs import LogBlobGenerator, log_response
from cryosegnet.masks.peaks import suppress_close_peaks


def test_dark_disks_are_found_at_their_centres():
    image = dark_disks((280, 260), CENTRES, 12, 1.0, 0.5, seed=0)
    masks = LogBlobGenerator().generate(image, diameter=24)
    best = sorted(masks, key=lambda m: -m.score)[: len(CENTRES)]
    found = np.array([m.centroid for m in best])
    for cx, cy in CENTRES:
        assert np.min(np.hypot(found[:, 0] - cx, found[:, 1] - cy)) <= 3


def test_bright_blobs_are_not_particles():
    image = -dark_disks((200, 200), [(100, 100)], 12, 3.0, 0.2, seed=1)  # one bright disk
    masks = LogBlobGenerator().generate(image, diameter=24)
    near = [m for m in masks if np.hypot(m.centroid[0] - 100, m.centroid[1] - 100) < 12]
    assert all(m.score < 1.0 for m in near)


def test_scores_are_in_noise_units_whatever_the_intensity_scale():
    """Multiplying the image (another detector gain or dose) leaves the scores unchanged."""
    image = dark_disks((200, 220), CENTRES[:3], 12, 1.0, 0.5, seed=2)
    a = LogBlobGenerator().generate(image, diameter=24)
    b = LogBlobGenerator().generate(7.0 * image + 100.0, diameter=24)
    assert [m.centroid for m in a] == [m.centroid for m in b]
    assert np.allclose([m.score for m in a], [m.score for m in b], rtol=1e-3, atol=1e-3)


def test_same_particle_in_two_backgrounds_gets_a_similar_score():
    """A particle pasted into two different noise fields of the same level scores alike."""
    scores = []
    for seed in (3, 4):
        image = dark_disks((240, 240), [(120, 120)], 12, 1.5, 0.5, seed=seed)
        masks = LogBlobGenerator().generate(image, diameter=24)
        scores.append(
            max(m.score for m in masks if np.hypot(m.centroid[0] - 120, m.centroid[1] - 120) < 6)
        )
    assert scores[0] == pytest.approx(scores[1], rel=0.15)


def test_needs_a_diameter():
    with pytest.raises(ValueError, match="diameter"):
        LogBlobGenerator().generate(np.zeros((64, 64), np.float32), diameter=None)


def test_large_scales_on_a_shrunk_copy_match_the_direct_filter():
    image = dark_disks((256, 256), [(128, 128)], 30, 1.0, 0.1, seed=5)
    response = log_response(image, 60)
    assert np.unravel_index(np.argmax(response), response.shape) == pytest.approx((128, 128), abs=3)


def test_suppression_keeps_the_stronger_of_two_close_peaks():
    x = np.array([10.0, 14.0, 50.0])
    y = np.array([10.0, 10.0, 50.0])
    keep = suppress_close_peaks(x, y, np.array([0.5, 0.9, 0.1]), radius=8)
    assert keep.tolist() == [False, True, True]


def _two_sizes(seed=0):
    """Dark disks 16 and 40 px wide, four of each, in light noise: (image, centres, sizes)."""
    small = [(60, 60), (200, 60), (60, 200), (130, 300)]
    large = [(300, 80), (300, 220), (180, 180), (320, 340)]
    image = dark_disks((400, 400), small, 8, 1.0, 0.15, seed=seed)
    image += dark_disks((400, 400), large, 20, 1.0, 0.0, seed=seed)
    return image, small + large, [16.0] * 4 + [40.0] * 4


def test_a_size_range_sizes_each_blob_within_it():
    image, centres, sizes = _two_sizes()
    masks = LogBlobGenerator().generate(image, diameter=25, size_range=(12, 52))
    for (cx, cy), size in zip(centres, sizes):
        near = [m for m in masks if np.hypot(m.centroid[0] - cx, m.centroid[1] - cy) <= 3]
        assert near, f"no pick on the {size:g}-px disk at {cx}, {cy}"
        best = max(near, key=lambda m: m.score)
        assert best.bbox[2] == pytest.approx(size, rel=0.25)  # a blob's scale is rough
    widths = [m.bbox[2] for m in masks]
    assert min(widths) >= 12 - 1e-9 and max(widths) <= 52 + 1e-9


def test_one_size_told_and_a_range_of_that_one_size_pick_alike():
    image, _, _ = _two_sizes(seed=1)
    told = LogBlobGenerator().generate(image, diameter=24)
    ranged = LogBlobGenerator().generate(image, diameter=24, size_range=(24, 24))
    assert [(m.centroid, m.score, m.bbox) for m in told] == [
        (m.centroid, m.score, m.bbox) for m in ranged
    ]


def test_a_small_blob_inside_a_large_ones_radius_is_suppressed():
    x, y = np.array([0.0, 10.0, 30.0]), np.zeros(3)
    keep = suppress_close_peaks(x, y, np.array([1.0, 0.5, 0.4]), radius=np.array([20.0, 4.0, 4.0]))
    assert keep.tolist() == [True, False, True]
