"""Training and fine-tuning refuse labels that cannot teach anything: none inside their
micrographs is an error naming the files, some outside is a note; progress bars go to a
terminal only."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryosegnet.cli.main import main
from cryosegnet.preprocessing.denoise import DenoiseSettings
from cryosegnet.training.data import assemble_training_data


def _micrograph(path: Path, seed: int, size: int = 256) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(rng.normal(size=(size, size)).astype(np.float32))
    return path


def _labels(path: Path, xy: list[tuple[float, float]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(f"{x},{y},20" for x, y in xy)
    path.write_text(f"X-Coordinate,Y-Coordinate,Diameter\n{rows}\n")
    return path


def test_finetune_refuses_labels_that_all_lie_outside_their_micrographs(tmp_path, capsys):
    for i in range(3):
        _micrograph(tmp_path / "mics" / f"m{i}.mrc", i)
        # Coordinates of an unbinned micrograph (4x larger) given for the binned one.
        _labels(tmp_path / "labels" / f"m{i}.csv", [(900.0 + 10 * k, 1000.0) for k in range(5)])
    run = tmp_path / "run"
    code = main(
        ["finetune", "--images", str(tmp_path / "mics"), "--labels", str(tmp_path / "labels")]
        + ["-o", str(run), "--epochs", "1"]
    )
    err = capsys.readouterr().err
    assert code != 0
    errors = [line for line in err.splitlines() if "outside" in line]
    assert len(errors) == 1 and "m0" in errors[0] and "15" in errors[0], err
    assert not (run / "best.pt").exists()


def test_labels_partly_outside_their_micrograph_are_a_note(tmp_path):
    mic = _micrograph(tmp_path / "mics" / "m0.mrc", 0)
    _labels(tmp_path / "labels" / "m0.csv", [(50.0, 50.0), (120.0, 200.0), (900.0, 40.0)])
    notes: list[str] = []
    data = assemble_training_data(
        DenoiseSettings(working_size=128),
        images=[str(mic)],
        labels=[str(tmp_path / "labels")],
        val_fraction=0.0,
        note=notes.append,
    )
    assert len(data.train) == 1
    outside = [n for n in notes if "outside" in n]
    assert len(outside) == 1 and "1 of 3" in outside[0] and "m0" in outside[0]


def test_labels_inside_their_micrograph_give_no_note(tmp_path):
    mic = _micrograph(tmp_path / "mics" / "m0.mrc", 0)
    _labels(tmp_path / "labels" / "m0.csv", [(50.0, 50.0), (120.0, 200.0)])
    notes: list[str] = []
    assemble_training_data(
        DenoiseSettings(working_size=128),
        images=[str(mic)],
        labels=[str(tmp_path / "labels")],
        val_fraction=0.0,
        note=notes.append,
    )
    assert not [n for n in notes if "outside" in n]


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_finetune_draws_no_progress_bars_into_a_log(tmp_path, capsys, tiny_model, monkeypatch):
    """Under a batch system stderr is a file: no bars (denoising, epochs) are drawn into it."""
    from cryosegnet.training import job as job_module

    seen = {}

    def no_training(job, prepared, metadata, log_fn):
        seen["progress"] = prepared.config.progress  # whether the epochs would draw a bar
        raise ValueError("stop here: the test needs no training")

    monkeypatch.setattr(job_module, "fit", no_training)
    for i in range(2):
        _micrograph(tmp_path / "mics" / f"m{i}.mrc", i)
        _labels(tmp_path / "labels" / f"m{i}.csv", [(40.0 + 30 * k, 60.0) for k in range(5)])
    argv = ["finetune", "--images", str(tmp_path / "mics"), "--labels", str(tmp_path / "labels")]
    main([*argv, "-o", str(tmp_path / "run"), "--model", str(tiny_model), "--epochs", "1"])
    captured = capsys.readouterr()
    assert "stop here" in captured.err  # it got as far as training
    log = captured.out + captured.err
    assert "\r" not in log and "mic/s" not in log, log[-2000:]  # no denoising bar
    assert seen["progress"] is False
