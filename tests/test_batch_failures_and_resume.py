"""Batch robustness: bad micrographs, failing writes and interruptions lose no work.

These drive :func:`pick_batch` with a stub picker (no U-Net), so they test the orchestration
alone and run in milliseconds; the real pipeline is exercised in test_cli_pick_bad_input.py.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile

from cryosegnet.errors import CryoSegNetError
from cryosegnet.io import atomic
from cryosegnet.io.atomic import atomic_path, atomic_write
from cryosegnet.io.coordinates import make_picks, read_coordinates, read_star_blocks
from cryosegnet.io.layout import COMBINED_STAR, INDEX_STAR, LOCK_FILE, RUN_LOCK_FILE, output_path
from cryosegnet.picking import batch as batch_module
from cryosegnet.picking import results as results_module
from cryosegnet.picking.batch import pick_batch
from cryosegnet.picking.picker import PickResult


class StubPicker:
    """Stands in for :class:`Picker`: fixed picks, and hooks to fail or interrupt on call n."""

    def __init__(self, on_call: dict[int, object] | None = None) -> None:
        self.calls = 0
        self.on_call = on_call or {}

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        return image[::2, ::2].astype(np.uint8)

    def pick_denoised(self, denoised, original_shapes) -> list[PickResult]:
        self.calls += 1
        action = self.on_call.get(self.calls)
        if isinstance(action, BaseException):
            raise action
        if callable(action):
            action()
        return [
            PickResult(
                picks=make_picks([10.25, 50.5], [20.0, 30.75], [0.9, 0.8], 40.0),
                diameter=40.0,
                working_shape=d.shape,
                original_shape=tuple(s),
                stage="stub",
            )
            for d, s in zip(denoised, original_shapes, strict=True)
        ]


def _micrographs(folder: Path, n: int, names: list[str] | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for name in names or [f"mic_{i:02d}.mrc" for i in range(n)]:
        path = folder / name
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(rng.normal(size=(128, 160)).astype(np.float32))
        paths.append(path)
    return paths


LOCKS = (LOCK_FILE, RUN_LOCK_FILE)


def _hidden_or_temp(folder: Path) -> list[str]:
    return sorted(
        p.name
        for p in folder.rglob("*")
        if p.name not in LOCKS and (p.name.startswith(".") or ".tmp" in p.name)
    )


def _out(out: Path, mic: Path, fmt: str = "star") -> Path:
    return output_path(out, mic, fmt)


def _failing_write(monkeypatch, name_start: str, exc: BaseException) -> dict:
    """Make the atomic write of files named ``name_start...`` write half, then raise ``exc``."""
    from cryosegnet.io import coordinates

    real = coordinates.atomic_write
    calls = {"n": 0}

    @contextlib.contextmanager
    def flaky(path, *args, **kwargs):
        with real(path, *args, **kwargs) as handle:
            if Path(path).name.startswith(name_start):
                calls["n"] += 1
                handle.write("data_\nloop_\n_rlnCoordinateX #1\n12.")  # half-written
                raise exc
            yield handle

    monkeypatch.setattr(coordinates, "atomic_write", flaky)
    return calls


def _run(picker, mics, out, **kwargs):
    return pick_batch(picker, mics, out, progress=False, **kwargs)


def read_coordinates_index(path: Path):
    return read_star_blocks(path)["coordinate_files"]


def test_bad_micrographs_are_listed_and_the_batch_continues(tmp_path, capsys):
    mics = _micrographs(tmp_path / "in", 3)
    truncated = tmp_path / "in" / "truncated.mrc"
    truncated.write_bytes(mics[0].read_bytes()[:1500])
    stack = tmp_path / "in" / "stack.mrcs"
    with mrcfile.new(stack) as mrc:
        mrc.set_data(np.zeros((3, 80, 80), np.float32))
    text = tmp_path / "in" / "notes.png"
    text.write_text("not an image")
    order = [mics[0], truncated, mics[1], stack, text, mics[2]]
    summary = _run(StubPicker(), order, tmp_path / "out")
    assert set(summary.failures) == {str(truncated), str(stack), str(text)}
    assert len(summary.done) == 3 and not summary.interrupted
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("ERROR")]
    assert len(error_lines) == 3 and "Traceback" not in err
    for path in (truncated, stack, text):
        assert sum(str(path) in line for line in error_lines) == 1
    text_summary = summary.text()
    assert "FAILED: 3 micrograph(s)" in text_summary
    assert all(str(p) in text_summary for p in (truncated, stack, text))
    index = starfile.read(tmp_path / "out" / INDEX_STAR)
    assert sorted(index["rlnMicrographName"]) == sorted(str(p) for p in mics)


def test_write_failure_mid_run_is_one_failure_and_leaves_nothing_partial(tmp_path, monkeypatch):
    """Disk full (ENOSPC) while writing the 2nd micrograph's STAR: it fails, others are intact."""
    mics = _micrographs(tmp_path / "in", 3)
    out = tmp_path / "out"
    calls = _failing_write(
        monkeypatch, "mic_01_autopick.star", OSError(errno.ENOSPC, "No space left on device")
    )
    summary = _run(StubPicker(), mics, out, formats=("star", "csv", "box"))
    assert calls["n"] == 1
    assert list(summary.failures) == [str(mics[1])]
    reason = summary.failures[str(mics[1])]
    assert "mic_01" in reason and "No space left on device" in reason and "\n" not in reason
    assert _hidden_or_temp(out) == []
    # the failed micrograph has no output at all (no orphan CSV/box without its STAR)
    assert sorted(p.name for p in out.rglob("mic_01*")) == []
    for mic in (mics[0], mics[2]):
        picks = read_coordinates(_out(out, mic))
        np.testing.assert_allclose(picks["x"], [10.25, 50.5])
        assert len(read_coordinates(_out(out, mic, "csv"))) == 2
        assert len(read_coordinates(_out(out, mic, "box"))) == 2
    index = starfile.read(out / INDEX_STAR)
    assert list(index["rlnMicrographName"]) == [str(mics[0]), str(mics[2])]
    # the disk has space again: a re-run does only the failed micrograph
    monkeypatch.undo()
    again = _run(StubPicker(), mics, out, formats=("star", "csv", "box"))
    assert again.failures == {} and sorted(again.skipped) == [str(mics[0]), str(mics[2])]
    assert _out(out, mics[1]).is_file()


def test_unexpected_write_error_is_also_one_failure(tmp_path, monkeypatch):
    mics = _micrographs(tmp_path / "in", 2)

    def broken(*args, **kwargs):
        raise ValueError("cannot format value")

    monkeypatch.setattr(results_module, "write_cryoppp_csv", broken)
    summary = _run(StubPicker(), mics, tmp_path / "out", formats=("star", "csv"))
    assert set(summary.failures) == {str(m) for m in mics}
    assert "cannot format value" in summary.failures[str(mics[0])]


def test_output_path_is_an_existing_file(tmp_path):
    mics = _micrographs(tmp_path / "in", 1)
    blocker = tmp_path / "out"
    blocker.write_text("I am a file")
    with pytest.raises(CryoSegNetError) as info:
        _run(StubPicker(), mics, blocker)
    assert str(blocker) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CryoSegNetError, match="cannot create the output folder"):
        _run(StubPicker(), mics, blocker / "sub")


def test_output_folder_not_writable(tmp_path, monkeypatch):
    mics = _micrographs(tmp_path / "in", 1)
    out = tmp_path / "out"
    out.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits: simulate what access() would say
        real_access = os.access
        monkeypatch.setattr(
            batch_module.os,
            "access",
            lambda p, mode, **kw: False if Path(p) == out else real_access(p, mode, **kw),
        )
    else:
        out.chmod(0o500)
    try:
        with pytest.raises(CryoSegNetError, match="not writable"):
            _run(StubPicker(), mics, out)
    finally:
        out.chmod(0o700)


def _interrupt_on_third_call(kind: str):
    if kind == "sigint":
        return {3: KeyboardInterrupt()}
    return {3: lambda: os.kill(os.getpid(), signal.SIGTERM)}


@pytest.mark.parametrize("kind", ["sigint", "sigterm"])
def test_interrupt_keeps_finished_work_and_rerun_completes(tmp_path, kind):
    """Ctrl-C or SIGTERM while the U-Net runs: a stop, not a per-micrograph failure."""
    mics = _micrographs(tmp_path / "in", 6)
    out = tmp_path / "out"
    previous = signal.getsignal(signal.SIGTERM)
    summary = _run(StubPicker(_interrupt_on_third_call(kind)), mics, out, formats=("star", "csv"))
    assert signal.getsignal(signal.SIGTERM) == previous
    assert summary.interrupted
    assert summary.failures == {}
    assert sorted(summary.done) == [str(m) for m in mics[:2]]
    assert "INTERRUPTED" in summary.text()
    assert _hidden_or_temp(out) == []
    assert sorted(p.name for p in out.rglob("mic_*.star")) == [
        "mic_00_autopick.star",
        "mic_01_autopick.star",
    ]
    assert len(starfile.read(out / COMBINED_STAR)) == 4  # the index files cover finished work
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.rglob("mic_*")}
    rerun = _run(StubPicker(), mics, out, formats=("star", "csv"))
    assert not rerun.interrupted and rerun.failures == {}
    assert sorted(rerun.skipped) == [str(m) for m in mics[:2]]
    assert len(rerun.done) == 6
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("mic_0[01]_*")} == mtimes
    assert len(starfile.read(out / INDEX_STAR)) == 6


def test_interrupt_during_a_write_leaves_no_partial_file(tmp_path, monkeypatch):
    mics = _micrographs(tmp_path / "in", 3)
    out = tmp_path / "out"
    _failing_write(monkeypatch, "mic_01_autopick.star", KeyboardInterrupt())
    summary = _run(StubPicker(), mics, out, formats=("star", "csv"))
    assert summary.interrupted and list(summary.done) == [str(mics[0])]
    assert _hidden_or_temp(out) == []
    assert not _out(out, mics[1]).exists()
    assert read_coordinates(_out(out, mics[0])).shape[0] == 2


def test_overwrite_repicks_and_skips_unreadable_previous_output(tmp_path):
    mics = _micrographs(tmp_path / "in", 2)
    out = tmp_path / "out"
    _run(StubPicker(), mics, out)
    star = _out(out, mics[0])
    star.write_text(star.read_text()[:-60])  # ours, but cut short
    again = _run(StubPicker(), mics, out)
    assert again.skipped == [str(mics[1])]  # the incomplete previous output is redone
    assert len(read_coordinates(star)) == 2
    forced = _run(StubPicker(), mics, out, overwrite=True)
    assert forced.skipped == [] and len(forced.done) == 2


def test_names_with_spaces_and_non_ascii(tmp_path):
    names = ["mic 01 with spaces.mrc", "Mikrograf_äöü_β.mrc", "顕微鏡 03.mrc"]
    mics = _micrographs(tmp_path / "in put é", 3, names)
    out = tmp_path / "out ü"
    summary = _run(StubPicker(), mics, out)
    assert summary.failures == {}
    for mic in mics:
        assert len(read_coordinates(_out(out, mic))) == 2
    index = read_coordinates_index(out / INDEX_STAR)
    assert sorted(index["rlnMicrographName"]) == sorted(str(m) for m in mics)
    assert sorted(Path(c).name for c in index["rlnMicrographCoordinates"]) == sorted(
        f"{m.stem}_autopick.star" for m in mics
    )
    combined = read_coordinates(out / COMBINED_STAR)
    assert sorted(set(combined["micrograph"])) == sorted(m.stem for m in mics)


# ------------------------------------------------------------------ atomic writes


def test_atomic_outputs_are_readable_like_plain_files(tmp_path):
    """mkstemp makes 0600 files; outputs must get the umask's normal mode (RELION may run as
    another user of the group)."""
    umask = os.umask(0o022)
    os.umask(umask)
    expected = 0o666 & ~umask
    with atomic_write(tmp_path / "a.txt") as handle:
        handle.write("x")
    with atomic_path(tmp_path / "b.star") as tmp:
        tmp.write_text("y")
    assert atomic._FILE_MODE == expected
    for name in ("a.txt", "b.star"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected


def test_failed_atomic_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "keep.star"
    path.write_text("old complete content")
    with pytest.raises(OSError):
        with atomic_write(path) as handle:
            handle.write("new half")
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path) as tmp:
            tmp.write_text("new half")
            raise KeyboardInterrupt
    assert path.read_text() == "old complete content"
    assert _hidden_or_temp(tmp_path) == []


def test_unreadable_micrograph_in_a_batch(tmp_path, monkeypatch, capsys):
    """No read permission (simulated for root, who ignores modes): one line, others picked."""
    import builtins

    mics = _micrographs(tmp_path / "in", 3)
    locked = mics[1]
    if os.geteuid() == 0:
        real_open = builtins.open

        def guarded_open(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and Path(file) == locked:
                raise PermissionError(errno.EACCES, "Permission denied", str(locked))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", guarded_open)
    else:
        locked.chmod(0)
    summary = _run(StubPicker(), mics, tmp_path / "out")
    assert list(summary.failures) == [str(locked)]
    assert summary.failures[str(locked)] == f"{locked}: permission denied"
    assert len(summary.done) == 2
    assert f"ERROR {locked}: permission denied" in capsys.readouterr().err


def test_read_only_output_every_write_fails_but_nothing_crashes(tmp_path, monkeypatch):
    """The folder passes the access check but the disk refuses every file (e.g. remounted
    read-only mid-run): every micrograph is a listed failure, and so are the index files."""
    mics = _micrographs(tmp_path / "in", 2)
    out = tmp_path / "out"

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    summary = _run(StubPicker(), mics, out, formats=("star", "csv"))
    assert set(summary.failures) == {str(m) for m in mics}
    assert all("Read-only file system" in reason for reason in summary.failures.values())
    assert "Read-only file system" in summary.index_failure
    assert summary.done == {}
    assert [p for p in out.rglob("*") if p.is_file() and p.name not in LOCKS] == []


def test_interrupt_while_writing_the_index_files(tmp_path, monkeypatch):
    mics = _micrographs(tmp_path / "in", 2)
    out = tmp_path / "out"
    previous = signal.getsignal(signal.SIGTERM)

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # our handler must still be installed here

    monkeypatch.setattr(results_module, "write_star_texts", killed)
    summary = _run(StubPicker(), mics, out)
    assert summary.interrupted and len(summary.done) == 2
    assert signal.getsignal(signal.SIGTERM) == previous
    assert _hidden_or_temp(out) == []
