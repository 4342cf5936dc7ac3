"""pick_distributed on a local Dask cluster of 2 worker processes gives the in-process files."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

pytest.importorskip("distributed")

from cryosegnet.io.coordinates import read_own_star, star_header  # noqa: E402
from cryosegnet.io.layout import COMBINED_STAR, INDEX_STAR  # noqa: E402
from cryosegnet.picking.batch import pick_batch  # noqa: E402
from cryosegnet.picking.distributed import _pick_one, pick_distributed  # noqa: E402
from cryosegnet.picking.picker import Picker  # noqa: E402


def _micrographs(folder: Path, n: int = 5) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        shape = (300, 260) if i % 2 else (256, 256)
        rows, cols = np.mgrid[: shape[0], : shape[1]]
        image = rng.normal(0, 1, shape)
        for cy, cx in rng.uniform(24, min(shape) - 24, (8, 2)):
            image -= 3 * np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * 7**2))
        path = folder / f"mic_{i:02d}.mrc"
        with mrcfile.new(path) as mrc:
            mrc.set_data(image.astype(np.float32))
        paths.append(path)
    return paths


def _results(outdir: Path) -> dict[str, tuple[list, dict]]:
    """Per micrograph file (relative path): its coordinate rows and its manifest."""
    results = {}
    for star in sorted(outdir.rglob("*_autopick.star")):
        blocks = read_own_star(star)
        table = next(b for b in blocks.values() if hasattr(b, "columns"))
        _, manifest = star_header(star)
        results[str(star.relative_to(outdir))] = (table.round(3).values.tolist(), manifest)
    return results


def _index(outdir: Path) -> tuple[str, list[tuple[str, str]]]:
    """particles.star as text, and autopick.star's rows with the coordinate file relative to
    the output folder (which differs between the two runs compared)."""
    import starfile

    table = starfile.read(outdir / INDEX_STAR)
    rows = [
        (m, os.path.relpath(c, outdir))
        for m, c in zip(table["rlnMicrographName"], table["rlnMicrographCoordinates"])
    ]
    return (outdir / COMBINED_STAR).read_text(), sorted(rows)


@pytest.fixture(autouse=True)
def one_compute_thread():
    """The workers compute with one thread each; so do the in-process references, or float
    sums taken in another order can break ties between equal-scoring candidates differently."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def session(tmp_path, tiny_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = [p.relative_to(tmp_path) for p in _micrographs(tmp_path / "mics")]
    kwargs = {
        "model": str(tiny_model),
        "device": "cpu",
        "stage": "peaks",
        "threshold": 0.0,
        "diameter": 16.0,
    }
    reference = pick_batch(Picker(**kwargs), paths, "ref", progress=False)
    assert not reference.failures and len(reference.done) == len(paths)
    return paths, kwargs


def test_local_cluster_gives_the_in_process_files(session, tmp_path) -> None:
    paths, kwargs = session
    summary = pick_distributed(paths, "dask", kwargs, n_workers=2, formats=("star", "csv"))
    assert not summary.failures, summary.failures
    assert len(summary.done) == len(paths) and summary.index_entries == len(paths)
    assert summary.n_workers == 2 and sum(summary.per_worker.values()) == len(paths)
    assert "micrographs/s" in summary.text() and "workers: 2" in summary.text()
    ref, out = _results(tmp_path / "ref"), _results(tmp_path / "dask")
    assert ref.keys() == out.keys() and len(ref) == len(paths)
    for name in ref:
        assert out[name][0] == ref[name][0]  # same picks
        manifest = dict(out[name][1])
        assert manifest.pop("formats") == ["csv", "star"]
        expected = dict(ref[name][1])
        expected.pop("formats")
        assert manifest == expected  # same source, options, diameter, count
    assert _index(tmp_path / "dask") == _index(tmp_path / "ref")
    assert len(list((tmp_path / "dask").rglob("*_autopick.csv"))) == len(paths)

    again = pick_distributed(paths, "dask", kwargs, n_workers=1)  # a re-run skips them all
    assert len(again.skipped) == len(paths) and not again.failures


def _kill_once(path, *args, **kwargs):
    """Task wrapper: the worker picking mic_02 the first time dies (SIGKILL) mid-micrograph."""
    marker = Path(args[0]).parent / ".killed-once"  # args[0]: <output folder>/mics
    if path.endswith("mic_02.mrc") and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return _pick_one(path, *args, **kwargs)


def test_a_killed_worker_loses_nothing(session, tmp_path) -> None:
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        paths, kwargs = session
        summary = pick_distributed(paths, "dask", kwargs, n_workers=2, _task=_kill_once)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert (tmp_path / "dask" / ".killed-once").exists()  # a worker did die
    assert not summary.failures, summary.failures
    assert len(summary.done) == len(paths) and summary.index_entries == len(paths)
    ref, out = _results(tmp_path / "ref"), _results(tmp_path / "dask")
    assert ref.keys() == out.keys()
    assert all(out[name][0] == ref[name][0] for name in ref)
    assert _index(tmp_path / "dask") == _index(tmp_path / "ref")  # nothing lost or doubled


def test_failures_are_reported_per_micrograph(session, tmp_path) -> None:
    paths, kwargs = session
    bad = Path("mics") / "broken.mrc"
    (tmp_path / bad).write_bytes(b"not an mrc file at all" * 10)
    tiny = Path("mics") / "tiny.mrc"  # too small to pick, refused on the worker as in-process
    with mrcfile.new(tmp_path / tiny) as mrc:
        mrc.set_data(np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32))
    summary = pick_distributed([*paths, bad, tiny], "dask", kwargs, n_workers=1)
    assert sorted(summary.failures) == sorted([str(bad), str(tiny)])
    assert "broken.mrc" in summary.failures[str(bad)]
    assert "at least 128 px" in summary.failures[str(tiny)]
    assert len(summary.done) == len(paths)


def test_cli_dask_workers_gives_the_in_process_files(session, tmp_path) -> None:
    from cryosegnet.cli.main import main

    paths, kwargs = session
    code = main(
        [
            "pick",
            "mics",
            "-o",
            "cli",
            "--model",
            kwargs["model"],
            "--stage",
            "peaks",
            "--threshold",
            "0",
            "--diameter",
            "16",
            "--dask-workers",
            "2",
            "--no-progress",
        ]
    )
    assert code == 0
    ref, out = _results(tmp_path / "ref"), _results(tmp_path / "cli")
    assert ref.keys() == out.keys()
    assert all(out[name] == ref[name] for name in ref)
    assert _index(tmp_path / "cli") == _index(tmp_path / "ref")


def _pick_cli(model, inputs: list[str], out: str, *extra: str) -> int:
    from cryosegnet.cli.main import main

    options = ["--model", str(model), "--stage", "peaks", "--threshold", "0", "--no-progress"]
    return main(["pick", *inputs, "-o", out, *options, *extra])


def _same_files(tmp_path: Path, ref: str, out: str) -> dict:
    expected, got = _results(tmp_path / ref), _results(tmp_path / out)
    assert expected.keys() == got.keys() and expected
    for name in expected:
        assert got[name] == expected[name], name  # same picks, same manifest
    assert _index(tmp_path / out) == _index(tmp_path / ref)
    return got


def test_angstrom_diameter_on_dask_gives_the_in_process_files(
    tmp_path, tiny_model, monkeypatch
) -> None:
    """--diameter 32A: each micrograph at its own header's pixel size, as in one process."""
    monkeypatch.chdir(tmp_path)
    for i, path in enumerate(_micrographs(tmp_path / "mics", n=4)):
        with mrcfile.open(path, "r+") as mrc:
            mrc.voxel_size = 2.0 if i % 2 else 1.0  # 16 px and 32 px
    assert _pick_cli(tiny_model, ["mics"], "ref", "--diameter", "32A") == 0
    assert _pick_cli(tiny_model, ["mics"], "dask", "--diameter", "32A", "--dask-workers", "2") == 0
    results = _same_files(tmp_path, "ref", "dask")
    diameters = {name: manifest["diameter_px"] for name, (_, manifest) in results.items()}
    assert sorted(set(diameters.values())) == [16.0, 32.0], diameters
    for _, manifest in results.values():
        assert manifest["options"]["diameter"] == {"angstrom": 32.0, "pixel_size": "header"}


def test_relion_star_input_on_dask_gives_the_in_process_files(
    tmp_path, tiny_model, monkeypatch
) -> None:
    """A micrographs_ctf.star: its micrographs, named and laid out as RELION names them, at
    the optics group's pixel size (the headers have none), as in one process."""
    monkeypatch.chdir(tmp_path)
    movies = tmp_path / "MotionCorr" / "job002" / "Movies"
    paths = _micrographs(movies, n=3)
    (movies / "day2").mkdir()
    paths[2] = paths[2].rename(movies / "day2" / paths[2].name)
    names = [str(p.relative_to(tmp_path)) for p in paths]
    star = Path("CtfFind/job003/micrographs_ctf.star")
    star.parent.mkdir(parents=True)
    star.write_text(
        "data_optics\n\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n"
        "_rlnMicrographPixelSize #3\nopticsGroup1 1 2.0\n\n"
        "data_micrographs\n\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n"
        + "".join(f"{name} 1\n" for name in names)
    )
    assert _pick_cli(tiny_model, [str(star)], "ref", "--diameter-angstrom", "32") == 0
    extra = ("--diameter-angstrom", "32", "--dask-workers", "2")
    assert _pick_cli(tiny_model, [str(star)], "dask", *extra) == 0
    results = _same_files(tmp_path, "ref", "dask")
    assert sorted(results) == sorted(
        f"Movies/{p.parent.name + '/' if p.parent.name == 'day2' else ''}{p.stem}_autopick.star"
        for p in paths
    )
    assert all(manifest["diameter_px"] == 16.0 for _, manifest in results.values())
    assert sorted(m for m, _ in _index(tmp_path / "dask")[1]) == sorted(names)


def test_skip_empty_on_dask_counts_the_empty_micrographs(
    tmp_path, tiny_model, monkeypatch, capsys
) -> None:
    """--skip-empty on workers: the same files (the manifests keep each micrograph's evidence)
    and the same "judged empty" count in the end-of-run summary as in one process."""
    monkeypatch.chdir(tmp_path)
    _micrographs(tmp_path / "mics", n=3)
    with mrcfile.new(tmp_path / "mics" / "noise.mrc") as mrc:
        mrc.set_data(np.random.default_rng(7).normal(size=(256, 256)).astype(np.float32))
    extra = ("--diameter", "16", "--skip-empty")
    summaries = []
    for out, more in (("ref", ()), ("dask", ("--dask-workers", "2"))):
        assert _pick_cli(tiny_model, ["mics"], out, *extra, *more) == 0
        summaries.append(capsys.readouterr().err)
    results = _same_files(tmp_path, "ref", "dask")
    assert all("evidence" in manifest for _, manifest in results.values())
    assert results["mics/noise_autopick.star"][0] == []  # no picks on pure noise
    assert all(results[f"mics/mic_{i:02d}_autopick.star"][0] for i in range(3))
    for text in summaries:
        assert "judged empty (--skip-empty: no particle evidence), no picks: 1" in text


def test_watch_on_dask_gives_the_in_process_files(session, tmp_path) -> None:
    """--watch with --dask-workers: the micrographs written to the watched folder are picked on
    the cluster, into the files and index one process writes."""
    paths, kwargs = session
    watch = ("--watch", "mics", "--settle", "0.2", "--watch-interval", "0.1")
    extra = ("--diameter", "16", "--dask-workers", "2", "--watch-timeout", "1", *watch)
    assert _pick_cli(kwargs["model"], [], "watched", *extra) == 0
    assert len(_same_files(tmp_path, "ref", "watched")) == len(paths)


def test_parse_devices_and_missing_gpus() -> None:
    import torch

    from cryosegnet.errors import CryoSegNetError
    from cryosegnet.picking.distributed import _check_local_devices, parse_devices

    assert parse_devices("0,1, 3") == ["cuda:0", "cuda:1", "cuda:3"]
    assert parse_devices("cpu,cuda:2") == ["cpu", "cuda:2"]
    assert parse_devices(None) is None
    with pytest.raises(CryoSegNetError):
        parse_devices(" , ")
    _check_local_devices(["cpu"])
    with pytest.raises(CryoSegNetError, match="not available"):
        _check_local_devices([f"cuda:{torch.cuda.device_count()}"])


def _slow_after_two(path, *args, **kwargs):
    """Task wrapper: mic_00 and mic_01 are picked at once, the others take a minute."""
    import time

    if not (path.endswith("mic_00.mrc") or path.endswith("mic_01.mrc")):
        time.sleep(60)
    return _pick_one(path, *args, **kwargs)


def test_sigterm_stops_like_an_interrupt_and_keeps_the_finished_work(
    session, tmp_path, capsys
) -> None:
    import threading
    import time

    import cloudpickle

    from cryosegnet.picking.summary import finish_run

    paths, kwargs = session
    out = tmp_path / "dask"
    previous = signal.getsignal(signal.SIGTERM)

    def terminate_after_two_results():
        deadline = time.monotonic() + 120
        while len(list(out.rglob("*_autopick.star"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        # A worker writes its files before the client hears of the result: give the client a
        # moment to record the second one (the rest are slow, so none finishes meanwhile).
        time.sleep(2.0)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate_after_two_results, daemon=True)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        killer.start()
        started = time.monotonic()
        summary = pick_distributed(paths, out, kwargs, n_workers=2, _task=_slow_after_two)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert time.monotonic() - started < 50  # it did not wait for the slow micrographs
    assert summary.interrupted and len(summary.done) == 2
    assert signal.getsignal(signal.SIGTERM) == previous
    assert finish_run(summary) == 130
    assert "INTERRUPTED" in capsys.readouterr().err
    assert summary.index_entries == 2
    assert len(_index(out)[1]) == 2  # the two finished micrographs are listed


def test_local_workers_are_capped_at_the_cpu_count(monkeypatch, caplog) -> None:
    from cryosegnet.picking import distributed

    monkeypatch.setattr(distributed, "available_cpus", lambda: 2)
    caplog.set_level("WARNING", logger="cryosegnet")
    assert distributed.local_worker_count(64) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "64" in warnings[0] and "2" in warnings[0]
    caplog.clear()
    assert distributed.local_worker_count(2) == 2 and not caplog.records
