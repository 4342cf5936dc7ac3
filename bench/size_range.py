"""A size range searched blob by blob (``pick --diameter LO-HI``) against one size.

    python bench/size_range.py                     # sim, train and ucsf; ~12 minutes, 2 cores
    python bench/size_range.py --quick             # 2 micrographs a set, a few minutes
    python bench/size_range.py --parts test        # the apoferritin test split, once, at the end
    python bench/size_range.py --table-only        # rewrite the .md from the JSON

The default picker (hybrid stage) runs once per micrograph (denoise, U-Net); its instance stage
then picks the same map four ways:

* ``estimated``: no size given, each micrograph's own estimate (``Picker.size_of``, as
  ``pick --size-per-micrograph``);
* ``told``: one size told, the median labelled diameter of the micrograph;
* ``range, one size``: the range given, one size read off within it for the whole micrograph
  (what a range did before it was searched blob by blob);
* ``range``: the range given, each blob sized within it (the shipped behaviour).

Scored pooled over each set, each label matched within a half (``d/2``) and a quarter (``d/4``)
of its own diameter: best F1 and AUPRC, and the median relative error of the matched picks'
diameters (picks above the best-F1 threshold at ``d/2``). Sets:

* ``sim mixed``: simulated fields holding three particle sizes drawn from 14-56 px (the range
  given: 14-56), easy and medium presets;
* ``sim single``: simulated fields of one size (20 and 40 px; range 0.75-1.3 x the size);
* ``apoferritin train`` (68 px; range 50-90 px). Every choice was made here and on the
  simulations;
* ``ucsf``: the UCSF contamination micrograph (particles about 40 px, no labels; range 30-55
  px): picks at the default threshold and their share inside the shared bad-region mask;
* ``apoferritin test`` (``--parts test``): the evaluation split, measured once with the settings
  chosen above.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
from benchlib import (
    SHARED,
    add_bench_options,
    apoferritin_labels,
    command_line,
    fmt,
    results_json,
    write_results,
)

PARTS = ("sim", "train", "ucsf", "test")
DEFAULT_PARTS = ("sim", "train", "ucsf")
WAYS = ("estimated", "told", "range, one size", "range")
MIXED_RANGE = (14.0, 56.0)
SINGLE_SIZES = (20.0, 40.0)
SINGLE_RANGE = (0.75, 1.3)  # fractions of the size, as bench/size_estimate.py gives it
APOFERRITIN_RANGE = (50.0, 90.0)
UCSF_RANGE = (30.0, 55.0)
SIM_SEED = 8300  # seeds 8300 + i: no training set uses them
UCSF = SHARED / "data" / "real" / "ucsf-contamination"


def match_own_radius(picks, labels, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching, most confident pick first, each label within ``fraction`` x
    its own diameter -> (is a true pick, in score order; the matched label's index or -1)."""
    from scipy.spatial import cKDTree

    order = np.argsort(-picks["score"].to_numpy(float), kind="stable")
    xy = picks[["x", "y"]].to_numpy(float)[order]
    label_xy = labels[["x", "y"]].to_numpy(float)
    reach = fraction * labels["diameter"].to_numpy(float)
    matched = np.full(len(order), -1)
    if len(label_xy) and len(xy):
        tree = cKDTree(label_xy)
        taken = np.zeros(len(label_xy), bool)
        for k, near in enumerate(tree.query_ball_point(xy, r=float(reach.max()))):
            near = np.asarray([j for j in near if not taken[j]], dtype=int)
            if near.size == 0:
                continue
            distance = np.hypot(*(label_xy[near] - xy[k]).T)
            inside = distance <= reach[near]
            if inside.any():
                best = near[inside][np.argmin(distance[inside])]
                matched[k] = best
                taken[best] = True
    return order, matched


def score(picks_by: dict, labels_by: dict) -> dict:
    """Pooled best F1 / AUPRC at d/2 and d/4 and the diameter error of the matched picks."""
    from cryosegnet.evaluation.metrics import pr_curve

    out: dict = {}
    for fraction, suffix in ((0.5, ""), (0.25, "_quarter")):
        scores, hits, n_labels, errors = [], [], 0, []
        for name, labels in labels_by.items():
            picks = picks_by[name]
            order, matched = match_own_radius(picks, labels, fraction)
            scores.append(picks["score"].to_numpy(float)[order])
            hits.append(matched >= 0)
            n_labels += len(labels)
            sizes = picks["diameter"].to_numpy(float)[order]
            errors.append((sizes, labels["diameter"].to_numpy(float), matched, scores[-1]))
        curve = pr_curve(np.concatenate(scores), np.concatenate(hits), n_labels)
        best, threshold = curve.best_f1()
        out[f"best_f1{suffix}"] = round(best, 4)
        out[f"auprc{suffix}"] = round(curve.auprc(), 4)
        if suffix == "":
            out["n_picks"] = int(sum(len(p) for p in picks_by.values()))
            relative = []
            for sizes, truth, matched, ranked in errors:
                keep = (matched >= 0) & (ranked >= (threshold if threshold is not None else 0))
                relative += list(np.abs(sizes[keep] / truth[matched[keep]] - 1.0))
            out["diameter_error"] = round(float(np.median(relative)), 4) if relative else None
    return out


class Ways:
    """The default picker, and the same picker given a range (its instance stage reused)."""

    def __init__(self) -> None:
        from cryosegnet import Picker

        self.picker = Picker(device="cpu")

    def ranged(self, low: float, high: float):
        from cryosegnet import Picker
        from cryosegnet.picking.units import SizeRange

        config = self.picker.config.with_changes(diameter_range=SizeRange(low, high))
        p = self.picker
        return Picker.from_parts(p.unet, p.denoise_settings, p.stage, config)

    def pick(self, image: np.ndarray, told: float, size_range: tuple[float, float]) -> dict:
        """The four ways' picks and the picker's time for the instance stage of each."""
        picker = self.picker
        ranged = self.ranged(*size_range)
        denoised = picker.preprocess(image)
        probability = picker.probability_maps([denoised])[0]
        within = ranged.size_of(image)
        sizes = {
            "estimated": (picker, picker.size_of(image)),
            "told": (picker, picker.told_size(told, image.shape)),
            # the range's one size, without the range: the micrograph picked at that size
            "range, one size": (picker, dataclasses.replace(within, bounds=None)),
            "range": (ranged, within),
        }
        out = {}
        for way, (one, size) in sizes.items():
            started = time.perf_counter()
            result = one.instances(probability, image.shape, denoised, size)
            out[way] = (result, time.perf_counter() - started)
        return out


def simulated_sets(quick: bool) -> list[dict]:
    """Mixed and single-size simulated sets: name, range, items (name, image, labels)."""
    from cryosegnet.simulation import SimulationConfig, simulate_micrograph

    count = 2 if quick else 6
    sets = []
    for difficulty in ("easy", "medium"):
        config = SimulationConfig(
            size=1024, difficulty=difficulty, species=3, diameter_px=MIXED_RANGE
        )
        items = []
        for i in range(count):
            sim = simulate_micrograph(config, rng=SIM_SEED + i)
            items.append((f"mixed {difficulty} {i}", sim.image, sim.picks[["x", "y", "diameter"]]))
        sets.append({"set": f"sim mixed {difficulty}", "range": MIXED_RANGE, "items": items})
        for size in SINGLE_SIZES:
            config = SimulationConfig(size=1024, difficulty=difficulty, diameter_px=size)
            items = []
            for i in range(count // 2):
                sim = simulate_micrograph(config, rng=SIM_SEED + 100 + i)
                labels = sim.picks[["x", "y"]].assign(diameter=size)
                items.append((f"single {difficulty} {size:g} {i}", sim.image, labels))
            size_range = (SINGLE_RANGE[0] * size, SINGLE_RANGE[1] * size)
            sets.append(
                {"set": f"sim single {difficulty} {size:g}px", "range": size_range, "items": items}
            )
    return sets


def apoferritin_set(split: str, quick: bool) -> list[dict]:
    from cryosegnet.io.micrographs import read_micrograph

    if not (SHARED / "data").is_dir():
        return []
    paths, labels = apoferritin_labels(split)
    paths = paths[:2] if quick else paths
    items = [(p.stem, read_micrograph(p).data, labels[p.stem]) for p in paths]
    return [{"set": f"apoferritin {split}", "range": APOFERRITIN_RANGE, "items": items}]


def run_set(ways: Ways, spec: dict) -> dict:
    picks: dict = {way: {} for way in WAYS}
    labels, seconds, diameters = {}, {way: 0.0 for way in WAYS}, {way: [] for way in WAYS}
    for name, image, truth in spec["items"]:
        told = float(np.median(truth["diameter"]))
        results = ways.pick(np.asarray(image, np.float32), told, spec["range"])
        labels[name] = truth
        for way, (result, took) in results.items():
            picks[way][name] = result.picks
            seconds[way] += took
            diameters[way] += list(result.picks["diameter"].to_numpy(float))
    row = {"set": spec["set"], "size_range": list(spec["range"]), "micrographs": len(labels)}
    for way in WAYS:
        row[way] = score(picks[way], labels)
        row[way]["stage_seconds"] = round(seconds[way] / max(1, len(labels)), 3)
        spread = np.percentile(diameters[way], [10, 50, 90]) if diameters[way] else [np.nan] * 3
        row[way]["pick_diameter_p10_p50_p90"] = [round(float(v), 1) for v in spread]
    print(json.dumps(row), flush=True)
    return row


def ucsf_row(ways: Ways) -> dict | None:
    import mrcfile

    from cryosegnet.io.micrographs import read_micrograph

    if not (UCSF / "micrograph.mrc").exists():
        return None
    truth = mrcfile.read(UCSF / "bad-region-mask.mrc") > 0.5
    image = read_micrograph(UCSF / "micrograph.mrc").data
    results = ways.pick(image, float(np.mean(UCSF_RANGE)), UCSF_RANGE)
    row: dict = {"set": "ucsf contamination", "size_range": list(UCSF_RANGE)}
    for way, (result, _) in results.items():
        picks = result.picks
        rows = np.clip(picks["y"].round().astype(int), 0, truth.shape[0] - 1)
        cols = np.clip(picks["x"].round().astype(int), 0, truth.shape[1] - 1)
        inside = int(truth[rows, cols].sum())
        row[way] = {
            "picks": len(picks),
            "inside_mask": inside,
            "share_inside": round(inside / len(picks), 4) if len(picks) else None,
            "median_diameter": round(float(picks["diameter"].median()), 1) if len(picks) else None,
        }
    row["told_note"] = f"told {np.mean(UCSF_RANGE):g} px, the range's middle (no labels)"
    print(json.dumps(row), flush=True)
    return row


def markdown(record: dict) -> str:
    lines = [
        "Best F1 / AUPRC pooled per set, each label matched within d/2 (and d/4) of its own "
        "diameter; diameter error: median |picked / labelled - 1| of the matched picks above "
        "the best-F1 threshold.",
        "",
        "| set | range (px) | way | best F1 d/2 | AUPRC d/2 | best F1 d/4 | AUPRC d/4 "
        "| diameter error | pick diameters p10/p50/p90 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        if "micrographs" not in row:
            continue
        size_range = "-".join(f"{v:g}" for v in row["size_range"])
        for way in WAYS:
            r = row[way]
            spread = "/".join(fmt(v, 1) for v in r["pick_diameter_p10_p50_p90"])
            lines.append(
                f"| {row['set']} ({row['micrographs']}) | {size_range} | {way} "
                f"| {fmt(r['best_f1'])} | {fmt(r['auprc'])} | {fmt(r['best_f1_quarter'])} "
                f"| {fmt(r['auprc_quarter'])} | {fmt(r['diameter_error'])} | {spread} |"
            )
    ucsf = [row for row in record["rows"] if "micrographs" not in row]
    if ucsf:
        lines += [
            "",
            "UCSF contamination micrograph (no labels; picks at the default threshold):",
            "",
            "| way | picks | inside the bad-region mask | share | median diameter |",
            "|---|---|---|---|---|",
        ]
        for way in WAYS:
            r = ucsf[0][way]
            lines.append(
                f"| {way} | {r['picks']} | {r['inside_mask']} | {fmt(r['share_inside'])} "
                f"| {fmt(r['median_diameter'], 1)} |"
            )
    lines += ["", f"Command: `{record['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_options(parser, "size_range", "2 micrographs a set")
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS), help="of " + ",".join(PARTS))
    parser.add_argument("--table-only", action="store_true", help="rewrite the .md from the JSON")
    args = parser.parse_args(argv)
    json_path = results_json(args, "size_range")
    if args.table_only:
        record = json.loads(json_path.read_text())
        json_path.with_suffix(".md").write_text(markdown(record))
        return 0
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)} (use {', '.join(PARTS)})")
    previous = json.loads(json_path.read_text()) if json_path.exists() else {}
    kept = [
        row
        for row in previous.get("rows", [])
        if not any(row["set"].startswith(_prefix(p)) for p in parts)
    ]
    ways = Ways()
    rows = []
    if "sim" in parts:
        rows += [run_set(ways, spec) for spec in simulated_sets(args.quick)]
    if "train" in parts:
        rows += [run_set(ways, spec) for spec in apoferritin_set("train", args.quick)]
    if "ucsf" in parts:
        rows += [r for r in [ucsf_row(ways)] if r]
    if "test" in parts:
        rows += [run_set(ways, spec) for spec in apoferritin_set("test", args.quick)]
    order = {p: i for i, p in enumerate(PARTS)}
    rows = sorted(kept + rows, key=lambda r: order[_part(r["set"])])
    record = {"command": command_line(args), "quick": args.quick, "rows": rows}
    write_results(json_path, record, markdown(record))
    print(markdown(record))
    return 0


def _prefix(part: str) -> str:
    return {"sim": "sim", "train": "apoferritin train", "ucsf": "ucsf", "test": "apoferritin test"}[
        part
    ]


def _part(name: str) -> str:
    return next(p for p in PARTS if name.startswith(_prefix(p)))


if __name__ == "__main__":
    sys.exit(main())
