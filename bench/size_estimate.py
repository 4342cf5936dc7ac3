"""The particle size read off each micrograph, and what it costs the picks against the size told.

    python bench/size_estimate.py            # writes bench/results/size_estimate.{json,md}
    python bench/size_estimate.py --quick    # 2 apoferritin micrographs, 6 simulated fields

For every set with a known size: the micrograph's own estimate (detection/size.py), whether it
was sure, the U-Net map's estimate, and the default picker's best F1 / AUPRC (pooled, radius
d/2) with the size estimated, with a rough range given (0.75-1.3 x the labelled size, as
``--diameter LO-HI``), and told the labelled size. Sets: the
apoferritin ``train`` split (68 px; the ``test`` split is not read), simulated fields with
diameters 14-76 px at every difficulty, and ``ucsf-contamination`` (about 40 px by eye, no
labels: its estimate only).
"""

from __future__ import annotations

import argparse
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
    score_prepared,
    write_results,
)

from cryosegnet import Picker
from cryosegnet.io.micrographs import read_micrograph
from cryosegnet.masks.peaks import estimate_diameter
from cryosegnet.picking.units import SizeRange
from cryosegnet.simulation import SimulationConfig, simulate_micrograph

SIM_DIAMETERS = (14, 20, 28, 40, 56, 76)
DIFFICULTIES = ("easy", "medium", "hard")
SIM_SEED = 5000  # seeds 5000 + i: no training set uses them
RANGE = (0.75, 1.3)  # the rough range a user gives, as fractions of the labelled size
UCSF = SHARED / "data" / "real" / "ucsf-contamination" / "micrograph.mrc"


def labelled_sets(quick: bool) -> list[tuple[str, float, list[tuple[str, np.ndarray]], dict]]:
    """(set name, labelled diameter in micrograph px, [(micrograph name, image)], labels)."""
    sets = []
    if (SHARED / "data").is_dir():
        paths, labels = apoferritin_labels("train")
        paths = paths[:2] if quick else paths
        images = [(p.stem, read_micrograph(p).data) for p in paths]
        sets.append(("apoferritin train", 68.0, images, {p.stem: labels[p.stem] for p in paths}))
    difficulties = DIFFICULTIES[:1] if quick else DIFFICULTIES
    for difficulty in difficulties:
        for i, diameter in enumerate(SIM_DIAMETERS):
            config = SimulationConfig(size=1024, difficulty=difficulty, diameter_px=float(diameter))
            sim = simulate_micrograph(config, rng=SIM_SEED + i)
            name = f"sim {difficulty} {diameter}px"
            table = sim.picks[["x", "y"]].assign(diameter=float(diameter))
            sets.append((name, float(diameter), [(name, sim.image)], {name: table}))
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_options(parser, "size_estimate", "2 apoferritin micrographs, 6 simulated fields")
    args = parser.parse_args(argv)
    json_path = results_json(args, "size_estimate")
    picker = Picker(device="cpu")
    rows = []
    for name, truth, images, labels in labelled_sets(args.quick):
        prepared, estimates, in_range = [], [], []
        size_range = SizeRange(RANGE[0] * truth, RANGE[1] * truth)
        config = picker.config.with_changes(diameter_range=size_range)
        ranged = Picker.from_parts(picker.unet, picker.denoise_settings, picker.stage, config)
        for mic, image in images:
            start = time.perf_counter()
            estimate = picker.estimate_size(image)
            seconds = time.perf_counter() - start
            denoised = picker.preprocess(image)
            probability = picker.probability_maps([denoised])[0]
            scale = denoised.shape[1] / image.shape[1]
            prepared.append((mic, denoised, probability, image.shape, estimate))
            in_range.append((mic, denoised, probability, image.shape, ranged.estimate_size(image)))
            estimates.append(
                {
                    "micrograph": mic,
                    "estimate_px": round(estimate.diameter / scale, 1),
                    "sure": estimate.sure,
                    "peak_skew": round(estimate.peak_skew, 3),
                    "map_px": round(estimate_diameter(probability) / scale, 1),
                    "seconds": round(seconds, 3),
                }
            )
        row = {
            "set": name,
            "labelled_px": truth,
            "estimates": estimates,
            "estimated": score_prepared(picker, prepared, labels, None),
            "range": score_prepared(ranged, in_range, labels, None),
            "told": score_prepared(picker, prepared, labels, truth),
        }
        print(json.dumps({k: row[k] for k in ("set", "estimated", "range", "told")}), flush=True)
        rows.append(row)
    unlabelled = []
    if UCSF.is_file():
        image = read_micrograph(UCSF).data
        estimate = picker.estimate_size(image)
        scale = 1024 / max(image.shape)
        unlabelled.append(
            {
                "set": "ucsf-contamination",
                "by_eye_px": 40.0,
                "estimate_px": round(estimate.diameter / scale, 1),
                "sure": estimate.sure,
            }
        )
    record = {
        "command": command_line(),
        "quick": args.quick,
        "rows": rows,
        "unlabelled": unlabelled,
    }
    write_results(json_path, record, markdown(record))
    print(markdown(record))
    return 0


def markdown(record: dict) -> str:
    """The results table: per set, the estimate and the picks' figures estimated vs told."""
    lines = [
        f"`{record['command']}`",
        "",
        f"Range: `--diameter LO-HI` with LO-HI = {RANGE[0]:g}-{RANGE[1]:g} x the labelled size.",
        "",
        "| set | labelled px | estimate px (median; sure) | map px | best F1 est. / range / told "
        "| AUPRC est. / range / told |",
        "|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        est = [e["estimate_px"] for e in row["estimates"]]
        sure = sum(e["sure"] for e in row["estimates"])
        maps = [e["map_px"] for e in row["estimates"]]
        lines.append(
            f"| {row['set']} | {row['labelled_px']:g} | {np.median(est):.1f} "
            f"({sure}/{len(est)} sure) | {np.median(maps):.1f} | "
            f"{fmt(row['estimated']['best_f1'])} / {fmt(row['range']['best_f1'])} / "
            f"{fmt(row['told']['best_f1'])} | {fmt(row['estimated']['auprc'])} / "
            f"{fmt(row['range']['auprc'])} / {fmt(row['told']['auprc'])} |"
        )
    for row in record["unlabelled"]:
        lines.append(
            f"| {row['set']} (no labels) | ~{row['by_eye_px']:g} | {row['estimate_px']:.1f} "
            f"({'sure' if row['sure'] else 'unsure'}) | - | - | - |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
