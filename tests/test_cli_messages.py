"""One clear line for each problem a user meets (a shell-expanded glob, an MRC mode, NaN
label coordinates, an unusable device, an unreadable map), progress lines in a log, and
RELION extracting our picks as they are written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from batch_helpers import StubPicker
from batch_helpers import run_batch as _run
from batch_helpers import small_mrc as _mrc

from cryosegnet.cli.main import main
from cryosegnet.errors import CryoSegNetError
from cryosegnet.io.coordinates import read_coordinates
from cryosegnet.io.micrographs import read_micrograph


def test_evaluate_refuses_a_shell_expanded_glob(tmp_path, capsys):
    labels = tmp_path / "labels"
    labels.mkdir()
    for i in range(3):
        pd.DataFrame({"X-Coordinate": [10], "Y-Coordinate": [10], "Diameter": [20]}).to_csv(
            labels / f"sim_{i}.csv", index=False
        )
    picks = tmp_path / "picks"
    picks.mkdir()
    expanded = [str(labels / f"sim_{i}.csv") for i in range(3)]
    code = main(["evaluate", str(picks), *expanded])
    assert code == 1
    assert "unquoted glob" in capsys.readouterr().err


def test_progress_lines_when_not_on_a_terminal(tmp_path, caplog):
    mics = [_mrc(tmp_path / "a.mrc"), _mrc(tmp_path / "b.mrc", -1)]
    caplog.set_level("INFO", logger="cryosegnet")
    _run(StubPicker(), mics, tmp_path / "out")
    assert "[1/2]" in caplog.text and "[2/2]" in caplog.text


@pytest.mark.skipif(shutil.which("relion_preprocess") is None, reason="RELION is not installed")
def test_relion_extracts_our_picks(tmp_path, monkeypatch):
    """RELION 3.1's own extraction (--coord_dir) finds every pick in our layout."""
    monkeypatch.chdir(tmp_path)
    mics = [
        _mrc(Path("MotionCorr/job002/Movies/m1.mrc"), shape=(256, 256)),
        _mrc(Path("mics/sub/m 2.mrc"), -1, shape=(256, 256)),
    ]
    mics[1] = mics[1].rename("mics/sub/m2.mrc")
    picker = StubPicker(n_picks=5)
    assert _run(picker, mics, "picks").failures == {}
    Path("mics.star").write_text(
        "data_optics\n\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n"
        "_rlnMicrographPixelSize #3\n_rlnVoltage #4\n_rlnSphericalAberration #5\n"
        "_rlnAmplitudeContrast #6\nopticsGroup1 1 1.0 300 2.7 0.1\n\n"
        "data_micrographs\n\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n"
        + "".join(f"{m} 1\n" for m in mics)
    )
    done = subprocess.run(
        [
            "relion_preprocess",
            "--i",
            "mics.star",
            "--coord_dir",
            "picks/",
            "--coord_suffix",
            "_autopick.star",
            "--extract",
            "--extract_size",
            "32",
            "--part_star",
            "Extract/particles.star",
            "--part_dir",
            "Extract/",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    particles = starfile.read("Extract/particles.star", always_dict=True)["particles"]
    assert len(particles) == 10
    assert sorted(set(particles["rlnMicrographName"])) == sorted(str(m) for m in mics)


def test_mrc_mode_and_compression_messages(tmp_path):
    import gzip

    path = _mrc(tmp_path / "mic.mrc", shape=(96, 128))
    head = bytearray(path.read_bytes())
    unknown = tmp_path / "mode5.mrc"
    unknown.write_bytes(bytes(head[:12]) + np.int32(5).tobytes() + bytes(head[16:]))
    with pytest.raises(CryoSegNetError, match="mode 5 is not supported"):
        read_micrograph(unknown)
    four_bit = tmp_path / "mode101.mrc"
    four_bit.write_bytes(
        bytes(head[:12]) + np.int32(101).tobytes() + bytes(head[16:1024]) + bytes(64 * 96)
    )
    with pytest.raises(CryoSegNetError, match="mode 101 .*not supported"):
        read_micrograph(four_bit)
    packed = tmp_path / "packed.mrc"
    packed.write_bytes(gzip.compress(bytes(head)))
    with pytest.raises(CryoSegNetError, match="gzip"):
        read_micrograph(packed)


def test_nan_label_coordinates_name_the_file(tmp_path):
    labels = tmp_path / "mic.csv"
    labels.write_text("X-Coordinate,Y-Coordinate,Diameter\n10,10,20\n,12,20\n")
    with pytest.raises(CryoSegNetError) as info:
        read_coordinates(labels)
    assert str(labels) in str(info.value) and "row 2" in str(info.value)


@pytest.mark.parametrize("device", ["foo", "cuda:99"])
def test_unusable_device_is_one_line_before_the_model_loads(tmp_path, capsys, device):
    mic = _mrc(tmp_path / "mic.mrc")
    code = main(
        [
            "pick",
            str(mic),
            "-o",
            str(tmp_path / "o"),
            "--device",
            device,
            "--model",
            str(tmp_path / "absent.pt"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and f"--device {device}" in err and "absent.pt" not in err


def test_simulate_with_an_unreadable_map_names_it_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "notamap.mrc"
    bad.write_text("hello")
    code = main(
        ["simulate", "-n", "1", "--size", "128", "-o", str(tmp_path / "s"), "-q", "--map", str(bad)]
    )
    assert code == 1 and str(bad) in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_simulate_writes_progress_lines_into_a_log(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryosegnet.cli.main",
            "simulate",
            "-n",
            "2",
            "--size",
            "128",
            "-o",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "[1/2] sim_00000" in done.stderr and "[2/2] sim_00001" in done.stderr
    assert "\r" not in done.stderr  # no progress bar redrawn into the log
