"""FastNLMeans window sizes: the denoiser's largest cost, and whether picking needs the large ones.

Study, decided 2026-12-02: FastNLMeans windows of 5 / 11 px (template / search) instead of the
authors' 7 / 21: the same picking figures on both apoferritin splits and a 4k micrograph picked
in 1.25 s instead of 1.63 s. The defaults and the shipped model's record carry 5 / 11.

    OMP_NUM_THREADS=1 python bench/studies/nlm_window.py --json bench/results/nlm_window.json

For each (template, search) window pair: the denoising time and the end-to-end picking time of
the real 4096² EPU micrograph (1 thread, ONNX Runtime U-Net, median of ``--repeats``), and the
shipped model's pooled best F1, AUPRC and F1 at the default threshold on the apoferritin
``train`` split (where the choice was made) and ``test`` split (checked, not tuned on).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

import argparse
import dataclasses
import json
import time

import cv2
import numpy as np
from benchlib import EPU_FILE, apoferritin_labels, command_line

from cryosegnet.evaluation import evaluate_picks
from cryosegnet.io.micrographs import read_micrograph
from cryosegnet.picking.config import DEFAULT_THRESHOLDS
from cryosegnet.picking.picker import Picker
from cryosegnet.preprocessing.denoise import denoise

WINDOWS = ((7, 21), (5, 11))  # (template, search): the previous and the new default


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    epu = read_micrograph(EPU_FILE).data
    sets = {}
    for split in ("train", "test"):
        paths, labels = apoferritin_labels(split)
        sets[split] = ({p.stem: read_micrograph(p).data for p in paths}, labels)
    rows = []
    for template, search in WINDOWS:
        base = Picker(device="cpu", stage="peaks", threshold=-1.0, runtime="onnx")
        settings = dataclasses.replace(
            base.denoise_settings, nlm_template=template, nlm_search=search
        )
        picker = Picker.from_parts(
            base.unet,
            settings,
            "peaks",
            base.config,
            checkpoint=base.checkpoint,
            model_path=base.model_path,
            runtime="onnx",
        )
        row = {
            "nlm_template": template,
            "nlm_search": search,
            "denoise_s": median_seconds(lambda s=settings: denoise(epu, s), args.repeats),
            "pick_s": median_seconds(lambda p=picker: p.pick(epu), args.repeats),
        }
        for split, (images, labels) in sets.items():
            picks = {stem: picker.pick(image) for stem, image in images.items()}
            pooled = evaluate_picks(picks, labels, radius=34).pooled
            at = evaluate_picks(picks, labels, radius=34, threshold=DEFAULT_THRESHOLDS["peaks"])
            row[split] = {
                "best_f1": pooled["best_f1"],
                "auprc": pooled["auprc"],
                "f1_at_default": at.pooled["f1"],
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        record = {"command": command_line(), "micrograph": EPU_FILE.name, "rows": rows}
        Path(args.json).write_text(json.dumps(record, indent=2))
        lines = [
            f"Real 4096² EPU micrograph, 1 thread, median of {args.repeats}; apoferritin splits "
            "pooled, radius 34 px, shipped model. Command: "
            f"`{record['command']}`.",
            "",
            "| NLM template / search | denoise s | pick s (end to end) | train best F1 / AUPRC "
            "/ F1 @default | test best F1 / AUPRC / F1 @default |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            cells = [
                " / ".join(f"{r[s][k]:.3f}" for k in ("best_f1", "auprc", "f1_at_default"))
                for s in ("train", "test")
            ]
            lines.append(
                f"| {r['nlm_template']} / {r['nlm_search']} | {r['denoise_s']:.2f} | "
                f"{r['pick_s']:.2f} | {cells[0]} | {cells[1]} |"
            )
        Path(args.json).with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
