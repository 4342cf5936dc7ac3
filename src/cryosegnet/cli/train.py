"""``cryosegnet train``: fit the U-Net on labelled or simulated data.

Also holds what ``cryosegnet finetune`` (cli/finetune.py) shares with it: the data and recipe
options and :func:`run_training`. Assembling the data is the library's
(:func:`cryosegnet.training.data.assemble_training_data`); this module turns options into its
arguments, builds the :class:`TrainConfig` and the run's record, and prints the outcome.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from cryosegnet.errors import CryoSegNetError
from cryosegnet.training.trainer import TrainConfig

TRAIN_DESCRIPTION = """\
Train the attention U-Net on labelled micrographs (coordinate files matched to micrographs by
name: CryoPPP CSV, RELION/CryoSPARC STAR, EMAN .box, Topaz tsv, crYOLO .cbox), on simulated
micrographs (--simulated N), or both. Targets are disks of the particle diameter (from the
files, or --diameter). Writes RUN_DIR/best.pt (best validation F1), RUN_DIR/last.pt (resume with
--resume RUN_DIR/last.pt) and RUN_DIR/history.json; pass best.pt to `cryosegnet pick --model`."""


def add_parser(subparsers) -> None:
    """Register ``train``."""
    train = subparsers.add_parser(
        "train",
        help="train the U-Net on labelled and/or simulated micrographs",
        description=TRAIN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    data.add_argument(
        "--diameter",
        type=float,
        metavar="PX",
        help="particle diameter in micrograph pixels, for labels without one",
    )
    data.add_argument(
        "--val-images",
        nargs="+",
        metavar="MICROGRAPHS",
        help="validation micrographs (default: hold out --val-fraction)",
    )
    data.add_argument(
        "--val-labels", nargs="+", metavar="COORDS", help="coordinates for --val-images"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="RUN_DIR",
        help="folder for checkpoints and history (default with --resume: its folder)",
    )


def recipe_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """Recipe options, shared by train and finetune; defaults come from ``defaults``."""
    d = defaults
    recipe = parser.add_argument_group("training")
    recipe.add_argument("--epochs", type=int, default=d.epochs, help=f"default: {d.epochs}")
    recipe.add_argument(
        "--batch-size", type=int, default=d.batch_size, help=f"default: {d.batch_size}"
    )
    recipe.add_argument(
        "--lr", type=float, default=d.lr, help=f"Adam learning rate (default: {d.lr:g})"
    )
    recipe.add_argument(
        "--schedule",
        choices=("constant", "cosine"),
        default=d.schedule,
        help=f"learning-rate schedule (default: {d.schedule}; the paper used constant)",
    )
    recipe.add_argument(
        "--crop",
        type=int,
        default=d.crop,
        metavar="PX",
        help=f"training crop size at working resolution (default: {d.crop})",
    )
    recipe.add_argument(
        "--target-fraction",
        type=float,
        default=d.target_fraction,
        metavar="F",
        help="target disks as a fraction of the particle diameter: 1 is the whole particle "
        f"(the paper), smaller marks only the centres (default: {d.target_fraction:g})",
    )
    recipe.add_argument(
        "--steps-per-epoch",
        type=int,
        default=d.steps_per_epoch,
        metavar="N",
        help="batches per epoch (default: about one pass over the pixels)",
    )
    recipe.add_argument(
        "--val-fraction",
        type=float,
        default=d.val_fraction,
        help=f"micrographs held out for validation (default: {d.val_fraction})",
    )
    recipe.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default: {d.seed})")
    recipe.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    recipe.add_argument(
        "--workers",
        type=int,
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
    recipe.add_argument(
        "--no-progress", action="store_true", help="no progress bars (none unless on a terminal)"
    )


def option_defaults(parser: argparse.ArgumentParser) -> dict:
    """Every option's default (a resumed run fills options not given again from its record)."""
    return {a.dest: a.default for a in parser._actions if a.dest not in ("help",)}


# ----------------------------------------------------------------------------- running


def run_train(args: argparse.Namespace) -> int:
    return run_training(args, "train")


def run_training(args: argparse.Namespace, kind: str) -> int:
    """``kind`` is "train" or "finetune"; errors are one line on stderr and exit status 1."""
    try:
        return _run(args, kind)
    except (CryoSegNetError, ValueError, FileNotFoundError) as exc:
        print(f"cryosegnet {kind}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"cryosegnet {kind}: interrupted; resume with --resume RUN_DIR/last.pt", file=sys.stderr
        )
        return 130


_NOT_RECORDED = {"func", "_defaults", "resume", "output", "no_progress", "device", "workers"}


def _recorded_cli(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k not in _NOT_RECORDED}


def _apply_resume(args: argparse.Namespace) -> None:
    """Fill options not given again from the run being resumed."""
    from cryosegnet.model.checkpoint import read_checkpoint

    payload = read_checkpoint(args.resume)
    recorded = payload.get("metadata", {}).get("cli", {})
    defaults = getattr(args, "_defaults", {})
    for key, value in recorded.items():
        if key in defaults and getattr(args, key, None) == defaults[key]:
            setattr(args, key, value)
    if not args.output:
        args.output = str(Path(args.resume).parent)


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


def _run(args: argparse.Namespace, kind: str) -> int:
    from tqdm import tqdm

    from cryosegnet import __version__
    from cryosegnet.preprocessing.denoise import DenoiseSettings
    from cryosegnet.training.augment import AugmentSettings
    from cryosegnet.training.data import assemble_training_data, simulation_configs
    from cryosegnet.training.finetune import finetune, load_starting_model
    from cryosegnet.training.trainer import train

    if args.resume:
        _apply_resume(args)
    if not args.output:
        raise ValueError("give -o RUN_DIR")
    if kind == "finetune" and not (args.images or args.labels):
        # (train's message names --simulated, which finetune does not take)
        raise ValueError(
            "no training data: fine-tuning needs labelled micrographs, give --images and --labels"
        )
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else out / "cache"
    # Bars only on a terminal: in a batch system's log each redraw is a line of garbage (the
    # per-epoch lines are printed either way).
    progress = not args.no_progress and sys.stderr.isatty()

    start_model = None
    if kind == "finetune":
        start_model, settings, _, model_path = load_starting_model(args.model)
    elif getattr(args, "init", None):
        start_model, settings, _, _ = load_starting_model(args.init)
    else:
        settings = DenoiseSettings(working_size=args.working_size, order=args.denoise_order)

    simulated_n = getattr(args, "simulated", 0) or 0
    sim_configs = []
    if simulated_n:
        sim_configs = simulation_configs(
            [d.strip() for d in args.sim_difficulty.split(",") if d.strip()],
            args.sim_size or settings.working_size,
            _sim_options(args.sim_option),
        )
    assembled = assemble_training_data(
        settings,
        images=args.images,
        labels=args.labels,
        diameter=args.diameter,
        val_images=args.val_images,
        val_labels=args.val_labels,
        val_fraction=args.val_fraction,
        seed=args.seed,
        simulated=simulated_n,
        sim_configs=sim_configs,
        sim_val=getattr(args, "sim_val", None),
        cache=cache,
        progress=progress,
        workers=args.workers,
        note=_note,
    )
    train_samples, val_samples = assembled.train, assembled.validation
    labelled = [s for s in train_samples + val_samples if s.source == "labelled"]

    arch = getattr(args, "arch", "small")
    if start_model is not None:  # record what is trained: the starting model's architecture
        from cryosegnet.model.unet import architecture_name

        arch = architecture_name(start_model.config)
    config = TrainConfig(
        arch=arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        crop=args.crop,
        steps_per_epoch=args.steps_per_epoch,
        val_fraction=args.val_fraction,
        seed=args.seed,
        device=args.device,
        amp=not args.no_amp,
        workers=args.workers,
        target_fraction=args.target_fraction,
        freeze_encoder=getattr(args, "freeze_encoder", False),
        augment=AugmentSettings(enabled=not args.no_augment),
        progress=progress,
    )
    metadata = {
        "kind": kind,
        "cryosegnet_version": __version__,
        "command": "cryosegnet " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "cli": _recorded_cli(args),
        "data": assembled.record,
    }
    print(
        f"{kind}: {len(train_samples)} training micrographs "
        f"({sum(len(s.x) for s in train_samples)} particles), {len(val_samples)} validation; "
        f"working size {settings.working_size}; output {out}"
    )
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

    def log_fn(message: str) -> None:
        tqdm.write(message)

    if kind == "finetune":
        result = finetune(
            train_samples,
            val_samples,
            out,
            model_path,
            config,
            metadata,
            resume=args.resume,
            log_fn=log_fn,
        )
    else:
        result = train(
            config,
            train_samples,
            val_samples,
            out,
            settings,
            model=start_model,
            metadata=metadata,
            resume=args.resume,
            log_fn=log_fn,
        )
    best = result.best
    if best:
        line = f"best epoch {best.get('epoch')}"
        if "val_best_f1" in best:
            line += (
                f": validation best F1 {best['val_best_f1']:.3f}, F1 {best['val_f1']:.3f} "
                f"at the picker's default threshold {best.get('val_threshold', 0.5):g}"
            )
        print(line)
    print(f"wrote {result.best_path} and {result.last_path}")
    return 0
