"""What ``pick`` refuses before or while picking: missing inputs, links and FIFOs, images it
cannot pick (strips, too small, over the pixel limit), diameters that cannot fit; and zero
picks, which are a normal result."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from batch_helpers import StubPicker
from batch_helpers import index_of as _index
from batch_helpers import run_batch as _run
from batch_helpers import small_mrc as _mrc

from cryosegnet.cli.main import main
from cryosegnet.errors import CryoSegNetError
from cryosegnet.io.coordinates import read_coordinates
from cryosegnet.io.layout import output_path
from cryosegnet.io.micrographs import find_micrographs, read_micrograph
from cryosegnet.picking import batch as batch_module
from cryosegnet.picking.config import MIN_PICK_SIDE


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
