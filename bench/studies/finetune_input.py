"""Fine-tuning at another working resolution: does the U-Net see apoferritin better binned?

    python bench/finetune_input.py [--working-sizes 1024 768 620]
    python bench/finetune_input.py --table-only

The shipped model works on micrographs shrunk to a 1024-px long side, where an apoferritin
particle of the EMPIAR-10146 micrographs (68 px as read) is 56 px across. Shrinking further
averages more shot noise into each pixel and brings the particle closer to the size the shipped
network paints by default (~35 working px). Each row fine-tunes the shipped model with
``FINETUNE_DEFAULTS`` (seed 1) on the 12 apoferritin ``train`` micrographs denoised at that
working size (the other denoising settings are the shipped model's), with the same 2 held out
for validation (each epoch has at least 25 steps, about one pass over the pixels at 1024, so
the smaller sizes see each particle more often), and measures the best epoch with the full
picker on them: best F1 and AUPRC pooled within half the labelled diameter, F1 at the peak
finder's default threshold. The ``test`` split and the quality set are not read.

Results: ``bench/results/finetune_input.json`` and ``.md``; runs under
``runs/finetune_input/`` (git-ignored; a finished run is reused).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch
from benchlib import APOFERRITIN, REPO, RESULTS, command_line, fmt
from finetune_decoys import SEED, finished, training_data, validation_figures
from finetune_target import best_epoch

from cryosegnet.io.micrographs import read_micrograph
from cryosegnet.model.unet import architecture_name
from cryosegnet.picking.config import PickerConfig
from cryosegnet.picking.picker import Picker
from cryosegnet.training.finetune import finetune_config, load_starting_model
from cryosegnet.training.trainer import train

RUNS = REPO / "runs" / "finetune_input"
JSON = RESULTS / "finetune_input.json"


def run_size(working_size: int) -> tuple:
    """Fine-tune at ``working_size`` (reused when finished); (best checkpoint, validation)."""
    out = RUNS / f"ws{working_size}"
    model, shipped, _, path = load_starting_model()
    settings = replace(shipped, working_size=working_size)
    data = training_data(settings, RUNS / "cache")
    config = finetune_config(seed=SEED, progress=False, arch=architecture_name(model.config))
    if not finished(out, config.epochs):
        started = time.perf_counter()
        meta = {"kind": "finetune", "bench": f"working size {working_size}", "parent": str(path)}
        train(config, data.train, data.validation, out, settings, model=model, metadata=meta)
        (out / "wall_s.txt").write_text(f"{time.perf_counter() - started:.0f}\n")
    return out / "best.pt", [s.name for s in data.validation]


def measure(checkpoint, stems: list[str]) -> dict:
    picker = Picker(checkpoint, device="cpu", config=PickerConfig(threshold=-1e9))
    return validation_figures(
        {s: picker.pick(read_micrograph(APOFERRITIN / "micrographs" / f"{s}.png")) for s in stems}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--working-sizes", type=int, nargs="+", default=[1024, 768, 620])
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if args.table_only:
        (RESULTS / "finetune_input.md").write_text(table(json.loads(JSON.read_text())))
        return
    torch.set_num_threads(2)
    rows, stems = [], []
    for size in args.working_sizes:
        checkpoint, stems = run_size(size)
        best = best_epoch(checkpoint.parent)
        rows.append(
            {
                "working_size": size,
                "best_epoch": best["epoch"],
                "epochs": best["epochs"],
                **measure(checkpoint, stems),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    record = {"command": command_line(args), "validation": stems, "rows": rows}
    JSON.write_text(json.dumps(record, indent=1))
    (RESULTS / "finetune_input.md").write_text(table(record))


def table(record: dict) -> str:
    lines = [
        "Validation micrographs of the apoferritin `train` split "
        f"({', '.join(record['validation'])}); best epoch of each run, picked with the full "
        f"picker. Command: `{record['command']}`.",
        "",
        "| working size (long side, px) | particle (working px) | best F1 | AUPRC | F1 at 0.05 "
        "| best epoch |",
        "|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        particle = 68 * row["working_size"] / 1240
        lines.append(
            f"| {row['working_size']} | {particle:.0f} | {fmt(row['best_f1'])} | "
            f"{fmt(row['auprc'])} | {fmt(row['f1'])} | {row['best_epoch']} of {row['epochs']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
