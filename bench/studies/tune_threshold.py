"""Choose the built-in stages' default thresholds on held-out simulated micrographs.

Study, decided 2026-11-25: the peak finder on the U-Net map replaced the watershed as the
built-in stage (best F1 0.375 against 0.178, AUPRC 0.265 against 0.083, same maps), and its
default threshold was set next to the best-F1 score. The stage table it printed then is in
BENCHMARKS.md ("Default model: instance stage and threshold"); later defaults (the hybrid
stage) were chosen by ``hybrid_stage.py``.

    python bench/studies/tune_threshold.py -n 24 --json bench/results/tune_threshold.json

Simulates micrographs with seeds the training never uses (8000+), runs the U-Net once per
micrograph, then scores every built-in variant on the same maps: the peak finder with the
estimated diameter (the default), the peak finder told the true diameter (``--diameter``), and
the watershed at several mask thresholds. For each it reports pooled best F1 (and the score
threshold that reaches it, i.e. the candidate default), AUPRC and F1 at fixed thresholds, plus
how close the diameter estimate came to the truth. Real micrographs are not used here, so the
figures reported on them stay honest.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cryosegnet.evaluation import evaluate_picks
from cryosegnet.masks.peaks import PeakMaskGenerator
from cryosegnet.masks.watershed import WatershedMaskGenerator, WatershedSettings
from cryosegnet.picking.picker import Picker
from cryosegnet.simulation import SimulationConfig, micrograph_seed, simulate_micrograph

SCORE_THRESHOLDS = (0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)


class WatershedInPeaksPipeline(WatershedMaskGenerator):
    """The watershed baseline run where the peak finder runs: given the U-Net map's size
    estimate, as this study compared them (a stage object of another name sizes itself)."""

    name = "peaks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("-n", type=int, default=24)
    parser.add_argument("--seed", type=int, default=8000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--difficulties", default="easy,medium,hard")
    parser.add_argument("--mask-thresholds", default="0.2,0.3,0.5")
    parser.add_argument("--json", default=None, help="write the sweep here")
    args = parser.parse_args()

    picker = Picker(model=args.model, device="cpu", stage="peaks", threshold=0.0)
    difficulties = args.difficulties.split(",")
    shapes, labels, maps, true_diameters = [], {}, [], []
    start = time.perf_counter()
    for i in range(args.n):
        config = SimulationConfig(size=args.size, difficulty=difficulties[i % len(difficulties)])
        sim = simulate_micrograph(config, np.random.default_rng(micrograph_seed(args.seed, i)))
        table = sim.particles[sim.particles["pickable"]]
        labels[f"mic{i}"] = table[["x", "y", "diameter"]].reset_index(drop=True)
        true_diameters.append(float(sim.particles["diameter"].median()))
        shapes.append(sim.image.shape)
        maps.append(picker.probability_maps([picker.preprocess(sim.image)])[0])
    print(f"simulated + U-Net on {args.n} micrographs in {time.perf_counter() - start:.1f} s")

    variants = [
        ("peaks, estimated diameter", PeakMaskGenerator(), False),
        ("peaks, true diameter", PeakMaskGenerator(), True),
    ]
    variants += [
        (
            f"watershed, mask threshold {t}",
            WatershedInPeaksPipeline(WatershedSettings(threshold=float(t))),
            False,
        )
        for t in args.mask_thresholds.split(",")
    ]
    sweep = []
    for name, generator, given in variants:
        variant = Picker.from_parts(
            picker.unet, picker.denoise_settings, generator, picker.config, device="cpu"
        )
        picks, ratios = {}, []
        for i, (shape, probability) in enumerate(zip(shapes, maps)):
            size = variant.told_size(true_diameters[i], shape) if given else None
            result = variant.instances(probability, shape, size=size)
            picks[f"mic{i}"] = result.picks
            if result.diameter and np.isfinite(result.diameter):
                ratios.append(result.diameter / true_diameters[i])
        pooled = evaluate_picks(picks, labels).pooled
        row = {
            "variant": name,
            **{k: pooled[k] for k in ("best_f1", "best_threshold", "auprc", "n_picks", "n_labels")},
        }
        for threshold in SCORE_THRESHOLDS:
            row[f"f1@{threshold}"] = evaluate_picks(picks, labels, threshold=threshold).pooled["f1"]
        ratios = np.asarray(ratios)
        row["diameter_ratio_median"] = float(np.median(ratios)) if ratios.size else None
        row["diameter_within_0.7_1.4"] = (
            float(np.mean((ratios >= 0.7) & (ratios <= 1.4))) if ratios.size else None
        )
        sweep.append(row)
        print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "command": "python bench/studies/tune_threshold.py "
                    + " ".join(
                        f"--{k.replace('_', '-')} {v}"
                        for k, v in vars(args).items()
                        if v is not None and k != "json"
                    ),
                    "n": args.n,
                    "sweep": sweep,
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
