"""Does the pick score mean the same thing on every micrograph? Held-out simulations say.

Study, decided 2026-12-01: the peak stage keeps scoring by contrast (the band-passed map);
scoring by the network's own probability is an option (``score="probability"``), not the
default, since with the shipped model it ranks slightly worse and says "empty" no better. A
model retrained with empty fields (also measured here) was not shipped.

    python bench/studies/calibrate_score.py -n 18 --empty 6 --crystalline 3 \
        --json bench/results/calibrate_score.json

Simulates micrographs with seeds no training run uses (8000+): ``-n`` with particles (easy,
medium and hard in turn), ``--empty`` of vitreous ice without particles (carbon,
contamination and aggregates as the presets draw them) and ``--crystalline`` of crystalline
ice. Each model's U-Net runs once per micrograph; the peak stage then scores the same maps with
each peak score (``probability``: the network's own probability over the particle's core;
``contrast``: the band-passed map, how far the core stands above its surroundings), with the
diameter estimated and told. For each it reports pooled best F1 and its threshold, AUPRC, and at
that threshold the median number of picks on empty and on crystalline fields relative to the
fields with particles: a score that separates particles from noise puts (almost) nothing on
empty ice at the threshold that is best on particles. This is where the default threshold of a
model is chosen; real micrographs are never used here.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

import argparse
import json
import time

import numpy as np
import pandas as pd
from benchlib import command_line

from cryosegnet.evaluation.matching import match_picks
from cryosegnet.evaluation.metrics import pr_curve
from cryosegnet.masks.peaks import PEAK_SCORES, PeakMaskGenerator, PeakSettings
from cryosegnet.picking.picker import Picker
from cryosegnet.simulation import SimulationConfig, micrograph_seed, simulate_micrograph


def held_out_fields(n: int, empty: int, crystalline: int, seed: int, size: int) -> list[dict]:
    """The evaluation fields: (kind, image, labels, true diameter), all from seeds >= ``seed``."""
    difficulties = ("easy", "medium", "hard")
    fields = []
    for i in range(n + empty + crystalline):
        if i < n:
            kind, config = "particles", SimulationConfig(size=size, difficulty=difficulties[i % 3])
        elif i < n + empty:
            kind = "empty"
            config = SimulationConfig(size=size, difficulty=difficulties[i % 3], density=0.0)
        else:
            kind = "crystalline"
            config = SimulationConfig(
                size=size, difficulty=difficulties[i % 3], crystalline_probability=1.0
            )
        sim = simulate_micrograph(config, np.random.default_rng(micrograph_seed(seed, i)))
        table = sim.particles[sim.particles["pickable"]][["x", "y", "diameter"]]
        fields.append(
            dict(
                name=f"{kind}{i}",
                kind=kind,
                image=sim.image,
                labels=table.reset_index(drop=True),
                # The species' size, known for empty fields too (they hold none of it).
                diameter=float(np.median([s["diameter_px"] for s in sim.info["species"]])),
            )
        )
    return fields


def score_variant(picker: Picker, fields: list[dict], maps: list, given: bool) -> dict:
    """Pooled figures of the picker's stage over ``fields``, all picks kept; ``given``: each
    field's true diameter goes with the call (:meth:`Picker.told_size`)."""
    picks: dict[str, pd.DataFrame] = {}
    for field, probability in zip(fields, maps, strict=True):
        shape = field["image"].shape
        size = picker.told_size(field["diameter"], shape) if given else None
        picks[field["name"]] = picker.instances(probability, shape, size=size).picks
    # One-to-one matching per micrograph within half its own particle diameter (sizes differ
    # between fields), then one PR curve over the pooled picks.
    scores, hits, n_labels = [], [], 0
    for field in fields:
        if field["kind"] != "particles":
            continue
        table = picks[field["name"]]
        match = match_picks(
            table[["x", "y"]].to_numpy(),
            table["score"].to_numpy(),
            field["labels"][["x", "y"]].to_numpy(),
            field["diameter"] / 2,
        )
        scores.append(match.scores)
        hits.append(match.is_tp)
        n_labels += len(field["labels"])
    curve = pr_curve(np.concatenate(scores), np.concatenate(hits), n_labels)
    best_f1, threshold = curve.best_f1()
    threshold = float("nan") if threshold is None else threshold

    def median_count(kind: str) -> float:
        counts = [
            int((picks[f["name"]]["score"] >= threshold).sum()) for f in fields if f["kind"] == kind
        ]
        return float(np.median(counts)) if counts else float("nan")

    on_particles = median_count("particles")
    return {
        "best_f1": best_f1,
        "best_threshold": threshold,
        "auprc": curve.auprc(),
        "median_picks_particles": on_particles,
        "median_picks_empty": median_count("empty"),
        "median_picks_crystalline": median_count("crystalline"),
        "empty_ratio": median_count("empty") / max(on_particles, 1.0),
        "crystalline_ratio": median_count("crystalline") / max(on_particles, 1.0),
    }


def markdown(record: dict) -> str:
    """The table of ``record`` (this script's JSON) for BENCHMARKS.md."""
    lines = [
        "Held-out simulated fields (seeds 8000+): "
        f"{record['fields']} in all, with particles, empty vitreous ice and crystalline ice. "
        "Best F1 and AUPRC on the fields with particles (one-to-one within half the particle "
        "diameter, pooled); picks = median per field at that best-F1 threshold. Commands: "
        + "; ".join(f"`{c}`" for c in record.get("commands", [record.get("command", "")]))
        + ".",
        "",
        "| model | score | diameter | best F1 | at score | AUPRC | picks: particles | empty "
        "| crystalline |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        lines.append(
            f"| {r['model']} | {r['score']} | {r['diameter']} | {r['best_f1']:.3f} | "
            f"{r['best_threshold']:.3f} | {r['auprc']:.3f} | {r['median_picks_particles']:g} | "
            f"{r['median_picks_empty']:g} | {r['median_picks_crystalline']:g} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["default"], help="checkpoints, or default")
    parser.add_argument("-n", type=int, default=18, help="fields with particles")
    parser.add_argument("--empty", type=int, default=6, help="vitreous-ice fields, no particles")
    parser.add_argument("--crystalline", type=int, default=3, help="crystalline-ice fields")
    parser.add_argument("--seed", type=int, default=8000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument(
        "--table-only",
        metavar="JSON",
        help="write the markdown table of a results JSON next to it (.md) and stop",
    )
    args = parser.parse_args()
    if args.table_only:
        with open(args.table_only) as handle:
            record = json.load(handle)
        with open(args.table_only.removesuffix(".json") + ".md", "w") as handle:
            handle.write(markdown(record))
        return

    start = time.perf_counter()
    fields = held_out_fields(args.n, args.empty, args.crystalline, args.seed, args.size)
    print(f"simulated {len(fields)} fields in {time.perf_counter() - start:.1f} s", flush=True)
    rows = []
    for model in args.models:
        picker = Picker(
            model=None if model == "default" else model,
            device="cpu",
            stage="peaks",
            threshold=-1.0,
        )
        maps = [picker.probability_maps([picker.preprocess(f["image"])])[0] for f in fields]
        for score in PEAK_SCORES:
            variant = Picker.from_parts(
                picker.unet,
                picker.denoise_settings,
                PeakMaskGenerator(PeakSettings(score=score)),
                picker.config,
                checkpoint=picker.checkpoint,
            )
            for given in (False, True):
                row = {
                    "model": model,
                    "score": score,
                    "diameter": "told" if given else "estimated",
                    **score_variant(variant, fields, maps, given),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"command": command_line(), "fields": len(fields), "rows": rows},
                handle,
                indent=2,
            )
        with open(args.json.removesuffix(".json") + ".md", "w") as handle:
            with open(args.json) as source:
                handle.write(markdown(json.load(source)))


if __name__ == "__main__":
    main()
