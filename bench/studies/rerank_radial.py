"""Re-rank (and re-centre) the picker's own picks with the filter its 2D classes teach.

    python bench/studies/rerank_radial.py   # writes bench/results/rerank_radial.{json,md}

Needs the refinement bench's apoferritin runs (their round-0 picks and the radial filter the
loop learnt from the classes it kept, no label used):
``python bench/refine.py --parts apoferritin --reuse`` and its ``test`` part.

Decided (2026-12-05): not shipped as a separate step. The question: can the 2D classes'
judgement raise the AUPRC of the picks a user already has by 0.10, by ranking them (and
moving each onto the particle) rather than picking again? The whitened radial filter learnt by
``pick --refine --refine-model radial`` from the picks ``classify --low-snr --auto`` keeps is
the classes' judgement in a form that scores any place. Each pick is scored by it where it
stands, or moved to the filter's best place within a radius (picks that then coincide are
suppressed as the filter's own picks are) and scored there.

What it showed (bench/results/rerank_radial.md): on the apoferritin ``train`` split, where
the radius was chosen (half a diameter, the best AUPRC there), re-ranking alone adds 0.04
AUPRC at radius d/2, re-centring adds 0.03 more, and the picks come onto the particles (best
F1 at d/4 0.27 -> 0.50). On ``test``, measured once: +0.06 AUPRC at d/2 (target +0.10), best
F1 at d/4 0.26 -> 0.51. What caps it is the picks' own recall: the picker's picks find about
two thirds of the particles, and no ranking of them recovers the others. The filter's own
picks, which the loop writes, reach +0.20 to +0.23 AUPRC on both splits (last row), so the
loop, not a re-ranking, is what ships.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

import argparse

import numpy as np
import pandas as pd
from benchlib import REPO, RESULTS, apoferritin_labels, command_line, write_results

#: The refinement bench's runs of the centred picks, and the loop variant that learnt a filter.
RUNS = REPO / "runs" / "refine"
SETS = {
    "train": "apoferritin_train_diameter68,centre-picks",
    "test": "apoferritin_test_diameter68,centre-picks",
}
VARIANT = "low-SNR_radial_filter_micrograph_units"
#: Search radii in particle diameters (0: scored where the pick stands); the test split is
#: measured at the one chosen on train only.
RADII = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75)
CHOSEN_RADIUS = 0.5


def moved_and_scored(picks: pd.DataFrame, response: np.ndarray, radius: float, radial) -> dict:
    """Each pick moved to the response's best place within ``radius`` px and scored there;
    picks that land within the filter's separation of a better one are dropped."""
    from cryosegnet.detection.peaks import suppress_close_peaks

    h, w = response.shape
    x, y = picks["x"].to_numpy(float), picks["y"].to_numpy(float)
    if radius < 1:
        col = np.clip(np.round(x).astype(int), 0, w - 1)
        row = np.clip(np.round(y).astype(int), 0, h - 1)
        return pd.DataFrame({"x": x, "y": y, "score": response[row, col].astype(float)})
    reach = int(radius)
    moved = np.empty((len(x), 3))
    for i, (px, py) in enumerate(zip(x, y)):
        x0, x1 = int(max(0, px - reach)), int(min(w, px + reach + 1))
        y0, y1 = int(max(0, py - reach)), int(min(h, py + reach + 1))
        rows, cols = np.mgrid[y0:y1, x0:x1]
        window = np.where(
            (cols - px) ** 2 + (rows - py) ** 2 <= radius**2, response[y0:y1, x0:x1], -np.inf
        )
        best = int(np.argmax(window))
        moved[i] = cols.flat[best], rows.flat[best], window.flat[best]
    kept = suppress_close_peaks(*moved.T, radial.settings.separation * radial.diameter)
    return pd.DataFrame(moved[kept], columns=["x", "y", "score"])


def study(split: str, radii: tuple[float, ...]) -> dict:
    """Figures of the plain picks, their re-ranked variants and the filter's own picks."""
    from cryosegnet.evaluation import evaluate_picks
    from cryosegnet.inspection.picksets import find_pick_files, read_picks
    from cryosegnet.io.micrographs import read_micrograph
    from cryosegnet.training.radial_filter import RadialFilter

    run = RUNS / SETS[split]
    filter_path = run / VARIANT / "refine" / "radial_filter.json"
    if not filter_path.is_file():
        raise SystemExit(f"{filter_path} is missing: run bench/refine.py's apoferritin parts first")
    radial = RadialFilter.load(filter_path)
    paths, labels = apoferritin_labels(split)
    found = {f.stem: read_picks(f.path) for f in find_pick_files(run / "picks")}
    picks = {stem: found[stem] for stem in labels}
    responses = {
        path.stem: radial.response(np.asarray(read_micrograph(path).data, np.float32))
        for path in paths
    }

    def figures(tables: dict) -> dict:
        pooled = evaluate_picks(tables, labels).pooled
        keys = ("best_f1", "auprc", "best_f1_quarter", "auprc_quarter")
        out = {key: round(float(pooled[key]), 3) for key in keys}
        out["picks"] = int(sum(len(t) for t in tables.values()))
        return out

    rows = [{"ranking": "the picker's score", **figures(picks)}]
    for radius in radii:
        tables = {
            stem: moved_and_scored(table, responses[stem], radius * radial.diameter, radial)
            for stem, table in picks.items()
        }
        name = "filter score at the pick" if radius == 0 else f"re-centred within {radius:g} d"
        rows.append({"ranking": name, "radius": radius, **figures(tables)})
    own = {stem: radial.pick_response(responses[stem], -np.inf) for stem in labels}
    rows.append({"ranking": "the filter's own picks (the loop's re-pick)", **figures(own)})
    return {"split": split, "filter": str(filter_path.relative_to(REPO)), "rows": rows}


def markdown(record: dict) -> str:
    lines = [
        f"`{record['command']}`",
        "",
        "The default picker's centred picks (`--diameter 68 --centre-picks`) of the apoferritin "
        "splits, ranked by their own score, by the radial filter the loop learnt from the "
        "picks its 2D classes kept (no label), or moved to the filter's best place within a "
        "radius and scored there; last, the filter's own picks. Pooled over micrographs, "
        "every pick kept (no threshold).",
        "",
        "| split | ranking | picks | best F1 d/2 | AUPRC d/2 | best F1 d/4 | AUPRC d/4 |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in record["splits"]:
        for row in result["rows"]:
            lines.append(
                f"| {result['split']} | {row['ranking']} | {row['picks']} | {row['best_f1']:.3f} "
                f"| {row['auprc']:.3f} | {row['best_f1_quarter']:.3f} | "
                f"{row['auprc_quarter']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(RESULTS / "rerank_radial.json"))
    args = parser.parse_args()
    splits = [study("train", RADII), study("test", (0.0, CHOSEN_RADIUS))]
    record = {"command": command_line(), "chosen_radius": CHOSEN_RADIUS, "splits": splits}
    write_results(args.json, record, markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
