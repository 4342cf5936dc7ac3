"""The output folder as a whole over re-runs, concurrent runs and odd names (issues 14 and 11).

Most tests drive :func:`pick_batch` with a stub picker (no U-Net), so they test the
orchestration alone; a few run the CLI (README demo, argument checks, real RELION).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
from hypothesis import given, settings
from hypothesis import strategies as st

from cryosegnet.cli.main import main
from cryosegnet.errors import CryoSegNetError
from cryosegnet.evaluation.pairing import coordinate_files, load_coordinate_sets
from cryosegnet.io.coordinates import (
    StarNameError,
    make_picks,
    parse_star,
    read_coordinates,
    read_star_blocks,
    star_text,
    write_combined_star,
)
from cryosegnet.io.micrographs import find_micrographs, read_micrograph
from cryosegnet.picking import batch as batch_module
from cryosegnet.picking import results as results_module
from cryosegnet.picking.batch import (
    COMBINED_STAR,
    INDEX_STAR,
    output_path,
    pick_batch,
    relative_folder,
)
from cryosegnet.picking.config import MIN_PICK_SIDE
from cryosegnet.picking.picker import PickResult

README = Path(__file__).resolve().parents[1] / "README.md"


class StubPicker:
    """Stands in for :class:`Picker`: picks depend on the image, so a different micrograph
    gives different picks; ``threshold`` is one of the options a result records."""

    def __init__(self, threshold: float = 0.5, n_picks: int | None = None) -> None:
        self.calls = 0
        self.threshold = threshold
        self.n_picks = n_picks

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        return image

    def pick_denoised(self, denoised, original_shapes) -> list[PickResult]:
        self.calls += 1
        results = []
        for image, shape in zip(denoised, original_shapes, strict=True):
            n = self.n_picks if self.n_picks is not None else 2
            x = 10.0 + float(image.mean() > 0) * 30 + np.arange(n)
            picks = make_picks(x, 20.0 + np.arange(n), 0.9, 40.0 if n else None)
            results.append(
                PickResult(
                    picks=picks,
                    diameter=40.0 if n else float("nan"),
                    working_shape=image.shape,
                    original_shape=tuple(shape),
                    stage="stub",
                )
            )
        return results


def _mrc(path: Path, sign: float = 1.0, shape=(128, 160)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data((rng.normal(size=shape) + 3 * sign).astype(np.float32))
    return path


def _run(picker, mics, out, **kwargs):
    return pick_batch(picker, [Path(m) for m in mics], out, progress=False, **kwargs)


def _index(out: Path) -> pd.DataFrame:
    return read_star_blocks(out / INDEX_STAR)["coordinate_files"]


# ------------------------------------------------------------------ item 4, issue 11 §0: layout


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


# ------------------------------------------------------------------ items 1-3: manifests


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
    locks = (batch_module.LOCK_FILE, batch_module.RUN_LOCK_FILE)
    assert not [p for p in out.rglob(".*") if p.name not in locks]  # no temp file left


# ------------------------------------------------------------------ item 5: STAR names


_NAME = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(names=st.lists(_NAME, min_size=1, max_size=4, unique=True))
def test_star_names_round_trip(names):
    table = pd.DataFrame(
        {"rlnMicrographName": names, "rlnCoordinateX": range(len(names))}, dtype=object
    )
    try:
        text = star_text({"particles": table})
    except StarNameError:
        # only a name with both quote characters each followed by whitespace is refused
        assert any(("' " in n or "'\t" in n) and ('" ' in n or '"\t' in n) for n in names)
        return
    back = parse_star(text)["particles"]
    assert [str(v) for v in back["rlnMicrographName"]] == names


def test_names_starfile_and_relion_misread_are_quoted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = [
        "#hash.mrc",
        "_under.mrc",
        "data_x.mrc",
        "loop_.mrc",
        "in#side.mrc",
        "a b.mrc",
    ]
    mics = [_mrc(Path("n") / name, (-1) ** i) for i, name in enumerate(names)]
    summary = _run(StubPicker(), mics, "out")
    assert summary.failures == {} and summary.index_failure is None
    combined = read_coordinates(Path("out") / COMBINED_STAR)
    assert len(combined) == 2 * len(names)  # none read back as a comment
    assert sorted(_index(Path("out"))["rlnMicrographName"]) == sorted(f"n/{n}" for n in names)
    # starfile agrees (names with quote characters, which it misreads, are refused)
    table = starfile.read(Path("out") / COMBINED_STAR)
    assert sorted(set(table["rlnMicrographName"])) == sorted(f"n/{n}" for n in names)


def test_line_break_in_a_name_is_refused_with_the_name(tmp_path):
    with pytest.raises(StarNameError, match="line break"):
        write_combined_star(tmp_path / "p.star", {"a\nb.mrc": make_picks([1], [2])})
    assert list(tmp_path.iterdir()) == []
    good, odd = _mrc(tmp_path / "in" / "good.mrc"), _mrc(tmp_path / "in" / "a\nb.mrc", -1)
    summary = _run(StubPicker(), [good, odd], tmp_path / "out")
    assert list(summary.failures) == [str(odd)] and "line break" in summary.failures[str(odd)]
    assert summary.index_failure is None and summary.index_entries == 1


# ------------------------------------------------------------------ item 6: truncated STAR


def test_truncated_star_is_not_done(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mic = _mrc(Path("m/mic.mrc"))
    _run(StubPicker(), [mic], "out")
    star = Path("out/m/mic_autopick.star")
    text = star.read_text()
    cut = text.index("0.9 0\n") + 2  # mid-row: the figure of merit is there, the class is not
    star.write_text(text[:cut])
    picker = StubPicker()
    again = _run(picker, [mic], "out")
    assert picker.calls == 1 and again.skipped == []
    assert len(read_coordinates(Path("out") / COMBINED_STAR)) == 2
    combined = read_coordinates(Path("out") / COMBINED_STAR)
    assert not combined[["x", "y", "score"]].isna().any().any()


# ------------------------------------------------------------------ item 7: foreign files


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


# ------------------------------------------------------------------ items 9, 12, 13: inputs


def test_missing_inputs_are_named(tmp_path):
    good = _mrc(tmp_path / "good.mrc")
    (tmp_path / "empty").mkdir()
    loop = tmp_path / "loop.mrc"
    loop.symlink_to(loop)
    problems: list[str] = []
    found = find_micrographs(
        [
            str(good),
            str(tmp_path / "absent.mrc"),
            str(tmp_path / "empty"),
            str(tmp_path / "nothing*.mrc"),
            str(loop),
        ],
        problems,
    )
    assert found == [good]
    assert len(problems) == 4
    for needle in ("absent.mrc", "empty", "nothing*.mrc", "loop.mrc"):
        assert sum(needle in p for p in problems) == 1, problems


def test_missing_input_among_good_ones_makes_the_exit_non_zero(tmp_path, capsys, tiny_model):
    good = _mrc(tmp_path / "good.mrc")
    code = main(
        [
            "pick",
            str(good),
            str(tmp_path / "absent.mrc"),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(tiny_model),
            "--device",
            "cpu",
            "--stage",
            "peaks",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert f"ERROR {tmp_path / 'absent.mrc'}: no such file or folder" in err
    assert output_path(tmp_path / "out", good).is_file()


def test_symlink_loop_inside_a_folder_is_one_error(tmp_path, capsys):
    folder = tmp_path / "in"
    good = _mrc(folder / "good.mrc")
    (folder / "loop.mrc").symlink_to(folder / "loop.mrc")
    mics = find_micrographs([str(folder)])
    assert sorted(mics) == sorted([good, folder / "loop.mrc"])
    summary = _run(StubPicker(), mics, tmp_path / "out")
    assert list(summary.failures) == [str(folder / "loop.mrc")]
    assert "symbolic link loop" in summary.failures[str(folder / "loop.mrc")]
    assert len(summary.done) == 1


def test_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "pipe.mrc"
    os.mkfifo(fifo)
    with pytest.raises(CryoSegNetError, match="not a regular file"):
        read_micrograph(fifo)  # would block forever if opened


# ------------------------------------------------------------------ item 8: bad images


def test_mrc_with_more_data_than_its_header_says_is_refused(tmp_path):
    path = _mrc(tmp_path / "mic.mrc")
    with open(path, "ab") as handle:
        handle.write(b"\x00" * 4 * 128 * 10)
    with pytest.raises(CryoSegNetError, match="header does not match"):
        read_micrograph(path)


def test_strip_shaped_image_is_refused(tmp_path):
    path = _mrc(tmp_path / "strip.mrc", shape=(70, 3000))
    with pytest.raises(CryoSegNetError, match="strip"):
        read_micrograph(path)


# ------------------------------------------------------------------ items 10, 15: sizes


def test_huge_diameter_is_refused_up_front(tmp_path, capsys):
    mic = _mrc(tmp_path / "mic.mrc")
    assert main(["pick", str(mic), "-o", str(tmp_path / "o"), "--diameter", "1e9"]) == 1
    assert "--diameter" in capsys.readouterr().err


def test_diameter_larger_than_the_micrograph_fails_that_micrograph(tmp_path):
    class Given(StubPicker):
        class postprocess_settings:  # noqa: N801 - mimics Picker's attribute
            diameter_override = 500.0

    mic = _mrc(tmp_path / "mic.mrc")
    summary = _run(Given(), [mic], tmp_path / "out")
    assert "outside the range 4-64 px" in summary.failures[str(mic)]


def test_micrographs_too_small_to_pick_are_refused_and_the_batch_goes_on(
    tmp_path, monkeypatch, capsys
):
    """A 64x64 image used to give hundreds of 1.5-px picks; now: one ERROR line each."""
    monkeypatch.chdir(tmp_path)
    tiny = _mrc(Path("mics/tiny.mrc"), shape=(64, 64))
    short = _mrc(Path("mics/short.mrc"), shape=(100, 400))
    good = _mrc(Path("mics/good.mrc"), shape=(256, 256))
    argv = ["pick", str(tiny), str(short), str(good), "-o", "out", "--no-progress"]
    code = main([*argv, "--stage", "log", "--diameter", "20"])
    err = capsys.readouterr().err
    assert code == 1
    for path in (tiny, short):
        lines = [line for line in err.splitlines() if line.startswith(f"ERROR {path}:")]
        assert len(lines) == 1, err
        assert f"at least {MIN_PICK_SIDE} px" in lines[0]
        assert not output_path("out", path).exists()
    assert output_path("out", good).is_file()
    assert list(_index(Path("out"))["rlnMicrographName"]) == [str(good)]


def test_working_image_too_small_for_the_u_net_is_refused():
    from types import SimpleNamespace

    from cryosegnet.preprocessing.denoise import DenoiseSettings

    picker = SimpleNamespace(denoise_settings=DenoiseSettings(working_size=160))
    batch_module.check_pickable_size("ok.mrc", (256, 256), picker)
    with pytest.raises(CryoSegNetError, match="ok.mrc: .* at least 32 px"):
        batch_module.check_pickable_size("ok.mrc", (200, 1600), picker)  # 20 px at work size


def test_mrc_above_the_pixel_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    path = _mrc(tmp_path / "mic.mrc")
    monkeypatch.setenv("CRYOSEGNET_MAX_PIXELS", "1000")
    with pytest.raises(CryoSegNetError, match="CRYOSEGNET_MAX_PIXELS"):
        read_micrograph(path)


@pytest.mark.parametrize("size, message", [("16", "N >= 128"), ("30000", "--allow-large")])
def test_simulate_size_limits(tmp_path, capsys, size, message):
    with pytest.raises(SystemExit) if size == "16" else _no_raise():
        code = main(["simulate", "-n", "1", "--size", size, "-o", str(tmp_path / "s"), "-q"])
        assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


class _no_raise:  # noqa: N801
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ------------------------------------------------------------------ item 11: zero picks


def test_zero_picks_with_box_and_csv_is_a_normal_result(tmp_path):
    mic = _mrc(tmp_path / "mic.mrc")
    out = tmp_path / "out"
    summary = _run(StubPicker(n_picks=0), [mic], out, formats=("star", "csv", "box"))
    assert summary.failures == {}
    assert output_path(out, mic, "box").read_text() == ""
    assert len(read_coordinates(output_path(out, mic, "csv"))) == 0
    assert len(read_coordinates(output_path(out, mic))) == 0
    assert "nan" not in summary.text()
    again = _run(StubPicker(n_picks=0), [mic], out, formats=("star", "csv", "box"))
    assert again.skipped == [str(mic)] and again.failures == {}


# ------------------------------------------------------------------ item 14: temp files


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


# ------------------------------------------------------------------ item 16: the README demo


def _readme_demo() -> list[str]:
    text = README.read_text()
    block = text.split("## Demo", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip().startswith("cryosegnet")]


def test_readme_demo_runs_to_the_end(tmp_path):
    commands = _readme_demo()
    assert [c.split()[1] for c in commands] == ["simulate", "pick", "evaluate"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    exe = [sys.executable, "-m", "cryosegnet.cli.main"]
    for command in commands:
        small = command.replace("--size 1024", "--size 256").replace("-n 4", "-n 2")
        argv = small.split()[1:]
        if argv[0] == "pick":  # the shell's glob, done here
            pattern = argv[1]
            argv[1:2] = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob(pattern))
        done = subprocess.run(
            [*exe, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (small, done.stderr[-2000:])
    assert (tmp_path / "demo/report/metrics.json").is_file()


# ------------------------------------------------------------------ item 20: two commands


def _code_blocks(section: str) -> list[list[str]]:
    text = README.read_text().split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    blocks = text.split("```bash")[1:]
    return [
        [line.strip() for line in b.split("```", 1)[0].splitlines() if line.strip()] for b in blocks
    ]


def test_readme_install_is_one_command_per_job_and_ci_runs_exactly_those():
    import re

    blocks = _code_blocks("Install")
    # The first blocks with a pip install (the virtual environment's block comes before them).
    main_job, tests = [b for b in blocks if any("pip install" in line for line in b)][:2]
    assert main_job == ["pip install . && cryosegnet demo"]
    assert tests == ['pip install ".[test]" && python -m pytest']
    # The tested torch pair is pinned where pip sees it ...
    pyproject = (README.parent / "pyproject.toml").read_text()
    pins = dict(re.findall(r'"(torch|torchvision)==([0-9.]+)"', pyproject))
    assert set(pins) == {"torch", "torchvision"}, pyproject
    # ... and the optional CPU-only line installs that same pair.
    cpu = [line for block in blocks for line in block if "--index-url" in line]
    assert cpu == [
        f"pip install torch=={pins['torch']} torchvision=={pins['torchvision']} "
        "--index-url https://download.pytorch.org/whl/cpu"
    ]
    ci = [
        line.strip().strip("()")
        for line in (README.parent / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert [line for line in ci if "pip " in line] == [main_job[0], tests[0]]
    assert ci.index(main_job[0]) < ci.index(tests[0])


# ------------------------------------------------------------------ item 17: unquoted glob


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


# ------------------------------------------------------------------ item 18: progress in logs


def test_progress_lines_when_not_on_a_terminal(tmp_path, caplog):
    mics = [_mrc(tmp_path / "a.mrc"), _mrc(tmp_path / "b.mrc", -1)]
    caplog.set_level("INFO", logger="cryosegnet")
    _run(StubPicker(), mics, tmp_path / "out")
    assert "[1/2]" in caplog.text and "[2/2]" in caplog.text


# ------------------------------------------------------------------ issue 11 §0: real RELION


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


# ------------------------------------------------------------------ messages


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


def test_implausibly_small_diameter_fails_the_micrograph(tmp_path):
    class Tiny(StubPicker):
        def pick_denoised(self, denoised, original_shapes):
            results = super().pick_denoised(denoised, original_shapes)
            for result in results:
                result.diameter = 1.56
            return results

    mic = _mrc(tmp_path / "small.mrc")
    summary = _run(Tiny(), [mic], tmp_path / "out")
    assert "estimated particle diameter 1.6 px" in summary.failures[str(mic)]
    assert summary.done == {} and not list((tmp_path / "out").rglob("*_autopick.star"))


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
