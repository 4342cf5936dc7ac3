"""Choose the built-in stage's default thresholds on held-out simulated micrographs.

    python bench/tune_threshold.py --model src/cryosegnet/weights/default.pt -n 12

Simulates micrographs with seeds the training never uses (8000+), runs the U-Net once per
micrograph, then sweeps the watershed's mask threshold; for each, the pooled best-F1 score
threshold is the candidate default. Real micrographs are not used here, so the figures
reported on them stay honest.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cryosegnet.evaluation import evaluate_picks
from cryosegnet.masks.watershed import WatershedMaskGenerator
from cryosegnet.picking.picker import Picker
from cryosegnet.simulation import SimulationConfig, micrograph_seed, simulate_micrograph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("-n", type=int, default=12)
    parser.add_argument("--seed", type=int, default=8000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--difficulties", default="easy,medium,hard")
    parser.add_argument("--mask-thresholds", default="0.3,0.4,0.5,0.6")
    parser.add_argument("--json", default=None, help="write the sweep here")
    args = parser.parse_args()

    picker = Picker(model=args.model, device="cpu", stage="builtin", threshold=0.0)
    difficulties = args.difficulties.split(",")
    images, labels, maps = [], {}, []
    start = time.perf_counter()
    for i in range(args.n):
        config = SimulationConfig(size=args.size, difficulty=difficulties[i % len(difficulties)])
        sim = simulate_micrograph(config, np.random.default_rng(micrograph_seed(args.seed, i)))
        table = sim.particles[sim.particles["pickable"]]
        labels[f"mic{i}"] = table[["x", "y", "diameter"]].reset_index(drop=True)
        images.append(sim.image)
        denoised = picker.preprocess(sim.image)
        maps.append(picker.probability_maps([denoised])[0])
    print(f"simulated + U-Net on {args.n} micrographs in {time.perf_counter() - start:.1f} s")

    sweep = []
    for mask_threshold in [float(t) for t in args.mask_thresholds.split(",")]:
        picker.mask_generator = WatershedMaskGenerator(threshold=mask_threshold)
        picks = {}
        for i, (image, probability) in enumerate(zip(images, maps)):
            picks[f"mic{i}"] = picker.instances(probability, image.shape).picks
        pooled = evaluate_picks(picks, labels).pooled
        row = {"mask_threshold": mask_threshold, **{k: pooled[k] for k in
               ("best_f1", "best_threshold", "auprc", "n_picks", "n_labels")}}
        for score_threshold in (0.3, 0.4, 0.5, 0.6, 0.7):
            row[f"f1@{score_threshold}"] = evaluate_picks(
                picks, labels, threshold=score_threshold
            ).pooled["f1"]
        sweep.append(row)
        print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(sweep, handle, indent=2)


if __name__ == "__main__":
    main()
