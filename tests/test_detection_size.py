"""The particle size read off a micrograph, and one code path for estimated and told sizes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryosegnet.detection.size import SizeEstimateSettings, estimate_size


def _dark_disks(shape, diameter, count, seed, contrast=1.0):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=shape).astype(np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    radius = diameter / 2
    for cy, cx in rng.uniform(diameter, min(shape) - diameter, size=(count, 2)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] -= contrast
    return image


@pytest.mark.parametrize("diameter", [12, 24, 48])
def test_the_scale_of_dark_disks_is_recovered_within_a_fifth(diameter):
    count = int(0.15 * 768 * 768 / (diameter * diameter))
    estimate = estimate_size(_dark_disks((768, 768), diameter, count, seed=diameter))
    assert estimate.sure
    assert estimate.diameter == pytest.approx(diameter, rel=0.2)


def test_pure_noise_has_no_sure_size():
    rng = np.random.default_rng(2)
    assert not estimate_size(rng.normal(size=(512, 512)).astype(np.float32)).sure


def test_a_large_dark_patch_does_not_set_the_size():
    image = _dark_disks((768, 768), 20, 180, seed=4)
    image[100:400, 100:400] -= 4.0  # contamination far larger than any particle
    estimate = estimate_size(image)
    assert estimate.sure and estimate.diameter == pytest.approx(20, rel=0.25)


def test_gain_and_offset_do_not_change_the_estimate():
    image = _dark_disks((512, 512), 16, 120, seed=5)
    a, b = estimate_size(image), estimate_size(7.0 * image + 300.0)
    assert a.diameter == pytest.approx(b.diameter) and a.sure == b.sure


def test_an_image_too_small_to_search_is_unsure():
    estimate = estimate_size(np.zeros((40, 40), np.float32), SizeEstimateSettings())
    assert not estimate.sure and np.isnan(estimate.diameter)


def test_an_estimated_size_picks_exactly_as_the_same_size_told(tiny_model):
    from cryosegnet import Picker

    image = _dark_disks((1024, 1024), 64, 40, seed=6, contrast=1.0)
    estimated = Picker(tiny_model, device="cpu", stage="hybrid").pick_result(image)
    assert estimated.diameter_source == "micrograph" and estimated.size_sure
    told = Picker(tiny_model, device="cpu", stage="hybrid", diameter=estimated.diameter)
    told_result = told.pick_result(image)
    assert told_result.diameter_source == "given"
    pd.testing.assert_frame_equal(estimated.picks, told_result.picks)


def test_without_a_clear_scale_the_map_estimate_is_used_and_flagged(tiny_model):
    from cryosegnet import Picker

    rng = np.random.default_rng(7)
    result = Picker(tiny_model, device="cpu", stage="hybrid").pick_result(
        rng.normal(size=(256, 256)).astype(np.float32)
    )
    assert result.diameter_source == "map" and not result.size_sure


@pytest.fixture
def model_512(tmp_path):
    """A tiny random U-Net that works at 512 px: the size search then spans three octaves,
    as at the default 1024 px."""
    import torch

    from cryosegnet.model.checkpoint import save_checkpoint
    from cryosegnet.model.unet import AttentionUNet, UNetConfig
    from cryosegnet.preprocessing.denoise import DenoiseSettings

    torch.manual_seed(0)
    path = tmp_path / "tiny512.pt"
    model = AttentionUNet(UNetConfig(base_width=4, depth=5))
    save_checkpoint(path, model, DenoiseSettings(working_size=512), metadata={"purpose": "test"})
    return path


def _write_batch(folder, n):
    import mrcfile

    folder.mkdir()
    for i in range(n):
        with mrcfile.new(folder / f"mic_{i}.mrc") as mrc:
            mrc.set_data(_dark_disks((1024, 1024), 64, 40, seed=10 + i, contrast=1.5))
    return folder


def test_a_batch_is_picked_with_one_size_read_off_its_micrographs(tmp_path, model_512, caplog):
    import logging

    from cryosegnet import Picker
    from cryosegnet.picking.batch import pick_batch

    mics = _write_batch(tmp_path / "mics", 3)
    picker = Picker(model_512, device="cpu", stage="hybrid")
    with caplog.at_level(logging.INFO, logger="cryosegnet"):
        summary = pick_batch(picker, sorted(mics.glob("*.mrc")), tmp_path / "out")
    assert summary.diameter_sources == ["batch"] * 3
    assert len(set(summary.diameters)) == 1
    assert summary.diameters[0] == pytest.approx(64, rel=0.25)
    assert "particle size:" in caplog.text and "median of 3 sure" in caplog.text


def test_size_per_micrograph_sizes_each_on_its_own_and_refuses_a_given_diameter(
    tmp_path, model_512
):
    from cryosegnet.cli.main import main

    mics = _write_batch(tmp_path / "mics", 2)
    out = tmp_path / "out"
    common = ["pick", str(mics), "-o", str(out), "--model", str(model_512), "--device", "cpu"]
    assert main([*common, "--stage", "hybrid", "--size-per-micrograph"]) == 0
    manifests = [p.read_text() for p in out.rglob("*_autopick.star")]
    assert manifests and all('"diameter_source": "micrograph"' in t for t in manifests)
    assert main([*common, "--diameter", "60", "--size-per-micrograph"]) != 0


def test_a_size_range_is_parsed_in_pixels_or_angstrom():
    from cryosegnet.errors import CryoSegNetError
    from cryosegnet.picking.units import Diameter, SizeRange, parse_size

    assert parse_size("100-160A") == SizeRange(100.0, 160.0, "A")
    assert parse_size("40 - 60px") == SizeRange(40.0, 60.0, "px")
    assert parse_size("120A") == Diameter(120.0, "A")
    assert SizeRange(100.0, 160.0, "A").in_pixels(2.0) == (50.0, 80.0)
    with pytest.raises(CryoSegNetError, match="smaller to a larger"):
        parse_size("160-100")
    with pytest.raises(CryoSegNetError, match="give --angpix"):
        SizeRange(100.0, 160.0, "A").in_pixels(None)


def test_a_range_limits_the_search_and_its_middle_stands_in_for_no_clear_scale(tiny_model):
    from cryosegnet import Picker
    from cryosegnet.picking.units import SizeRange

    image = _dark_disks((1024, 1024), 64, 40, seed=6, contrast=1.5)
    inside = Picker(tiny_model, device="cpu", diameter_range=SizeRange(48, 90))
    estimate = inside.estimate_size(image)
    assert estimate.sure and estimate.scope == "micrograph"
    assert estimate.diameter * 4 == pytest.approx(64, rel=0.25)  # working px are 1/4 here
    # A range far from the particles: no interior peak there, so its middle is used.
    away = Picker(tiny_model, device="cpu", diameter_range=SizeRange(200, 240))
    fallback = away.estimate_size(image)
    assert fallback.scope == "range" and fallback.diameter * 4 == pytest.approx(219, rel=0.01)
    result = away.pick_result(image)
    assert result.diameter_source == "range"


def test_pick_takes_a_diameter_range_in_angstrom(tmp_path, model_512):
    from cryosegnet.cli.main import main

    mics = _write_batch(tmp_path / "mics", 2)
    out = tmp_path / "out"
    common = ["pick", str(mics), "-o", str(out), "--model", str(model_512), "--device", "cpu"]
    assert main([*common, "--diameter", "100-160A", "--angpix", "2"]) == 0
    manifest = next(out.rglob("*_autopick.star")).read_text()
    assert '"diameter_range": "100-160' in manifest
    assert main([*common, "--diameter", "1-3"]) != 0  # outside the physical range


def test_each_micrograph_line_says_when_its_size_was_unsure(tmp_path, tiny_model, caplog):
    import logging

    import mrcfile

    from cryosegnet import Picker
    from cryosegnet.picking.batch import pick_batch

    (tmp_path / "mics").mkdir()
    path = tmp_path / "mics" / "noise.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.random.default_rng(8).normal(size=(512, 512)).astype(np.float32))
    picker = Picker(tiny_model, device="cpu", stage="hybrid")
    with caplog.at_level(logging.INFO, logger="cryosegnet"):
        summary = pick_batch(picker, [path], tmp_path / "out", progress=False)
    assert summary.diameter_sources == ["map"]
    assert "(unsure: the U-Net map's estimate)" in caplog.text
    assert "particle size unsure on 1 of 1" in summary.text()


def test_a_range_with_no_clear_scale_is_picked_at_its_middle_and_said_so(tmp_path, tiny_model):
    import mrcfile

    from cryosegnet import Picker
    from cryosegnet.picking.batch import pick_batch
    from cryosegnet.picking.units import SizeRange

    (tmp_path / "mics").mkdir()
    paths = []
    for i in range(2):
        paths.append(tmp_path / "mics" / f"noise{i}.mrc")
        with mrcfile.new(paths[-1]) as mrc:
            mrc.set_data(np.random.default_rng(20 + i).normal(size=(512, 512)).astype(np.float32))
    picker = Picker(tiny_model, device="cpu", diameter_range=SizeRange(30, 50))
    summary = pick_batch(picker, paths, tmp_path / "out", progress=False)
    assert summary.diameter_sources == ["range", "range"]
    assert summary.diameters[0] == pytest.approx(np.sqrt(30 * 50), rel=0.05)
    assert "the range's middle was used" in summary.text()
