"""Few-label track: fine-tune on the apoferritin ``train`` split, evaluate on ``test``.

    python bench/few_label.py [--epochs 40] [--topaz-epochs 10] [--reuse]
    python bench/few_label.py --table-only
    python bench/few_label.py --quick       # 1 epoch each: checks the bench runs (minutes)

cryosegnet: ``cryosegnet finetune`` on the 12 ``train`` micrographs (the command's own
validation hold-out comes from those 12; the test micrographs are never seen), then
``cryosegnet pick --model RUN/best.pt`` on the 7 ``test`` micrographs. Topaz, the field's
few-label reference (positive-unlabelled learning): ``topaz train`` on the same 12 micrographs
and labels, downsampled 2x (particle radius 17 px), then ``topaz extract`` on the test ones.
Both are scored the same way: one-to-one matching within 34 px (half the 68-px diameter),
pooled over the 7 micrographs, every candidate kept for best F1 and AUPRC.

Results: ``bench/results/few_label.json`` and the table generated from it,
``bench/results/few_label.md``; work files under ``runs/few_label/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from benchlib import APOFERRITIN as DATA
from benchlib import (
    QUICK_RESULTS,
    REPO,
    TOPAZ,
    add_bench_options,
    apoferritin_split,
    finetune_command,
    mrc_copies,
    results_json,
    run_timed,
)

DIAMETER = 68.0
TOPAZ_DOWNSAMPLE = 2


def run(command: list[str], log: Path) -> float:
    """Run ``command``, its output into ``log``; its wall seconds (an error if it fails)."""
    print("$ " + shlex.join(command), flush=True)
    timed = run_timed(command, log, math.inf, stamp=False)
    if not timed.ok:
        raise subprocess.CalledProcessError(timed.returncode, command)
    return timed.wall_s


def score(picks: dict[str, pd.DataFrame], threshold: float | None) -> dict:
    from cryosegnet.evaluation import evaluate_picks
    from cryosegnet.io.coordinates import read_coordinates

    labels = {
        stem: read_coordinates(DATA / "labels" / f"{stem}.csv")
        for stem in apoferritin_split("test")
    }
    pooled = evaluate_picks(picks, labels, radius=DIAMETER / 2, threshold=threshold).pooled
    keys = (
        "best_f1",
        "best_threshold",
        "auprc",
        "f1",
        "precision",
        "recall",
        "n_picks",
        "n_labels",
    )
    return {k: pooled[k] for k in keys}


def cryosegnet_track(work: Path, args: argparse.Namespace) -> dict:
    from cryosegnet.io.coordinates import read_coordinates
    from cryosegnet.picking.picker import Picker
    from cryosegnet.training.finetune import finetune_config

    cli = [sys.executable, "-m", "cryosegnet.cli.main"]
    fraction = args.target_fraction or finetune_config().target_fraction
    suffix = "_defaults" if args.finetune_defaults else f"_tf{fraction:g}"
    run_dir = work / f"cryosegnet_ft{suffix}"
    if args.finetune_defaults:  # what a user gets: no recipe option at all
        finetune = finetune_command(run_dir)
        defaults = finetune_config()
        tool = (
            f"cryosegnet finetune with its defaults ({defaults.epochs} epochs, lr "
            f"{defaults.lr:g}, crop {defaults.crop}; shipped model, 12 train micrographs)"
        )
    else:
        finetune = finetune_command(run_dir, args.epochs, fraction)
        tool = (
            f"cryosegnet finetune --target-fraction {fraction:g} (shipped model, 12 train "
            "micrographs)"
        )
    seconds = None
    if not (args.reuse and (run_dir / "best.pt").is_file()):
        seconds = run(cli + finetune, work / f"cryosegnet_finetune{suffix}.log")
    picks_dir = work / f"cryosegnet_picks{suffix}"
    test = apoferritin_split("test")
    pick = [
        "pick",
        *[str(DATA / "micrographs" / f"{s}.png") for s in test],
        "-o",
        str(picks_dir),
        "--model",
        str(run_dir / "best.pt"),
        "--threshold",
        "0",
        "--overwrite",
        "--no-progress",
    ]
    run(cli + pick, work / f"cryosegnet_pick{suffix}.log")
    # the model's own threshold (a fine-tuned model's validated one), as pick uses it
    threshold = Picker(model=run_dir / "best.pt", device="cpu").threshold
    picks = {}
    for path in picks_dir.rglob("*_autopick.star"):
        picks[path.name[: -len("_autopick.star")]] = read_coordinates(path)
    return {
        "tool": tool,
        "commands": [
            "cryosegnet "
            + shlex.join(
                a if not a.startswith(str(REPO.parent)) else os.path.relpath(a, REPO) for a in c
            )
            for c in (finetune, pick)
        ],
        "train_seconds": seconds,
        "note": args.note,
        "default_threshold": threshold,
        "all": score(picks, None),
        "at_default": score(picks, threshold),
    }


#: The few-label loop's ablations: folder suffix -> (settings changed, what the row says).
REFINE_ABLATIONS: dict[str, tuple[dict, str]] = {
    "": ({}, ""),
    "_kept": (
        {"labelled_positives": "kept"},
        ", the filter learnt from the classes' kept picks",
    ),
    "_no_map": (
        {"labelled_positives": "kept", "labelled_map_weight": 0.0},
        ", the filter learnt from the classes' kept picks, the model's map not added",
    ),
    # the loop as shipped, phase-randomised copies of 4 test micrographs mixed into the batch
    # (empty fields at real noise: they must be flagged and get no picks)
    "_copies": ({}, ", with 4 phase-randomised copies mixed in"),
}


def _loop_row(model: Path, name: str, variant: str, change: dict, decoys: bool, reuse: bool):
    """``pick --model MODEL --refine`` on the ``test`` micrographs (``bench/refine.py``'s
    ``run_loop``; no test label is used), with the loop's settings changed by ``change`` and,
    with ``decoys``, phase-randomised copies of 4 of them mixed in -> (run, the row's common
    fields)."""
    import refine
    from benchlib import apoferritin_labels

    from cryosegnet.training.refine_loop import RefineSettings

    paths, labels = apoferritin_labels("test")
    copies: list[str] = []
    if decoys:
        paths, labels, copies = refine._with_decoys(paths, labels, refine.N_DECOYS)
    settings = RefineSettings(**change)
    run = refine.run_loop(name, variant, paths, labels, settings, {"model": model}, reuse, copies)
    if "final_triaged" not in run:
        sys.exit(f"the loop wrote no picks: {run.get('refused') or run.get('stop_reason')}")
    written = run["final_triaged"]
    relative = os.path.relpath(model, REPO)
    return run, {
        "commands": [
            f"cryosegnet pick TEST_MICROGRAPHS -o PICKS --model {relative} --refine REFINE"
        ],
        "train_seconds": None,
        "default_threshold": "the loop's own",
        "all": run.get("every_candidate", written),
        "at_default": written,
        "loop_seconds": run.get("loop_s"),
    }


def refine_track(work: Path, args: argparse.Namespace, ablation: str = "") -> dict:
    """The few-label track's second half: the model ``finetune`` made with its defaults picks
    the ``test`` micrographs and the label-free loop refines its picks there, as ``pick
    --model RUN/best.pt --refine REFINE`` does (no test label is used, the loop runs on the
    micrographs a user would pick). ``ablation``: a key of :data:`REFINE_ABLATIONS` (the loop
    as shipped: ``""``)."""
    model = work / "cryosegnet_ft_defaults" / "best.pt"
    if not model.is_file():
        sys.exit(f"{model}: not found (run with --finetune-defaults first)")
    copies = ablation == "_copies"
    name = "few_label_test" + ("_quick" if args.quick else "") + ("_copies" if copies else "")
    change, says = REFINE_ABLATIONS[ablation]
    variant = "finetuned_defaults" + ablation
    run, row = _loop_row(model, name, variant, change, copies, args.reuse)
    written = row["at_default"]
    note = f"the loop: {run.get('stop_reason', '?')}"
    if copies:
        note += (
            f"; picks on the copies: {sorted(written['picks_on_empty_fields'].values())}, "
            f"flagged: {len(run.get('empty_fields_flagged', []))} of {len(run['empty_fields'])}, "
            f"real micrographs flagged: {len(run.get('full_fields_flagged', []))}"
        )
    tool = "cryosegnet finetune with its defaults, then pick --refine on the 7 test micrographs"
    return {"tool": f"{tool} (no test label){says}", "note": note, **row}


def refine_fold_track(work: Path, args: argparse.Namespace, seed: int) -> dict:
    """The few-label track from another fine-tuning of the same recipe: ``finetune --seed
    SEED`` (its own 10 of the 12 ``train`` micrographs; made by
    ``bench/studies/few_label_combined.py``), then the loop as shipped on ``test``; the spread
    of the track over fine-tuning runs. Round 0 is that model alone, at its default threshold."""
    model = work / "folds" / f"seed{seed}" / "best.pt"
    if not model.is_file():
        sys.exit(f"{model}: not found (run bench/studies/few_label_combined.py first)")
    name = f"few_label_test_seed{seed}"
    run, row = _loop_row(model, name, "finetuned_defaults", {}, False, args.reuse)
    alone = run["rounds"]["0"]
    return {
        "tool": f"cryosegnet finetune --seed {seed} (10 of the 12 train micrographs), then pick "
        "--refine on the 7 test micrographs (no test label)",
        "note": f"the model alone, at its default threshold: best F1 {alone['best_f1']:.3f}, "
        f"AUPRC {alone['auprc']:.3f}; the loop flagged {len(run.get('flagged', []))} "
        "micrograph(s)",
        **row,
    }


def as_mrc(stems: list[str], out: Path) -> list[Path]:
    """Topaz 0.3 reads MRC, not 16-bit PNG: float32 copies."""
    return mrc_copies([DATA / "micrographs" / f"{stem}.png" for stem in stems], out)


def topaz_track(work: Path, args: argparse.Namespace) -> dict:
    from cryosegnet.io.coordinates import read_coordinates

    train, test = apoferritin_split("train"), apoferritin_split("test")
    mrc = as_mrc(train + test, work / "mrc")
    pre = work / "topaz_preprocessed"
    s = TOPAZ_DOWNSAMPLE
    radius = int(round(DIAMETER / 2 / s))
    seconds = 0.0
    if not (args.reuse and all((pre / p.name).is_file() for p in mrc)):
        seconds = run(
            [str(TOPAZ), "preprocess", "-s", str(s), "-o", str(pre), *map(str, mrc)],
            work / "topaz_preprocess.log",
        )
    rows = []
    for stem in train:
        table = read_coordinates(DATA / "labels" / f"{stem}.csv")
        rows += [(stem, int(round(x / s)), int(round(y / s))) for x, y in zip(table.x, table.y)]
    targets = work / "topaz_train_targets.txt"
    pd.DataFrame(rows, columns=["image_name", "x_coord", "y_coord"]).to_csv(
        targets, sep="\t", index=False
    )
    train_dir = work / "topaz_train_images"
    train_dir.mkdir(exist_ok=True)
    for stem in train:
        link = train_dir / f"{stem}.mrc"
        if not link.exists():
            link.symlink_to(pre / f"{stem}.mrc")
    per_micrograph = int(round(len(rows) / len(train)))
    model_prefix = work / "topaz_model"
    train_cmd = [
        str(TOPAZ),
        "train",
        "--train-images",
        str(train_dir),
        "--train-targets",
        str(targets),
        "-n",
        str(per_micrograph),
        "--radius",
        "3",
        "--num-epochs",
        str(args.topaz_epochs),
        "--epoch-size",
        str(args.topaz_epoch_size),
        "--num-workers",
        "0",
        "-d",
        "-1",
        "--save-prefix",
        str(model_prefix),
        "-o",
        str(work / "topaz_train_log.txt"),
    ]
    seconds += run(train_cmd, work / "topaz_train.log")
    model = Path(f"{model_prefix}_epoch{args.topaz_epochs}.sav")
    picks_file = work / "topaz_test_picks.txt"
    extract = [
        str(TOPAZ),
        "extract",
        "-r",
        str(radius),
        "-t",
        "-10",
        "-x",
        str(s),
        "-m",
        str(model),
        "-d",
        "-1",
        "-o",
        str(picks_file),
        *[str(pre / f"{stem}.mrc") for stem in test],
    ]
    run(extract, work / "topaz_extract.log")
    table = pd.read_csv(picks_file, sep="\t")
    picks = {
        stem: pd.DataFrame(
            {
                "x": g["x_coord"].astype(float),
                "y": g["y_coord"].astype(float),
                "score": g["score"].astype(float),
                "diameter": DIAMETER,
            }
        )
        for stem, g in table.groupby("image_name")
    }
    relative = [
        shlex.join(os.path.relpath(a, REPO) if a.startswith("/") else a for a in c)
        for c in (train_cmd, extract)
    ]
    return {
        "tool": f"Topaz train (resnet8, PU learning, {args.topaz_epochs} epochs x "
        f"{args.topaz_epoch_size}, 12 train micrographs)",
        "commands": relative,
        "train_seconds": seconds,
        "default_threshold": 0.0,
        "all": score(picks, None),
        "at_default": score(picks, 0.0),
    }


def _threshold(value) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else str(value)


def table(results: dict) -> str:
    lines = [
        "# Few labels: apoferritin `train` (12 micrographs) → `test` (7)",
        "",
        "Generated by `python bench/few_label.py` from `few_label.json`. Pooled over the 7 test",
        "micrographs, one-to-one matching within 34 px; best F1 and AUPRC over every candidate.",
        "",
        "| tool | best F1 | AUPRC | F1 at default | default threshold | train s |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        seconds = row["train_seconds"]
        lines.append(
            f"| {row['tool']} | {row['all']['best_f1']:.3f} | {row['all']['auprc']:.3f} | "
            f"{row['at_default']['f1']:.3f} | {_threshold(row['default_threshold'])} | "
            f"{'-' if seconds is None else f'{seconds:.0f}'} |"
        )
    lines += ["", "Commands:", ""]
    for row in results["rows"]:
        lines += [f"- {row['tool']}:"] + [f"  `{c}`" for c in row["commands"]]
        if row.get("note"):
            lines.append(f"  ({row['note']})")
    lines += ["", f"Run {results['date']} on a shared 2-core CPU, no GPU."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_options(parser, "few_label", "1 epoch for each tool, Topaz 10 updates")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--topaz-epochs", type=int, default=10)
    parser.add_argument("--topaz-epoch-size", type=int, default=200)
    parser.add_argument(
        "--target-fraction",
        type=float,
        help="passed to cryosegnet finetune (default: finetune's own); one row per value",
    )
    parser.add_argument(
        "--finetune-defaults",
        action="store_true",
        help="run cryosegnet finetune with its own defaults instead of this bench's recipe",
    )
    parser.add_argument(
        "--refine",
        action="store_true",
        help="also refine the --finetune-defaults model's test picks with pick --refine",
    )
    parser.add_argument(
        "--refine-folds",
        action="store_true",
        help="also the loop from the models of finetune --seed 1 and 2 (their spread)",
    )
    parser.add_argument("--skip-topaz", action="store_true")
    parser.add_argument("--skip-cryosegnet", action="store_true")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse a finished fine-tuning run and Topaz's preprocessed images",
    )
    parser.add_argument("--note", default="", help="recorded with the cryosegnet row")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "few_label")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.topaz_epochs, args.topaz_epoch_size = 1, 1, 10
        args.work = QUICK_RESULTS / "few_label"
    out_json = results_json(args, "few_label")
    if args.table_only:
        out_json.with_suffix(".md").write_text(table(json.loads(out_json.read_text())))
        return 0
    if not DATA.is_dir():
        sys.exit(f"{DATA}: not found (needs ../shared)")
    args.work.mkdir(parents=True, exist_ok=True)
    fresh = []
    if not args.skip_cryosegnet:
        fresh.append(cryosegnet_track(args.work, args))
    if args.refine:
        fresh += [refine_track(args.work, args, ablation) for ablation in REFINE_ABLATIONS]
    if args.refine_folds:
        fresh += [refine_fold_track(args.work, args, seed) for seed in (1, 2)]
    if not args.skip_topaz:
        fresh.append(topaz_track(args.work, args))
    # Read the earlier rows only now: another run of this bench may have written meanwhile.
    previous = json.loads(out_json.read_text()) if out_json.is_file() else {"rows": []}
    rows = {row["tool"]: row for row in previous["rows"]}
    rows.update({row["tool"]: row for row in fresh})
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": list(rows.values()),
    }
    out_json.write_text(json.dumps(results, indent=2, default=float))
    out_json.with_suffix(".md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
