"""The output folder always tells one story: side formats match the STAR's picks, no run
replaces another micrograph's result, the index pair is updated together, and two runs with
different options never write into one folder at once.

These drive :func:`pick_batch` with a stub picker (no U-Net): they test the orchestration.
"""

from __future__ import annotations

import errno
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryosegnet.errors import CryoSegNetError
from cryosegnet.io.coordinates import make_picks, read_coordinates, read_star_blocks
from cryosegnet.io.layout import COMBINED_STAR, INDEX_STAR
from cryosegnet.picking import results as results_module
from cryosegnet.picking.batch import pick_batch
from cryosegnet.picking.picker import PickResult


class StubPicker:
    """Stands in for :class:`Picker`: ``n_picks`` picks per micrograph; ``threshold`` is one of
    the options a result records, so changing it means picking again."""

    def __init__(self, threshold: float = 0.5, n_picks: int = 5) -> None:
        self.threshold = threshold
        self.n_picks = n_picks
        self.calls = 0

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        return image

    def pick_denoised(self, denoised, original_shapes) -> list[PickResult]:
        self.calls += 1
        n = self.n_picks
        return [
            PickResult(
                picks=make_picks(10.0 + np.arange(n), 20.0 + np.arange(n), 0.9, 40.0),
                diameter=40.0,
                working_shape=image.shape,
                original_shape=tuple(shape),
                stage="stub",
            )
            for image, shape in zip(denoised, original_shapes, strict=True)
        ]


def _mrc(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(rng.normal(size=(128, 160)).astype(np.float32))
    return path


def _run(picker, mics, out="out", **kwargs):
    return pick_batch(picker, [Path(m) for m in mics], out, progress=False, **kwargs)


def _index_names(out: Path) -> list[str]:
    return sorted(read_star_blocks(out / INDEX_STAR)["coordinate_files"]["rlnMicrographName"])


def test_side_formats_follow_a_re_pick(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mic = _mrc(Path("m/mic.mrc"))
    everything = ("star", "box", "csv")
    _run(StubPicker(threshold=0.5, n_picks=7), [mic], formats=everything)
    _run(StubPicker(threshold=5.0, n_picks=3), [mic])  # star only: new picks
    again = StubPicker(threshold=5.0, n_picks=3)
    _run(again, [mic], formats=everything)
    assert again.calls == 0  # the picks are current: only the side formats are written
    for fmt in ("star", "box", "csv"):
        assert len(read_coordinates(Path(f"out/m/mic_autopick.{fmt}"))) == 3, fmt


def test_stale_side_formats_are_removed_when_not_asked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mic = _mrc(Path("m/mic.mrc"))
    _run(StubPicker(threshold=0.5, n_picks=7), [mic], formats=("star", "box", "csv"))
    _run(StubPicker(threshold=5.0, n_picks=3), [mic])
    assert not Path("out/m/mic_autopick.box").exists()
    assert not Path("out/m/mic_autopick.csv").exists()


def test_a_result_of_another_micrograph_is_never_replaced(tmp_path, monkeypatch, capsys):
    """RELION lays out both jobs' micrographs alike: the second one must not take the first's
    place (its picks and its index entry), in a later run as within one."""
    monkeypatch.chdir(tmp_path)
    first = _mrc(Path("MotionCorr/job002/Movies/mic_001.mrc"), seed=1)
    second = _mrc(Path("MotionCorr/job005/Movies/mic_001.mrc"), seed=2)
    assert _run(StubPicker(n_picks=7), [first]).failures == {}
    summary = _run(StubPicker(n_picks=3), [second])
    assert list(summary.failures) == [str(second)]
    reason = summary.failures[str(second)]
    assert "\n" not in reason and str(first) in reason and str(second) in reason
    assert len(read_coordinates(Path("out/Movies/mic_001_autopick.star"))) == 7
    assert _index_names(Path("out")) == [str(first)]
    again = _run(StubPicker(n_picks=7), [first])  # the first one's own re-run still works
    assert again.skipped == [str(first)] and again.failures == {}


_HOLD_THE_FOLDER = """
import sys, time
from pathlib import Path
from cryosegnet.picking.batch import BatchSizes
from cryosegnet.picking.results import picker_options, run_options, start_run
from cryosegnet.picking.units import PixelSizes

class Picker:  # the options a StubPicker with this threshold records
    threshold = float(sys.argv[2])

options = run_options(picker_options(Picker()), BatchSizes(None, PixelSizes(), {}), ["star"], None)
lock = start_run(Path(sys.argv[1]), options)
print("holding", flush=True)
time.sleep(60)
"""


@pytest.fixture
def other_run(tmp_path):
    """Another process running into ``tmp_path/out`` with threshold 0.5 (it holds the run
    lock as a real run does), until the test ends."""
    import subprocess
    import sys

    (tmp_path / "out").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_FOLDER, str(tmp_path / "out"), "0.5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "holding"
    yield process
    process.kill()
    process.wait()
    process.stdout.close()


def test_a_run_with_other_options_is_refused_while_another_writes_the_folder(
    tmp_path, monkeypatch, other_run
):
    monkeypatch.chdir(tmp_path)
    mic = _mrc(Path("m/mic.mrc"))
    with pytest.raises(CryoSegNetError, match="another cryosegnet run") as refused:
        _run(StubPicker(threshold=5.0), [mic])
    assert "\n" not in str(refused.value) and "threshold" in str(refused.value)
    assert not Path("out/m/mic_autopick.star").exists()
    # The same options may share the folder (disjoint micrographs picked by two processes).
    assert _run(StubPicker(threshold=0.5), [mic]).failures == {}
    other_run.kill()
    other_run.wait()
    assert _run(StubPicker(threshold=5.0), [mic]).failures == {}  # the folder is free again


@pytest.mark.parametrize("name", ['q"uote d.mrc', '"a.mrc', "it's.mrc"])
def test_names_with_quote_characters_are_refused_and_starfile_reads_the_rest(
    tmp_path, monkeypatch, name
):
    """starfile cannot read a quote character inside a name back (it fails, or turns ' into
    "): such a micrograph is refused with the reason, and the index stays readable."""
    import starfile

    monkeypatch.chdir(tmp_path)
    good, odd = _mrc(Path("n/b.mrc"), seed=1), _mrc(Path("n") / name, seed=2)
    summary = _run(StubPicker(), [good, odd])
    assert list(summary.failures) == [str(odd)]
    reason = summary.failures[str(odd)]
    assert "\n" not in reason and "quote" in reason and name in reason
    particles = starfile.read(Path("out") / COMBINED_STAR)
    assert len(particles) == 5 and set(particles["rlnMicrographName"]) == {"n/b.mrc"}
    assert not list(Path("out/n").glob("*uote*")) and not list(Path("out/n").glob("*a_auto*"))


def test_index_pair_is_replaced_together_or_not_at_all(tmp_path, monkeypatch):
    """A full disk while the index is rewritten: autopick.star and particles.star still list
    the same micrographs (the previous pair), and no temp file is left."""
    import os

    monkeypatch.chdir(tmp_path)
    mics = [_mrc(Path(f"m/mic_{i}.mrc"), seed=i) for i in range(5)]
    _run(StubPicker(), mics[:2])
    real_rebuild = results_module.rebuild_index
    monkeypatch.setattr(results_module, "rebuild_index", lambda outdir: 0)
    _run(StubPicker(), mics[2:])  # three more results, the index not yet rewritten
    real_fsync, calls = os.fsync, []

    def disk_full_on_the_second_file(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full_on_the_second_file)
    with pytest.raises(OSError):
        real_rebuild(Path("out"))
    monkeypatch.setattr(os, "fsync", real_fsync)
    listed = _index_names(Path("out"))
    particles = read_star_blocks(Path("out") / COMBINED_STAR)["particles"]
    assert listed == sorted(set(particles["rlnMicrographName"])) == [str(m) for m in mics[:2]]
    assert [p.name for p in Path("out").iterdir() if "tmp" in p.name] == []
    assert real_rebuild(Path("out")) == 5  # with room again, both list every result
    assert len(_index_names(Path("out"))) == 5
