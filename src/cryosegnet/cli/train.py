"""``cryosegnet train``: fit the U-Net on labelled or simulated data.

Also holds what ``cryosegnet finetune`` (cli/finetune.py) shares with it: the data and recipe
options and :func:`run_training`. Each command builds its job value
(:class:`~cryosegnet.training.job.TrainJob`, :class:`~cryosegnet.training.job.FinetuneJob`)
from its options; the library prepares and fits it (:mod:`cryosegnet.training.job`); this
module adds the run's record and prints the outcome.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from cryosegnet.cli import options
from cryosegnet.errors import CryoSegNetError
from cryosegnet.training.job import DataSources, FinetuneJob, PreparedRun, TrainJob, prepare
from cryosegnet.training.trainer import TrainConfig

Job = TrainJob | FinetuneJob

# The one line in `cryosegnet --help`.
HELP = "train the U-Net on labelled and/or simulated micrographs"

TRAIN_DESCRIPTION = """\
Train the attention U-Net on labelled micrographs (coordinate files matched to micrographs by
name: CryoPPP CSV, RELION/CryoSPARC STAR, EMAN .box, Topaz tsv, crYOLO .cbox), on simulated
micrographs (--simulated N), or both. Targets are disks of the particle diameter (from the
files, or --diameter). Writes RUN_DIR/best.pt (best validation F1), RUN_DIR/last.pt (resume with
--resume RUN_DIR/last.pt) and RUN_DIR/history.json; pass best.pt to `cryosegnet pick --model`."""


def add_parser(subparsers) -> None:
    """Register ``train``."""
    train = options.add_command(subparsers, "train", HELP, TRAIN_DESCRIPTION)
    data_arguments(train)
    sim = train.add_argument_group("simulated data")
    sim.add_argument(
        "--simulated",
        type=int,
        default=0,
        metavar="N",
        help="add N simulated micrographs to the training data",
    )
    sim.add_argument(
        "--sim-difficulty",
        default="easy,medium,hard",
        metavar="LIST",
        help="simulator difficulties, comma separated; N is split evenly "
        "(default: easy,medium,hard)",
    )
    sim.add_argument(
        "--sim-size",
        type=int,
        default=None,
        metavar="PX",
        help="simulated micrograph size (default: the working size)",
    )
    sim.add_argument(
        "--sim-val",
        type=int,
        default=None,
        metavar="N",
        help="N extra simulated micrographs (another seed) for validation, instead "
        "of holding out part of the simulated training set",
    )
    sim.add_argument(
        "--sim-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any SimulationConfig field, VALUE as JSON (e.g. diameter=[60,300])",
    )
    model = train.add_argument_group("model")
    model.add_argument(
        "--arch", default="small", help="U-Net preset: tiny, small, large, paper (default: small)"
    )
    model.add_argument(
        "--working-size",
        type=int,
        default=1024,
        metavar="PX",
        help="long side of the denoised image the U-Net sees (default: 1024)",
    )
    model.add_argument(
        "--denoise-order",
        choices=("fast", "paper"),
        default="fast",
        help="denoise after shrinking (fast) or at full size (paper)",
    )
    model.add_argument(
        "--init",
        metavar="CKPT",
        help="warm start: begin from this checkpoint's weights (its architecture "
        "and denoising settings replace --arch, --working-size and "
        "--denoise-order) with a fresh optimizer and schedule",
    )
    recipe_arguments(train, TrainConfig())
    train.set_defaults(func=run_train, _defaults=option_defaults(train))


def data_arguments(parser: argparse.ArgumentParser) -> None:
    """Labelled-data options and -o, shared by train and finetune."""
    data = parser.add_argument_group("labelled data")
    data.add_argument(
        "--images", nargs="+", metavar="MICROGRAPHS", help="micrograph files, folders or globs"
    )
    data.add_argument(
        "--labels",
        nargs="+",
        metavar="COORDS",
        help="coordinate files or folders, paired with micrographs by name",
    )
    options.add_diameter(data, "particle diameter in micrograph pixels, for labels without one")
    data.add_argument(
        "--val-images",
        nargs="+",
        metavar="MICROGRAPHS",
        help="validation micrographs (default: hold out --val-fraction)",
    )
    data.add_argument(
        "--val-labels", nargs="+", metavar="COORDS", help="coordinates for --val-images"
    )
    options.add_output(
        parser,
        "folder for checkpoints and history (default with --resume: its folder)",
        "RUN_DIR",
        required=False,
    )


def recipe_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """Recipe options, shared by train and finetune; defaults come from ``defaults``."""
    d = defaults
    recipe = parser.add_argument_group("training")
    options.add_number(recipe, "--epochs", default=d.epochs, help=f"default: {d.epochs}")
    options.add_number(
        recipe, "--batch-size", default=d.batch_size, help=f"default: {d.batch_size}"
    )
    options.add_number(recipe, "--lr", default=d.lr, help=f"Adam learning rate (default: {d.lr:g})")
    recipe.add_argument(
        "--schedule",
        choices=("constant", "cosine"),
        default=d.schedule,
        help=f"learning-rate schedule (default: {d.schedule}; the paper used constant)",
    )
    options.add_number(
        recipe,
        "--crop",
        default=d.crop,
        metavar="PX",
        help=f"training crop size at working resolution (default: {d.crop})",
    )
    options.add_number(
        recipe,
        "--target-fraction",
        default=d.target_fraction,
        metavar="F",
        help="target disks as a fraction of the particle diameter: 1 is the whole particle "
        f"(the paper), smaller marks only the centres (default: {d.target_fraction:g})",
    )
    options.add_number(
        recipe,
        "--steps-per-epoch",
        default=d.steps_per_epoch,
        kind=int,
        metavar="N",
        help="batches per epoch (default: about one pass over the pixels)",
    )
    options.add_number(
        recipe,
        "--val-fraction",
        default=d.val_fraction,
        help=f"micrographs held out for validation (default: {d.val_fraction})",
    )
    options.add_seed(recipe, d.seed, f"random seed (default: {d.seed})")
    options.add_device(recipe, d.device)
    options.add_number(
        recipe,
        "--workers",
        default=d.workers,
        help="processes for simulating/denoising and for loading crops "
        "(default: 0, all in the main process)",
    )
    recipe.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    recipe.add_argument("--no-augment", action="store_true", help="plain random crops")
    recipe.add_argument(
        "--cache", metavar="DIR", help="denoised-image cache (default: RUN_DIR/cache)"
    )
    recipe.add_argument(
        "--resume",
        metavar="LAST_PT",
        help="continue a run from its last.pt (data and recipe as recorded, "
        "unless given again; raise --epochs to train longer)",
    )
    options.add_no_progress(recipe, "no progress bars (none unless on a terminal)")


def option_defaults(parser: argparse.ArgumentParser) -> dict:
    """Every option's default (a resumed run fills options not given again from its record)."""
    return {a.dest: a.default for a in parser._actions if a.dest not in ("help",)}


# ----------------------------------------------------------------------------- running


def run_train(args: argparse.Namespace) -> int:
    return run_training(args, "train", train_job)


def run_training(
    args: argparse.Namespace,
    name: str,
    build: Callable[[argparse.Namespace], TrainJob | FinetuneJob],
) -> int:
    """Build the job (``build``) and run it; errors are one line on stderr and exit status 1
    (``name``: the command the messages name)."""
    try:
        return _run(args, build)
    except (CryoSegNetError, ValueError, FileNotFoundError) as exc:
        print(f"cryosegnet {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"cryosegnet {name}: interrupted; resume with --resume RUN_DIR/last.pt", file=sys.stderr
        )
        return 130


def train_job(args: argparse.Namespace) -> TrainJob:
    """The :class:`TrainJob` the options ask for."""
    from cryosegnet.preprocessing.denoise import DenoiseSettings

    init = getattr(args, "init", None)
    return TrainJob(
        output=Path(args.output),
        data=data_sources(args),
        config=train_config(args),
        denoise=None
        if init
        else DenoiseSettings(working_size=args.working_size, order=args.denoise_order),
        init=init,
        resume=args.resume,
    )


def data_sources(args: argparse.Namespace) -> DataSources:
    """The data options (``finetune`` has no simulated data)."""
    simulated = getattr(args, "simulated", 0) or 0
    sources = DataSources(
        images=_listed(args.images),
        labels=_listed(args.labels),
        val_images=_listed(args.val_images),
        val_labels=_listed(args.val_labels),
        diameter=args.diameter,
        simulated=simulated,
        sim_size=getattr(args, "sim_size", None),
        sim_val=getattr(args, "sim_val", None),
        cache=Path(args.cache) if args.cache else None,
    )
    if not simulated:
        return sources
    difficulties = tuple(d.strip() for d in args.sim_difficulty.split(",") if d.strip())
    return replace(
        sources, sim_difficulties=difficulties, sim_options=_sim_options(args.sim_option)
    )


def _listed(items: list[str] | None) -> tuple[str, ...] | None:
    return tuple(items) if items else None


# Recipe options named as the TrainConfig fields they set, passed on as they are.
RECIPE_OPTIONS = (
    "epochs",
    "batch_size",
    "lr",
    "schedule",
    "crop",
    "steps_per_epoch",
    "val_fraction",
    "seed",
    "device",
    "workers",
    "target_fraction",
)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The recipe options; progress bars only on a terminal (in a batch system's log each
    redraw is a line of garbage; the per-epoch lines are printed either way)."""
    from cryosegnet.training.augment import AugmentSettings

    return options.settings_from(
        TrainConfig,
        args,
        RECIPE_OPTIONS,
        arch=getattr(args, "arch", "small"),
        amp=not args.no_amp,
        freeze_encoder=getattr(args, "freeze_encoder", False),
        augment=AugmentSettings(enabled=not args.no_augment),
        progress=not args.no_progress and sys.stderr.isatty(),
    )


_NOT_RECORDED = {"func", "_defaults", "resume", "output", "no_progress", "device", "workers"}


def _recorded_cli(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k not in _NOT_RECORDED}


def _resumed(args: argparse.Namespace) -> argparse.Namespace:
    """The options with those not given again filled from the run being resumed (a copy)."""
    from cryosegnet.model.checkpoint import read_checkpoint

    payload = read_checkpoint(args.resume)
    recorded = payload.get("metadata", {}).get("cli", {})
    defaults = getattr(args, "_defaults", {})
    filled = {
        key: value
        for key, value in recorded.items()
        if key in defaults and getattr(args, key, None) == defaults[key]
    }
    if not args.output:
        filled["output"] = str(Path(args.resume).parent)
    return argparse.Namespace(**{**vars(args), **filled})


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _sim_options(items: list[str]) -> dict:
    """``--sim-option KEY=VALUE`` pairs; VALUE as JSON, else as text."""
    options: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--sim-option needs KEY=VALUE, got '{item}'")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def _run(args: argparse.Namespace, build: Callable[[argparse.Namespace], Job]) -> int:
    from tqdm import tqdm

    from cryosegnet import __version__
    from cryosegnet.model.checkpoint import read_checkpoint
    from cryosegnet.picking.picker import learnt_from_labels

    if args.resume:
        args = _resumed(args)
    if not args.output:
        raise ValueError("give -o RUN_DIR")
    job = build(args)
    prepared = prepare(job, _note)
    metadata = {
        "kind": job.kind,
        "cryosegnet_version": __version__,
        "command": "cryosegnet " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "cli": _recorded_cli(args),
        "data": prepared.record,
    }
    _print_data(job, prepared)
    result = job.fit(prepared, metadata, tqdm.write)
    best = result.best
    if best:
        line = f"best epoch {best.get('epoch')}"
        if "val_best_f1" in best:
            line += (
                f": validation best F1 {best['val_best_f1']:.3f}, F1 {best['val_f1']:.3f} "
                f"at the picker's default threshold {best.get('val_threshold', 0.5):g}"
            )
        at = best.get("val_best_threshold")
        labelled = learnt_from_labels(read_checkpoint(result.best_path))
        if at is not None and math.isfinite(at) and labelled:
            # a few labelled micrographs can calibrate a model far from the default; such a
            # model picks with the peak finder, whose scores the validation ranked
            line += f"; its best is at {at:.3g}: pick with --threshold {at:.3g} to cut there"
        print(line)
    print(f"wrote {result.best_path} and {result.last_path}")
    return 0


def _print_data(job: Job, prepared: PreparedRun) -> None:
    """What the run trains on, and the labelled particles' size (the size a model trained on
    labelled micrographs only picks at)."""
    train_samples, val_samples = prepared.train, prepared.validation
    print(
        f"{job.kind}: {len(train_samples)} training micrographs "
        f"({sum(len(s.x) for s in train_samples)} particles), {len(val_samples)} validation; "
        f"working size {prepared.settings.working_size}; output {job.output}"
    )
    labelled = [s for s in train_samples + val_samples if s.source == "labelled"]
    if labelled:
        from cryosegnet.training.trainer import data_summary

        record = data_summary(labelled)
        if record["diameter_px_median"]:
            angstrom = record["diameter_angstrom_median"]
            print(
                f"labelled particle diameter (median): {record['diameter_px_median']:.0f} "
                f"micrograph px{f' ({angstrom:.0f} Å)' if angstrom else ''}; a model trained "
                "on labelled micrographs only picks at this size"
            )
