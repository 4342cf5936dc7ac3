"""Built-in instance stage: threshold + distance-transform watershed."""

from __future__ import annotations

import numpy as np
import pytest
from map_helpers import disks

from cryosegnet.masks.base import InstanceMask
from cryosegnet.masks.watershed import WatershedMaskGenerator, WatershedSettings


def test_two_touching_disks_are_split_near_their_centres():
    centres = [(30.0, 32.0), (49.0, 32.0)]  # 19 px apart, radius 10: they overlap
    probability = disks((64, 96), centres, 10)
    gen = WatershedMaskGenerator()
    assert gen.name == "watershed" and "watershed" in gen.describe()
    masks = gen.generate(probability)
    assert len(masks) == 2
    assert all(isinstance(m, InstanceMask) for m in masks)
    found = sorted(m.centroid for m in masks)
    for (fx, fy), (tx, ty) in zip(found, centres, strict=True):
        assert abs(fx - tx) < 1.5 and abs(fy - ty) < 1.0
    for m in masks:
        x, y, w, h = m.bbox
        assert 15 <= w <= 21 and 17 <= h <= 21  # bbox counts pixels, ~ the disk diameter
        assert 0.5 < m.score <= 1.0
        assert m.area > 200


def test_empty_and_flat_maps_give_no_instances():
    gen = WatershedMaskGenerator()
    assert gen.generate(np.zeros((50, 70), np.float32)) == []
    assert gen.generate(np.full((50, 70), 0.3, np.float32)) == []
    assert gen.generate(np.full((50, 70), np.nan, np.float32)) == []


def test_saturated_tiny_and_non_finite_maps_do_not_crash():
    gen = WatershedMaskGenerator()
    (whole,) = gen.generate(np.ones((100, 120), np.float32))  # the image edge bounds the region
    assert whole.bbox == (0.0, 0.0, 120.0, 100.0) and whole.score == 1.0
    assert len(gen.generate(np.ones((3, 3), np.float32))) == 1
    with_inf = disks((40, 40), [(20, 20)], 6)
    with_inf[20, 20] = np.inf
    (one,) = gen.generate(with_inf)
    assert 0.0 <= one.score <= 1.0


def test_score_ranks_solid_particles_above_faint_clutter():
    probability = disks((80, 80), [(20, 20)], 8, 0.98) + disks((80, 80), [(58, 58)], 8, 0.62)
    masks = WatershedMaskGenerator().generate(probability)
    assert len(masks) == 2
    by_x = sorted(masks, key=lambda m: m.centroid[0])
    assert by_x[0].score > 0.95 > by_x[1].score


def test_crowded_map_counts_right():
    rng = np.random.default_rng(0)
    grid = [(float(x), float(y)) for y in range(24, 1000, 21) for x in range(24, 1000, 21)]
    centres = [c for c in grid if rng.random() < 0.3]  # a few hundred, many touching pairs
    probability = disks((1024, 1024), centres, 11)
    probability = np.clip(probability * 0.9 + rng.normal(0, 0.05, probability.shape), 0, 1)
    probability = probability.astype(np.float32)
    gen = WatershedMaskGenerator()
    masks = gen.generate(probability)  # speed is a benchmark's business, not a unit test's
    assert abs(len(masks) - len(centres)) <= 0.02 * len(centres)
    assert gen.last_radius == pytest.approx(11, abs=1.5)


def test_rejects_bad_threshold():
    with pytest.raises(ValueError):
        WatershedSettings(threshold=1.5)
