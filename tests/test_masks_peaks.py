"""Built-in instance stage: peaks of the probability map at an estimated particle scale."""

from __future__ import annotations

import numpy as np
import pytest
from map_helpers import disks

from cryosegnet.masks.base import InstanceMask
from cryosegnet.masks.peaks import (
    PeakMaskGenerator,
    PeakSettings,
    estimate_diameter,
    find_peaks,
)


def grid_centres(size, spacing, jitter, rng):
    """Particle centres on a jittered grid, so disks do not touch."""
    ticks = np.arange(spacing, size - spacing / 2, spacing)
    return [
        (x + rng.uniform(-jitter, jitter), y + rng.uniform(-jitter, jitter))
        for x in ticks
        for y in ticks
    ]


@pytest.mark.parametrize("diameter", [14.0, 30.0, 60.0])
def test_diameter_of_clean_disks_is_recovered(diameter):
    rng = np.random.default_rng(0)
    centres = grid_centres(512, 2 * diameter, diameter / 4, rng)
    probability = disks((512, 512), centres, diameter / 2, 0.9)
    assert estimate_diameter(probability) == pytest.approx(diameter, rel=0.15)


def test_diameter_of_weak_fragmented_particles_is_near_the_truth():
    """The hard-data case: particles only as faint, patchy blobs on a speckled background."""
    rng = np.random.default_rng(1)
    diameter = 40.0
    centres = grid_centres(512, 2.2 * diameter, diameter / 3, rng)
    particles = disks((512, 512), centres, diameter / 2, 0.25)
    fragments = rng.random((512, 512)).astype(np.float32) < 0.3
    speckle = 0.08 * rng.random((512, 512)).astype(np.float32)
    probability = particles * fragments + speckle
    assert 0.7 * diameter <= estimate_diameter(probability) <= 1.4 * diameter


def test_flat_or_tiny_maps_have_no_diameter():
    assert np.isnan(estimate_diameter(np.zeros((256, 256), np.float32)))
    assert np.isnan(estimate_diameter(np.full((256, 256), 0.4, np.float32)))
    assert np.isnan(estimate_diameter(np.ones((20, 20), np.float32)))


def test_find_peaks_recovers_centres_and_suppresses_duplicates():
    centres = [(20.0, 20.0), (60.0, 50.0)]
    probability = disks((80, 80), centres, 6, 0.9)
    probability[18:23, 18:23] = 1.0  # a hot spot inside the first particle: still one pick
    peaks = find_peaks(probability, 12)
    assert len(peaks) == 2
    found = sorted(zip(peaks["x"], peaks["y"], strict=True))
    assert np.allclose(found, centres, atol=1.5)
    assert (peaks["score"] > 0.5).all() and (peaks["diameter"] == 12).all()


def test_generator_boxes_have_the_particle_size_and_rank_by_confidence():
    rng = np.random.default_rng(2)
    centres = grid_centres(256, 48, 6, rng)
    strong, weak = centres[: len(centres) // 2], centres[len(centres) // 2 :]
    probability = disks((256, 256), strong, 10, 0.9) + disks((256, 256), weak, 10, 0.3)
    generator = PeakMaskGenerator()
    masks = generator.generate(probability)
    assert all(isinstance(m, InstanceMask) for m in masks)
    assert len(masks) == len(centres)
    assert generator.last_diameter == pytest.approx(20, rel=0.15)
    for mask in masks:
        assert mask.bbox[2] == mask.bbox[3] == pytest.approx(generator.last_diameter)
        cx, cy = mask.centroid
        assert mask.bbox[0] + (mask.bbox[2] - 1) / 2 == pytest.approx(cx)
    by_score = sorted(masks, key=lambda m: -m.score)
    strong_found = {
        min(
            range(len(strong)),
            key=lambda i: np.hypot(m.centroid[0] - strong[i][0], m.centroid[1] - strong[i][1]),
        )
        for m in by_score[: len(strong)]
    }
    assert len(strong_found) == len(strong)  # every strong particle outranks every weak one


def test_given_diameter_overrides_the_estimate():
    probability = disks((128, 128), [(40.0, 40.0), (90.0, 90.0)], 8, 0.9)
    masks = PeakMaskGenerator().generate(probability, diameter=24.0)
    assert [m.bbox[2] for m in masks] == [24.0, 24.0]
    assert PeakMaskGenerator(PeakSettings(diameter=30)).generate(probability)[0].bbox[2] == 30.0
    with pytest.raises(ValueError):
        PeakSettings(diameter=-1)
    assert PeakMaskGenerator().generate(np.zeros((128, 128), np.float32)) == []


def test_probability_score_is_the_maps_value_and_contrast_its_rise_above_the_surroundings():
    """The same disk on a raised plateau: the contrast score stays, the probability rises."""
    flat = disks((96, 96), [(48.0, 48.0)], 8, 0.6)
    raised = flat + np.float32(0.3)
    contrast = [find_peaks(m, 16, score="contrast")["score"].max() for m in (flat, raised)]
    probability = [find_peaks(m, 16, score="probability")["score"].max() for m in (flat, raised)]
    assert contrast[0] == pytest.approx(contrast[1], abs=1e-3)
    assert probability[1] == pytest.approx(probability[0] + 0.3, abs=1e-3)
    assert 0.3 < probability[0] <= 0.6  # the core average of a 0.6 disk
    assert PeakMaskGenerator().settings.score == "contrast"
    with pytest.raises(ValueError, match="peak score"):
        find_peaks(flat, 16, score="sharpness")
    with pytest.raises(ValueError, match="peak score"):
        PeakSettings(score="sharpness")
