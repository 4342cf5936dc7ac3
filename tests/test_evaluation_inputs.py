"""``cryosegnet evaluate`` scores only what it can score honestly: duplicate labels are
dropped (and said so), impossible options are refused in one line, and its notes appear
only when they apply."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cryosegnet.cli.main import main


def _labels(folder: Path, rows: list[tuple[float, float]], copies: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{x},{y},40" for x, y in rows] * copies
    (folder / "mic.csv").write_text(
        "X-Coordinate,Y-Coordinate,Diameter\n" + "\n".join(lines) + "\n"
    )
    return folder


def _picks(folder: Path, rows: list[tuple[float, float, float]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    body = "\n".join(f"{x} {y} {s}" for x, y, s in rows)
    (folder / "mic_autopick.star").write_text(
        "data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
        f"_rlnAutopickFigureOfMerit #3\n{body}\n"
    )
    return folder


TRUE = [(100.0, 100.0), (300.0, 100.0), (500.0, 100.0), (700.0, 100.0)]
PICKS = [(101.0, 100.0, 0.9), (301.0, 100.0, 0.8), (900.0, 900.0, 0.1)]


def _evaluate(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["evaluate", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_duplicated_label_rows_are_dropped_with_one_note(tmp_path, capsys):
    picks = _picks(tmp_path / "picks", PICKS)
    once = _labels(tmp_path / "once", TRUE)
    twice = _labels(tmp_path / "twice", TRUE, copies=2)
    assert _evaluate(capsys, str(picks), str(once), "-o", str(tmp_path / "r1"))[0] == 0
    code, _, err = _evaluate(capsys, str(picks), str(twice), "-o", str(tmp_path / "r2"))
    assert code == 0
    notes = [line for line in err.splitlines() if "duplicate" in line]
    assert len(notes) == 1 and "4" in notes[0], err
    first = json.loads((tmp_path / "r1" / "metrics.json").read_text())["pooled"]
    second = json.loads((tmp_path / "r2" / "metrics.json").read_text())["pooled"]
    assert second["n_labels"] == first["n_labels"] == 4
    assert second["precision"] == first["precision"] and second["recall"] == first["recall"]


@pytest.mark.parametrize(
    "option, value, needle",
    [
        ("--radius", "inf", "--radius"),
        ("--radius", "-3", "--radius"),
        ("--radius", "nan", "--radius"),
        ("--threshold", "nan", "--threshold"),
        ("--diameter", "-10", "--diameter"),
        ("--diameter", "inf", "--diameter"),
        ("--scale-picks", "nan", "--scale-picks"),
    ],
)
def test_impossible_match_options_are_refused_by_name(tmp_path, capsys, option, value, needle):
    picks, labels = _picks(tmp_path / "picks", PICKS), _labels(tmp_path / "labels", TRUE)
    code, _, err = _evaluate(capsys, str(picks), str(labels), f"{option}={value}")
    assert code == 1 and needle in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert "negative" not in err


def _pick_folder(tmp_path: Path, threshold: float, name: str = "picks") -> Path:
    """A cryosegnet pick output folder (per-micrograph STAR, CSV and box, index and combined
    STAR) made with ``threshold``, with the picks of PICKS above it."""
    from cryosegnet.io.coordinates import make_picks
    from cryosegnet.picking.batch import pick_batch
    from cryosegnet.picking.picker import PickResult

    class Stub:
        def __init__(self):
            self.threshold = threshold

        def preprocess(self, image):
            return image

        def pick_denoised(self, denoised, shapes):
            rows = [r for r in PICKS if r[2] >= threshold]
            picks = make_picks(
                [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], 40.0
            )
            return [
                PickResult(picks, 40.0, d.shape, tuple(s), "stub") for d, s in zip(denoised, shapes)
            ]

    import mrcfile

    mic = tmp_path / "mics" / "mic.mrc"
    if not mic.exists():
        mic.parent.mkdir(parents=True)
        with mrcfile.new(mic) as mrc:
            mrc.set_data(np.zeros((1024, 1024), np.float32) + np.arange(1024, dtype=np.float32))
    out = tmp_path / name
    pick_batch(Stub(), [mic], out, formats=("star", "csv", "box"), progress=False)
    return out


def test_a_pick_folder_gives_no_repeat_note_and_threshold_zero_no_curve_warning(tmp_path, capsys):
    labels = _labels(tmp_path / "labels", TRUE)
    picks = _pick_folder(tmp_path, threshold=0.0)
    code, out, err = _evaluate(capsys, str(picks), str(labels))
    assert code == 0, err
    assert "repeat" not in err, err  # its CSV, box and combined STAR hold the same picks
    assert "PR curve stops" not in out + err  # nothing was cut when picking


def test_the_curve_warning_stays_for_thresholded_picks(tmp_path, capsys):
    labels = _labels(tmp_path / "labels", TRUE)
    picks = _pick_folder(tmp_path, threshold=0.5, name="cut")
    code, out, err = _evaluate(capsys, str(picks), str(labels))
    assert code == 0 and "PR curve stops" in out + err
