"""cryosegnet show / threshold and the picks-folder discovery they share."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import starfile
from inspection_helpers import simulated_session
from relion_helpers import RELION_PREPROCESS, relion_extract, write_micrographs_star

from cryosegnet.cli.main import main
from cryosegnet.errors import CoordinateFileError, CryoSegNetError
from cryosegnet.inspection.display import draw_picks, estimate_display_diameter
from cryosegnet.inspection.picksets import find_pick_files, find_picks_file, pick_stem
from cryosegnet.inspection.show import ShowSettings, show_picks
from cryosegnet.inspection.threshold import threshold_picks
from cryosegnet.io.coordinates import make_picks, read_coordinates, write_coordinate_star
from cryosegnet.simulation import SimulationConfig, write_dataset


@pytest.mark.parametrize("layout", ["relion", "flat"])
def test_find_pick_files_both_layouts(tmp_path, layout):
    mics, picks_dir, _ = simulated_session(tmp_path, layout=layout)
    found = find_pick_files(picks_dir)
    assert [f.stem for f in found] == [m.stem for m in mics]
    # micrograph names come from autopick.star, not from guessing
    assert [f.micrograph for f in found] == [f"Movies/{m.name}" for m in mics]
    for mic in mics:
        assert pick_stem(find_picks_file(mic, picks_dir)) == mic.stem


def test_find_picks_file_prefers_matching_folder_and_refuses_ties(tmp_path):
    picks = make_picks([10, 20], [30, 40], [0.5, 0.9])
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_coordinate_star(tmp_path / folder / "mic_autopick.star", picks)
    assert find_picks_file("data/b/mic.mrc", tmp_path) == tmp_path / "b" / "mic_autopick.star"
    with pytest.raises(CoordinateFileError, match="several"):
        find_picks_file("mic.mrc", tmp_path)
    with pytest.raises(CoordinateFileError, match="no coordinate file"):
        find_picks_file("other.mrc", tmp_path)


def test_display_diameter_from_spacing():
    xy = np.mgrid[0:5, 0:5].reshape(2, -1).T * 30.0 + 50
    picks = make_picks(xy[:, 0], xy[:, 1])
    assert estimate_display_diameter(picks, (1000, 1000)) == pytest.approx(30)
    assert estimate_display_diameter(picks, (400, 400)) == pytest.approx(20)  # capped
    assert estimate_display_diameter(picks.iloc[:1], (500, 400)) == pytest.approx(10)
    picks["diameter"] = 42.0
    assert estimate_display_diameter(picks) == 42


def test_draw_picks_puts_circles_at_picks():
    grey = np.full((100, 200), 128, np.uint8)
    drawn = draw_picks(grey, make_picks([50], [40]), scale=0.5, diameter=40, thickness=1)
    assert drawn.shape == (100, 200, 3)
    red = (drawn[:, :, 2] > 200) & (drawn[:, :, 1] < 100)
    rows, cols = np.nonzero(red)
    assert rows.mean() == pytest.approx(19.75, abs=1) and cols.mean() == pytest.approx(24.75, abs=1)
    assert cols.max() - cols.min() == pytest.approx(20, abs=2)


def test_show_with_picks_folder(tmp_path):
    mics, picks_dir, tables = simulated_session(tmp_path)
    out = tmp_path / "fig" / "pic.png"
    result = show_picks(
        mics[0], out, picks=picks_dir, settings=ShowSettings(height=300, min_score=0.5)
    )
    assert len(result.picks) == (tables[mics[0].stem]["score"] >= 0.5).sum()
    picture = cv2.imread(str(out))
    assert picture.shape[0] == 300
    red = (picture[:, :, 2] > 200) & (picture[:, :, 1] < 80) & (picture[:, :, 0] < 80)
    assert red.sum() > 100  # circles were drawn
    with pytest.raises(CryoSegNetError, match="png"):
        show_picks(mics[0], tmp_path / "pic.txt", picks=picks_dir)


def test_show_cli_runs_picker_and_map(tmp_path, tiny_model, capsys):
    mics, _, _ = simulated_session(tmp_path, n=1)
    out = tmp_path / "run.jpg"
    assert (
        main(
            [
                "show",
                str(mics[0]),
                "-o",
                str(out),
                "--map",
                "--model",
                str(tiny_model),
                "--stage",
                "peaks",
                "--size",
                "200",
            ]
        )
        == 0
    )
    picture = cv2.imread(str(out))
    assert picture.shape[0] == 200 and picture.shape[1] == 400  # two square panels
    assert "picker (peaks stage" in capsys.readouterr().out


def test_show_cli_error_is_one_line(tmp_path, capsys):
    mics, _, _ = simulated_session(tmp_path, n=1)
    assert (
        main(
            ["show", str(mics[0]), "--picks", str(tmp_path / "nope"), "-o", str(tmp_path / "x.png")]
        )
        == 1
    )
    assert "no such file or folder" in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["relion", "flat"])
def test_threshold_keeps_score_at_least_x_in_same_layout(tmp_path, layout):
    mics, picks_dir, tables = simulated_session(tmp_path, layout=layout, empty=2)
    out = tmp_path / "cut"
    assert main(["threshold", str(picks_dir), "--min-score", "0.5", "-o", str(out)]) == 0
    for pick_file in find_pick_files(picks_dir):
        copy = out / pick_file.relative
        kept = read_coordinates(copy)
        expected = tables[pick_file.stem]
        expected = expected[expected["score"] >= 0.5]
        assert len(kept) == len(expected)
        np.testing.assert_allclose(kept["x"], expected["x"])
        assert (kept["score"] >= 0.5).all()
    index = starfile.read(out / "autopick.star")
    assert list(index["rlnMicrographName"]) == [f"Movies/{m.name}" for m in mics]
    assert list(index["rlnMicrographCoordinates"]) == [
        str(out / f.relative) for f in find_pick_files(picks_dir)
    ]
    particles = starfile.read(out / "particles.star")
    assert len(particles) == sum((t["score"] >= 0.5).sum() for t in tables.values())
    # the empty micrograph still has its (empty) file, and re-reading the output works
    assert len(find_pick_files(out)) == len(mics)


def test_threshold_refuses_own_folder(tmp_path):
    _, picks_dir, _ = simulated_session(tmp_path, n=1)
    with pytest.raises(CryoSegNetError, match="must not be"):
        threshold_picks(picks_dir, picks_dir / "sub", 0.5)
    with pytest.raises(CoordinateFileError, match="no per-micrograph"):
        threshold_picks(tmp_path / "Movies" / "truth", tmp_path / "o", 0.5)


@pytest.mark.skipif(
    RELION_PREPROCESS is None, reason="RELION is not installed (apt-get install relion)"
)
def test_real_relion_extracts_exactly_the_thresholded_picks(tmp_path, monkeypatch):
    """relion_preprocess --coord_dir on `threshold`'s output finds every kept pick."""
    monkeypatch.chdir(tmp_path)
    write_dataset("sim", SimulationConfig(size=256), n=2, seed=3)
    movies = Path("MotionCorr/job002/Movies")
    movies.mkdir(parents=True)
    names, n_kept = [], 0
    for mic in sorted(Path("sim").glob("*.mrc")):
        shutil.copy(mic, movies / mic.name)
        names.append(str(movies / mic.name))
        picks = read_coordinates(mic.with_suffix(".csv"))
        inside = picks["x"].between(20, 236) & picks["y"].between(20, 236)  # whole boxes
        picks = picks[inside].iloc[:30].reset_index(drop=True)
        picks["score"] = np.linspace(0, 1, len(picks))
        n_kept += int((picks["score"] >= 0.5).sum())
        # RELION's layout: <coord_dir>/<folders below the micrograph's job folder>/<stem>_autopick
        star = Path("picks/Movies") / f"{mic.stem}_autopick.star"
        star.parent.mkdir(parents=True, exist_ok=True)
        write_coordinate_star(star, picks)
    write_micrographs_star(Path("mics.star"), names, 16.0)
    assert main(["threshold", "picks", "--min-score", "0.5", "-o", "cut"]) == 0
    particles = relion_extract("mics.star", "cut/")
    assert len(particles) == n_kept > 0
