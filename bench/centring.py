"""Centred picks: the default picker with and without re-centring (postprocessing/centring.py).

For each set, the same denoised images and U-Net maps are picked four ways: the particle size
estimated (the default) or told, and re-centring off (the default) or on (``--centre-picks``).
Scored pooled over the set: best F1 and AUPRC at radius d/2 and d/4, the median centre error,
a blind grid at the same density (evaluation/centring.py), and whether the average of the
picked patches shows a hollow particle's ring (its centre lighter than its shell).

* ``sim``: simulated micrographs of hollow shells and of filled globular particles (true
  centres; the settings were chosen here and on ``train``);
* ``train``: the apoferritin ``train`` split (choices made here);
* ``test``: the apoferritin ``test`` split, measured once at the end (nothing chosen on it).

    python bench/centring.py [--parts sim,train,test] [--quick]

The size "estimated" is each micrograph's own estimate (``Picker.size_of``), as
``cryosegnet pick --size-per-micrograph`` picks. Figures go to bench/results/centring.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from benchlib import RESULTS, apoferritin_labels, command_line, fmt

PARTS = ("sim", "train", "test")
SIM_SHAPES = ("shell", "globular")
SIM_DIFFICULTIES = ("easy", "medium")


def ring_contrast(image, picks, diameter: float) -> float:
    """Centre minus shell level of the average patch round ``picks`` (working pixels, dark
    particles): positive when the average shows a ring with a lighter centre, negative for a
    dark blob."""
    import numpy as np

    half = int(np.ceil(0.6 * diameter))
    total, n = np.zeros((2 * half + 1, 2 * half + 1)), 0
    for x, y in picks:
        col, row = int(round(x)), int(round(y))
        if half <= col < image.shape[1] - half and half <= row < image.shape[0] - half:
            total += image[row - half : row + half + 1, col - half : col + half + 1]
            n += 1
    if n == 0:
        return float("nan")
    average = total / n
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    radius = np.hypot(xx, yy)
    centre = average[radius <= 0.1 * diameter].mean()
    shell = min(
        average[(radius > r) & (radius <= r + 0.05 * diameter)].mean()
        for r in np.arange(0.2, 0.5, 0.05) * diameter
    )
    return float(centre - shell)


def pickers():
    """{centring on/off: Picker}, every other setting the default."""
    from cryosegnet import Picker

    return {on: Picker(device="cpu", centre_picks=on) for on in (True, False)}


def score_set(items: list[dict]) -> dict:
    """Pick each item four ways and score each way pooled over the items.

    ``items``: name, image (micrograph as read), labels (x, y, diameter in its pixels).
    """
    import numpy as np

    from cryosegnet.evaluation import evaluate_picks
    from cryosegnet.postprocessing.centring import centre_picks

    by_centring = pickers()
    picker = by_centring[True]
    tables: dict = {}
    patches: dict = {}
    seconds: list[float] = []
    shapes, labels = {}, {}
    for item in items:
        name, image = item["name"], np.asarray(item["image"], dtype=np.float32)
        shapes[name], labels[name] = image.shape, item["labels"]
        denoised = picker.preprocess(image)
        probability = picker.probability_maps([denoised])[0]
        true_d = float(np.median(item["labels"]["diameter"]))
        sizes = {"estimated": picker.size_of(image), "told": picker.told_size(true_d, image.shape)}
        scale = denoised.shape[1] / image.shape[1]
        for size_name, size in sizes.items():
            for on, one in by_centring.items():
                key = f"size {size_name}, centring {'on' if on else 'off'}"
                result = one.instances(probability, image.shape, denoised, size)
                if not on:  # the step alone, on the picks it would move
                    started = time.perf_counter()
                    centre_picks(result.picks, denoised, result.diameter, image.shape)
                    seconds.append(time.perf_counter() - started)
                tables.setdefault(key, {})[name] = result.picks
                xy = (result.picks[["x", "y"]].to_numpy(float) + 0.5) * scale - 0.5
                patches.setdefault(key, []).append((denoised, xy, true_d * scale, result))
    out = {}
    for key, picks in tables.items():
        pooled = evaluate_picks(picks, labels, shapes=shapes).pooled
        figures = {
            k: float(pooled[k])
            for k in (
                "best_f1",
                "auprc",
                "best_f1_quarter",
                "auprc_quarter",
                "median_centre_error",
                "grid_best_f1",
                "grid_best_f1_quarter",
                "n_picks",
            )
        }
        threshold = pooled.get("best_threshold")
        contrasts = []
        for denoised, xy, d, result in patches[key]:
            scores = result.picks["score"].to_numpy(float)
            chosen = xy if threshold is None else xy[scores >= threshold]
            contrasts.append(ring_contrast(denoised.astype(np.float32), chosen, d))
        figures["ring_contrast"] = float(np.nanmedian(contrasts))
        out[key] = figures
    label_contrast = [
        ring_contrast(
            d_img.astype(np.float32),
            (labels[item["name"]][["x", "y"]].to_numpy(float) + 0.5)
            * (d_img.shape[1] / shapes[item["name"]][1])
            - 0.5,
            d,
        )
        for item, (d_img, _, d, _) in zip(items, patches[next(iter(patches))])
    ]
    out["labels"] = {"ring_contrast": float(np.nanmedian(label_contrast))}
    out["centring_seconds_median"] = float(np.median(seconds)) if seconds else float("nan")
    return out


def simulated_items(quick: bool) -> dict[str, list[dict]]:
    """Simulated micrographs by (shape, difficulty), labels = the pickable particles."""
    import pandas as pd

    from cryosegnet.simulation import SimulationConfig, simulate_micrograph

    n = 1 if quick else 3
    sets = {}
    for shape in SIM_SHAPES:
        for difficulty in SIM_DIFFICULTIES:
            items = []
            for seed in range(n):
                config = SimulationConfig(
                    size=1024, difficulty=difficulty, shapes=(shape,), diameter_px=(40.0, 70.0)
                )
                sim = simulate_micrograph(config, rng=1000 + seed)
                truth = sim.picks
                items.append(
                    {
                        "name": f"{shape}-{difficulty}-{seed}",
                        "image": sim.image,
                        "labels": pd.DataFrame(
                            {"x": truth["x"], "y": truth["y"], "diameter": truth["diameter"]}
                        ),
                    }
                )
            sets[f"simulated {shape}, {difficulty}"] = items
    return sets


def apoferritin_items(split: str, quick: bool) -> list[dict]:
    from cryosegnet.io.micrographs import read_micrograph

    paths, labels = apoferritin_labels(split)
    if quick:
        paths = paths[:3]
    return [
        {"name": p.stem, "image": read_micrograph(p).data, "labels": labels[p.stem]} for p in paths
    ]


def markdown(results: dict) -> str:
    lines = [
        "Generated by `python bench/centring.py` from `centring.json`.",
        "",
        "The default picker with re-centring off (the default) and on (`--centre-picks`), the "
        "particle size estimated per micrograph or told (the labelled size); the same images "
        "and U-Net maps. Pooled best F1 / AUPRC at radius d/2 and d/4, median centre error "
        "(matched picks, micrograph px), a blind grid at the same density, and the ring "
        "contrast of the average picked patch (centre minus shell level, denoised grey levels: "
        "positive shows a hollow particle's ring; the labels' own value beside the set name).",
        "",
        "| set | size | centring | best F1 d/2 | AUPRC d/2 | best F1 d/4 | AUPRC d/4 | "
        "centre error px | grid F1 d/2 | grid F1 d/4 | ring contrast |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for set_name, figures in results["sets"].items():
        label = f"{set_name} (labels {fmt(figures['labels']['ring_contrast'], 1)})"
        for size in ("estimated", "told"):
            for centring in ("off", "on"):
                row = figures[f"size {size}, centring {centring}"]
                lines.append(
                    f"| {label} | {size} | {centring} | {fmt(row['best_f1'])} | "
                    f"{fmt(row['auprc'])} | {fmt(row['best_f1_quarter'])} | "
                    f"{fmt(row['auprc_quarter'])} | {fmt(row['median_centre_error'], 1)} | "
                    f"{fmt(row['grid_best_f1'])} | {fmt(row['grid_best_f1_quarter'])} | "
                    f"{fmt(row['ring_contrast'], 1)} |"
                )
    seconds = [f["centring_seconds_median"] for f in results["sets"].values()]
    lines += [
        "",
        f"The centring step alone: median {1000 * min(seconds):.0f}-{1000 * max(seconds):.0f} "
        "ms per micrograph over the sets (1024-px working image, all the picks a micrograph "
        "keeps before the threshold is applied downstream).",
        "",
    ]
    commands = dict.fromkeys(f["command"] for f in results["sets"].values())
    lines += [f"Command: `{command}`" for command in commands]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="sim,train")
    parser.add_argument("--quick", action="store_true", help="a few micrographs per set")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)} (use {', '.join(PARTS)})")
    path = RESULTS / "centring.json"
    results = json.loads(path.read_text()) if path.is_file() and not args.quick else {}
    results.setdefault("sets", {})
    if "sim" in parts:
        for name, items in simulated_items(args.quick).items():
            results["sets"][name] = {**score_set(items), "command": command_line(args)}
            print(name, json.dumps(results["sets"][name], indent=1), flush=True)
    for split in ("train", "test"):
        if split in parts:
            name = f"apoferritin {split}"
            figures = score_set(apoferritin_items(split, args.quick))
            results["sets"][name] = {**figures, "command": command_line(args)}
            print(name, json.dumps(results["sets"][name], indent=1), flush=True)
    if args.quick:
        print(markdown(results))
        return 0
    path.write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "centring.md").write_text(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
