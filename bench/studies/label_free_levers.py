"""Label-free levers for the shipped model on real micrographs (apoferritin train split).

Study, negative, 2026-12-02: none of the levers was shipped. Test-time augmentation changes
nothing, re-centring on a larger LoG moves best F1 by about +0.01 and lowers AUPRC, and
self-training on the stage's own picks lifts the adapted map's peaks but lowers AUPRC and
leaves the hybrid stage where it was.

    python bench/studies/label_free_levers.py --json bench/results/label_free_levers.json
    python bench/studies/label_free_levers.py --table-only

Each row is one way to pick the 12 apoferritin ``train`` micrographs without reading a label
(the labels only score the picks: radius 34 px, pooled, every candidate kept), beside the
default (the hybrid stage of the shipped model, diameter estimated):

* **test-time augmentation**: the U-Net map averaged over the 8 flips and 90-degree rotations;
* **re-centring**: each hybrid pick moved to the strongest LoG response of a larger scale within
  a window around it (the picks sit on the rim of hollow particles: their distance to the
  nearest label peaks at 20-30 px, for a 34 px radius);
* **self-training on the stage's own picks**: fine-tune the shipped model on these same
  micrographs with the hybrid stage's confident picks as particles (score >= POS), its unsure
  ones (>= UNSURE) ignored by the loss, the rest background, then pick with the adapted model
  (peaks and hybrid stages). This is what a pick-time ``--adapt`` would do on a user's data.

The apoferritin ``test`` split and the quality set are not used. Everything runs on one CPU
thread per process and takes about 15 minutes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

import argparse
import json
import tempfile

import numpy as np
import pandas as pd
import torch
from benchlib import RESULTS, apoferritin_maps, command_line, fmt

from cryosegnet.evaluation import evaluate_picks
from cryosegnet.masks.hybrid import HybridBlobGenerator
from cryosegnet.masks.log_blobs import log_response
from cryosegnet.masks.peaks import PeakMaskGenerator, suppress_close_peaks
from cryosegnet.model.checkpoint import load_model
from cryosegnet.picking.config import DEFAULT_THRESHOLDS, PickerConfig
from cryosegnet.picking.picker import Picker
from cryosegnet.training.dataset import TrainingSample
from cryosegnet.training.finetune import finetune, finetune_config

RADIUS = 34.0


def scored(picks: dict, labels: dict, threshold: float) -> dict:
    pooled = evaluate_picks(picks, labels, threshold=threshold, radius=RADIUS).pooled
    return {k: pooled[k] for k in ("best_f1", "auprc", "f1", "best_threshold")}


def stage_picks(unet, denoise, stage, inputs, maps=None) -> dict:
    """Picks of every micrograph with ``stage`` on the given (or the inputs') U-Net maps."""
    picker = Picker.from_parts(unet, denoise, stage, PickerConfig(threshold=-1e9))
    return {
        name: picker.instances(maps[name] if maps else prob, shape, den).picks
        for name, den, prob, shape in inputs
    }


def tta_maps(unet, inputs) -> dict:
    """The U-Net map averaged (in logits) over the 8 dihedral transforms of each image."""
    out = {}
    with torch.inference_mode():
        for name, den, _, _ in inputs:
            image = torch.from_numpy(den).float().div(255)[None, None]
            logits = []
            for turns in range(4):
                for flip in (False, True):
                    x = torch.rot90(image, turns, (2, 3))
                    x = torch.flip(x, (3,)) if flip else x
                    y = unet(x)
                    y = torch.flip(y, (3,)) if flip else y
                    logits.append(torch.rot90(y, -turns, (2, 3)))
            out[name] = torch.sigmoid(torch.stack(logits).mean(0)).squeeze().numpy()
    return out


def recentred(picks: dict, inputs, scale_factor: float, window_factor: float) -> dict:
    """Each pick moved to the LoG maximum at ``scale_factor`` x its diameter within
    ``window_factor`` x the diameter; the score is kept, close duplicates suppressed."""
    out = {}
    for name, den, prob, shape in inputs:
        table = picks[name]
        scale = prob.shape[1] / shape[1]
        diameter = float(table["diameter"].median()) * scale if len(table) else 1.0
        response = log_response(den.astype(np.float32), scale_factor * diameter)
        half = max(1, int(window_factor * diameter))
        xs, ys = [], []
        for x, y in zip(table["x"].to_numpy() * scale, table["y"].to_numpy() * scale):
            col, row = int(round(x)), int(round(y))
            r0, c0 = max(0, row - half), max(0, col - half)
            window = response[r0 : row + half + 1, c0 : col + half + 1]
            dy, dx = np.unravel_index(int(np.argmax(window)), window.shape)
            xs.append(c0 + dx)
            ys.append(r0 + dy)
        x_, y_, s_ = np.array(xs), np.array(ys), table["score"].to_numpy()
        keep = suppress_close_peaks(x_, y_, s_, 0.5 * diameter)
        out[name] = pd.DataFrame(
            {"x": x_[keep] / scale, "y": y_[keep] / scale, "score": s_[keep]}
        ).assign(diameter=diameter / scale)
    return out


def self_trained(inputs, picks: dict, positive: float, unsure: float, disk: float):
    """The shipped model fine-tuned on the hybrid picks as pseudo-labels (see module doc)."""
    samples = []
    for name, den, prob, shape in inputs:
        table = picks[name]
        scale = prob.shape[1] / shape[1]
        xyd = table[["x", "y", "diameter"]].to_numpy(float) * scale
        score = table["score"].to_numpy()
        sure, maybe = score >= positive, (score >= unsure) & (score < positive)
        samples.append(
            TrainingSample(
                name=name,
                image=den,
                x=xyd[sure, 0],
                y=xyd[sure, 1],
                diameter=xyd[sure, 2] * disk,
                source="pseudo",
                scale=scale,
                unsure_x=xyd[maybe, 0],
                unsure_y=xyd[maybe, 1],
                unsure_diameter=xyd[maybe, 2] * disk,
            )
        )
    config = finetune_config(
        epochs=15,
        steps_per_epoch=25,
        lr=5e-4,
        batch_size=4,
        crop=256,
        schedule="cosine",
        val_fraction=0.0,
        seed=1,
        device="cpu",
        progress=False,
        target_fraction=1.0,
    )
    with tempfile.TemporaryDirectory() as run:
        finetune(samples, [], run, config=config, log_fn=lambda line: None)
        unet, denoise, _ = load_model(Path(run) / "last.pt")
    unet.eval()
    with torch.inference_mode():
        maps = {
            name: torch.sigmoid(unet(torch.from_numpy(den).float().div(255)[None, None]))
            .squeeze()
            .numpy()
            for name, den, _, _ in inputs
        }
    return unet, denoise, maps, sum(int(len(s.x)) for s in samples)


def centring_record(picks: dict, labels: dict, threshold: float) -> dict:
    """How far the default's picks sit from the labels, and what centring could give: the
    distance of each pick at the default threshold to its nearest label (percentiles, px),
    and the same picks scored within 1.33 x the match radius."""
    from scipy.spatial import cKDTree

    distances = []
    for name, table in picks.items():
        kept = table[table["score"] >= threshold]
        tree = cKDTree(labels[name][["x", "y"]].to_numpy(float))
        distances.append(tree.query(kept[["x", "y"]].to_numpy(float))[0])
    near = np.concatenate(distances)
    wide = evaluate_picks(picks, labels, threshold=threshold, radius=RADIUS * 4 / 3).pooled
    return {
        "distance_percentiles": {
            str(q): float(np.percentile(near, q)) for q in (10, 25, 50, 75, 90)
        },
        "wide_radius": RADIUS * 4 / 3,
        "wide_best_f1": wide["best_f1"],
        "wide_auprc": wide["auprc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(RESULTS / "label_free_levers.json"))
    parser.add_argument("--table-only", action="store_true", help="rewrite the .md from the JSON")
    args = parser.parse_args()
    if args.table_only:
        record = json.loads(Path(args.json).read_text())
        Path(args.json.replace(".json", ".md")).write_text(markdown(record))
        return
    torch.set_num_threads(1)
    base = Picker(device="cpu", stage="peaks")
    inputs, labels = apoferritin_maps(base)
    hybrid, peaks = HybridBlobGenerator(), PeakMaskGenerator()
    h_thr, p_thr = DEFAULT_THRESHOLDS["hybrid"], DEFAULT_THRESHOLDS["peaks"]
    rows = []

    def add(lever: str, picks: dict, threshold: float) -> None:
        rows.append({"lever": lever, **scored(picks, labels, threshold)})
        print(json.dumps(rows[-1]), flush=True)

    default = stage_picks(base.unet, base.denoise_settings, hybrid, inputs)
    add("default: hybrid stage, shipped model", default, h_thr)
    centring = centring_record(default, labels, h_thr)
    add(
        "peaks stage, shipped model",
        stage_picks(base.unet, base.denoise_settings, peaks, inputs),
        p_thr,
    )
    maps = tta_maps(base.unet, inputs)
    add(
        "hybrid + 8-fold test-time augmentation",
        stage_picks(base.unet, base.denoise_settings, hybrid, inputs, maps),
        h_thr,
    )
    add(
        "peaks + 8-fold test-time augmentation",
        stage_picks(base.unet, base.denoise_settings, peaks, inputs, maps),
        p_thr,
    )
    for scale_factor in (1.0, 1.5):
        add(
            f"hybrid, re-centred on the LoG at {scale_factor:g} x d (window d/2)",
            recentred(default, inputs, scale_factor, 0.5),
            h_thr,
        )
    for positive, unsure, disk in ((3.0, 1.5, 1.0), (2.5, 1.0, 1.5)):
        unet, denoise, adapted, n = self_trained(inputs, default, positive, unsure, disk)
        what = (
            f"self-trained on hybrid picks >= {positive:g} ({n}; unsure >= {unsure:g}; "
            f"disks {disk:g} x d)"
        )
        add(f"{what}, peaks", stage_picks(unet, denoise, peaks, inputs, adapted), p_thr)
        add(f"{what}, hybrid", stage_picks(unet, denoise, hybrid, inputs, adapted), h_thr)
    record = {
        "command": command_line(args),
        "radius": RADIUS,
        "rows": rows,
        "centring": centring,
    }
    Path(args.json).write_text(json.dumps(record, indent=1))
    Path(args.json.replace(".json", ".md")).write_text(markdown(record))


def markdown(record: dict) -> str:
    lines = [
        "Apoferritin `train` split (12 micrographs, the shipped model never saw their labels), "
        f"no label read by any lever; radius {record['radius']:g} px, pooled. "
        f"Command: `{record['command']}`.",
        "",
        "| lever | best F1 | AUPRC | F1 at default |",
        "|---|---|---|---|",
    ]
    for row in record["rows"]:
        lines.append(
            f"| {row['lever']} | {fmt(row['best_f1'])} | {fmt(row['auprc'])} | {fmt(row['f1'])} |"
        )
    centring = record["centring"]
    spread = ", ".join(
        f"{q}%: {value:.0f}" for q, value in centring["distance_percentiles"].items()
    )
    lines += [
        "",
        f"Distance of the default's picks (at its default threshold) to the nearest label, px: "
        f"{spread}. The same picks matched within {centring['wide_radius']:.0f} px instead of "
        f"{record['radius']:g}: best F1 {fmt(centring['wide_best_f1'])}, AUPRC "
        f"{fmt(centring['wide_auprc'])} (roughly what centring alone could give).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
