"""Choose the LoG stage's default threshold on held-out simulated micrographs.

Study, decided 2026-12-01: the LoG stage's default threshold (best F1 at 1.39 noise standard
deviations, flat over 1.0-1.5; ``STAGE_REGISTRY`` in ``cryosegnet.masks.registry``).

    python bench/studies/tune_log_threshold.py -n 24 --json bench/results/tune_log_threshold.json

Simulated micrographs with seeds no training uses (8000+), easy/medium/hard in turn, plus
empty fields (no particles) so the threshold is also judged on what it lets through on bare
ice. The LoG stage is told the true diameter (it cannot estimate one). Real micrographs are
not used, so figures reported on them stay honest.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from cryosegnet.evaluation import evaluate_picks
from cryosegnet.picking.picker import Picker
from cryosegnet.simulation import SimulationConfig, micrograph_seed, simulate_micrograph

THRESHOLDS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=24)
    parser.add_argument("--empty", type=int, default=6, help="empty simulated fields")
    parser.add_argument("--seed", type=int, default=8000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    difficulties = ("easy", "medium", "hard")
    picks, labels, empty_counts = {}, {}, {t: [] for t in THRESHOLDS}
    for i in range(args.n + args.empty):
        empty = i >= args.n
        config = SimulationConfig(
            size=args.size, difficulty=difficulties[i % 3], density=0.0 if empty else None
        )
        sim = simulate_micrograph(config, np.random.default_rng(micrograph_seed(args.seed, i)))
        diameter = float(sim.particles["diameter"].median()) if len(sim.particles) else 40.0
        picker = Picker(device="cpu", stage="log", threshold=-1e9, diameter=diameter)
        result = picker.pick(sim.image)
        if empty:
            for t in THRESHOLDS:
                empty_counts[t].append(int((result["score"] >= t).sum()))
            continue
        picks[f"mic{i}"] = result
        labels[f"mic{i}"] = sim.picks[["x", "y", "diameter"]].reset_index(drop=True)
    pooled = evaluate_picks(picks, labels).pooled
    rows = []
    for t in THRESHOLDS:
        at = evaluate_picks(picks, labels, threshold=t).pooled
        rows.append(
            {
                "threshold": t,
                "f1": at["f1"],
                "precision": at["precision"],
                "recall": at["recall"],
                "picks_per_empty_field": float(np.median(empty_counts[t])),
            }
        )
        print(json.dumps(rows[-1]))
    summary = {
        "best_f1": pooled["best_f1"],
        "best_threshold": pooled["best_threshold"],
        "auprc": pooled["auprc"],
    }
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "command": f"python bench/studies/tune_log_threshold.py -n {args.n} --empty "
                    f"{args.empty} --seed {args.seed} --size {args.size}",
                    "summary": summary,
                    "sweep": rows,
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
