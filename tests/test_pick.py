"""The pick pipeline end to end: denoise -> U-Net -> instance stage -> Algorithm 1 -> files."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import starfile
import torch

from cryosegnet.cli.main import main
from cryosegnet.io.coordinates import read_coordinates
from cryosegnet.io.layout import output_path
from cryosegnet.picking.config import PickerConfig
from cryosegnet.picking.picker import Picker

CENTRES = [(60, 60), (150, 130), (220, 200), (80, 200)]  # (row, col) of the blobs in blob_image


class DarkIsParticle(torch.nn.Module):
    """A stand-in U-Net that calls dark pixels particles, so picks have a known answer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.42 - x) * 60.0


def dark_picker(model_path, **settings) -> Picker:
    """A picker with the checkpoint's denoising and record but :class:`DarkIsParticle` as its
    network, assembled with ``Picker.from_parts`` (no attribute replaced afterwards)."""
    from cryosegnet.model.checkpoint import load_model

    _, denoise_settings, checkpoint = load_model(model_path, torch.device("cpu"))
    stage = settings.pop("stage", "peaks")
    # blob_image's four blobs are black on flat noise, as dark as ice balls: the bad-region
    # mask (tests/test_bad_regions.py) would rightly drop them, so it is off here.
    settings.setdefault("mask_bad_regions", False)
    return Picker.from_parts(
        DarkIsParticle(), denoise_settings, stage, PickerConfig(**settings), checkpoint=checkpoint
    )


def test_picker_finds_known_blobs_in_original_pixels(tiny_model, blob_image):
    picker = dark_picker(tiny_model, threshold=0.0)
    result = picker.pick_result(blob_image)
    assert result.stage == "peaks"
    assert result.original_shape == blob_image.shape
    picks = result.picks
    assert list(picks.columns[:4]) == ["x", "y", "score", "diameter"]
    assert 20 < result.diameter < 45  # the dark blobs are ~30 px across after denoising
    # the four strongest picks are the four blobs, each within a fifth of a diameter (the
    # denoised blobs are irregular, so their peaks are not exactly at the Gaussian centres)
    top = picks.sort_values("score", ascending=False).head(4)
    for row, col in CENTRES:
        distance = np.hypot(top["x"] - col, top["y"] - row).min()
        assert distance < result.diameter / 5, (row, col, distance)
    assert (picks["score"].between(-1, 1)).all()


def test_pick_is_deterministic(tiny_model, blob_image):
    picker = Picker(model=tiny_model, device="cpu", stage="peaks", threshold=0.0)
    first = picker.pick(blob_image)
    second = picker.pick(blob_image.copy())
    assert first.equals(second)


def _write_mrc(path, image):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(image.astype(np.float32))
        mrc.voxel_size = 2.0


def test_cli_pick_writes_relion_and_cryosparc_files(
    tmp_path, tiny_model, blob_image, capsys, caplog
):
    mics = tmp_path / "mics"
    mics.mkdir()
    for name in ["a", "b b", "c_é"]:
        _write_mrc(mics / f"{name}.mrc", blob_image)
    out = tmp_path / "picks"
    code = main(
        [
            "pick",
            str(mics),
            "-o",
            str(out),
            "--model",
            str(tiny_model),
            "--threshold",
            "0",
            "--stage",
            "peaks",
            "--format",
            "star,csv,box",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    for name in ["a", "b b", "c_é"]:
        mic = mics / f"{name}.mrc"
        star = starfile.read(output_path(out, mic))
        assert {"rlnCoordinateX", "rlnCoordinateY", "rlnAutopickFigureOfMerit"} <= set(star.columns)
        assert output_path(out, mic, "csv").exists() and output_path(out, mic, "box").exists()
    index = starfile.read(out / "autopick.star", always_dict=True)["coordinate_files"]
    assert len(index) == 3
    assert all(str(out) in c for c in index["rlnMicrographCoordinates"])
    combined = read_coordinates(out / "particles.star")
    per_file = sum(
        len(read_coordinates(output_path(out, mics / f"{n}.mrc"))) for n in ["a", "b b", "c_é"]
    )
    assert len(combined) == per_file
    summary = capsys.readouterr().err
    assert "micrographs picked: 3" in summary

    # A second run with the same options skips finished micrographs; other options redo them.
    same = [
        "pick",
        str(mics),
        "-o",
        str(out),
        "--model",
        str(tiny_model),
        "--device",
        "cpu",
        "--stage",
        "peaks",
        "--threshold",
        "0",
    ]
    assert main(same) == 0
    assert "skipped, already done: 3" in capsys.readouterr().err
    caplog.set_level("INFO", logger="cryosegnet")
    assert main([*same[:-1], "0.5"]) == 0
    err = capsys.readouterr().err
    assert "skipped, already done: 0" in err and "other options: threshold" in caplog.text


def test_cli_pick_reports_bad_micrograph_and_continues(tmp_path, tiny_model, blob_image, capsys):
    mics = tmp_path / "mics"
    mics.mkdir()
    _write_mrc(mics / "good.mrc", blob_image)
    (mics / "broken.mrc").write_bytes(b"not an mrc at all" * 10)
    out = tmp_path / "picks"
    code = main(["pick", str(mics), "-o", str(out), "--model", str(tiny_model), "--device", "cpu"])
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.mrc" in err and "FAILED: 1" in err
    assert "Traceback" not in err
    assert output_path(out, mics / "good.mrc").exists()
    assert not output_path(out, mics / "broken.mrc").exists()


def test_cli_pick_without_inputs_is_one_line_error(tmp_path, tiny_model, capsys):
    code = main(
        ["pick", str(tmp_path / "*.mrc"), "-o", str(tmp_path / "o"), "--model", str(tiny_model)]
    )
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no micrographs found" in err[1]
    assert err[0].startswith("ERROR") and "no file matches" in err[0]


def test_real_micrographs_pick_without_error(shared_dir, tiny_model, tmp_path):
    mic = shared_dir / "data/real/ucsf-contamination/micrograph.mrc"
    code = main(
        ["pick", str(mic), "-o", str(tmp_path), "--model", str(tiny_model), "--device", "cpu"]
    )
    assert code == 0
    assert output_path(tmp_path, mic).exists()


def test_sam_stage_requested_without_checkpoint_is_clear(
    tmp_path, tiny_model, blob_image, capsys, monkeypatch
):
    monkeypatch.delenv("CRYOSEGNET_SAM_CHECKPOINT", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _write_mrc(tmp_path / "m.mrc", blob_image)
    code = main(
        [
            "pick",
            str(tmp_path / "m.mrc"),
            "-o",
            str(tmp_path / "o"),
            "--model",
            str(tiny_model),
            "--stage",
            "sam",
        ]
    )
    assert code == 1
    assert "SAM checkpoint not found" in capsys.readouterr().err


def test_shipped_default_model_loads_and_is_small():
    from cryosegnet.model.checkpoint import default_model_path, load_model

    path = default_model_path()
    assert path.is_file(), "the package must ship weights/default.pt"
    assert path.stat().st_size <= 25 * 1024 * 1024
    model, settings, payload = load_model(path)
    assert settings.working_size == 1024
    assert "command" in payload["metadata"]
    picker = Picker(device="cpu")
    assert picker.stage == "hybrid" and picker.model_path == path


def test_border_picks_are_dropped():
    from cryosegnet.io.coordinates import make_picks
    from cryosegnet.picking.picker import drop_border_picks

    picks = make_picks([2.0, 50.0, 97.0, 50.0], [50.0, 50.0, 50.0, 1.0], diameter=20.0)
    kept = drop_border_picks(picks, (100, 100), 0.25)
    assert kept[["x", "y"]].values.tolist() == [[50.0, 50.0]]
    assert len(drop_border_picks(picks, (100, 100), 0.0)) == 4


def test_given_diameter_reaches_the_peak_stage_in_working_pixels(tiny_model, blob_image):
    """--diameter is in micrograph pixels; the stage works at 256 px, so it gets d x 256/300."""
    picker = dark_picker(tiny_model, threshold=0.0, diameter=45)
    result = picker.pick_result(blob_image)
    assert picker.mask_generator.last_diameter == pytest.approx(45 * 256 / 300, rel=0.01)
    assert result.diameter == pytest.approx(45, abs=1.5)  # boxes are whole working pixels
    assert (result.picks["diameter"] == result.diameter).all()
    for row, col in CENTRES:
        assert np.hypot(result.picks["x"] - col, result.picks["y"] - row).min() < 4


def test_a_stage_object_assembles_into_a_picker(tiny_model, blob_image):
    """Picker.from_parts: any instance stage (here the watershed baseline, which the command
    line no longer offers) with a network in memory, no attribute replaced afterwards."""
    from cryosegnet.masks.watershed import WatershedMaskGenerator
    from cryosegnet.preprocessing.denoise import DenoiseSettings

    settings = Picker(model=tiny_model, device="cpu").denoise_settings
    assert isinstance(settings, DenoiseSettings)
    picker = Picker.from_parts(
        DarkIsParticle(),
        settings,
        WatershedMaskGenerator(),
        PickerConfig(threshold=0.0, mask_bad_regions=False),  # blob_image: see dark_picker
    )
    result = picker.pick_result(blob_image)
    assert result.stage == "watershed" and "watershed" in picker.mask_generator.describe()
    for row, col in CENTRES:
        assert np.hypot(result.picks["x"] - col, result.picks["y"] - row).min() < 4
    with pytest.raises(ValueError, match="unknown instance stage 'watershed'"):
        Picker(model=tiny_model, device="cpu", stage="watershed")


def test_model_fine_tuned_on_labels_brings_its_particle_diameter(tmp_path, blob_image):
    from cryosegnet.model.checkpoint import save_checkpoint
    from cryosegnet.model.unet import AttentionUNet, UNetConfig
    from cryosegnet.preprocessing.denoise import DenoiseSettings

    def checkpoint(name, sources, key="diameter_working_px_median", value=30.0):
        path = tmp_path / name
        train = {"sources": sources, key: value}
        save_checkpoint(
            path,
            AttentionUNet(UNetConfig(base_width=4)),
            DenoiseSettings(working_size=256),
            metadata={"data": {"train": train}},
        )
        return path

    tuned = Picker(model=checkpoint("tuned.pt", ["labelled"]), device="cpu", stage="peaks")
    # An old checkpoint recorded working pixels: used as such, as before.
    assert tuned.model_diameter is None and tuned.legacy_working_diameter == 30.0
    tuned.unet = DarkIsParticle()
    tuned.pick(blob_image)
    assert tuned.mask_generator.last_diameter == 30.0
    # --diameter still wins; a model trained on simulated particles of all sizes has no size
    given = Picker(model=checkpoint("tuned2.pt", ["labelled"]), device="cpu", diameter=60)
    given.unet = DarkIsParticle()
    given.pick(blob_image)
    assert given.mask_generator.last_diameter == pytest.approx(60 * 256 / 300, rel=0.01)
    mixed = Picker(model=checkpoint("mixed.pt", ["labelled", "simulated"]), device="cpu")
    assert mixed.model_diameter is None and mixed.legacy_working_diameter is None
    # Decoys (micrographs with no particle) add no size: labels + decoys keep the labels' one
    with_decoys = checkpoint("decoys.pt", ["decoy", "labelled"], key="diameter_px_median")
    assert Picker(model=with_decoys, device="cpu").model_diameter == 30.0
    only_decoys = checkpoint("only.pt", ["decoy"], key="diameter_px_median")
    assert Picker(model=only_decoys, device="cpu").model_diameter is None


def test_a_fine_tuned_diameter_is_converted_to_each_micrographs_working_pixels(
    tmp_path, blob_image
):
    """Recorded in micrograph pixels; a 300-px micrograph at working size 256 sees it x256/300,
    a 600-px one (same sample, twice the sampling) x256/600: never the training scale."""
    import cv2

    from cryosegnet.model.checkpoint import save_checkpoint
    from cryosegnet.model.unet import AttentionUNet, UNetConfig
    from cryosegnet.preprocessing.denoise import DenoiseSettings

    path = tmp_path / "tuned.pt"
    train = {
        "sources": ["labelled"],
        "diameter_px_median": 36.0,
        "diameter_angstrom_median": 54.0,
        "diameter_working_px_median": 99.0,
    }
    save_checkpoint(
        path,
        AttentionUNet(UNetConfig(base_width=4)),
        DenoiseSettings(working_size=256),
        metadata={"data": {"train": train}},
    )
    assert Picker(model=path, device="cpu", stage="peaks").model_diameter == 36.0
    # auto without SAM: the fine-tuned map's own peaks; a general model gets the hybrid stage
    assert Picker(model=path, device="cpu").stage == "peaks"
    picker = dark_picker(path)
    assert picker.model_diameter == 36.0 and picker.model_diameter_angstrom == 54.0
    assert picker.legacy_working_diameter is None
    picker.pick(blob_image)
    assert picker.mask_generator.last_diameter == pytest.approx(36 * 256 / 300, rel=0.01)
    big = cv2.resize(blob_image, (600, 600), interpolation=cv2.INTER_LINEAR)
    picker.pick(big)
    assert picker.mask_generator.last_diameter == pytest.approx(36 * 256 / 600, rel=0.01)


def test_log_stage_needs_a_diameter_and_skips_the_unet(tiny_model, blob_image, monkeypatch):
    from cryosegnet import Picker

    with pytest.raises(ValueError, match="diameter"):
        Picker(model=tiny_model, device="cpu", stage="log")
    picker = Picker(model=tiny_model, device="cpu", stage="log", diameter=16, threshold=-1e9)

    def no_unet(*args, **kwargs):
        raise AssertionError("the LoG stage must not run the U-Net")

    monkeypatch.setattr(picker, "probability_maps", no_unet)
    picks = picker.pick(blob_image)
    assert len(picks) > 0
    assert np.allclose(picks["diameter"], 16.0, rtol=0.05)


def test_hybrid_stage_reads_the_denoised_image_beside_the_map(tiny_model, blob_image):
    picker = Picker(model=tiny_model, device="cpu", threshold=-1e9, diameter=16)
    assert picker.stage == "hybrid"  # auto, no SAM checkpoint, a general model
    denoised = picker.preprocess(blob_image)
    probability = picker.probability_maps([denoised])[0]
    with pytest.raises(ValueError, match="denoised image"):
        picker.instances(probability, blob_image.shape)
    direct = picker.instances(probability, blob_image.shape, denoised).picks
    assert len(direct) > 0 and direct.equals(picker.pick(blob_image))


def test_pick_results_batches_several_micrographs_and_the_old_name_warns(tiny_model, blob_image):
    picker = Picker(model=tiny_model, device="cpu", stage="peaks", threshold=0.0)
    one = picker.pick_result(blob_image)
    several = picker.pick_results([blob_image, blob_image.copy()])
    assert len(several) == 2 and several[0].picks.equals(several[1].picks)
    # A batch of two may differ from a batch of one by float rounding only.
    assert abs(len(several[0].picks) - len(one.picks)) <= 0.05 * len(one.picks)
    with pytest.warns(DeprecationWarning, match="pick_result"):
        assert picker.pick_detailed(blob_image).picks.equals(one.picks)


def test_a_model_trained_on_centre_targets_needs_a_diameter(tmp_path):
    """Its map marks particle centres only: a size read off it would be too small."""
    from cryosegnet.errors import SettingsError
    from cryosegnet.model.checkpoint import save_checkpoint
    from cryosegnet.model.unet import AttentionUNet, UNetConfig
    from cryosegnet.preprocessing.denoise import DenoiseSettings

    path = tmp_path / "centres.pt"
    save_checkpoint(
        path,
        AttentionUNet(UNetConfig(base_width=4, depth=5)),
        DenoiseSettings(working_size=256),
        metadata={"recipe": {"target_fraction": 0.4}},
    )
    with pytest.raises(SettingsError, match="--diameter"):
        Picker(model=path, device="cpu")
    assert Picker(model=path, device="cpu", diameter=40.0).model_diameter is None
