"""Issue 4 bench: fine-tune the default model on one labelled apoferritin micrograph, evaluate
on the other (and the reverse); F1 before and after.

    python bench/bench_finetune.py [--model src/cryosegnet/weights/default.pt] [--epochs 10]

Everything runs through the CLI, exactly as a user would; results go to
bench/results/finetune.md and the run folders to runs/finetune/ (gitignored).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchlib import APOFERRITIN as DATA
from benchlib import REPO, RESULTS

PAIRS = [("May08_03.13.02.bin", "May08_07.10.35.bin"), ("May08_07.10.35.bin", "May08_03.13.02.bin")]


def cli(*args: str) -> None:
    command = [sys.executable, "-m", "cryosegnet.cli.main", *args]
    print("$ cryosegnet " + shlex.join(args), flush=True)
    subprocess.run(command, check=True)


def evaluate(model: str, stem: str, work: Path, tag: str) -> dict:
    picks = work / f"picks_{tag}_{stem}"
    cli(
        "pick",
        str(DATA / "micrographs" / f"{stem}.png"),
        "-o",
        str(picks),
        "--model",
        model,
        "--threshold",
        "0",
        "--overwrite",
        "--no-progress",
    )
    report = work / f"report_{tag}_{stem}"
    # F1 at the default threshold comes from a second evaluation with --threshold.
    from cryosegnet.picking.picker import DEFAULT_PEAK_THRESHOLD

    cli(
        "evaluate",
        str(picks),
        str(DATA / "labels" / f"{stem}.csv"),
        "-o",
        str(report),
        "--threshold",
        str(DEFAULT_PEAK_THRESHOLD),
    )
    pooled = json.loads((report / "metrics.json").read_text())["pooled"]
    return {
        k: pooled[k]
        for k in ("precision", "recall", "f1", "best_f1", "auprc", "n_picks", "n_labels")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "src/cryosegnet/weights/default.pt"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--work", default=str(REPO / "runs/finetune"))
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA}: not found (needs ../shared)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for train_stem, test_stem in PAIRS:
        start = time.perf_counter()
        before = evaluate(args.model, test_stem, work, "before")
        run = work / f"ft_{train_stem}"
        cli(
            "finetune",
            "--images",
            str(DATA / "micrographs" / f"{train_stem}.png"),
            "--labels",
            str(DATA / "labels" / f"{train_stem}.csv"),
            "--model",
            args.model,
            "-o",
            str(run),
            "--epochs",
            str(args.epochs),
            "--val-fraction",
            "0",
            "--no-progress",
        )
        after = evaluate(str(run / "last.pt"), test_stem, work, f"after_{train_stem}")
        rows.append(
            {
                "train": train_stem,
                "test": test_stem,
                "before": before,
                "after": after,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    lines = [
        "# Fine-tuning on one apoferritin micrograph",
        "",
        f"- command: `python bench/bench_finetune.py --epochs {args.epochs}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; CPU only (2 cores)",
        f"- starting model: `{Path(args.model).name}`; fine-tune: `cryosegnet finetune` defaults "
        f"(lr 1e-4, ≥ 25 steps per epoch) with `--epochs {args.epochs} --val-fraction 0`, "
        "`last.pt` evaluated",
        "- evaluation: `cryosegnet evaluate`, greedy one-to-one matching within half the "
        "labelled diameter (34 px); F1 at the default threshold, best F1 over thresholds, AUPRC",
        "",
        "| fine-tuned on | evaluated on | F1 before | F1 after | best F1 before | best F1 after "
        "| AUPRC before | AUPRC after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b, a = r["before"], r["after"]
        lines.append(
            f"| {r['train']} | {r['test']} | {b['f1']:.3f} | {a['f1']:.3f} | "
            f"{b['best_f1']:.3f} | {a['best_f1']:.3f} | {b['auprc']:.3f} | "
            f"{a['auprc']:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    out = RESULTS
    out.mkdir(exist_ok=True)
    (out / "finetune.md").write_text(text)
    (out / "finetune.json").write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()
