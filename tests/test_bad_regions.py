"""Bad-region masking: contamination and carbon are masked, clean fields are not, and the
picker drops picks on them unless told to keep them."""

from __future__ import annotations

from pathlib import Path

import cv2
import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch

from cryosegnet.cli.main import build_parser
from cryosegnet.model.checkpoint import save_checkpoint
from cryosegnet.model.unet import AttentionUNet, UNetConfig
from cryosegnet.picking.picker import Picker
from cryosegnet.postprocessing.bad_regions import (
    BadRegionSettings,
    bad_region_mask,
    drop_picks_in_mask,
    enlarge_mask,
)
from cryosegnet.preprocessing.denoise import DenoiseSettings, denoise
from cryosegnet.simulation import SimulationConfig, simulate_micrograph

DIAMETER = 20.0  # particle diameter of the simulated fields, px
SIZE = 512  # denoised at full size: a 4096 Å field at 8 Å/px, as the picker's working image


@pytest.fixture
def field_model(tmp_path: Path) -> Path:
    """A very small U-Net whose micrographs are denoised at ``SIZE`` (the LoG stage, used
    below, does not run the U-Net)."""
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    model = AttentionUNet(UNetConfig(base_width=4, depth=5))
    save_checkpoint(path, model, DenoiseSettings(working_size=SIZE), metadata={"purpose": "test"})
    return path


def simulated(contamination: int, carbon: bool, seed: int):
    config = SimulationConfig(
        size=SIZE,
        difficulty="easy",
        diameter_px=DIAMETER,
        contamination=contamination,
        carbon=carbon,
        density="medium",
    )
    return simulate_micrograph(config, rng=seed)


def denoised(image: np.ndarray) -> np.ndarray:
    return denoise(image, DenoiseSettings(working_size=SIZE))


def within(points: pd.DataFrame, region: np.ndarray, distance: float) -> np.ndarray:
    """Whether each point lies in ``region`` or within ``distance`` px of it."""
    gap = cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, 5)
    row = np.clip(points["y"].round().astype(int), 0, region.shape[0] - 1)
    col = np.clip(points["x"].round().astype(int), 0, region.shape[1] - 1)
    return gap[row, col] <= distance


@pytest.mark.parametrize("seed", [0, 3])
def test_mask_covers_contamination_and_spares_the_particles(seed):
    sim = simulated(contamination=2, carbon=False, seed=seed)
    assert sim.contamination_mask.mean() > 0.02  # the field does hold contamination
    mask = bad_region_mask(denoised(sim.image), DIAMETER)
    assert mask.shape == sim.image.shape
    assert mask[sim.contamination_mask].mean() > 0.98
    # The margin reaches half a diameter past the footprint, not across the field.
    gap = cv2.distanceTransform((~sim.contamination_mask).astype(np.uint8), cv2.DIST_L2, 5)
    assert not (mask & (gap > 1.5 * DIAMETER)).any()
    away = ~within(sim.picks, sim.contamination_mask, DIAMETER)
    assert not within(sim.picks[away], mask, 0).any()


def test_mask_covers_carbon():
    sim = simulated(contamination=0, carbon=True, seed=1)
    assert sim.carbon_mask.mean() > 0.05
    mask = bad_region_mask(denoised(sim.image), DIAMETER)
    assert mask[sim.carbon_mask].mean() > 0.95


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_field_has_an_empty_mask(seed):
    sim = simulated(contamination=0, carbon=False, seed=seed)
    assert bad_region_mask(denoised(sim.image), DIAMETER).mean() < 0.005


def test_picks_are_dropped_by_their_centre_pixel_at_the_masks_scale():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2, 3] = True  # micrograph pixels 6-7 (x) and 4-5 (y) at half scale
    picks = pd.DataFrame({"x": [6.0, 7.4, 8.0, 6.0], "y": [4.0, 5.0, 4.0, 3.0]})
    kept = drop_picks_in_mask(picks, mask, scale=0.5)
    assert kept[["x", "y"]].values.tolist() == [[8.0, 4.0], [6.0, 3.0]]
    assert drop_picks_in_mask(picks.iloc[0:0], mask, 0.5).empty


def test_enlarged_mask_keeps_its_regions_in_place():
    small = np.zeros((4, 5), dtype=bool)
    small[1, 2] = True
    big = enlarge_mask(small, (8, 10))
    assert big.shape == (8, 10) and big[2:4, 4:6].all() and big.sum() == 4


def test_settings_refuse_impossible_values():
    with pytest.raises(ValueError, match="margin"):
        BadRegionSettings(margin=-1)
    with pytest.raises(ValueError, match="region_level"):
        BadRegionSettings(region_level=1.0)
    with pytest.raises(ValueError, match="region_core"):
        BadRegionSettings(region_core=0.7, region_level=0.6)
    with pytest.raises(ValueError, match="blob_level"):
        BadRegionSettings(blob_level=0.8, blob_extent=0.7)
    with pytest.raises(ValueError, match="diameter"):
        bad_region_mask(np.zeros((32, 32), np.uint8), float("nan"))


def test_a_high_contrast_protein_keeps_its_darkest_particles():
    """Blobs as dark as ice balls are kept when the picks range that dark too (a protein of
    high contrast): the blob cue judges darkness against the particles' own spread."""
    rng = np.random.default_rng(0)
    size, diameter = 256, 16.0
    image = np.full((size, size), 160.0) + rng.normal(0, 4, (size, size))
    rows, cols = np.mgrid[0:size, 0:size]
    centres = [(r, c) for r in range(24, size - 16, 32) for c in range(24, size - 16, 32)]
    depths = np.linspace(0.2, 0.9, len(centres))  # particles from black to faint
    for (r, c), depth in zip(centres, depths):
        disk = (rows - r) ** 2 + (cols - c) ** 2 <= (diameter / 2) ** 2
        image[disk] *= depth
    image = np.clip(image, 0, 255).astype(np.uint8)
    picks = np.array([(c, r) for r, c in centres], dtype=float)
    assert not bad_region_mask(image, diameter, particles=picks).any()
    # Without the picks as a population, the darkest ones are taken for ice balls.
    assert bad_region_mask(image, diameter).any()


def test_picker_drops_picks_on_contamination_unless_told_to_keep_them(field_model):
    sim = simulated(contamination=2, carbon=False, seed=3)
    options = dict(model=field_model, device="cpu", stage="log", diameter=DIAMETER)
    masked = Picker(**options).pick_result(sim.image)
    kept = Picker(**options, mask_bad_regions=False).pick_result(sim.image)
    on_contamination = within(kept.picks, sim.contamination_mask, DIAMETER / 2)
    assert on_contamination.sum() >= 3  # the LoG stage does pick the contamination's rim
    assert not within(masked.picks, sim.contamination_mask, DIAMETER / 2).any()
    assert masked.counts["after_bad_regions"] == len(masked.picks) < len(kept.picks)
    assert masked.bad_regions is not None and masked.bad_regions.any()
    assert kept.bad_regions is None and "after_bad_regions" not in kept.counts
    # Picks away from the contamination are the same with and without the mask.
    assert len(masked.picks) >= len(kept.picks) - on_contamination.sum() - 2


def test_picker_leaves_a_clean_field_unchanged(field_model):
    sim = simulated(contamination=0, carbon=False, seed=0)
    options = dict(model=field_model, device="cpu", stage="log", diameter=DIAMETER)
    masked = Picker(**options).pick_result(sim.image).picks
    kept = Picker(**options, mask_bad_regions=False).pick_result(sim.image).picks
    pd.testing.assert_frame_equal(masked, kept)


def test_pick_option_keep_bad_regions():
    parser = build_parser()
    assert parser.parse_args(["pick", "m.mrc", "-o", "out"]).mask_bad_regions is True
    args = parser.parse_args(["pick", "m.mrc", "-o", "out", "--keep-bad-regions"])
    assert args.mask_bad_regions is False


def test_real_contamination_is_masked(shared_dir):
    """The UCSF micrograph, denoised as the shipped model does: the mask covers the experts'
    contamination mask and little beyond its margin (the picks it saves are measured in
    bench/bad_regions.py)."""
    from cryosegnet.model.checkpoint import default_model_path, load_model

    folder = shared_dir / "data/real/ucsf-contamination"
    truth = mrcfile.read(folder / "bad-region-mask.mrc") > 0.5
    image = mrcfile.read(folder / "micrograph.mrc").astype(np.float32)
    _, settings, _ = load_model(default_model_path(), torch.device("cpu"))
    working = denoise(image, settings)
    diameter = 36.0  # the particles' size in micrograph pixels
    mask = bad_region_mask(working, diameter * working.shape[1] / image.shape[1])
    mask = enlarge_mask(mask, image.shape)
    gap = cv2.distanceTransform((~truth).astype(np.uint8), cv2.DIST_L2, 5)
    assert mask[truth].mean() > 0.95
    assert (mask & (gap > diameter)).mean() < 0.03


def test_show_tints_the_bad_regions_the_picker_masked(field_model, tmp_path):
    from cryosegnet.inspection.show import ShowSettings, show_picks

    sim = simulated(contamination=2, carbon=False, seed=3)
    path = tmp_path / "contaminated.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(sim.image.astype(np.float32))
    settings = ShowSettings(
        height=SIZE, model=str(field_model), stage="log", diameter=DIAMETER, device="cpu"
    )
    result = show_picks(path, tmp_path / "picture.png", settings=settings)
    assert result.bad_regions is not None
    picture = cv2.imread(str(result.output))
    tinted = picture[..., 0].astype(int) - picture[..., 2].astype(int) > 40  # blue over red
    shown = enlarge_mask(result.bad_regions, picture.shape[:2])
    assert tinted[sim.contamination_mask].mean() > 0.9
    assert not (tinted & ~shown).any()


@pytest.mark.slow
def test_default_picks_avoid_the_real_contamination(shared_dir):
    """The default picker (shipped model) on the UCSF micrograph: at most 2 % of its picks on
    or within half a diameter of the experts' contamination mask (9.6 % without the mask)."""
    folder = shared_dir / "data/real/ucsf-contamination"
    truth = mrcfile.read(folder / "bad-region-mask.mrc") > 0.5
    picks = Picker(device="cpu").pick(folder / "micrograph.mrc")
    gap = cv2.distanceTransform((~truth).astype(np.uint8), cv2.DIST_L2, 5)
    row = np.clip(picks["y"].round().astype(int), 0, truth.shape[0] - 1)
    col = np.clip(picks["x"].round().astype(int), 0, truth.shape[1] - 1)
    assert len(picks) > 100
    assert (gap[row, col] <= picks["diameter"] / 2).mean() <= 0.02
