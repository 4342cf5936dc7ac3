"""Choose the hybrid stage's settings on the apoferritin train split and held-out simulations.

Study, decided 2026-12-02: ``unet_weight`` 5 and a LoG scale of 0.7 x the particle diameter
(``HybridSettings.log_scale``). Its stored results also chose a 1.2 x factor for sizes
estimated from the U-Net map; that factor fitted one protein only and is gone: every size
now takes one code path (bench/size_estimate.py). The sweep below is over the settings that
remain.

    python bench/studies/hybrid_stage.py --json bench/results/hybrid_stage.json

The hybrid stage (``cryosegnet.masks.hybrid``) takes dark blobs of the denoised image as
candidates and scores them by their LoG response plus ``unet_weight`` x the U-Net's
band-passed map. This bench sweeps its three settings and compares it with the peak finder on
the U-Net map (``peaks``), with the shipped model:

* the apoferritin ``train`` split (12 real micrographs; the shipped model never saw their
  labels), radius 34 px, diameter estimated, and told 68 px;
* held-out simulated fields (seeds 8000+, the ``hard`` preset tuned to apoferritin), diameter
  estimated, plus empty fields (no particle) for the picks they get at the default threshold.

Only these selection sets are used: the apoferritin ``test`` split and the quality set are
measured by ``bench/compare_peers.py``, never here. Every variant is scored on the same
denoised images and U-Net maps (computed once), with all candidates kept: best F1, AUPRC and
F1 at the stage's default threshold (``DEFAULT_THRESHOLDS``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

import argparse
import json
from dataclasses import replace

import numpy as np
import pandas as pd
from benchlib import RESULTS, apoferritin_maps, command_line, fmt

from cryosegnet.evaluation import evaluate_picks
from cryosegnet.masks.hybrid import HybridBlobGenerator, HybridSettings
from cryosegnet.masks.peaks import PeakMaskGenerator
from cryosegnet.picking.config import DEFAULT_THRESHOLDS, PickerConfig
from cryosegnet.picking.picker import Picker
from cryosegnet.simulation import SimulationConfig, micrograph_seed, simulate_micrograph

DIAMETER = 68.0
SETS = ("apoferritin_train_estimated", "apoferritin_train_told_68", "simulated_hard")


def variants() -> list[tuple[str, object, str]]:
    """(name, stage object, default-threshold key) of every variant swept."""
    rows: list[tuple[str, object, str]] = [("peaks (U-Net map)", PeakMaskGenerator(), "peaks")]
    default = HybridSettings()
    for weight in (0.0, 2.0, 5.0, 10.0):
        for scale in (0.6, 0.7, 0.8, 1.0):
            settings = replace(default, unet_weight=weight, log_scale=scale)
            rows.append((_name(settings), HybridBlobGenerator(settings), "hybrid"))
    return rows


def _name(settings: HybridSettings) -> str:
    return f"hybrid weight {settings.unet_weight:g}, LoG scale {settings.log_scale:g}"


def simulated_inputs(picker: Picker, n: int, empty: int) -> tuple[list[tuple], dict, list]:
    """Held-out hard simulated fields (with particles, and empty) run through the picker."""
    inputs, labels, empties = [], {}, []
    for i in range(n + empty):
        config = SimulationConfig(size=1024, difficulty="hard", density=0.0 if i >= n else None)
        sim = simulate_micrograph(config, np.random.default_rng(micrograph_seed(8000, i)))
        denoised = picker.preprocess(sim.image)
        entry = (f"sim{i}", denoised, picker.probability_maps([denoised])[0], sim.image.shape)
        if i >= n:
            empties.append(entry)
        else:
            inputs.append(entry)
            labels[f"sim{i}"] = sim.picks[["x", "y", "diameter"]].reset_index(drop=True)
    return inputs, labels, empties


def score(picker: Picker, inputs: list[tuple], labels: dict, threshold: float, **kw) -> dict:
    picks = {
        name: picker.instances(probability, shape, denoised).picks
        for name, denoised, probability, shape in inputs
    }
    pooled = evaluate_picks(picks, labels, threshold=threshold, **kw).pooled
    return {k: pooled[k] for k in ("best_f1", "auprc", "f1", "best_threshold")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=12, help="simulated fields with particles")
    parser.add_argument("--empty", type=int, default=4, help="empty simulated fields")
    parser.add_argument("--json", default=str(RESULTS / "hybrid_stage.json"))
    parser.add_argument("--table-only", action="store_true", help="rewrite the .md from the JSON")
    args = parser.parse_args()
    if args.table_only:
        with open(args.json) as handle:
            record = json.load(handle)
        with open(args.json.replace(".json", ".md"), "w") as handle:
            handle.write(markdown(record))
        return
    base = Picker(device="cpu", stage="peaks")
    apo, apo_labels = apoferritin_maps(base)
    sims, sim_labels, empties = simulated_inputs(base, args.n, args.empty)
    rows = []
    for name, stage, key in variants():
        picker = Picker.from_parts(
            base.unet, base.denoise_settings, stage, PickerConfig(threshold=-1e9)
        )
        told = Picker.from_parts(
            base.unet,
            base.denoise_settings,
            stage,
            PickerConfig(threshold=-1e9, diameter=DIAMETER),
        )
        threshold = DEFAULT_THRESHOLDS[key]
        empty_counts = [
            int((picker.instances(p, s, d).picks["score"] >= threshold).sum())
            for _, d, p, s in empties
        ]
        row = {
            "variant": name,
            "default_threshold": threshold,
            "apoferritin_train_estimated": score(picker, apo, apo_labels, threshold, radius=34),
            "apoferritin_train_told_68": score(told, apo, apo_labels, threshold, radius=34),
            "simulated_hard": score(picker, sims, sim_labels, threshold),
            "picks_per_empty_field": float(np.median(empty_counts)) if empty_counts else None,
        }
        rows.append(row)
        print(name, json.dumps({k: v for k, v in row.items() if k != "variant"}), flush=True)
    record = {
        "command": command_line(args),
        "n_simulated": args.n,
        "n_empty": args.empty,
        "rows": rows,
    }
    with open(args.json, "w") as handle:
        json.dump(record, handle, indent=1)
    with open(args.json.replace(".json", ".md"), "w") as handle:
        handle.write(markdown(record))


def markdown(record: dict) -> str:
    """The sweep as a table (best F1 / AUPRC / F1 at the default threshold)."""
    lines = [
        f"Shipped model; selection sets only (apoferritin `train`, radius 34 px; "
        f"{record['n_simulated']} held-out hard simulated fields, and {record['n_empty']} empty "
        "ones). Each cell: best F1 / AUPRC / F1 at the stage's default threshold. "
        f"Command: `{record['command']}`.",
        "",
        "| variant | apoferritin train, estimated | apoferritin train, told 68 px | "
        "hard sims, estimated | picks per empty sim field |",
        "|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        cells = [
            " / ".join(fmt(row[key][m]) for m in ("best_f1", "auprc", "f1"))
            for key in (
                "apoferritin_train_estimated",
                "apoferritin_train_told_68",
                "simulated_hard",
            )
        ]
        lines.append(
            f"| {row['variant']} | {' | '.join(cells)} | {fmt(row['picks_per_empty_field'], 0)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    main()
