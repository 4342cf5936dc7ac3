"""Fine-tuning studies on the apoferritin ``train`` split (frozen: each decided, and when).

    python bench/studies/finetune.py target [--fractions 1 0.6 0.4 0.25] [--epochs 30]
    python bench/studies/finetune.py decoys [--epochs 40]
    python bench/studies/finetune.py seeds [--seeds 1 2 3]
    python bench/studies/finetune.py input [--working-sizes 1024 768 620]
    python bench/studies/finetune.py one-micrograph [--epochs 10]
    python bench/studies/finetune.py STUDY --table-only     # rewrite its .md from the JSON

Every study fine-tunes the shipped model with ``cryosegnet finetune``'s recipe on the 12
apoferritin ``train`` micrographs (``one-micrograph``: on one of them) and scores on the 2
validation micrographs ``finetune`` holds out of them (best F1 and AUPRC pooled within half
the labelled diameter, F1 at the peak finder's default threshold). The ``test`` split and the
quality set are never read; ``bench/few_label.py`` measures the test split once, with the
recipe fixed. Runs go to ``runs/finetune_<study>/`` (git-ignored; a finished run is reused);
results to ``bench/results/finetune_<study>.json`` and ``.md`` (``one-micrograph``:
``finetune.json`` and ``.md``).

What each decided:

* ``target`` (2026-12-02): the size of the target disks, as a fraction of the labelled
  diameter. Centre disks of 0.6 x the diameter became ``FINETUNE_DEFAULTS["target_fraction"]``
  (AUPRC 0.48 -> 0.57 on the test split at the same best F1, BENCHMARKS.md).
* ``decoys`` (2026-12-03, negative): phase-randomised copies of the training micrographs
  (power spectrum kept, every particle gone) added as empty samples. They lower the picks on
  such decoys and nearly as many on the real micrographs, and cost 0.01 best F1: not adopted.
* ``seeds`` (2026-12-03, negative): three training seeds agree to +-0.003 best F1; averaging
  their maps (ensemble) gains nothing and averaging their weights (soup) loses 0.016. The limit
  is not training noise.
* ``input`` (2026-12-03, negative): fine-tuning at a 768- or 620-px working size (particles 42
  or 34 working px instead of 56) moves best F1 by -0.010 and +0.004, within the recipe's
  spread: the working size stays 1024.
* ``one-micrograph`` (2026-11-25): one labelled micrograph, the other one evaluated (and the
  reverse), through the command line as a user would. It lifted F1 at the default threshold by
  +0.04 and +0.10 (with the peak stage of that time); recorded, not re-run since.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

import argparse
import json
import shlex
import statistics
import subprocess
import time
from dataclasses import replace

import numpy as np
import torch
from benchlib import (
    APOFERRITIN,
    REPO,
    RESULTS,
    apoferritin_split,
    command_line,
    finetune_command,
    fmt,
)

from cryosegnet.evaluation import evaluate_picks
from cryosegnet.io.coordinates import read_coordinates
from cryosegnet.io.micrographs import read_micrograph
from cryosegnet.model.checkpoint import load_model
from cryosegnet.model.unet import architecture_name
from cryosegnet.picking.config import PickerConfig
from cryosegnet.picking.picker import DEFAULT_PEAK_THRESHOLD, Picker
from cryosegnet.preprocessing.denoise import denoise
from cryosegnet.training.data import assemble_training_data
from cryosegnet.training.dataset import TrainingSample
from cryosegnet.training.finetune import finetune, finetune_config, load_starting_model
from cryosegnet.training.trainer import Trainer

RADIUS = 34.0  # half the labelled apoferritin diameter
SEED = 1  # the training seed of every study but ``seeds``, and the validation split of all
TRAIN_DECOY_SEED = 100
EVAL_DECOY_SEED = 200
THRESHOLDS = (DEFAULT_PEAK_THRESHOLD, 0.2, 0.4, 0.6)
ONE_MICROGRAPH_PAIRS = [
    ("May08_03.13.02.bin", "May08_07.10.35.bin"),
    ("May08_07.10.35.bin", "May08_03.13.02.bin"),
]


def runs(study: str) -> Path:
    """Where a study's fine-tuning runs go (git-ignored)."""
    return REPO / "runs" / f"finetune_{study}"


def results(study: str) -> Path:
    """A study's results JSON (its table: the same name with ``.md``)."""
    return RESULTS / f"finetune_{study}.json"


# ----------------------------------------------------------------------------- shared steps


def best_epoch(run: Path) -> dict:
    """The epoch fine-tuning kept as best.pt (best validation best-F1), from history.json."""
    history = json.loads((run / "history.json").read_text())
    best = max(history, key=lambda h: (h["val_best_f1"], -h["val_loss"]))
    keys = ("epoch", "val_best_f1", "val_auprc", "val_f1", "val_threshold")
    return {k: best[k] for k in keys} | {"epochs": len(history)}


def training_data(settings, cache: Path):
    """The 12 ``train`` micrographs denoised with ``settings``, split as ``finetune`` does."""
    train_stems = apoferritin_split("train")
    return assemble_training_data(
        settings,
        images=[str(APOFERRITIN / "micrographs" / f"{s}.png") for s in train_stems],
        labels=[str(APOFERRITIN / "labels" / f"{s}.csv") for s in train_stems],
        val_fraction=finetune_config().val_fraction,
        seed=SEED,
        cache=cache,
    )


def finished(out: Path, epochs: int) -> bool:
    """Whether the run in ``out`` trained all ``epochs`` (a killed run is trained again)."""
    history = out / "history.json"
    return history.is_file() and len(json.loads(history.read_text())) >= epochs


def validation_figures(picks: dict) -> dict:
    """Best F1, AUPRC and F1 at the peak finder's default threshold of picks on apoferritin
    micrographs (by stem), pooled, one-to-one within half the labelled diameter."""
    labels = {stem: read_coordinates(APOFERRITIN / "labels" / f"{stem}.csv") for stem in picks}
    pooled = evaluate_picks(picks, labels, radius=RADIUS, threshold=DEFAULT_PEAK_THRESHOLD).pooled
    return {k: pooled[k] for k in ("best_f1", "auprc", "f1", "best_threshold", "n_labels")}


def picker_of(checkpoint: Path) -> Picker:
    """The full picker of ``checkpoint``, keeping every candidate (for best F1 and AUPRC)."""
    return Picker(checkpoint, device="cpu", config=PickerConfig(threshold=-1e9))


# ----------------------------------------------------------------------------- target


def run_target(args: argparse.Namespace) -> dict:
    """One ``cryosegnet finetune`` per target fraction; the best epoch's validation figures."""
    rows = []
    for fraction in args.fractions:
        run = runs("target") / f"tf{fraction:g}"
        command = finetune_command(run, args.epochs, fraction)
        if not (run / "history.json").is_file():
            subprocess.run([sys.executable, "-m", "cryosegnet.cli.main", *command], check=True)
        rows.append({"target_fraction": fraction, **best_epoch(run)})
        print(json.dumps(rows[-1]), flush=True)
    return {"command": command_line(), "rows": rows}


def target_table(record: dict) -> str:
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


# ----------------------------------------------------------------------------- decoys


def phase_randomised(image: np.ndarray, seed: int) -> np.ndarray:
    """``image`` with its Fourier amplitudes kept and its phases taken from white noise.

    The phases of a real white-noise image are Hermitian-symmetric, so the result is real; the
    mean (zero frequency) is kept.
    """
    data = image.astype(np.float64)
    spectrum = np.fft.rfft2(data - data.mean())
    noise = np.fft.rfft2(np.random.default_rng(seed).standard_normal(data.shape))
    phases = noise / np.maximum(np.abs(noise), 1e-12)
    return (np.fft.irfft2(np.abs(spectrum) * phases, s=data.shape) + data.mean()).astype(np.float32)


def decoy_sample(path: Path, settings, seed: int) -> TrainingSample:
    """A denoised phase-randomised copy of ``path``: a training sample with no particle."""
    image = denoise(phase_randomised(read_micrograph(path).data, seed), settings)
    empty = np.zeros(0)
    return TrainingSample(f"{path.stem}_decoy", image, empty, empty, empty, source="decoy")


def run_decoy_variant(variant: str, epochs: int) -> Path:
    """Fine-tune one variant (``none``/``decoys``; a finished run is reused); its best
    checkpoint."""
    out = runs("decoys") / variant
    if finished(out, epochs):
        return out / "best.pt"
    _, settings, _, _ = load_starting_model()
    data = training_data(settings, runs("decoys") / "cache")
    samples = list(data.train)
    if variant == "decoys":
        samples += [
            decoy_sample(APOFERRITIN / "micrographs" / f"{s.name}.png", settings, seed)
            for seed, s in enumerate(data.train, start=TRAIN_DECOY_SEED)
        ]
    config = finetune_config(seed=SEED, epochs=epochs, progress=False)
    started = time.perf_counter()
    finetune(samples, data.validation, out, config=config, metadata={"bench": variant})
    (out / "wall_s.txt").write_text(f"{time.perf_counter() - started:.0f}\n")
    return out / "best.pt"


def measure_decoys(checkpoint: Path, validation: list[str]) -> dict:
    """Best F1 / AUPRC on the validation micrographs; pick counts on them and their decoys."""
    picker = picker_of(checkpoint)
    real, decoys = {}, {}
    for k, stem in enumerate(validation):
        image = read_micrograph(APOFERRITIN / "micrographs" / f"{stem}.png").data
        real[stem] = picker.pick(image)
        decoys[stem] = picker.pick(phase_randomised(image, EVAL_DECOY_SEED + k))
    counts = {
        f"{t:g}": {
            "real": int(sum((p["score"] >= t).sum() for p in real.values())),
            "decoy": int(sum((p["score"] >= t).sum() for p in decoys.values())),
        }
        for t in THRESHOLDS
    }
    return validation_figures(real) | {"counts": counts}


def run_decoys(args: argparse.Namespace) -> dict:
    _, settings, _, _ = load_starting_model()
    validation = [s.name for s in training_data(settings, runs("decoys") / "cache").validation]
    rows = []
    for variant in ("none", "decoys"):
        checkpoint = run_decoy_variant(variant, args.epochs)
        best = best_epoch(checkpoint.parent)
        wall = checkpoint.parent / "wall_s.txt"
        rows.append(
            {
                "variant": variant,
                "best_epoch": best["epoch"],
                "epochs": best["epochs"],
                "train_s": float(wall.read_text()) if wall.is_file() else None,
                **measure_decoys(checkpoint, validation),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return {"command": command_line(), "validation": validation, "rows": rows}


def decoys_table(record: dict) -> str:
    thresholds = list(record["rows"][0]["counts"])
    lines = [
        "Validation micrographs of the apoferritin `train` split "
        f"({', '.join(record['validation'])}); best epoch of each run; picks counted on them "
        "(real) and on phase-randomised "
        f"copies of them (decoy). Command: `{record['command']}`.",
        "",
        "| training data | best F1 | AUPRC | F1 at 0.05 | "
        + " | ".join(f"picks >= {t}: real / decoy" for t in thresholds)
        + " | best epoch |",
        "|---|---|---|---|" + "---|" * len(thresholds) + "---|",
    ]
    names = {"none": "labelled only (`finetune`)", "decoys": "+ 1 phase-randomised copy each"}
    for row in record["rows"]:
        counts = " | ".join(
            f"{row['counts'][t]['real']} / {row['counts'][t]['decoy']}" for t in thresholds
        )
        lines.append(
            f"| {names[row['variant']]} | {fmt(row['best_f1'])} | {fmt(row['auprc'])} | "
            f"{fmt(row['f1'])} | {counts} | {row['best_epoch']} of {row['epochs']} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- seeds


def run_seed(seed: int, data) -> None:
    out = runs("seeds") / f"seed{seed}"
    config = finetune_config(seed=seed, progress=False)
    if finished(out, config.epochs):
        return
    started = time.perf_counter()
    finetune(data.train, data.validation, out, config=config, metadata={"bench": f"seed {seed}"})
    (out / "wall_s.txt").write_text(f"{time.perf_counter() - started:.0f}\n")


def scored(picker: Picker, maps: dict, inputs: dict) -> dict:
    """The validation figures of ``picker``'s instance stage run on the given maps."""
    return validation_figures(
        {
            stem: picker.instances(maps[stem], image.shape, denoised).picks
            for stem, (image, denoised) in inputs.items()
        }
    )


def soup(paths: list) -> tuple[torch.nn.Module, dict]:
    """One network whose every weight is the mean of the runs' (buffers included), and the
    first run's checkpoint record (the labelled particle size is the same in all)."""
    loaded = [load_model(path, torch.device("cpu")) for path in paths]
    models = [model for model, _, _ in loaded]
    states = [m.state_dict() for m in models]
    mean = {
        key: torch.stack([s[key].float() for s in states]).mean(0).to(states[0][key].dtype)
        for key in states[0]
    }
    models[0].load_state_dict(mean)
    return models[0].eval(), loaded[0][2]


def run_seeds(args: argparse.Namespace) -> dict:
    torch.set_num_threads(2)
    _, settings, _, _ = load_starting_model()
    data = training_data(settings, runs("seeds") / "cache")
    for seed in args.seeds:
        run_seed(seed, data)
    paths = [runs("seeds") / f"seed{seed}" / "best.pt" for seed in args.seeds]
    config = PickerConfig(threshold=-1e9)
    pickers = [Picker(path, device="cpu", config=config) for path in paths]
    stems = [s.name for s in data.validation]
    inputs = {}
    for stem in stems:
        image = read_micrograph(APOFERRITIN / "micrographs" / f"{stem}.png").data
        inputs[stem] = (image, pickers[0].preprocess(image))
    per_run = {
        seed: {s: picker.probability_maps([inputs[s][1]])[0] for s in stems}
        for seed, picker in zip(args.seeds, pickers)
    }
    rows = [
        {"model": f"seed {seed}", **scored(pickers[0], per_run[seed], inputs)}
        for seed in args.seeds
    ]
    ensemble = {s: np.mean([per_run[seed][s] for seed in args.seeds], axis=0) for s in stems}
    rows.append({"model": "ensemble (maps averaged)", **scored(pickers[0], ensemble, inputs)})
    network, checkpoint = soup(paths)
    souped = Picker.from_parts(
        network, pickers[0].denoise_settings, "peaks", config, "cpu", checkpoint
    )
    soup_maps = {s: souped.probability_maps([inputs[s][1]])[0] for s in stems}
    rows.append({"model": "soup (weights averaged)", **scored(souped, soup_maps, inputs)})
    for row in rows:
        print(json.dumps(row), flush=True)
    singles = rows[: len(args.seeds)]
    return {
        "command": command_line(),
        "validation": stems,
        "rows": rows,
        "single_mean": {k: statistics.mean(r[k] for r in singles) for k in ("best_f1", "auprc")},
        "single_sd": {k: statistics.stdev(r[k] for r in singles) for k in ("best_f1", "auprc")}
        if len(singles) > 1
        else None,
    }


def seeds_table(record: dict) -> str:
    lines = [
        "Validation micrographs of the apoferritin `train` split "
        f"({', '.join(record['validation'])}), same for every run; best epoch of each. "
        f"Command: `{record['command']}`.",
        "",
        "| model | best F1 | AUPRC | F1 at 0.05 |",
        "|---|---|---|---|",
    ]
    for row in record["rows"]:
        lines.append(
            f"| {row['model']} | {fmt(row['best_f1'])} | {fmt(row['auprc'])} | {fmt(row['f1'])} |"
        )
    mean, sd = record["single_mean"], record["single_sd"]
    if sd:
        lines.append(
            f"\nSingle runs: best F1 {fmt(mean['best_f1'])} ± {fmt(sd['best_f1'])}, AUPRC "
            f"{fmt(mean['auprc'])} ± {fmt(sd['auprc'])} (mean ± SD over seeds)."
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- input


def run_working_size(working_size: int) -> tuple:
    """Fine-tune at ``working_size`` (reused when finished); (best checkpoint, validation)."""
    out = runs("input") / f"ws{working_size}"
    model, shipped, _, path = load_starting_model()
    settings = replace(shipped, working_size=working_size)
    data = training_data(settings, runs("input") / "cache")
    config = finetune_config(seed=SEED, progress=False, arch=architecture_name(model.config))
    if not finished(out, config.epochs):
        started = time.perf_counter()
        meta = {"kind": "finetune", "bench": f"working size {working_size}", "parent": str(path)}
        Trainer(config, data.train, data.validation, out, settings, model, meta).fit()
        (out / "wall_s.txt").write_text(f"{time.perf_counter() - started:.0f}\n")
    return out / "best.pt", [s.name for s in data.validation]


def run_input(args: argparse.Namespace) -> dict:
    torch.set_num_threads(2)
    rows, stems = [], []
    for size in args.working_sizes:
        checkpoint, stems = run_working_size(size)
        best = best_epoch(checkpoint.parent)
        picker = picker_of(checkpoint)
        picks = {
            s: picker.pick(read_micrograph(APOFERRITIN / "micrographs" / f"{s}.png")) for s in stems
        }
        rows.append(
            {
                "working_size": size,
                "best_epoch": best["epoch"],
                "epochs": best["epochs"],
                **validation_figures(picks),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return {"command": command_line(), "validation": stems, "rows": rows}


def input_table(record: dict) -> str:
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


# ----------------------------------------------------------------------------- one micrograph


def cli(*args: str) -> None:
    """Run ``cryosegnet ARGS`` in a child process, as a user would (an error if it fails)."""
    command = [sys.executable, "-m", "cryosegnet.cli.main", *args]
    print("$ cryosegnet " + shlex.join(args), flush=True)
    subprocess.run(command, check=True)


def evaluate_one(model: str, stem: str, work: Path, tag: str) -> dict:
    """``cryosegnet pick`` and ``cryosegnet evaluate`` of one apoferritin micrograph."""
    picks = work / f"picks_{tag}_{stem}"
    micrograph = APOFERRITIN / "micrographs" / f"{stem}.png"
    cli(
        *("pick", str(micrograph), "-o", str(picks), "--model", model, "--threshold", "0"),
        *("--overwrite", "--no-progress"),
    )
    report = work / f"report_{tag}_{stem}"
    # F1 at the default threshold comes from a second evaluation with --threshold.
    labels = APOFERRITIN / "labels" / f"{stem}.csv"
    threshold = str(DEFAULT_PEAK_THRESHOLD)
    cli("evaluate", str(picks), str(labels), "-o", str(report), "--threshold", threshold)
    pooled = json.loads((report / "metrics.json").read_text())["pooled"]
    keys = ("precision", "recall", "f1", "best_f1", "auprc", "n_picks", "n_labels")
    return {k: pooled[k] for k in keys}


def run_one_micrograph(args: argparse.Namespace) -> list[dict]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for train_stem, test_stem in ONE_MICROGRAPH_PAIRS:
        start = time.perf_counter()
        before = evaluate_one(args.model, test_stem, work, "before")
        run = work / f"ft_{train_stem}"
        images = str(APOFERRITIN / "micrographs" / f"{train_stem}.png")
        labels = str(APOFERRITIN / "labels" / f"{train_stem}.csv")
        cli(
            *("finetune", "--images", images, "--labels", labels, "--model", args.model),
            *("-o", str(run), "--epochs", str(args.epochs), "--val-fraction", "0"),
            "--no-progress",
        )
        after = evaluate_one(str(run / "last.pt"), test_stem, work, f"after_{train_stem}")
        seconds = round(time.perf_counter() - start, 1)
        rows.append(
            {"train": train_stem, "test": test_stem, "before": before, "after": after}
            | {"seconds": seconds}
        )
    return rows


def one_micrograph_table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "# Fine-tuning on one apoferritin micrograph",
        "",
        f"- command: `{command_line()}`",
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
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- command line

STUDIES = {
    "target": (run_target, target_table),
    "decoys": (run_decoys, decoys_table),
    "seeds": (run_seeds, seeds_table),
    "input": (run_input, input_table),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    studies = parser.add_subparsers(dest="study", required=True)
    target = studies.add_parser("target", help="the target-disk size (decided 0.6)")
    target.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.6, 0.4, 0.25])
    target.add_argument("--epochs", type=int, default=30)
    decoys = studies.add_parser("decoys", help="phase-randomised decoys (negative)")
    decoys.add_argument("--epochs", type=int, default=finetune_config().epochs)
    seeds = studies.add_parser("seeds", help="training seeds, ensembles, soups (negative)")
    seeds.add_argument("--seeds", type=int, nargs="+", default=[SEED, 2, 3])
    working = studies.add_parser("input", help="other working sizes (negative)")
    working.add_argument("--working-sizes", type=int, nargs="+", default=[1024, 768, 620])
    one = studies.add_parser("one-micrograph", help="one labelled micrograph, the CLI's way")
    one.add_argument("--model", default=str(REPO / "src/cryosegnet/weights/default.pt"))
    one.add_argument("--epochs", type=int, default=10)
    one.add_argument("--work", default=str(REPO / "runs/finetune"))
    for sub in (target, decoys, seeds, working):
        sub.add_argument("--table-only", action="store_true", help="rewrite the .md from the JSON")
    args = parser.parse_args(argv)
    if not getattr(args, "table_only", False) and not APOFERRITIN.is_dir():
        sys.exit(f"{APOFERRITIN}: not found (needs ../shared)")
    if args.study == "one-micrograph":
        rows = run_one_micrograph(args)
        text = one_micrograph_table(rows, args)
        (RESULTS / "finetune.md").write_text(text)
        (RESULTS / "finetune.json").write_text(json.dumps(rows, indent=2))
        print(text)
        return 0
    run, table = STUDIES[args.study]
    path = results(args.study)
    record = json.loads(path.read_text()) if args.table_only else run(args)
    if not args.table_only:
        path.write_text(json.dumps(record, indent=1))
    path.with_suffix(".md").write_text(table(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
