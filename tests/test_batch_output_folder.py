"""The output folder over re-runs and concurrent runs: where each result goes (as RELION lays
out its jobs), the manifests that decide what is picked again, the index of every result, and
files that are not ours (foreign index files, stale temp files, a 0.1 index)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
from batch_helpers import StubPicker
from batch_helpers import index_of as _index
from batch_helpers import run_batch as _run
from batch_helpers import small_mrc as _mrc

from cryosegnet.cli.main import main
from cryosegnet.errors import CryoSegNetError
from cryosegnet.evaluation.pairing import coordinate_files, load_coordinate_sets
from cryosegnet.io.coordinates import (
    read_coordinates,
    read_star_blocks,
)
from cryosegnet.io.layout import (
    COMBINED_STAR,
    INDEX_STAR,
    LOCK_FILE,
    RUN_LOCK_FILE,
    output_path,
    relative_folder,
)
from cryosegnet.picking import results as results_module


def test_layout_mirrors_relative_folders_like_relion(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert relative_folder("Movies/a.mrc") == Path("Movies")
    assert relative_folder("MotionCorr/job002/Movies/a.mrc") == Path("Movies")  # as RELION
    assert relative_folder("p/deep/job005/sub/a.mrc") == Path("sub")  # first jobNNN anywhere
    assert relative_folder("job002/Movies/a.mrc") == Path("job002/Movies")  # not a job prefix
    assert relative_folder("a.mrc") == Path(".")
    assert relative_folder(tmp_path / "x" / "a.mrc") == Path("x")  # absolute inside cwd
    assert relative_folder("/elsewhere/s1/a.mrc") == Path("elsewhere/s1")
    assert relative_folder("../up/a.mrc") == Path(*(tmp_path.parent / "up").parts[1:])
    assert output_path("out", "Movies/a.mrc") == Path("out/Movies/a_autopick.star")
    assert output_path("out", "Movies/a.mrc", "box") == Path("out/Movies/a_autopick.box")


def test_micrographs_named_like_the_index_files_cannot_overwrite_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mics = [_mrc(Path("mics/autopick.mrc")), _mrc(Path("mics/particles.mrc"), -1)]
    for _ in range(3):  # re-runs: the combined STAR does not grow
        summary = _run(StubPicker(), mics, "out")
        assert summary.failures == {}
    index = _index(Path("out"))
    assert sorted(index["rlnMicrographName"]) == ["mics/autopick.mrc", "mics/particles.mrc"]
    assert len(read_coordinates(Path("out") / COMBINED_STAR)) == 4
    assert Path("out/mics/autopick_autopick.star").is_file()


def test_same_stem_in_two_folders_are_both_picked(tmp_path, monkeypatch):
    """Item 1: resume matched on the stem only, so b/mic was never picked."""
    monkeypatch.chdir(tmp_path)
    a, b = _mrc(Path("a/mic.mrc"), 1), _mrc(Path("b/mic.mrc"), -1)
    first = _run(StubPicker(), [a], "out")
    assert first.failures == {}
    second = _run(StubPicker(), [a, b], "out")
    assert second.skipped == ["a/mic.mrc"] and second.failures == {}
    index = _index(Path("out"))
    assert sorted(index["rlnMicrographName"]) == ["a/mic.mrc", "b/mic.mrc"]
    xa = read_coordinates(Path("out/a/mic_autopick.star"))["x"]
    xb = read_coordinates(Path("out/b/mic_autopick.star"))["x"]
    assert not np.allclose(xa, xb)  # b's own picks, not a copy of a's


def test_changed_micrograph_file_is_picked_again(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    mic = _mrc(Path("m/mic.mrc"), 1)
    _run(StubPicker(), [mic], "out")
    _mrc(mic, -1)  # another image under the same name
    os.utime(mic, ns=(1, 1))
    caplog.set_level("INFO", logger="cryosegnet")
    again = _run(StubPicker(), [mic], "out")
    assert again.skipped == [] and len(again.done) == 1
    assert "micrograph file has changed" in caplog.text


def test_changed_options_repick_and_extra_formats_come_from_existing_picks(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.chdir(tmp_path)
    mic = _mrc(Path("m/mic.mrc"))
    _run(StubPicker(threshold=0.5), [mic], "out")
    picker = StubPicker(threshold=0.5)
    caplog.set_level("INFO", logger="cryosegnet")
    more = _run(picker, [mic], "out", formats=("star", "box", "csv"))
    assert picker.calls == 0 and more.skipped == ["m/mic.mrc"]  # no re-pick
    assert len(read_coordinates(Path("out/m/mic_autopick.box"))) == 2
    assert len(read_coordinates(Path("out/m/mic_autopick.csv"))) == 2
    picker = StubPicker(threshold=0.7)
    changed = _run(picker, [mic], "out")
    assert picker.calls == 1 and changed.skipped == []
    assert "other options: threshold" in caplog.text


@pytest.mark.parametrize("option", ["--threshold", "--diameter"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_and_inf_options_are_refused_before_anything_runs(tmp_path, capsys, option, value):
    mic = _mrc(tmp_path / "mic.mrc")
    out = tmp_path / "out"
    code = main(
        [
            "pick",
            str(mic),
            "-o",
            str(out),
            "--model",
            str(tmp_path / "absent.pt"),
            f"{option}={value}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and option in err and "finite" in err
    assert not out.exists()


def test_index_lists_every_result_in_the_folder(tmp_path, monkeypatch):
    """Item 3: the second run used to drop the first run's micrographs from the index."""
    monkeypatch.chdir(tmp_path)
    k1, k2 = _mrc(Path("k/k01.mrc")), _mrc(Path("k/k02.mrc"), -1)
    _run(StubPicker(), [k1], "out")
    _run(StubPicker(), [k2], "out")
    assert sorted(_index(Path("out"))["rlnMicrographName"]) == ["k/k01.mrc", "k/k02.mrc"]
    assert len(read_coordinates(Path("out") / COMBINED_STAR)) == 4


def test_concurrent_runs_into_one_folder_keep_every_entry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mics = [_mrc(Path(f"c/m{i:02d}.mrc"), (-1) ** i) for i in range(8)]
    real = results_module.write_star_texts
    inside = threading.Event()

    def slow_index(*args, **kwargs):  # hold the lock long enough for the other run to queue
        inside.set()
        threading.Event().wait(0.2)
        return real(*args, **kwargs)

    monkeypatch.setattr(results_module, "write_star_texts", slow_index)
    errors = []

    def run(part):
        try:
            _run(StubPicker(), part, "out")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(mics[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(_index(Path("out"))["rlnMicrographName"]) == [str(m) for m in mics]


def test_concurrent_processes_into_one_folder_keep_every_entry(tmp_path):
    """Two ``cryosegnet pick`` processes on disjoint micrographs, one output folder, at once."""
    from cryosegnet.io.coordinates import read_own_star, star_header
    from cryosegnet.simulation import SimulationConfig, simulate_micrograph

    runs: dict[str, list[str]] = {"a": [], "b": []}
    for i in range(8):
        run = "ab"[i % 2]
        sim = simulate_micrograph(SimulationConfig(size=256, difficulty="easy"), rng=i)
        path = Path("sim") / f"{run}_{i:02d}.mrc"
        (tmp_path / path.parent).mkdir(exist_ok=True)
        with mrcfile.new(tmp_path / path) as mrc:
            mrc.set_data(sim.image.astype(np.float32))
        runs[run].append(str(path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    exe = [sys.executable, "-m", "cryosegnet.cli.main", "pick"]
    options = ["-o", "out", "--stage", "log", "--diameter", "20", "--device", "cpu"]
    processes = [
        subprocess.Popen(
            [*exe, *mics, *options, "--no-progress"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mics in runs.values()
    ]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
    out = tmp_path / "out"
    every = sorted(runs["a"] + runs["b"])
    index = _index(out)
    assert sorted(index["rlnMicrographName"]) == every
    n_picks = 0
    for name, coordinates in zip(
        index["rlnMicrographName"], index["rlnMicrographCoordinates"], strict=True
    ):
        star = tmp_path / coordinates
        assert star == tmp_path / output_path("out", name)
        blocks = read_own_star(star)  # complete and readable (end mark, our header)
        table = next(b for b in blocks.values() if isinstance(b, pd.DataFrame))
        _, manifest = star_header(star)
        assert manifest["source"]["name"] == name and manifest["n_picks"] == len(table)
        n_picks += len(table)
    particles = read_star_blocks(out / COMBINED_STAR)["particles"]
    assert len(particles) == n_picks > 0
    picked = [n for n in every if len(read_coordinates(tmp_path / output_path("out", n)))]
    assert sorted(set(particles["rlnMicrographName"])) == picked
    locks = (LOCK_FILE, RUN_LOCK_FILE)
    assert not [p for p in out.rglob(".*") if p.name not in locks]  # no temp file left


def test_foreign_index_files_are_never_overwritten(tmp_path):
    mic = _mrc(tmp_path / "mic.mrc")
    out = tmp_path / "out"
    out.mkdir()
    relion = "# version 30001\n\ndata_particles\n\nloop_\n_rlnCoordinateX #1\n1.0\n"
    (out / COMBINED_STAR).write_text(relion)
    with pytest.raises(CryoSegNetError, match="not written by cryosegnet"):
        _run(StubPicker(), [mic], out)
    assert (out / COMBINED_STAR).read_text() == relion


def test_empty_output_name_is_an_error(tmp_path, capsys):
    mic = _mrc(tmp_path / "mic.mrc")
    with pytest.raises(CryoSegNetError, match="empty"):
        _run(StubPicker(), [mic], "")
    assert main(["pick", str(mic), "-o", ""]) == 1
    assert "empty" in capsys.readouterr().err


def test_stale_temp_files_are_cleaned_and_ignored_by_evaluate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mics = [_mrc(Path("m/a.mrc")), _mrc(Path("m/b.mrc"), -1)]
    _run(StubPicker(), mics, "out")
    stale = Path("out/m/.b_autopick.star.k2x9.cryosegnet-tmp")
    stale.write_text("data_\nloop_\n_rlnCoordinateX #1\n1\n")
    assert not any(p.name.startswith(".b_") for p in coordinate_files("out"))
    sets = load_coordinate_sets("out")
    assert sorted(sets) == ["a", "b"]
    _run(StubPicker(), mics, "out")
    assert not stale.exists()


def test_index_files_of_cryosegnet_0_1_are_rewritten_on_upgrade(tmp_path):
    mic = _mrc(tmp_path / "mic.mrc")
    out = tmp_path / "out"
    out.mkdir()
    old = pd.DataFrame(
        {
            "rlnMicrographName": ["a.mrc"],
            "rlnCoordinateX": [1.0],
            "rlnCoordinateY": [2.0],
            "rlnAutopickFigureOfMerit": [0.5],
        }
    )
    starfile.write({"particles": old}, out / COMBINED_STAR)
    starfile.write(
        {
            "coordinate_files": pd.DataFrame(
                {"rlnMicrographName": ["a.mrc"], "rlnMicrographCoordinates": ["out/a.star"]}
            )
        },
        out / INDEX_STAR,
    )
    summary = _run(StubPicker(), [mic], out)
    assert summary.failures == {} and summary.index_entries == 1
    relion_like = old.assign(rlnImageName=["1@x.mrcs"])
    starfile.write({"particles": relion_like}, out / COMBINED_STAR, overwrite=True)
    with pytest.raises(CryoSegNetError, match="not written by cryosegnet"):
        _run(StubPicker(), [mic], out)
