"""``cryosegnet pick`` end to end on bad input: one line per problem, no traceback
unless ``--debug``, the batch goes on, a non-zero exit when anything failed; interruptions
keep finished work and a re-run completes the rest; the same input gives the same picks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import tifffile
import torch

from cryosegnet.cli.main import main
from cryosegnet.errors import CheckpointError
from cryosegnet.io.coordinates import read_coordinates
from cryosegnet.io.layout import COMBINED_STAR, INDEX_STAR, LOCK_FILE, RUN_LOCK_FILE, output_path


@pytest.fixture
def fast_model(tmp_path: Path) -> Path:
    """Like conftest's ``tiny_model`` but at a 128 px working size: several whole batches per
    test stay within the time budget on a 2-core CI machine."""
    from cryosegnet.model.checkpoint import save_checkpoint
    from cryosegnet.model.unet import AttentionUNet, UNetConfig
    from cryosegnet.preprocessing.denoise import DenoiseSettings

    torch.manual_seed(0)
    path = tmp_path / "fast.pt"
    save_checkpoint(
        path, AttentionUNet(UNetConfig(base_width=4, depth=4)), DenoiseSettings(working_size=128)
    )
    return path


def _simulated(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A small realistic micrograph from the project's simulator (blobs if it is unavailable)."""
    try:
        from cryosegnet.simulation import SimulationConfig, simulate_micrograph

        config = SimulationConfig(size=shape, diameter_px=18.0, difficulty="easy", n_views=4)
        return simulate_micrograph(config, seed).image.astype(np.float32)
    except Exception:  # the simulator is optional here: these tests are about robustness
        rng = np.random.default_rng(seed)
        rows, cols = np.mgrid[: shape[0], : shape[1]]
        image = rng.normal(0, 1, shape)
        for cy, cx in rng.uniform(20, min(shape) - 20, (6, 2)):
            image -= 3 * np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * 6**2))
        return image.astype(np.float32)


def _write_mrc(path: Path, data: np.ndarray) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
    return path


def _to_uint16(image: np.ndarray) -> np.ndarray:
    lo, hi = float(image.min()), float(image.max())
    return np.round((image - lo) / (hi - lo) * 65535).astype(np.uint16)


def _cli(capsys, *args: str) -> tuple[int, str]:
    code = main(["pick", *args, "--device", "cpu", "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def _assert_clean_error(text: str, *needles: str) -> str:
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, text
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _hidden_or_temp(folder: Path) -> list[str]:
    locks = (LOCK_FILE, RUN_LOCK_FILE)
    return sorted(
        p.name
        for p in folder.rglob("*")
        if p.name not in locks and (p.name.startswith(".") or ".tmp" in p.name)
    )


# ------------------------------------------------------------------ nothing to pick


def test_empty_folder_and_glob_matching_nothing(tmp_path, capsys, tiny_model):
    empty = tmp_path / "empty"
    empty.mkdir()
    for inputs in ([str(empty)], [str(tmp_path / "*.mrc")], [str(tmp_path / "missing" / "x*")]):
        code, text = _cli(capsys, *inputs, "-o", str(tmp_path / "out"), "--model", str(tiny_model))
        assert code != 0
        _assert_clean_error(text, inputs[0], "no micrographs found")
    assert not (tmp_path / "out").exists()


def test_output_path_that_cannot_be_a_folder(tmp_path, capsys, tiny_model):
    mic = _write_mrc(tmp_path / "mic.mrc", _simulated((128, 144), 0))
    blocker = tmp_path / "out"
    blocker.write_text("a file, not a folder")
    for out in (blocker, blocker / "sub"):
        code, text = _cli(capsys, str(mic), "-o", str(out), "--model", str(tiny_model))
        assert code == 1
        _assert_clean_error(text, str(out))
    assert blocker.read_text() == "a file, not a folder"


# ------------------------------------------------------------------ bad checkpoints


def _bad_unet_checkpoints(folder: Path) -> dict[str, Path]:
    from cryosegnet.model.checkpoint import FORMAT, save_checkpoint
    from cryosegnet.model.unet import AttentionUNet, UNetConfig
    from cryosegnet.preprocessing.denoise import DenoiseSettings

    paths = {
        name: folder / f"{name}.pt"
        for name in (
            "random",
            "empty",
            "plain_state_dict",
            "pickled_module",
            "other_width",
            "no_weights",
            "absurd_architecture",
        )
    }
    paths["random"].write_bytes(np.random.default_rng(0).bytes(5000))
    paths["empty"].write_bytes(b"")
    other_network = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3))
    torch.save(other_network.state_dict(), paths["plain_state_dict"])
    torch.save(torch.nn.Conv2d(1, 2, 3), paths["pickled_module"])  # authors' style: whole model
    torch.manual_seed(0)
    save_checkpoint(
        paths["other_width"],
        AttentionUNet(UNetConfig(base_width=2, depth=3)),
        DenoiseSettings(working_size=128),
    )
    payload = torch.load(paths["other_width"], weights_only=True)
    payload["architecture"] = {"base_width": 4, "depth": 5}  # declares another architecture
    torch.save(payload, paths["other_width"])
    torch.save({"format": FORMAT, "architecture": {"base_width": 4}}, paths["no_weights"])
    torch.save(
        {"format": FORMAT, "architecture": {"base_width": 2**14, "depth": 9}, "state_dict": {}},
        paths["absurd_architecture"],
    )
    return paths


def test_bad_unet_checkpoints_are_one_line(tmp_path, capsys):
    mic = _write_mrc(tmp_path / "mic.mrc", _simulated((128, 144), 0))
    for name, path in _bad_unet_checkpoints(tmp_path).items():
        code, text = _cli(capsys, str(mic), "-o", str(tmp_path / "out"), "--model", str(path))
        assert code == 1, name
        _assert_clean_error(text, str(path))
    code, text = _cli(
        capsys, str(mic), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "nope.pt")
    )
    _assert_clean_error(text, "nope.pt", "not found")
    assert not list((tmp_path / "out").glob("*.star")) if (tmp_path / "out").exists() else True


def test_debug_shows_the_traceback(tmp_path):
    mic = _write_mrc(tmp_path / "mic.mrc", _simulated((128, 144), 0))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        main(["pick", str(mic), "-o", str(tmp_path / "out"), "--model", str(bad), "--debug"])


def test_unexpected_error_is_one_line_without_debug(tmp_path, capsys, tiny_model, monkeypatch):
    """Even an error nobody foresaw (here: a bug in the picker) prints one line, exit 1."""
    from cryosegnet.picking.job import PickerSpec

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody foresaw\nsecond line")

    monkeypatch.setattr(PickerSpec, "build", broken)
    mic = _write_mrc(tmp_path / "mic.mrc", _simulated((128, 144), 0))
    code, text = _cli(capsys, str(mic), "-o", str(tmp_path / "out"), "--model", str(tiny_model))
    assert code == 1
    line = _assert_clean_error(text, "RuntimeError", "something nobody foresaw", "--debug")
    assert "second line" not in line


def _tiny_sam_state() -> dict[str, torch.Tensor]:
    from sam_helpers import tiny_sam

    return tiny_sam().state_dict()


def test_sam_checkpoint_not_matching_model_type(tmp_path, capsys, tiny_model):
    pytest.importorskip("cryosegnet.masks.sam")
    mic = _write_mrc(tmp_path / "mic.mrc", _simulated((128, 144), 0))
    out = tmp_path / "out"
    common = [str(mic), "-o", str(out), "--model", str(tiny_model), "--stage", "sam"]

    tiny = tmp_path / "tiny_sam.pth"
    torch.save(_tiny_sam_state(), tiny)
    code, text = _cli(capsys, *common, "--sam-checkpoint", str(tiny), "--sam-model-type", "vit_b")
    assert code == 1
    _assert_clean_error(text, str(tiny), "--sam-model-type", "vit_b")

    # what a published vit_b file looks like to the checker (shapes only, no 375 MB download)
    fake_b = {"image_encoder.pos_embed": torch.zeros(1, 2, 2, 768, dtype=torch.float16)}
    fake_b.update({f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(12)})
    vit_b = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(fake_b, vit_b)
    code, text = _cli(capsys, *common, "--sam-checkpoint", str(vit_b))  # default: vit_h
    assert code == 1
    _assert_clean_error(text, str(vit_b), "vit_h", "use --sam-model-type vit_b")

    garbage = tmp_path / "sam garbage.pth"
    garbage.write_bytes(b"\x00" * 100)
    code, text = _cli(capsys, *common, "--sam-checkpoint", str(garbage))
    assert code == 1
    _assert_clean_error(text, str(garbage))
    code, text = _cli(capsys, *common, "--sam-checkpoint", str(tmp_path / "absent.pth"))
    assert code == 1
    _assert_clean_error(text, "absent.pth", "not found")
    assert not out.exists() or not list(out.rglob("*.star"))


# ------------------------------------------------------------------ a night's worth of trouble


def _mixed_session(folder: Path) -> tuple[list[Path], list[Path]]:
    """Good micrographs with awkward names/formats, and one of each kind of bad file."""
    folder.mkdir()
    good = [
        _write_mrc(folder / "mic 01 with spaces.mrc", _simulated((130, 171), 1)),
        folder / "Mikrograf_äöü_β 02.tif",
        folder / "顕微鏡_03.png",
        folder / "png_named_as.mrc",
    ]
    tifffile.imwrite(good[1], _to_uint16(_simulated((171, 130), 2)))  # 16-bit TIFF
    ok, buffer = cv2.imencode(".png", _to_uint16(_simulated((129, 161), 3)))  # 16-bit PNG, odd
    good[2].write_bytes(buffer.tobytes())
    ok, buffer = cv2.imencode(".png", _to_uint16(_simulated((128, 128), 4)))
    good[3].write_bytes(buffer.tobytes())  # wrong extension for the content
    bad = [
        folder / "truncated.mrc",
        _write_mrc(folder / "movie.mrcs", np.zeros((4, 80, 80), np.float32)),
        _write_mrc(folder / "tiny.mrc", _simulated((40, 40), 5)),
        folder / "all_nan.mrc",
        _write_mrc(folder / "flat.mrc", np.full((90, 90), 3.0, np.float32)),
        folder / "notes.tif",
    ]
    bad[0].write_bytes(good[0].read_bytes()[:3000])
    nan = np.full((90, 90), np.nan, np.float32)
    with mrcfile.new(bad[3]) as mrc, pytest.warns(RuntimeWarning, match="NaN"):
        mrc.set_data(nan)  # on purpose: mrcfile warns about it
    bad[5].write_text("II*\x00 but really a text file")
    return good, bad


def test_mixed_session_end_to_end(tmp_path, capsys, fast_model):
    good, bad = _mixed_session(tmp_path / "night ü")
    out = tmp_path / "picks é"
    args = [
        str(tmp_path / "night ü"),
        "-o",
        str(out),
        "--model",
        str(fast_model),
        "--threshold",
        "0",
        "--format",
        "star,csv,box",
    ]
    code, text = _cli(capsys, *args)
    assert code == 1, text
    assert "Traceback" not in text
    error_lines = [line for line in text.splitlines() if line.startswith("ERROR")]
    assert len(error_lines) == len(bad), text
    for path in bad:
        assert sum(str(path) in line for line in error_lines) == 1, (path, error_lines)
    assert f"FAILED: {len(bad)} micrograph(s)" in text
    assert f"micrographs picked: {len(good)}" in text
    for path in good:  # outputs named by stem, readable, coordinates inside the micrograph
        picks = read_coordinates(output_path(out, path))
        assert output_path(out, path, "csv").is_file() and output_path(out, path, "box").is_file()
        assert (picks[["x", "y"]].to_numpy() >= 0).all()
    for path in bad:
        assert not list(out.rglob(f"{path.stem}_*"))
    assert _hidden_or_temp(out) == []
    index = starfile.read(out / INDEX_STAR)
    assert sorted(index["rlnMicrographName"]) == sorted(str(p) for p in good)
    assert all(Path(c).is_file() for c in index["rlnMicrographCoordinates"])
    combined = starfile.read(out / COMBINED_STAR)
    assert set(combined["rlnMicrographName"]) <= {str(p) for p in good}

    code, text = _cli(capsys, *args)  # re-run: good ones skipped, bad ones still reported
    assert code == 1
    assert f"skipped, already done: {len(good)}" in text
    assert f"FAILED: {len(bad)} micrograph(s)" in text


# ------------------------------------------------------------------ determinism


def test_same_input_same_picks_on_cpu(tmp_path, capsys, tiny_model):
    from cryosegnet.picking.picker import Picker

    image = _simulated((160, 200), 7)
    first = Picker(model=tiny_model, device="cpu", threshold=0.0).pick(image)
    second = Picker(model=tiny_model, device="cpu", threshold=0.0).pick(image.copy())
    assert len(first) > 0
    pd.testing.assert_frame_equal(first, second, check_exact=True)

    mic = _write_mrc(tmp_path / "mic.mrc", image)
    tables = []
    for run in ("a", "b"):
        code, _ = _cli(
            capsys,
            str(mic),
            "-o",
            str(tmp_path / run),
            "--model",
            str(tiny_model),
            "--threshold",
            "0",
        )
        assert code == 0
        tables.append(starfile.read(output_path(tmp_path / run, mic)))
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)


# ------------------------------------------------------------------ interruption


def _default_sigint() -> None:
    # A child started from a non-interactive shell's background job inherits SIGINT ignored,
    # and Python then never raises KeyboardInterrupt; restore the default like a terminal does.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_keeps_finished_work_and_rerun_completes(
    tmp_path, capsys, fast_model, signum
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    mics = [_write_mrc(inputs / f"mic_{i}.mrc", _simulated((160, 200), 10 + i)) for i in range(6)]
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "cryosegnet.cli.main",
        "pick",
        str(inputs),
        "-o",
        str(out),
        "--model",
        str(fast_model),
        "--device",
        "cpu",
        "--format",
        "star,csv",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(out.rglob("mic_*.star")):
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "no output within 60 s"
            time.sleep(0.01)
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = output.decode()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "INTERRUPTED" in text
    assert _hidden_or_temp(out) == []
    finished = sorted(out.rglob("mic_*.star"))
    assert 1 <= len(finished) < len(mics), "the signal came too late to test an interruption"
    for star in finished:
        read_coordinates(star)
        assert star.with_suffix(".csv").is_file()
    assert sorted(p.stem for p in out.rglob("mic_*.csv")) == [p.stem for p in finished]
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.rglob("mic_*")}

    code, text = _cli(
        capsys, str(inputs), "-o", str(out), "--model", str(fast_model), "--format", "star,csv"
    )
    assert code == 0, text
    assert f"skipped, already done: {len(finished)}" in text
    assert f"micrographs picked: {len(mics) - len(finished)}" in text
    assert {
        n: t for n, t in ((p.name, p.stat().st_mtime_ns) for p in out.rglob("mic_*")) if n in mtimes
    } == mtimes
    assert sorted(p.stem for p in out.rglob("mic_*.star")) == [f"{m.stem}_autopick" for m in mics]
    assert len(starfile.read(out / INDEX_STAR)) == len(mics)
    assert _hidden_or_temp(out) == []
