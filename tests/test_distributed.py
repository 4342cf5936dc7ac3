"""pick_distributed on a local Dask cluster of 2 worker processes gives the in-process files."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest

pytest.importorskip("distributed")

from cryosegnet.io.coordinates import read_own_star, star_header  # noqa: E402
from cryosegnet.picking.batch import COMBINED_STAR, INDEX_STAR, pick_batch  # noqa: E402
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
    summary = pick_distributed([*paths, bad], "dask", kwargs, n_workers=1)
    assert list(summary.failures) == [str(bad)]
    assert "broken.mrc" in summary.failures[str(bad)]
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


def test_cli_refuses_what_dask_cannot_do_yet(session, tmp_path, capsys) -> None:
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
            "--diameter",
            "120A",
            "--angpix",
            "1.0",
            "--dask-workers",
            "2",
        ]
    )
    assert code != 0
    assert "not yet with a diameter in Å" in capsys.readouterr().err
    assert not (tmp_path / "cli" / "particles.star").exists()


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
