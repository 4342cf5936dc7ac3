"""Hybrid stage: dark blobs of the denoised image, scored with the U-Net map."""

from __future__ import annotations

import numpy as np
import pytest
from blob_helpers import CENTRES, dark_disks

from cryosegnet.masks.hybrid import HybridBlobGenerator, HybridSettings
from cryosegnet.masks.log_blobs import LogBlobGenerator, LogSettings
from cryosegnet.masks.peaks import estimate_diameter


def disk_map(shape, centres, radius, value=1.0):
    """A U-Net-like map: ``value`` on disks at ``centres``, 0 elsewhere."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    probability = np.zeros(shape, np.float32)
    for cx, cy in centres:
        probability[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2] = value
    return probability


def nearest(masks, x, y):
    return min(masks, key=lambda m: np.hypot(m.centroid[0] - x, m.centroid[1] - y))


def test_candidates_are_the_dark_blobs_even_where_the_map_is_off_centre():
    """The map's blobs sit between the particles (as on crowded real data); picks do not."""
    shape = (280, 260)
    image = dark_disks(shape, CENTRES, 12, 1.0, 0.5, seed=0)
    shifted = [(cx + 10, cy) for cx, cy in CENTRES]  # the map is high 10 px to the right
    masks = HybridBlobGenerator().generate(disk_map(shape, shifted, 6), 24.0, image=image)
    best = sorted(masks, key=lambda m: -m.score)[: len(CENTRES)]
    found = np.array([m.centroid for m in best])
    for cx, cy in CENTRES:  # on the particle, not on the map's blob 10 px away
        assert np.min(np.hypot(found[:, 0] - cx, found[:, 1] - cy)) <= 5


def test_the_unet_evidence_adds_its_weighted_contrast_to_the_darkness():
    shape = (240, 300)
    centres = [(80, 120), (220, 120)]
    image = dark_disks(shape, centres, 12, 1.5, 0.3, seed=1)
    probability = disk_map(shape, centres[:1], 12)  # the network sees only the first
    plain = LogBlobGenerator(LogSettings(scale_fraction=HybridSettings().log_scale))
    darkness = plain.generate(image, 24.0)
    hybrid = HybridBlobGenerator().generate(probability, 24.0, image=image)
    seen, unseen = nearest(hybrid, *centres[0]), nearest(hybrid, *centres[1])
    assert unseen.score == pytest.approx(nearest(darkness, *centres[1]).score, abs=1e-3)
    assert seen.score > nearest(darkness, *centres[0]).score + 1.0
    without = HybridBlobGenerator(HybridSettings(unet_weight=0.0))
    assert [m.score for m in without.generate(probability, 24.0, image=image)] == pytest.approx(
        [m.score for m in darkness], abs=1e-3
    )


def test_same_particle_in_two_backgrounds_gets_a_similar_score():
    """Scores mean the same on every micrograph: one particle, two noise fields and gains."""
    scores = []
    for seed, gain in ((3, 1.0), (4, 5.0)):
        image = gain * dark_disks((240, 240), [(120, 120)], 12, 1.5, 0.5, seed=seed) + 40.0
        probability = disk_map((240, 240), [(120, 120)], 12, value=0.6)
        masks = HybridBlobGenerator().generate(probability, 24.0, image=image)
        scores.append(nearest(masks, 120, 120).score)
    assert scores[0] == pytest.approx(scores[1], rel=0.15)


def test_without_a_diameter_the_maps_estimate_sets_the_particle_size():
    shape = (300, 300)
    centres = [(x, y) for x in (50, 130, 210) for y in (50, 130, 210)]
    image = dark_disks(shape, centres, 14, 1.0, 0.3, seed=5)
    probability = disk_map(shape, centres, 14)
    generator = HybridBlobGenerator()
    masks = generator.generate(probability, None, image=image)
    assert generator.last_diameter == pytest.approx(estimate_diameter(probability))
    assert {m.bbox[2] for m in masks} == {generator.last_diameter}


def test_the_denoised_image_is_required_and_must_match_the_map():
    probability = np.zeros((64, 64), np.float32)
    with pytest.raises(ValueError, match="denoised image"):
        HybridBlobGenerator().generate(probability, 10.0)
    with pytest.raises(ValueError, match="same 2-D shape"):
        HybridBlobGenerator().generate(probability, 10.0, image=np.zeros((64, 32)))


@pytest.mark.parametrize(
    "field, value", [("log_scale", 0.0), ("suppression_fraction", -1.0), ("unet_weight", -0.5)]
)
def test_settings_out_of_range_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        HybridSettings(**{field: value})


def test_a_size_range_gives_each_blob_its_own_size():
    """A disk is the dark core of a particle 1 / log_scale times wider (HybridSettings)."""
    from blob_helpers import dark_disks

    small, large = [(60, 60), (200, 60)], [(300, 220), (180, 180)]
    image = dark_disks((400, 400), small, 6, 1.0, 0.15, seed=3)
    image += dark_disks((400, 400), large, 14, 1.0, 0.0, seed=3)
    flat = np.zeros(image.shape, np.float32)
    generator = HybridBlobGenerator()
    scale = generator.settings.log_scale
    masks = generator.generate(flat, 25.0, image=image, size_range=(12.0, 52.0))
    assert generator.last_diameter == 25.0  # the typical size, for the U-Net term
    found = {}
    for (cx, cy), core in [(c, 12.0) for c in small] + [(c, 28.0) for c in large]:
        best = max(
            (m for m in masks if np.hypot(m.centroid[0] - cx, m.centroid[1] - cy) <= 3),
            key=lambda m: m.score,
        )
        # A single blob's scale is rough (in noise units, white noise favours larger scales).
        assert best.bbox[2] == pytest.approx(core / scale, rel=0.4)
        found.setdefault(core, []).append(best.bbox[2])
    assert max(found[12.0]) < min(found[28.0])
    assert all(12.0 <= m.bbox[2] <= 52.0 for m in masks)
