"""Does self-training on unlabelled real micrographs help? (``cryosegnet.training.adapt``)

Study, negative, 2026-12-02: self-training does not help with the diameter estimated (best F1
0.528 -> 0.535, AUPRC 0.439 -> 0.415) and hurts when told the diameter; it stays a library
function (``cryosegnet.training.adapt``), not a command.

    python bench/studies/adapt_selftraining.py --split train \
        --json bench/results/adapt_selftraining.json

Adapts the shipped model to the apoferritin micrographs of ``--split`` without reading a label
(the confident picks are pseudo-particles, the unsure ones are ignored, the rest background),
once with the diameter estimated and once told 68 px, then scores the shipped and the adapted
model on the same micrographs with their labels (radius 34 px, pooled; the labels are used
for scoring only). The design was looked at on the ``train`` split only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

import argparse
import json

from benchlib import REPO, apoferritin_labels, command_line

from cryosegnet.evaluation import evaluate_picks
from cryosegnet.io.micrographs import read_micrograph
from cryosegnet.masks.peaks import PEAK_SCORES, PeakMaskGenerator, PeakSettings
from cryosegnet.model.checkpoint import default_model_path
from cryosegnet.picking.config import PickerConfig
from cryosegnet.picking.picker import Picker
from cryosegnet.training.adapt import AdaptSettings, adapt

DIAMETER = 68.0


def score(model: Path, paths: list[Path], labels: dict, diameter: float | None) -> list[dict]:
    """Pooled best F1 and AUPRC of ``model`` with each peak score, every candidate kept."""
    picker = Picker(model=model, device="cpu", stage="peaks", threshold=-1.0, diameter=diameter)
    maps = {}
    for path in paths:
        image = read_micrograph(path).data
        maps[path.stem] = (picker.probability_maps([picker.preprocess(image)])[0], image.shape)
    rows = []
    for kind in PEAK_SCORES:
        scorer = Picker.from_parts(
            picker.unet,
            picker.denoise_settings,
            PeakMaskGenerator(PeakSettings(score=kind)),
            PickerConfig(threshold=-1.0, diameter=diameter),
            checkpoint=picker.checkpoint,
        )
        picks = {stem: scorer.instances(m, shape).picks for stem, (m, shape) in maps.items()}
        pooled = evaluate_picks(picks, labels, radius=DIAMETER / 2).pooled
        rows.append({"score": kind, "best_f1": pooled["best_f1"], "auprc": pooled["auprc"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--epochs", type=int, default=AdaptSettings().epochs)
    parser.add_argument("--work", default=str(REPO / "runs" / "adapt_selftraining"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    paths, labels = apoferritin_labels(args.split, DIAMETER)
    results = []
    for diameter in (None, DIAMETER):
        name = "estimated" if diameter is None else f"told {diameter:g} px"
        run = Path(args.work) / ("estimated" if diameter is None else "told")
        adapted = adapt(
            paths, run, diameter=diameter, settings=AdaptSettings(epochs=args.epochs), device="cpu"
        )
        for label, model in (("shipped", default_model_path()), ("adapted", adapted)):
            for row in score(Path(model), paths, labels, diameter):
                record = {"diameter": name, "model": label, **row}
                results.append(record)
                print(json.dumps(record), flush=True)
    if args.json:
        record = {"command": command_line(), "split": args.split, "rows": results}
        Path(args.json).write_text(json.dumps(record, indent=2))
        lines = [
            f"Apoferritin `{args.split}` split ({len(paths)} micrographs), self-training without "
            f"labels, then scored with the labels (radius {DIAMETER / 2:g} px, pooled). "
            f"Command: `{record['command']}`.",
            "",
            "| diameter | model | peak score | best F1 | AUPRC |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['diameter']} | {r['model']} | {r['score']} | {r['best_f1']:.3f} | "
            f"{r['auprc']:.3f} |"
            for r in results
        ]
        Path(args.json).with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
