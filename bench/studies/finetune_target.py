"""Choose fine-tuning's target-disk size on validation micrographs of the apoferritin train split.

    python bench/finetune_target.py [--fractions 1 0.6 0.4 0.25] [--epochs 30]
    python bench/finetune_target.py --table-only

For each ``--target-fraction`` F, ``cryosegnet finetune`` on the 12 apoferritin ``train``
micrographs (the command holds 2 of them out for validation; the ``test`` split is never
read), with the recipe of ``bench/few_label.py``. The table is the best epoch's validation
figures, read from each run's ``history.json``: particle best F1, AUPRC and F1 at the picker's
default peak threshold, matched within half the labelled diameter. The fine-tuning default
(``FINETUNE_DEFAULTS["target_fraction"]``) was chosen from this table; the test split's
figures for the chosen value and for whole disks are in ``bench/results/few_label.md``.

Runs go to ``runs/finetune_target/tfF`` (git-ignored); a finished run is reused.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchlib import REPO, RESULTS, command_line, fmt
from few_label import finetune_command

RUNS = REPO / "runs" / "finetune_target"
JSON = RESULTS / "finetune_target.json"


def best_epoch(run: Path) -> dict:
    """The epoch fine-tuning kept as best.pt (best validation best-F1), from history.json."""
    history = json.loads((run / "history.json").read_text())
    best = max(history, key=lambda h: (h["val_best_f1"], -h["val_loss"]))
    keys = ("epoch", "val_best_f1", "val_auprc", "val_f1", "val_threshold")
    return {k: best[k] for k in keys} | {"epochs": len(history)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.6, 0.4, 0.25])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if args.table_only:
        (RESULTS / "finetune_target.md").write_text(table(json.loads(JSON.read_text())))
        return
    rows = []
    for fraction in args.fractions:
        run = RUNS / f"tf{fraction:g}"
        command = finetune_command(run, args.epochs, fraction)
        if not (run / "history.json").is_file():
            subprocess.run([sys.executable, "-m", "cryosegnet.cli.main", *command], check=True)
        rows.append({"target_fraction": fraction, **best_epoch(run)})
        print(json.dumps(rows[-1]), flush=True)
    record = {"command": command_line(args), "rows": rows}
    JSON.write_text(json.dumps(record, indent=1))
    (RESULTS / "finetune_target.md").write_text(table(record))


def table(record: dict) -> str:
    lines = [
        "Validation micrographs held out of the apoferritin `train` split by `cryosegnet "
        "finetune` (2 micrographs, 341 particles); best epoch of each run. "
        f"Command: `{record['command']}`.",
        "",
        "| target disks (x diameter) | best F1 | AUPRC | F1 at 0.05 | best epoch |",
        "|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        lines.append(
            f"| {row['target_fraction']:g} | {fmt(row['val_best_f1'])} | "
            f"{fmt(row['val_auprc'])} | {fmt(row['val_f1'])} | "
            f"{row['epoch']} of {row['epochs']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
