"""cryosegnet report: a self-contained HTML page, checked as text and in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from inspection_helpers import simulated_session

from cryosegnet.cli.main import main
from cryosegnet.inspection.report import ReportSettings, write_report
from cryosegnet.inspection.threshold import threshold_picks

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)


def _data(page: str) -> dict:
    match = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S
    )
    return json.loads(match.group(1))


def test_report_html_is_self_contained_and_carries_the_picks(tmp_path, monkeypatch):
    mics, picks_dir, tables = simulated_session(tmp_path, n=4, empty=1)
    monkeypatch.chdir(tmp_path)  # autopick.star names the micrographs as Movies/<name>
    summary = write_report("picks", "out/report.html", settings=ReportSettings(thumbnail_size=128))
    assert summary.n_micrographs == 4 and summary.n_thumbnails == 4
    assert summary.n_picks == sum(len(t) for t in tables.values())
    page = (tmp_path / "out" / "report.html").read_text()
    # self-contained: no external resources
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page and "@import" not in page
    assert page.count('<img loading="lazy"') == 4
    assert page.count('src="data:image/jpeg;base64,') == 4
    assert "IntersectionObserver" in page and 'type="range"' in page
    assert 'id="kept-count"' in page and 'id="command"' in page and 'id="copy"' in page
    data = _data(page)
    assert data["picks_dir"] == "picks" and data["output"] == "picks_thresholded"
    assert data["threshold"] == data["score_min"] == 0.0
    by_name = {m["name"]: m for m in data["micrographs"]}
    for mic in mics:
        item = by_name[f"Movies/{mic.name}"]
        truth = tables[mic.stem]
        assert item["w"] == 256 and item["h"] == 256 and item["tw"] == item["th"] == 128
        assert item["image"] is True
        np.testing.assert_allclose(item["x"], ((truth["x"] + 0.5) * 0.5 - 0.5).round(1))
        np.testing.assert_allclose(item["s"], truth["score"].round(5))  # as the STAR holds it


def test_report_without_micrograph_files_draws_on_blank_boxes(tmp_path):
    _, picks_dir, _ = simulated_session(tmp_path, n=2, layout="flat")
    out = tmp_path / "r.html"
    summary = write_report(picks_dir, out)  # cwd is not the project: no files found
    assert summary.n_thumbnails == 0 and len(summary.without_image) == 2
    page = out.read_text()
    assert page.count('class="noimg"') == 2 and "<img" not in page


def test_report_cli_pairs_given_micrographs(tmp_path, capsys):
    mics, picks_dir, _ = simulated_session(tmp_path, n=3, layout="flat")
    out = tmp_path / "r.html"
    assert (
        main(
            [
                "report",
                str(picks_dir),
                str(tmp_path / "Movies"),
                "-o",
                str(out),
                "--thumbnail-size",
                "64",
                "--threshold",
                "0.25",
                "--threshold-output",
                "cut picks",
            ]
        )
        == 0
    )
    assert "3 thumbnails" in capsys.readouterr().out
    data = _data(out.read_text())
    assert data["threshold"] == 0.25 and data["output"] == "'cut picks'"
    assert all(m["tw"] == 64 for m in data["micrographs"])


def _chromium(url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": os.environ.get("HOME", "/tmp")},
    )


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_report_in_headless_chromium(tmp_path, monkeypatch):
    _, picks_dir, tables = simulated_session(tmp_path, n=4, empty=0)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report.html"
    write_report("picks", out, settings=ReportSettings(thumbnail_size=128))
    counts = {}
    for threshold in ("0", "0.5", "0.9"):
        run = _chromium(f"{out.as_uri()}#threshold={threshold}", "--dump-dom")
        assert run.returncode == 0, run.stderr[-2000:]
        dom = run.stdout
        assert 'data-ready="1"' in dom, "the page script did not finish"
        assert not re.search(r"<html[^>]*data-errors", dom), "a script error happened"
        console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
        assert not console, console
        kept = int(re.search(r'id="kept-count">(\d+)<', dom).group(1))
        command = re.search(r'id="command">([^<]*)<', dom).group(1)
        assert command == f"cryosegnet threshold picks --min-score {threshold} -o picks_thresholded"
        # the page counts exactly what `cryosegnet threshold` keeps
        summary = threshold_picks("picks", tmp_path / f"cut{threshold}", float(threshold))
        assert kept == sum(summary.kept.values())
        counts[threshold] = kept
        # the empty micrograph is flagged and sorted first
        first_card = re.search(
            r'<div class="card[^"]*" data-i="\d+">.*?</div></div></div>', dom, re.S
        ).group(0)
        assert "empty" in first_card and "flag-bad" in first_card
    assert counts["0"] == sum(len(t) for t in tables.values())
    assert counts["0"] > counts["0.5"] > counts["0.9"] > 0


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_report_screenshot_is_not_blank(tmp_path, monkeypatch):
    import cv2

    simulated_session(tmp_path, n=3)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report.html"
    write_report("picks", out)
    shot = tmp_path / "shot.png"
    run = _chromium(
        f"{out.as_uri()}#threshold=0.5",
        f"--screenshot={shot}",
        "--window-size=1000,800",
        "--hide-scrollbars",
    )
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    picture = cv2.imread(str(shot))
    assert picture.shape[:2] == (800, 1000)
    # kept picks are drawn in red over the thumbnails
    red = (picture[:, :, 2] > 200) & (picture[:, :, 1] < 110) & (picture[:, :, 0] < 110)
    assert red[200:].sum() > 200
    assert picture[200:].std() > 20  # thumbnails, not an empty page


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_report_stays_usable_for_2000_micrographs(tmp_path):
    from cryosegnet.io.coordinates import make_picks, write_coordinate_star

    rng = np.random.default_rng(0)
    mics, _, _ = simulated_session(tmp_path / "sim", n=1)
    picks_dir, movies = tmp_path / "picks", tmp_path / "Movies"
    movies.mkdir()
    n_kept = 0
    import cv2

    from cryosegnet.inspection.display import display_image
    from cryosegnet.io.micrographs import read_micrograph

    picture = display_image(read_micrograph(mics[0]).data, 256)
    for i in range(2000):  # distinct files: find_micrographs folds links to one file together
        cv2.imwrite(str(movies / f"m{i:04d}.png"), picture)
        n = int(rng.integers(0, 200))
        scores = rng.uniform(0, 1, n)
        n_kept += int((scores >= 0.5).sum())
        star = picks_dir / "Movies" / f"m{i:04d}_autopick.star"
        star.parent.mkdir(parents=True, exist_ok=True)
        write_coordinate_star(
            star, make_picks(rng.uniform(0, 256, n), rng.uniform(0, 256, n), scores.round(5))
        )
    out = tmp_path / "report.html"
    summary = write_report(picks_dir, out, [str(movies)], ReportSettings(workers=2))
    assert summary.n_thumbnails == 2000
    page = out.read_text()
    assert page.count('loading="lazy"') == 2000
    # time a slider move (every count, flag and visible overlay) inside the page
    probe = """<script>window.addEventListener("load", function () {
      var slider = document.getElementById("threshold");
      slider.value = 0.5; slider.dispatchEvent(new Event("input"));
      var t0 = performance.now();
      requestAnimationFrame(function () {
        document.documentElement.setAttribute("data-update-ms", String(performance.now() - t0));
      });
    });</script></body>"""
    (tmp_path / "probe.html").write_text(page.replace("</body>", probe))
    run = _chromium((tmp_path / "probe.html").as_uri(), "--dump-dom")
    dom = run.stdout
    assert 'data-ready="1"' in dom and not re.search(r"<html[^>]*data-errors", dom)
    assert re.search(r'id="command">[^<]* --min-score 0.5 ', dom)  # the slider lands on 0.5
    assert int(re.search(r'id="kept-count">(\d+)<', dom).group(1)) == n_kept
    update_ms = float(re.search(r'data-update-ms="([\d.]+)"', dom).group(1))
    assert update_ms < 2000, f"a slider move took {update_ms:.0f} ms"


def _contaminated_session(root):
    """Two contaminated simulated micrographs with picks whose manifests say the picker
    masked bad regions on the first and not on the second (``--keep-bad-regions``)."""
    from cryosegnet.io.coordinates import read_coordinates, write_coordinate_star, write_index_star
    from cryosegnet.simulation import SimulationConfig, write_dataset

    config = SimulationConfig(size=384, difficulty="easy", contamination=4, diameter_px=20.0)
    write_dataset(root / "Movies", config, n=2, seed=5)
    entries = []
    for i, mic in enumerate(sorted((root / "Movies").glob("*.mrc"))):
        picks = read_coordinates(mic.with_suffix(".csv"))  # a STAR keeps no diameter
        picks["score"] = np.linspace(0, 1, len(picks))
        star = root / "picks" / "Movies" / f"{mic.stem}_autopick.star"
        star.parent.mkdir(parents=True, exist_ok=True)
        manifest = {"diameter_px": 20.0, "options": {"settings": {"mask_bad_regions": i == 0}}}
        write_coordinate_star(star, picks, manifest=manifest)
        entries.append((f"Movies/{mic.name}", str(star)))
    write_index_star(root / "picks" / "autopick.star", entries)


def test_report_tints_the_bad_regions_only_where_the_picker_masked_them(tmp_path, monkeypatch):
    import base64

    import cv2

    from cryosegnet.inspection.display import BAD_REGION_COLOUR_BGR

    _contaminated_session(tmp_path)
    monkeypatch.chdir(tmp_path)
    plain = write_report("picks", "plain.html", settings=ReportSettings(thumbnail_size=96))
    assert (
        plain.n_bad_regions is None and 'class="bad"' not in (tmp_path / "plain.html").read_text()
    )
    settings = ReportSettings(thumbnail_size=96, bad_regions=True)
    summary = write_report("picks", "report.html", settings=settings)
    assert summary.n_bad_regions == 1 and "bad regions tinted on 1 of 2" in summary.text()
    page = (tmp_path / "report.html").read_text()
    tints = re.findall(r'<img class="bad"[^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(tints) == 1 and 'id="show-bad"' in page
    tint = cv2.imdecode(np.frombuffer(base64.b64decode(tints[0]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert tint.shape == (96, 96, 4)
    tinted = tint[:, :, 3] > 0
    assert 0 < tinted.mean() < 0.9  # the contamination, not the whole field
    assert (tint[tinted][:, :3] == BAD_REGION_COLOUR_BGR).all()


def test_report_cli_takes_bad_regions(tmp_path, monkeypatch, capsys):
    _contaminated_session(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["report", "picks", "-o", "r.html", "--bad-regions", "--thumbnail-size", "64"]) == 0
    assert "bad regions tinted on 1 of 2" in capsys.readouterr().out


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_report_bad_region_switch_in_headless_chromium(tmp_path, monkeypatch):
    _contaminated_session(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report.html"
    write_report("picks", out, settings=ReportSettings(thumbnail_size=96, bad_regions=True))
    for hash_, hidden in (("", False), ("#threshold=0.5&bad=0", True)):
        run = _chromium(out.as_uri() + hash_, "--dump-dom")
        assert run.returncode == 0, run.stderr[-2000:]
        dom = run.stdout
        assert 'data-ready="1"' in dom and not re.search(r"<html[^>]*data-errors", dom)
        main_tag = re.search(r'<main id="cards"[^>]*>', dom).group(0)
        assert ("hide-bad" in main_tag) is hidden


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_the_report_says_why_a_micrograph_has_no_picks(tmp_path, monkeypatch):
    from cryosegnet.io.coordinates import write_coordinate_star

    mics, picks_dir, tables = simulated_session(tmp_path, n=3)
    flagged, empty = mics[0].stem, mics[1].stem
    # as pick --refine and pick --skip-empty leave them: no picks, and the manifest says why
    none = tables[flagged].iloc[:0]
    write_coordinate_star(
        picks_dir / "Movies" / f"{flagged}_autopick.star", none, {"bad_micrographs": [flagged]}
    )
    write_coordinate_star(
        picks_dir / "Movies" / f"{empty}_autopick.star", none, {"judged_empty": True}
    )
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report.html"
    write_report("picks", out, settings=ReportSettings(thumbnail_size=128))
    why = {m["name"]: m["why"] for m in _data(out.read_text())["micrographs"]}
    assert why == {
        f"Movies/{flagged}.mrc": "flagged by --refine",
        f"Movies/{empty}.mrc": "judged empty",
        f"Movies/{mics[2].stem}.mrc": None,
    }
    run = _chromium(f"{out.as_uri()}#threshold=0", "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    assert 'data-ready="1"' in dom and not re.search(r"<html[^>]*data-errors", dom)
    assert int(re.search(r'id="flag-count">(\d+)<', dom).group(1)) == 2
    assert "flagged by --refine" in dom and "judged empty" in dom
