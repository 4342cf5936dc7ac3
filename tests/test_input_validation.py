"""Input that would give confident nonsense is refused up front, in one line naming the
file (or option) and the problem: broken models, out-of-range sizes and probabilities,
missing optics groups, labels that cannot be matched, micrographs too small to pick."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from cryosegnet.cli.main import main
from cryosegnet.errors import CheckpointError, CryoSegNetError
from cryosegnet.model.checkpoint import load_model, save_checkpoint
from cryosegnet.model.unet import AttentionUNet, UNetConfig
from cryosegnet.picking.batch import pick_batch
from cryosegnet.preprocessing.denoise import DenoiseSettings


def _simulated(size: int = 256, seed: int = 0, diameter: float = 18.0) -> np.ndarray:
    from cryosegnet.simulation import SimulationConfig, simulate_micrograph

    config = SimulationConfig(size=size, diameter_px=diameter, difficulty="easy", n_views=4)
    return simulate_micrograph(config, seed).image.astype(np.float32)


def _mrc(path: Path, image: np.ndarray, voxel_size: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(image.astype(np.float32))
        if voxel_size is not None:
            mrc.voxel_size = voxel_size
    return path


def _one_line_error(capsys, *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert code != 0, err
    errors = [line for line in err.splitlines() if "ERROR" in line or "error" in line.lower()]
    assert errors and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------ broken models


def _nan_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = AttentionUNet(UNetConfig(base_width=4, depth=4))
    with torch.no_grad():
        next(iter(model.parameters())).view(-1)[0] = float("nan")
    save_checkpoint(path, model, DenoiseSettings(working_size=128))
    return path


def test_checkpoint_with_non_finite_weights_is_refused(tmp_path, capsys):
    path = _nan_checkpoint(tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="not finite") as refused:
        load_model(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    mic = _mrc(tmp_path / "mic.mrc", _simulated())
    err = _one_line_error(capsys, "pick", str(mic), "-o", str(tmp_path / "out"), "-m", str(path))
    assert "not finite" in err and str(path) in err
    assert not (tmp_path / "out" / "mic_autopick.star").exists()


def test_non_finite_probability_map_is_refused(tmp_path):
    from cryosegnet.picking.picker import Picker

    class NanNet(torch.nn.Module):
        def forward(self, batch):
            return torch.full_like(batch, float("nan"))

    picker = Picker.from_parts(NanNet(), DenoiseSettings(working_size=128), stage="peaks")
    with pytest.raises(CryoSegNetError, match="not finite"):
        picker.pick(_simulated())
    mic = _mrc(tmp_path / "mic.mrc", _simulated())
    summary = pick_batch(picker, [mic], tmp_path / "out", progress=False)
    assert list(summary.failures) == [str(mic)]
    assert summary.failures[str(mic)].startswith(f"{mic}: ") and "not finite" in str(
        summary.failures
    )
    assert summary.done == {}


# ------------------------------------------------------------------ physical ranges


@pytest.mark.parametrize(
    "options, needle",
    [
        (["--diameter", "1"], "--diameter"),
        (["--diameter", "3.5px"], "--diameter"),
        (["--diameter", "5A"], "20"),
        (["--diameter", "9000A"], "2000"),
        (["--diameter-angstrom", "10"], "20"),
        (["--angpix", "0.01"], "0.1"),
        (["--angpix", "50"], "20"),
    ],
)
def test_sizes_outside_the_physical_range_are_refused_with_the_range(
    tmp_path, capsys, options, needle
):
    mic = _mrc(tmp_path / "mic.mrc", _simulated())
    out = tmp_path / "out"
    err = _one_line_error(capsys, "pick", str(mic), "-o", str(out), *options)
    assert needle in err and "range" in err, err
    assert not out.exists()


def test_diameter_above_half_the_micrograph_fails_that_micrograph(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small = _mrc(Path("small.mrc"), _simulated(256))
    large = _mrc(Path("large.mrc"), _simulated(512, seed=1))
    argv = ["pick", str(small), str(large), "-o", "out", "--stage", "log", "--diameter", "200"]
    code = main([*argv, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "small.mrc" in err and "half" in err and "4-128 px" in err, err
    assert Path("out/large_autopick.star").is_file()
    assert not Path("out/small_autopick.star").exists()


def test_picker_settings_refuse_a_diameter_below_the_range():
    from cryosegnet.picking.config import MIN_DIAMETER_PX, PickerConfig

    with pytest.raises(ValueError, match="range"):
        PickerConfig(diameter=MIN_DIAMETER_PX / 2)
    assert PickerConfig(diameter=MIN_DIAMETER_PX).diameter == MIN_DIAMETER_PX


@pytest.mark.parametrize("option", ["--map-probability", "--edge-min-visible"])
@pytest.mark.parametrize("value", ["5", "-0.5", "nan"])
def test_simulate_refuses_probabilities_outside_zero_to_one(tmp_path, capsys, option, value):
    code = main(["simulate", "-n", "1", "--size", "128", "-o", str(tmp_path / "s"), option, value])
    err = capsys.readouterr().err
    assert code != 0 and "[0, 1]" in err, err
    assert not list(tmp_path.glob("s/*.mrc"))


# ------------------------------------------------------------------ RELION optics groups


def test_micrograph_in_an_optics_group_the_star_does_not_define_is_an_error(tmp_path, capsys):
    import pandas as pd
    import starfile

    from cryosegnet.io.relion import RelionError, read_micrographs_star

    mic = _mrc(tmp_path / "Movies" / "a.mrc", _simulated(), voxel_size=1.0)
    star = tmp_path / "micrographs_ctf.star"
    optics = pd.DataFrame(
        {
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnOpticsGroup": [1],
            "rlnMicrographPixelSize": [2.5],
        }
    )
    rows = pd.DataFrame({"rlnMicrographName": ["Movies/a.mrc"], "rlnOpticsGroup": [3]})
    starfile.write({"optics": optics, "micrographs": rows}, star)
    with pytest.raises(RelionError, match="optics group 3") as refused:
        read_micrographs_star(star, project_dir=tmp_path)
    assert str(star) in str(refused.value) and "\n" not in str(refused.value)
    err = _one_line_error(
        capsys, "pick", str(star), "-o", str(tmp_path / "out"), "--diameter", "30A"
    )
    assert "optics group 3" in err and str(star) in err
    assert mic.is_file() and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ micrograph size


@pytest.mark.parametrize("shape", [(64, 64), (100, 400)])
def test_the_api_refuses_what_the_cli_refuses(tmp_path, tiny_model, capsys, shape):
    from cryosegnet.errors import MicrographError
    from cryosegnet.picking.config import MIN_PICK_SIDE
    from cryosegnet.picking.picker import Picker

    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    picker = Picker(model=tiny_model, device="cpu", stage="peaks")
    with pytest.raises(MicrographError, match=f"at least {MIN_PICK_SIDE} px") as refused:
        picker.pick(image)
    path = _mrc(tmp_path / "small.mrc", image)
    with pytest.raises(MicrographError, match=f"at least {MIN_PICK_SIDE} px") as by_path:
        picker.pick_results([path])
    assert str(path) in str(by_path.value)
    err = _one_line_error(
        capsys, "pick", str(path), "-o", str(tmp_path / "out"), "-m", str(tiny_model)
    )
    # One rule, one message: the CLI's line is the API's error.
    assert str(by_path.value) in err
    assert "\n" not in str(refused.value)


# ------------------------------------------------------------------ wrong kind of input


@pytest.mark.parametrize("kind", ["particles", "coordinates"])
def test_a_star_of_particles_as_input_is_one_line_saying_what_to_pass(tmp_path, capsys, kind):
    from cryosegnet.io.coordinates import make_picks, write_combined_star, write_coordinate_star

    picks = make_picks(np.arange(40.0), np.arange(40.0), 0.9, 20.0)
    star = tmp_path / f"{kind}.star"
    if kind == "particles":
        write_combined_star(star, {f"Movies/m{i}.mrc": picks for i in range(3)})
    else:
        write_coordinate_star(star, picks)
    code = main(["pick", str(star), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert str(star) in err and "micrographs STAR" in err and "particle" in err


# ------------------------------------------------------------------ paths that are not folders


def test_watch_on_a_file_says_it_is_a_file(tmp_path, capsys):
    mic = _mrc(tmp_path / "mic.mrc", _simulated())
    err = _one_line_error(capsys, "pick", "--watch", str(mic), "-o", str(tmp_path / "out"))
    assert "is a file, not a folder" in err and "no such" not in err
    err = _one_line_error(capsys, "pick", "--watch", str(tmp_path / "absent"), "-o", "out")
    assert "no such folder" in err


@pytest.mark.parametrize("kind", ["dangling", "loop", "file"])
def test_an_output_path_that_is_not_a_folder_says_what_it_is(tmp_path, capsys, kind):
    mic = _mrc(tmp_path / "mic.mrc", _simulated())
    out = tmp_path / "out"
    if kind == "dangling":
        out.symlink_to(tmp_path / "gone")
        expected = "symbolic link to a missing"
    elif kind == "loop":
        out.symlink_to(tmp_path / "out2")
        (tmp_path / "out2").symlink_to(out)
        expected = "symbolic link loop"
    else:
        out.write_text("notes")
        expected = "is a file"
    err = _one_line_error(
        capsys, "pick", str(mic), "-o", str(out), "--stage", "log", "--diameter", "20"
    )
    assert expected in err and str(out) in err, err


# ------------------------------------------------------------------ the smallest micrographs


def test_simulate_and_pick_agree_on_the_smallest_micrograph(tmp_path, capsys):
    from cryosegnet.picking.config import MIN_PICK_SIDE

    below = str(MIN_PICK_SIDE - 1)
    with pytest.raises(SystemExit) as refused:  # argparse refuses it
        main(["simulate", "-n", "1", "--size", below, "-o", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert refused.value.code != 0 and f"N >= {MIN_PICK_SIDE}" in err, err
    argv = ["simulate", "-n", "1", "--size", str(MIN_PICK_SIDE), "-o", str(tmp_path / "s")]
    assert main([*argv, "-q"]) == 0


def test_an_estimated_diameter_below_the_range_fails_the_micrograph(tmp_path, capsys, monkeypatch):
    """On a 128-px micrograph the map's blobs are a few micrograph pixels: hundreds of picks
    of noise. Such a micrograph fails (with what to do), and a given diameter picks it."""
    from cryosegnet.simulation import SimulationConfig, simulate_micrograph

    monkeypatch.chdir(tmp_path)
    config = SimulationConfig(size=128, diameter_px=16.0, difficulty="easy")
    sim = simulate_micrograph(config, 2)
    _mrc(Path("mic.mrc"), sim.image)
    code = main(["pick", "mic.mrc", "-o", "out", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "estimated particle diameter" in err and "--diameter" in err, err
    assert not Path("out/mic_autopick.star").exists()
