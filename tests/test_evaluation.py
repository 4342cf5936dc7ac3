"""Particle-level metrics against hand-computed cases, the report files and `evaluate` CLI."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pandas as pd
import pytest

from cryosegnet.evaluation.matching import match_picks
from cryosegnet.evaluation.metrics import evaluate_picks, pixel_dice, pr_curve
from cryosegnet.evaluation.pairing import load_coordinate_sets, micrograph_key
from cryosegnet.evaluation.report import format_table, write_report


def table(xy, scores=None, diameter=np.nan) -> pd.DataFrame:
    xy = np.asarray(xy, float).reshape(-1, 2)
    scores = np.ones(len(xy)) if scores is None else np.asarray(scores, float)
    return pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "score": scores, "diameter": diameter})


# --------------------------------------------------------------------------- matching


def test_duplicate_pick_counts_once():
    result = match_picks([[10, 10], [11, 10]], [0.9, 0.8], [[10, 10]], radius=5)
    assert result.is_tp.tolist() == [True, False]


def test_pick_between_two_particles_matches_one():
    result = match_picks([[5, 0]], [1.0], [[0, 0], [10, 0]], radius=6)
    assert result.is_tp.sum() == 1
    assert result.label_index.tolist() == [0]  # equal distance: the first label, deterministic


def test_greedy_in_descending_score_order():
    labels = [[0, 0], [8, 0]]
    # The confident pick claims its nearest label (A) first, leaving the other pick nothing.
    r = match_picks([[3, 0], [-1, 0]], [0.9, 0.5], labels, radius=5.5)
    assert r.is_tp.tolist() == [True, False]
    # Swap the scores: now (-1, 0) claims A first and (3, 0) takes B.
    r = match_picks([[3, 0], [-1, 0]], [0.5, 0.9], labels, radius=5.5)
    assert r.is_tp.sum() == 2
    assert r.order.tolist() == [1, 0]


def test_matching_radius_and_empty_inputs():
    assert match_picks([[0, 0]], [1], [[0, 5.01]], radius=5).is_tp.sum() == 0
    assert match_picks([[0, 0]], [1], [[0, 5.0]], radius=5).is_tp.sum() == 1
    assert match_picks(np.zeros((0, 2)), [], [[0, 0]], radius=5).n_picks == 0
    assert match_picks([[0, 0]], [1], np.zeros((0, 2)), radius=5).is_tp.sum() == 0
    with pytest.raises(ValueError):
        match_picks([[0, 0]], [1], [[0, 0]], radius=0)


# --------------------------------------------------------------------------- curves


def test_auprc_perfect_ranking_is_one():
    curve = pr_curve([0.9, 0.8, 0.1], [True, True, False], n_labels=2)
    assert curve.auprc() == pytest.approx(1.0)


def test_auprc_hand_computed():
    # FP 0.9, TP 0.8, TP 0.7 with 2 labels: P/R = (0, 0), (1/2, 1/2), (2/3, 1)
    curve = pr_curve([0.9, 0.8, 0.7], [False, True, True], n_labels=2)
    assert curve.auprc() == pytest.approx(0.5 * 0.5 + (2 / 3) * 0.5)


def test_auprc_missed_particles_cap_the_area():
    curve = pr_curve([0.9], [True], n_labels=4)
    assert curve.auprc() == pytest.approx(0.25)


def test_best_f1_and_threshold():
    # TP .9, FP .8, FP .7, TP .1; 3 labels -> best F1 = 4/7 at score >= 0.1
    curve = pr_curve([0.9, 0.8, 0.7, 0.1], [True, False, False, True], n_labels=3)
    f1, threshold = curve.best_f1()
    assert f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert threshold == pytest.approx(0.1)


def test_tied_scores_are_one_threshold():
    curve = pr_curve([0.5, 0.5, 0.5], [True, False, True], n_labels=2)
    assert curve.thresholds.tolist() == [0.5]
    assert curve.precision.tolist() == pytest.approx([2 / 3])


# --------------------------------------------------------------------------- evaluate_picks


def test_pooled_versus_per_micrograph():
    labels = {
        "a": table([[0, 0]], diameter=10),
        "b": table([[0, 0], [50, 0], [100, 0]], diameter=10),
    }
    picks = {"a": table([[1, 0]]), "b": table([[0, 1], [200, 200]])}
    result = evaluate_picks(picks, labels)
    per = {m.micrograph: m for m in result.per_micrograph}
    assert (per["a"].tp, per["a"].fp, per["a"].fn) == (1, 0, 0)
    assert (per["b"].tp, per["b"].fp, per["b"].fn) == (1, 1, 2)
    assert per["b"].precision == pytest.approx(0.5)
    assert per["b"].recall == pytest.approx(1 / 3)
    pooled = result.pooled
    assert pooled["precision"] == pytest.approx(2 / 3)
    assert pooled["recall"] == pytest.approx(2 / 4)
    assert pooled["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert pooled["f1_mean_over_micrographs"] == pytest.approx((1.0 + per["b"].f1) / 2)


def test_default_radius_is_half_the_label_diameter():
    labels = {"m": table([[0, 0]], diameter=20)}
    assert evaluate_picks({"m": table([[9.9, 0]])}, labels).pooled["tp"] == 1
    assert evaluate_picks({"m": table([[10.1, 0]])}, labels).pooled["tp"] == 0
    assert evaluate_picks({"m": table([[10.1, 0]])}, labels, radius=11).pooled["tp"] == 1
    with pytest.raises(ValueError, match="diameter"):
        evaluate_picks({"m": table([[0, 0]])}, {"m": table([[0, 0]])})
    assert (
        evaluate_picks({"m": table([[0, 0]])}, {"m": table([[0, 0]])}, diameter=8).pooled["tp"] == 1
    )


def test_threshold_cuts_counts_but_not_curve():
    labels = {"m": table([[0, 0], [100, 0], [200, 0]], diameter=10)}
    picks = {"m": table([[0, 0], [50, 50], [70, 70], [200, 0]], [0.9, 0.8, 0.7, 0.1])}
    result = evaluate_picks(picks, labels, threshold=0.75)
    pooled = result.pooled
    assert (pooled["n_picks"], pooled["tp"]) == (2, 1)
    assert pooled["precision"] == pytest.approx(0.5)
    assert pooled["best_threshold"] == pytest.approx(0.1)
    assert pooled["best_f1"] == pytest.approx(4 / 7)


def test_dice_is_mean_not_max_over_micrographs():
    labels = {"good": table([[20, 20]], diameter=10), "bad": table([[20, 20]], diameter=10)}
    picks = {"good": table([[20, 20]], diameter=10), "bad": table([[80, 80]], diameter=10)}
    result = evaluate_picks(picks, labels)
    assert [m.dice for m in result.per_micrograph] == pytest.approx([0.0, 1.0])
    assert result.pooled["dice_mean"] == pytest.approx(0.5)


def test_pixel_dice_hand_cases():
    a = table([[10, 10]], diameter=6)
    assert pixel_dice(a, a, 6, 6) == pytest.approx(1.0)
    assert pixel_dice(a, table([[30, 30]], diameter=6), 6, 6) == 0.0
    # Clipped to the image: a disk half outside counts only its inside half.
    inside = pixel_dice(
        table([[0, 10]], diameter=6), table([[0, 10]], diameter=6), 6, 6, shape=(20, 20)
    )
    assert inside == pytest.approx(1.0)
    assert pixel_dice(table([]), table([]), 6, 6) == 1.0


def test_missing_picks_count_as_empty_or_skip():
    labels = {"a": table([[0, 0]], diameter=10), "b": table([[0, 0]], diameter=10)}
    picks = {"a": table([[0, 0]]), "c": table([[0, 0]])}
    result = evaluate_picks(picks, labels)
    assert result.labels_without_picks == ["b"]
    assert result.picks_without_labels == ["c"]
    assert result.pooled["recall"] == pytest.approx(0.5)
    skipped = evaluate_picks(picks, labels, missing_picks="skip")
    assert skipped.pooled["recall"] == pytest.approx(1.0)
    assert skipped.labels_without_picks == ["b"]


# --------------------------------------------------------------------------- pairing, report


@pytest.mark.parametrize(
    "name, key",
    [
        ("May08_03.13.02.bin.csv", "May08_03.13.02.bin"),
        ("May08_03.13.02.bin_autopick.star", "May08_03.13.02.bin"),
        ("CBOX/mic_001.cbox", "mic_001"),
        ("mic_001.mrc", "mic_001"),
        ("mic_001", "mic_001"),
        ("mic_001_cryosegnet.star", "mic_001"),
    ],
)
def test_micrograph_key(name, key):
    assert micrograph_key(name) == key


def test_two_files_for_one_micrograph_is_an_error(tmp_path):
    from cryosegnet.errors import CoordinateFileError

    (tmp_path / "m.csv").write_text("X-Coordinate,Y-Coordinate,Diameter\n1,2,10\n")
    (tmp_path / "m_autopick.csv").write_text("X-Coordinate,Y-Coordinate,Diameter\n1,2,10\n")
    with pytest.raises(CoordinateFileError, match="already has coordinates"):
        load_coordinate_sets(tmp_path)


def test_report_files_and_table(tmp_path):
    labels = {"m1": table([[0, 0], [50, 0]], diameter=10), "m2": table([[0, 0]], diameter=10)}
    picks = {"m1": table([[0, 0], [90, 90]], [0.9, 0.4]), "m2": table(np.zeros((0, 2)))}
    result = evaluate_picks(picks, labels)
    paths = write_report(result, tmp_path / "report", extra={"picks": "x"})
    data = json.loads(paths["json"].read_text(), parse_constant=lambda c: pytest.fail(c))
    assert data["pooled"]["tp"] == 1
    assert data["inputs"] == {"picks": "x"}
    assert data["per_micrograph"][1]["best_threshold"] is None  # no picks: no threshold
    csv = pd.read_csv(paths["csv"])
    assert csv["micrograph"].tolist() == ["m1", "m2"]
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    text = format_table(result)
    assert "pooled" in text and "m2" in text


def _run_evaluate_cli(argv: list[str]) -> int:
    from cryosegnet.cli import evaluate

    parser = argparse.ArgumentParser()
    evaluate.add_parser(parser.add_subparsers())
    args = parser.parse_args(["evaluate", *argv])
    return args.func(args)


def test_evaluate_cli_pairs_by_name(tmp_path, capsys):
    labels_dir, picks_dir = tmp_path / "labels", tmp_path / "picks"
    labels_dir.mkdir()
    picks_dir.mkdir()
    for name, xs in (("mic.bin", [100, 200]), ("other", [300])):
        rows = "\n".join(f"{x},50,40" for x in xs)
        (labels_dir / f"{name}.csv").write_text(f"X-Coordinate,Y-Coordinate,Diameter\n{rows}\n")
    (picks_dir / "mic.bin_autopick.star").write_text(
        "data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
        "_rlnAutopickFigureOfMerit #3\n101.0 52.0 0.9\n500.0 500.0 0.2\n"
    )
    (picks_dir / "unlabelled.star").write_text(
        "data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n1.0 2.0\n"
    )
    code = _run_evaluate_cli([str(picks_dir), str(labels_dir), "-o", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 0
    assert "labelled micrograph(s) without picks" in captured.err and "other" in captured.err
    assert "without labels" in captured.err and "unlabelled" in captured.err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["pooled"]["tp"] == 1
    assert metrics["pooled"]["n_labels"] == 3  # "other" counts: the picker found nothing there
    assert math.isclose(metrics["pooled"]["precision"], 0.5)


def test_evaluate_cli_reports_errors_in_one_line(tmp_path, capsys):
    (tmp_path / "a.csv").write_text("X-Coordinate,Y-Coordinate,Diameter\n1,1,10\n")
    (tmp_path / "b.csv").write_text("X-Coordinate,Y-Coordinate,Diameter\n1,1,10\n")
    code = _run_evaluate_cli([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    assert code == 1
    assert "no picks file pairs" in capsys.readouterr().err
    assert _run_evaluate_cli([str(tmp_path / "missing"), str(tmp_path / "b.csv")]) == 1


def test_picker_output_folder_prefers_scored_per_micrograph_files(tmp_path):
    """A pick output folder: per-micrograph STAR + CSV + box copies, index and combined STAR."""
    from cryosegnet.io.coordinates import (
        write_box,
        write_combined_star,
        write_coordinate_star,
        write_cryoppp_csv,
        write_index_star,
    )

    out = tmp_path / "picks"
    out.mkdir()
    picks = {
        "mic_01": table([[10, 10], [50, 50]], [0.9, 0.3], diameter=20),
        "mic_02": table([[5, 5]], [0.7], diameter=20),
    }
    for name, p in picks.items():
        write_coordinate_star(out / f"{name}.star", p)
        write_cryoppp_csv(out / f"{name}.csv", p)
        write_box(out / f"{name}.box", p, box_size=20)
    write_index_star(
        out / "autopick.star", [(f"Movies/{n}.mrc", str(out / f"{n}.star")) for n in picks]
    )
    write_combined_star(out / "particles.star", {f"Movies/{n}.mrc": p for n, p in picks.items()})
    (out / "notes.txt").write_text("not a coordinate file\n")
    notes: list[str] = []
    sets = load_coordinate_sets(out, notes=notes)
    assert sorted(sets) == ["mic_01", "mic_02"]
    assert sets["mic_01"]["score"].tolist() == pytest.approx([0.9, 0.3])  # STAR, not CSV
    assert any("notes.txt" in n for n in notes)
    assert not any("not used" in n for n in notes)  # the CSV, box, combined: same picks
    write_combined_star(out / "particles.star", {"Movies/mic_01.mrc": picks["mic_02"]})
    notes = []
    load_coordinate_sets(out, notes=notes)
    assert any("not used" in n and "particles.star" in n for n in notes)  # different picks
    # The index alone (RELION AutoPick job folder) leads to the per-micrograph files.
    assert sorted(load_coordinate_sets(out / "autopick.star")) == ["mic_01", "mic_02"]


def test_report_curve_is_thinned_but_keeps_best_point():
    rng = np.random.default_rng(0)
    labels = {"m": table(rng.uniform(0, 5000, (300, 2)), diameter=10)}
    picks = {"m": table(rng.uniform(0, 5000, (5000, 2)), rng.random(5000))}
    result = evaluate_picks(picks, labels)
    points = result.to_dict()["pr_curve"]
    assert len(points["threshold"]) <= 2001
    assert result.pooled["best_threshold"] in points["threshold"]


def test_evaluate_cli_scales_binned_picks(tmp_path):
    (tmp_path / "labels.csv").write_text("X-Coordinate,Y-Coordinate,Diameter\n400,800,40\n")
    (tmp_path / "picks.txt").write_text(
        "image_name\tx_coord\ty_coord\tscore\nlabels\t100\t200\t1\n"
    )
    out = tmp_path / "out"
    args = [str(tmp_path / "picks.txt"), str(tmp_path / "labels.csv"), "-o", str(out)]
    assert _run_evaluate_cli([*args, "--no-plot"]) == 0
    assert json.loads((out / "metrics.json").read_text())["pooled"]["tp"] == 0
    assert _run_evaluate_cli([*args, "--scale-picks", "4"]) == 0
    assert json.loads((out / "metrics.json").read_text())["pooled"]["tp"] == 1


def test_report_says_where_the_pr_curve_stops_when_picks_were_thresholded(tmp_path):
    """The same picks cut at 0.5 when they were made: AUPRC drops, and the report says why."""
    labels = {"m": table([[0, 0], [100, 0], [200, 0], [300, 0]], diameter=10)}
    xy = [[0, 0], [100, 0], [50, 50], [200, 0], [300, 0]]
    scores = [0.9, 0.8, 0.6, 0.3, 0.2]
    everything = evaluate_picks({"m": table(xy, scores)}, labels)
    assert everything.pooled["max_recall"] == 1.0 and everything.warnings == []
    cut = evaluate_picks({"m": table(xy[:3], scores[:3])}, labels)
    assert cut.pooled["lowest_score"] == pytest.approx(0.6)
    assert cut.pooled["max_recall"] == pytest.approx(0.5)
    assert cut.pooled["auprc"] < everything.pooled["auprc"]
    assert len(cut.warnings) == 1 and "thresholded" in cut.warnings[0]
    assert "0.6" in cut.warnings[0]
    text = format_table(cut)
    assert "warning: the PR curve stops at score 0.6" in text
    assert "score >= 0.6000" in text
    data = json.loads(write_report(cut, tmp_path, plot=False)["json"].read_text())
    assert data["warnings"] == cut.warnings and data["pooled"]["lowest_score"] == 0.6
    unranked = evaluate_picks({"m": table(xy[:3])}, labels)  # no scores: all 1.0
    assert "no ranking" in unranked.warnings[0]


def test_rim_picks_lose_at_a_quarter_diameter_and_centred_picks_do_not():
    centres = np.array([[x, y] for x in range(50, 500, 100) for y in range(50, 500, 100)], float)
    labels = {"mic": pd.DataFrame({"x": centres[:, 0], "y": centres[:, 1], "diameter": 60.0})}
    scores = np.linspace(1, 0.5, len(centres))
    for offset, quarter_best in ((2.0, 1.0), (20.0, 0.0)):  # near the centre; on the rim
        picks = {
            "mic": pd.DataFrame(
                {"x": centres[:, 0] + offset, "y": centres[:, 1], "score": scores, "diameter": 60.0}
            )
        }
        pooled = evaluate_picks(picks, labels, shapes={"mic": (500, 500)}).pooled
        assert pooled["best_f1"] == 1.0
        assert pooled["best_f1_quarter"] == quarter_best
        assert pooled["median_centre_error"] == pytest.approx(offset)


def test_a_blind_grid_at_the_picks_density_is_reported():
    from cryosegnet.evaluation.centring import grid_points

    grid = grid_points(25, (500, 500))  # a 5 x 5 grid, 100 px apart, from 50 px
    assert len(grid) == 25 and grid.min() == pytest.approx(50)
    labels = {"mic": pd.DataFrame({"x": grid[:, 0], "y": grid[:, 1], "diameter": 60.0})}
    picks = {"mic": pd.DataFrame({"x": [50.0], "y": [50.0], "score": [1.0], "diameter": 60.0})}
    pooled = evaluate_picks(picks, labels, shapes={"mic": (500, 500)}).pooled
    # One pick at the best threshold: a one-point grid, at the field's centre (250, 250), which
    # is a label: F1 = 2 x 1 hit / (1 point + 25 labels).
    assert pooled["grid_points"] == 1
    assert pooled["grid_best_f1"] == pytest.approx(2 / 26)
