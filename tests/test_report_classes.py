"""cryosegnet report --classes: the class grid of a classification, on the page and in Chromium."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from test_classification import SMALL, _disk_session
from test_report import CHROMIUM, _chromium

from cryosegnet.classification.pipeline import classify_picks, select_classes
from cryosegnet.cli.main import main
from cryosegnet.errors import CryoSegNetError
from cryosegnet.inspection.picksets import PickFile, find_pick_files, read_picks
from cryosegnet.inspection.report import ReportSettings, write_report
from cryosegnet.inspection.report_classes import UNCLASSIFIED, read_report_classes


@pytest.fixture(scope="module")
def classified(tmp_path_factory) -> Path:
    """``root/Movies`` (two disk micrographs), ``root/picks`` and ``root/classes`` (2 classes)."""
    root = tmp_path_factory.mktemp("classified")
    movies, picks_dir, _ = _disk_session(root)
    classify_picks(picks_dir, [str(movies)], root / "classes", SMALL)
    return root


def _data(page: str) -> dict:
    match = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S
    )
    return json.loads(match.group(1))


def test_classification_folder_gives_each_pick_its_class(classified):
    shown = read_report_classes(classified / "classes", tile_px=64)
    table = pd.read_csv(classified / "classes" / "classes.csv")
    assert [t.number for t in shown.tiles] == table["class"].tolist() == [1, 2]
    assert [t.size for t in shown.tiles] == table["size"].tolist()
    assert [t.auto_selected for t in shown.tiles] == table["auto_selected"].tolist()
    import base64

    picture = cv2.imdecode(
        np.frombuffer(base64.b64decode(shown.tiles[0].png), np.uint8), cv2.IMREAD_UNCHANGED
    )
    assert picture.shape == (64, 64) and picture.std() > 10  # the average, not a blank tile

    particles = pd.read_csv(classified / "classes" / "particles.csv")
    for pick_file in find_pick_files(classified / "picks"):
        picks = read_picks(pick_file)
        found, found_above = shown.classes_of(pick_file, picks)
        truth = particles[particles["source"] == str(pick_file.relative)]
        assert len(found) == len(picks) == len(truth)
        by_place = {(round(x, 2), round(y, 2)): c for x, y, c in truth[["x", "y", "class"]].values}
        expected = [by_place[(round(x, 2), round(y, 2))] for x, y in picks[["x", "y"]].values]
        np.testing.assert_array_equal(found, expected)
        above = {
            (round(x, 2), round(y, 2)): a for x, y, a in truth[["x", "y", "above_decoys"]].values
        }
        np.testing.assert_array_equal(
            found_above,
            [above[(round(x, 2), round(y, 2))] for x, y in picks[["x", "y"]].values],
        )
        # a pick that is not in the classification has no class (nor beats the decoys)
        moved = picks.assign(x=picks["x"] + 5.0)
        moved_classes, moved_above = shown.classes_of(pick_file, moved)
        assert (moved_classes == UNCLASSIFIED).all() and not moved_above.any()
        # re-centred picks (classify --recentre, select) are found at their re-centred place
        recentred = picks.assign(
            x=picks["x"].map(dict(zip(truth["x"], truth["recentred_x"]))),
            y=picks["y"].map(dict(zip(truth["y"], truth["recentred_y"]))),
        )
        assert (recentred["x"] - picks["x"]).abs().max() > 1.0
        np.testing.assert_array_equal(shown.classes_of(pick_file, recentred)[0], expected)
        # a copy of the picks elsewhere is found by its micrograph's name
        elsewhere = PickFile(Path("x.star"), Path("other/x.star"), pick_file.micrograph, "x")
        np.testing.assert_array_equal(shown.classes_of(elsewhere, picks)[0], expected)


def test_report_with_classes_shows_the_class_grid_and_select_command(classified, monkeypatch):
    monkeypatch.chdir(classified)
    summary = write_report(
        "picks", "r.html", settings=ReportSettings(thumbnail_size=64), classes="classes"
    )
    assert summary.n_classes == 2 and summary.n_classified == summary.n_picks == 50
    assert "2 classes; 50 of 50 picks" in summary.text()
    page = Path("r.html").read_text()
    assert 'id="class-grid"' in page and 'id="select-command"' in page
    assert page.count('class="cls"') == 2 and page.count('src="data:image/png;base64,') == 2
    assert page.count('class="cls-count"') == 2  # every micrograph counts its selected picks
    data = _data(page)
    table = pd.read_csv("classes/classes.csv")
    assert data["classes"] == {
        "folder": "classes",
        "output": "classes/selected",
        "numbers": [1, 2],
        "sizes": table["size"].tolist(),
        "auto": table.loc[table["auto_selected"], "class"].tolist(),
    }
    particles = pd.read_csv("classes/particles.csv")
    for mic in data["micrographs"]:
        assert sorted(mic["c"]) == sorted(
            particles.loc[particles["micrograph"] == mic["name"], "class"]
        )
    # without --classes the page is as before
    write_report("picks", "plain.html", settings=ReportSettings(thumbnail_size=64))
    plain = Path("plain.html").read_text()
    assert 'id="class-grid"' not in plain and _data(plain)["classes"] is None


def test_report_classes_cli_and_its_errors(classified, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(classified)
    args = ["report", "picks", "Movies", "-o", str(tmp_path / "r.html"), "--thumbnail-size", "32"]
    assert main([*args, "--classes", "classes", "--select-output", "good picks"]) == 0
    assert "50 of 50 picks found in the classification" in capsys.readouterr().out
    assert _data((tmp_path / "r.html").read_text())["classes"]["output"] == "'good picks'"
    # an option that cannot apply is an error
    assert main([*args, "--select-output", "x"]) != 0
    assert "--select-output needs --classes" in capsys.readouterr().err
    # a folder that is not a classification
    assert main([*args, "--classes", "Movies"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a classification folder" in err
    # a classification of other picks: nothing to show, said in one line
    other = tmp_path / "other"
    shutil.copytree("classes", other)
    moved = pd.read_csv(other / "particles.csv").assign(source="a.star", micrograph="a.mrc")
    moved.to_csv(other / "particles.csv", index=False)
    with pytest.raises(CryoSegNetError, match="none of its particles is a pick"):
        write_report("picks", tmp_path / "x.html", classes=other)


def _page_state(dom: str) -> tuple[str, int, list[int]]:
    assert 'data-ready="1"' in dom, "the page script did not finish"
    assert not re.search(r"<html[^>]*data-errors", dom), "a script error happened"
    command = re.search(r'id="select-command">([^<]*)<', dom).group(1)
    kept = int(re.search(r'id="class-kept">(\d+)<', dom).group(1))
    per_mic = [int(v) for v in re.findall(r'class="cls-count">(\d+)<', dom)]
    return command, kept, per_mic


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_class_selection_in_headless_chromium(classified, monkeypatch):
    monkeypatch.chdir(classified)
    write_report("picks", "r.html", settings=ReportSettings(thumbnail_size=64), classes="classes")
    particles = pd.read_csv("classes/particles.csv")
    sizes = particles["class"].value_counts().to_dict()
    auto = pd.read_csv("classes/classes.csv").query("auto_selected")["class"].tolist()
    url = (classified / "r.html").as_uri()

    # on load: the auto-selected classes
    command, kept, per_mic = _page_state(_chromium(url, "--dump-dom").stdout)
    listed = ",".join(map(str, auto))
    assert command == f"cryosegnet select classes --classes {listed} -o classes/selected"
    assert kept == sum(sizes[c] for c in auto) and sum(per_mic) == kept

    # a fragment chooses the classes; the counts are the particles `select` keeps
    command, kept, per_mic = _page_state(_chromium(url + "#classes=2", "--dump-dom").stdout)
    assert command == "cryosegnet select classes --classes 2 -o classes/selected"
    assert kept == sizes[2] and sum(per_mic) == kept
    by_mic = particles[particles["class"] == 2].groupby("micrograph").size()
    assert sorted(per_mic) == sorted(
        by_mic.reindex(["Movies/mic0.mrc", "Movies/mic1.mrc"], fill_value=0)
    )

    command, kept, _ = _page_state(_chromium(url + "#threshold=0&classes=", "--dump-dom").stdout)
    assert command == "(select at least one class)" and kept == 0

    # only the members above the noise decoys, as `select --above-decoys` keeps them (some
    # members are marked below the decoys here: on these clean disks all beat them)
    shutil.copytree("classes", "edited")
    edited = pd.read_csv("edited/particles.csv")
    edited.loc[::3, "above_decoys"] = False
    edited.to_csv("edited/particles.csv", index=False)
    write_report("picks", "e.html", settings=ReportSettings(thumbnail_size=64), classes="edited")
    dom = _chromium((classified / "e.html").as_uri() + "#classes=1,2&above-decoys=1", "--dump-dom")
    command, kept, _ = _page_state(dom.stdout)
    assert command == "cryosegnet select edited --classes 1,2 --above-decoys -o edited/selected"
    written = select_classes("edited", [1, 2], output="sel", above_decoys_only=True)
    assert kept == written.n_kept == int(edited["above_decoys"].sum()) < 50
    dom = _chromium((classified / "e.html").as_uri() + "#classes=2", "--dump-dom")
    assert _page_state(dom.stdout)[1] == select_classes("edited", [2], output="sel2").n_kept

    # a click on class 1 adds it to the selection
    probe = """<script>window.addEventListener("load", function () {
      document.querySelector('#class-grid .cls[data-class="1"]').click();
    });</script></body>"""
    Path("probe.html").write_text(Path("r.html").read_text().replace("</body>", probe))
    dom = _chromium((classified / "probe.html").as_uri() + "#classes=2", "--dump-dom").stdout
    command, kept, _ = _page_state(dom)
    assert command == "cryosegnet select classes --classes 1,2 -o classes/selected"
    assert kept == 50
    assert len(re.findall(r'class="cls selected"', dom)) == 2


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_selected_classes_are_highlighted_on_the_micrographs(classified, monkeypatch):
    monkeypatch.chdir(classified)
    write_report("picks", "r.html", settings=ReportSettings(thumbnail_size=256), classes="classes")
    red_pixels = {}
    for chosen in ("", "1", "1,2"):
        shot = classified / f"shot{chosen}.png"
        run = _chromium(
            f"{(classified / 'r.html').as_uri()}#classes={chosen}",
            f"--screenshot={shot}",
            "--window-size=1000,900",
            "--hide-scrollbars",
        )
        assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
        picture = cv2.imread(str(shot))[400:]  # the micrographs, below the histogram and classes
        red = (picture[:, :, 2] > 200) & (picture[:, :, 1] < 110) & (picture[:, :, 0] < 110)
        red_pixels[chosen] = int(red.sum())
    # no class selected: every pick dimmed; each selected class adds its picks in red
    assert picture.std() > 20, "no thumbnails in view"
    assert red_pixels[""] < 50 < red_pixels["1"] < red_pixels["1,2"], red_pixels
