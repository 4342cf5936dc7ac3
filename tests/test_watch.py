"""``pick --watch``: micrographs picked as they are written, once each, never half-written."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryosegnet.cli.main import main
from cryosegnet.io.coordinates import read_star_blocks
from cryosegnet.io.layout import INDEX_STAR
from cryosegnet.picking import batch as batch_module
from cryosegnet.picking import watch as watch_module
from cryosegnet.picking.picker import Picker
from cryosegnet.picking.watch import watch_folder

SETTLE = 0.6  # seconds; the writer pauses less than this between chunks
INTERVAL = 0.1


def _mrc_bytes(seed: int, shape=(128, 128)) -> bytes:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.mrc"
        with mrcfile.new(path) as mrc:
            mrc.set_data(rng.normal(size=shape).astype(np.float32))
        return path.read_bytes()


def _write(path: Path, data: bytes, chunks: int = 1, pause: float = 0.0) -> None:
    step = -(-len(data) // chunks)
    with open(path, "wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start : start + step])
            handle.flush()
            os.fsync(handle.fileno())
            if start + step < len(data):
                time.sleep(pause)


def _indexed(out: Path) -> list[str]:
    table = read_star_blocks(out / INDEX_STAR)["coordinate_files"]
    return sorted(Path(str(n)).name for n in table["rlnMicrographName"])


@pytest.fixture
def reads(monkeypatch):
    """Every micrograph read by the picker, with the file's size at that moment."""
    seen: list[tuple[str, int]] = []
    real = batch_module.read_micrograph

    def recording(path):
        seen.append((Path(path).name, os.path.getsize(path)))
        return real(path)

    monkeypatch.setattr(batch_module, "read_micrograph", recording)
    return seen


@pytest.fixture
def index_after_each_batch(monkeypatch):
    """The index files' entries right after every pick_batch call of the watch."""
    snapshots: list[tuple[list[str], list[str]]] = []
    real = watch_module.pick_batch

    def checking(picker, micrographs, outdir, **kwargs):
        summary = real(picker, micrographs, outdir, **kwargs)
        snapshots.append(([Path(p).name for p in micrographs], _indexed(Path(outdir))))
        return summary

    monkeypatch.setattr(watch_module, "pick_batch", checking)
    return snapshots


def test_watch_picks_each_micrograph_once_when_fully_written(
    tmp_path, tiny_model, reads, index_after_each_batch
):
    incoming, out = tmp_path / "incoming", tmp_path / "picks"
    incoming.mkdir()
    data = {name: _mrc_bytes(i) for i, name in enumerate(["a.mrc", "b.mrc", "c.mrc", "d.mrc"])}
    (incoming / "notes.txt").write_text("not a micrograph")

    def writer():
        _write(incoming / "a.mrc", data["a.mrc"])
        time.sleep(0.3)
        # Written in chunks, each pause shorter than the settle time: never stable early.
        _write(incoming / "b.mrc", data["b.mrc"], chunks=5, pause=SETTLE / 2)
        time.sleep(0.5)
        hidden = incoming / ".c.mrc.partial"  # a transfer tool's temp name, then renamed
        _write(hidden, data["c.mrc"])
        hidden.rename(incoming / "c.mrc")

    picker = Picker(model=tiny_model, device="cpu", stage="peaks")
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        summary = watch_folder(picker, incoming, out, settle=SETTLE, interval=INTERVAL, timeout=1.5)
    finally:
        thread.join()
    assert not summary.failures and not summary.interrupted
    assert sorted(Path(p).name for p in summary.picked) == ["a.mrc", "b.mrc", "c.mrc"]
    # Read once each, and only at full size: the chunked one was not read early.
    assert sorted(name for name, _ in reads) == ["a.mrc", "b.mrc", "c.mrc"]
    for name, size in reads:
        assert size == len(data[name]), name
    # The index listed everything picked so far after every micrograph.
    picked_so_far: list[str] = []
    for micrographs, indexed in index_after_each_batch:
        picked_so_far += micrographs
        assert indexed == sorted(picked_so_far)
    assert _indexed(out) == ["a.mrc", "b.mrc", "c.mrc"]

    # Stopped and started again with one more micrograph: only that one is picked.
    reads.clear()
    _write(incoming / "d.mrc", data["d.mrc"])
    again = watch_folder(picker, incoming, out, settle=SETTLE, interval=INTERVAL, timeout=0.5)
    assert [Path(p).name for p in again.picked] == ["d.mrc"]
    assert sorted(Path(p).name for p in again.skipped) == ["a.mrc", "b.mrc", "c.mrc"]
    assert [name for name, _ in reads] == ["d.mrc"]
    assert _indexed(out) == ["a.mrc", "b.mrc", "c.mrc", "d.mrc"]


def test_a_file_rewritten_after_picking_is_picked_again(tmp_path, tiny_model, reads):
    incoming = tmp_path / "in"
    incoming.mkdir()
    _write(incoming / "a.mrc", _mrc_bytes(1))
    old = time.time() - 60
    os.utime(incoming / "a.mrc", (old, old))
    picker = Picker(model=tiny_model, device="cpu", stage="peaks")

    def rewrite():
        time.sleep(SETTLE * 2.5)
        _write(incoming / "a.mrc", _mrc_bytes(2))

    thread = threading.Thread(target=rewrite)
    thread.start()
    try:
        summary = watch_folder(
            picker, incoming, tmp_path / "out", settle=SETTLE, interval=INTERVAL, timeout=1.5
        )
    finally:
        thread.join()
    assert [name for name, _ in reads] == ["a.mrc", "a.mrc"]
    assert not summary.failures


def test_pick_watch_command(tmp_path, tiny_model, capsys):
    incoming, out = tmp_path / "in", tmp_path / "out"
    incoming.mkdir()
    _write(incoming / "a.mrc", _mrc_bytes(3))
    code = main(
        [
            "pick",
            "--watch",
            str(incoming),
            "-o",
            str(out),
            "--model",
            str(tiny_model),
            "--device",
            "cpu",
            "--stage",
            "peaks",
            "--settle",
            "0.2",
            "--watch-interval",
            "0.1",
            "--watch-timeout",
            "0.5",
            "--format",
            "star,csv",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "micrographs picked: 1" in capsys.readouterr().err
    assert _indexed(out) == ["a.mrc"]
    assert list(out.rglob("a_autopick.csv"))


def test_pick_watch_refuses_bad_arguments(tmp_path, capsys):
    assert main(["pick", "--watch", str(tmp_path / "absent"), "-o", str(tmp_path / "o")]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert main(["pick", "x.mrc", "--watch", str(tmp_path), "-o", str(tmp_path / "o")]) == 1
    assert "one or the other" in capsys.readouterr().err
    assert (
        main(["pick", "--watch", str(tmp_path), "-o", str(tmp_path / "o"), "--settle", "nan"]) == 1
    )
    assert "--settle" in capsys.readouterr().err
    assert main(["pick", "-o", str(tmp_path / "o")]) == 1
    assert "no micrographs given" in capsys.readouterr().err


def test_sigterm_stops_the_watch_cleanly_and_a_restart_carries_on(tmp_path, tiny_model):
    import signal
    import subprocess
    import sys

    incoming, out = tmp_path / "in", tmp_path / "out"
    incoming.mkdir()
    _write(incoming / "a.mrc", _mrc_bytes(5))
    command = [
        sys.executable,
        "-m",
        "cryosegnet.cli.main",
        "pick",
        "--watch",
        str(incoming),
        "-o",
        str(out),
        "--model",
        str(tiny_model),
        "--device",
        "cpu",
        "--stage",
        "peaks",
        "--settle",
        "0.2",
        "--watch-interval",
        "0.1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [*command, "--watch-timeout", "600"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / INDEX_STAR).is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (out / INDEX_STAR).is_file()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err[-2000:]
    assert "INTERRUPTED" in err
    assert not [p for p in out.rglob(".*") if p.name.endswith("tmp")]
    _write(incoming / "b.mrc", _mrc_bytes(6))
    done = subprocess.run(
        [*command, "--watch-timeout", "0.5"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "micrographs picked: 1  (skipped, already done: 1)" in done.stderr
    assert _indexed(out) == ["a.mrc", "b.mrc"]


def test_a_restart_with_an_angstrom_diameter_skips_in_one_call(
    tmp_path, tiny_model, index_after_each_batch
):
    from cryosegnet.picking.units import PixelSizes

    incoming, out = tmp_path / "in", tmp_path / "out"
    incoming.mkdir()
    for i, name in enumerate(["a.mrc", "b.mrc"]):
        _write(incoming / name, _mrc_bytes(10 + i))
        old = time.time() - 60
        os.utime(incoming / name, (old, old))
    picker = Picker(model=tiny_model, device="cpu", stage="peaks")
    options = dict(
        settle=0.2,
        interval=INTERVAL,
        timeout=0.3,
        diameter_angstrom=40.0,
        pixel_sizes=PixelSizes(given=2.0),
    )
    first = watch_folder(picker, incoming, out, **options)
    assert sorted(Path(p).name for p in first.picked) == ["a.mrc", "b.mrc"]
    index_after_each_batch.clear()
    again = watch_folder(picker, incoming, out, **options)
    assert again.picked == [] and len(again.skipped) == 2
    assert len(index_after_each_batch) == 1  # one index rebuild for the whole backlog
