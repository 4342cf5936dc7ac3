"""The label-free refinement loop (``cryosegnet pick --refine``): before vs after, per round.

(a) Simulated micrographs of one protein with junk (contamination, aggregates, carbon, empty
fields: the set of ``bench/classify.py``) are picked with the shipped model, then refined with
the default :class:`~cryosegnet.training.refine_loop.RefineSettings`. Every round's picks
(round 0: the picker without the loop; round r: after r fine-tunings) are scored against the
simulator's truth: best F1 and AUPRC at half and a quarter of the diameter, F1 at the default
threshold, and the picks on empty fields; the final triaged picks too. That is the rounds
ablation. Settings are chosen here, never on the apoferritin ``test`` split.
(b) ``--parts apoferritin``: the same on the real apoferritin ``train`` split, then ``test``
(the loop uses no label, so it may run on the test micrographs themselves, as a user would;
nothing is chosen on them). Where no class passes the selection the loop refuses, and that is
recorded.
The wall time and peak RSS of each loop are recorded (cost).

    python bench/refine.py [--quick] [--parts sims,apoferritin] [--reuse]

Figures go to bench/results/refine.json and refine.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from benchlib import RESULTS, command_line

WORK = Path("/tmp/cryosegnet-bench-refine")


def _labels_of_sims(sim: Path) -> dict:
    import pandas as pd

    labels = {}
    for csv in sorted(sim.glob("*.csv")):
        if csv.name == "micrographs.csv":
            continue
        table = pd.read_csv(csv)
        labels[csv.stem] = pd.DataFrame(
            {"x": table["X-Coordinate"], "y": table["Y-Coordinate"], "diameter": table["Diameter"]}
        )
    return labels


def score_folder(picks: Path, labels: dict, threshold: float | None) -> dict:
    """Pooled figures of a picks folder against labels by stem (d/2 and d/4)."""
    import numpy as np
    import pandas as pd

    from cryosegnet.inspection.picksets import find_pick_files, read_picks

    tables = {}
    for pick_file in find_pick_files(picks):
        table = read_picks(pick_file.path)
        tables[pick_file.stem] = table
    tables = {stem: tables.get(stem, pd.DataFrame(columns=["x", "y", "score"])) for stem in labels}
    from cryosegnet.evaluation import evaluate_picks

    result = evaluate_picks(tables, labels, threshold=threshold)
    pooled = result.pooled
    keys = ("best_f1", "auprc", "best_f1_quarter", "auprc_quarter", "f1", "n_picks")
    figures = {k: float(pooled[k]) if k in pooled else float("nan") for k in keys}
    figures["n_picks_all"] = int(sum(len(t) for t in tables.values()))
    empty = [stem for stem, t in labels.items() if len(t) == 0]
    full = [stem for stem, t in labels.items() if len(t) > 0]
    if empty and full:
        per_empty = np.median([len(tables[s]) for s in empty])
        per_full = np.median([len(tables[s]) for s in full])
        figures["empty_fields"] = len(empty)
        figures["picks_per_empty_vs_full"] = float(per_empty / max(per_full, 1))
    return figures


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_loop(name: str, micrographs: list[Path], labels: dict, settings, reuse: bool) -> dict:
    """Pick with the shipped model, refine, and score every round (``reuse``: the figures of
    an earlier run of the same set, from its ``result.json``)."""
    saved = WORK / name / "result.json"
    if reuse and saved.is_file():
        return json.loads(saved.read_text())
    out = _run_loop(name, micrographs, labels, settings)
    saved.write_text(json.dumps(out, indent=1, default=str) + "\n")
    return out


def _run_loop(name: str, micrographs: list[Path], labels: dict, settings) -> dict:
    from cryosegnet.errors import CryoSegNetError
    from cryosegnet.picking.batch import pick_batch
    from cryosegnet.picking.config import DEFAULT_THRESHOLDS
    from cryosegnet.picking.picker import Picker
    from cryosegnet.training.refine_loop import refine_picks

    folder = WORK / name
    picks, refine = folder / "picks", folder / "refine"
    start = time.perf_counter()
    picker = Picker(device="cpu")
    pick_batch(picker, micrographs, picks, progress=False, overwrite=True)
    pick_s = time.perf_counter() - start
    out: dict = {
        "micrographs": len(micrographs),
        "pick_s": pick_s,
        "stage_before": picker.stage,
        "rounds": {"0": score_folder(picks, labels, picker.threshold)},
    }
    print(name, "round 0", json.dumps(out["rounds"]["0"]), flush=True)
    start = time.perf_counter()
    try:
        summary = refine_picks(
            micrographs,
            picks,
            refine,
            lambda model: Picker(model=model, device="cpu"),
            settings=settings,
            device="cpu",
            log_fn=lambda line: print(line, flush=True),
        )
    except CryoSegNetError as exc:
        out["refused"] = str(exc)
        out["loop_s"] = time.perf_counter() - start
        out["peak_rss_mb"] = _peak_rss_mb()
        return out
    out["loop_s"] = time.perf_counter() - start
    out["peak_rss_mb"] = _peak_rss_mb()
    out["stop_reason"] = summary.stop_reason
    out["flagged"] = summary.bad
    out["per_round"] = [
        {k: v for k, v in vars(r).items() if k not in ("picks", "classes", "model")}
        for r in summary.rounds
    ]
    peaks = DEFAULT_THRESHOLDS["peaks"]
    for r in summary.rounds[1:]:
        out["rounds"][str(r.round)] = score_folder(Path(r.picks), labels, peaks)
        print(name, "round", r.round, json.dumps(out["rounds"][str(r.round)]), flush=True)
    if summary.picks is not None:
        out["final_triaged"] = score_folder(summary.picks, labels, peaks)
        empty = [stem for stem, t in labels.items() if len(t) == 0]
        out["empty_fields_flagged"] = sorted(set(empty) & set(summary.bad))
        out["empty_fields"] = empty
        out["full_fields_flagged"] = sorted(set(summary.bad) - set(empty))
    return out


def sims(n: int, seed: int, settings, reuse: bool) -> dict:
    from classify import simulate

    sim = WORK / f"sim{seed}_{n}"
    if not (sim / "micrographs.csv").is_file():
        simulate(sim, n, seed)
    micrographs = sorted(sim.glob("*.mrc"))
    return run_loop(f"sims_seed{seed}_{n}", micrographs, _labels_of_sims(sim), settings, reuse)


def apoferritin(split: str, settings, reuse: bool) -> dict:
    from benchlib import apoferritin_labels

    paths, labels = apoferritin_labels(split)
    return run_loop(f"apoferritin_{split}", paths, labels, settings, reuse)


def fmt3(value) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


def markdown(results: dict) -> str:
    lines = ["Generated by `python bench/refine.py` from `refine.json`.", ""]
    for name, run in results["runs"].items():
        lines += [f"**{name}** ({run['micrographs']} micrographs)", ""]
        if "refused" in run:
            lines += [f"The loop refused: {run['refused']}", ""]
        lines += [
            "| round | picks | best F1 d/2 | AUPRC d/2 | best F1 d/4 | AUPRC d/4 | F1 at the "
            "default threshold | picks per empty field / per full one |",
            "|---|---|---|---|---|---|---|---|",
        ]
        rows = list(run["rounds"].items())
        if "final_triaged" in run:
            rows.append(("final, triaged", run["final_triaged"]))
        for label, f in rows:
            lines.append(
                f"| {label} | {f['n_picks_all']} | {fmt3(f['best_f1'])} | {fmt3(f['auprc'])} | "
                f"{fmt3(f['best_f1_quarter'])} | {fmt3(f['auprc_quarter'])} | {fmt3(f['f1'])} | "
                f"{fmt3(f.get('picks_per_empty_vs_full'))} |"
            )
        lines.append("")
        if "stop_reason" in run:
            flagged = run.get("flagged", [])
            lines.append(
                f"Stopped: {run['stop_reason']}. Flagged: {len(flagged)} micrograph(s)"
                + (
                    f" ({len(run['empty_fields_flagged'])} of {len(run['empty_fields'])} empty "
                    f"fields, {len(run['full_fields_flagged'])} with particles)"
                    if "empty_fields" in run
                    else ""
                )
                + "."
            )
        lines.append(
            f"Cost: picking {run['pick_s']:.0f} s, loop {run['loop_s']:.0f} s, peak RSS "
            f"{run['peak_rss_mb']:.0f} MB (the bench process) on the shared 2-core CPU."
        )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer simulated micrographs")
    parser.add_argument("--parts", default="sims,apoferritin")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument(
        "--reuse", action="store_true", help="take the figures of sets already run from WORK"
    )
    args = parser.parse_args()
    from dataclasses import asdict

    from cryosegnet.training.refine_loop import RefineSettings

    settings = RefineSettings()
    parts = args.parts.split(",")
    path = RESULTS / "refine.json"
    results = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    results.update(command=command_line(args), settings=asdict(settings))
    if "sims" in parts:
        n = 8 if args.quick else 16
        name = "simulated, junk and empty fields"
        results["runs"][name] = sims(n, args.seed, settings, args.reuse)
    if "apoferritin" in parts:
        for split in ("train", "test"):
            results["runs"][f"apoferritin {split}"] = apoferritin(split, settings, args.reuse)
    if path.is_file():  # another part may have finished meanwhile: keep its runs
        results["runs"] = {**json.loads(path.read_text())["runs"], **results["runs"]}
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    (RESULTS / "refine.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
