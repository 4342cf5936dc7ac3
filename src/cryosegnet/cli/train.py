"""``cryosegnet train`` and ``cryosegnet finetune``: fit the U-Net on labelled or simulated data."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from cryosegnet.io.errors import CryoSegNetError

TRAIN_DESCRIPTION = """\
Train the attention U-Net on labelled micrographs (coordinate files matched to micrographs by
name: CryoPPP CSV, RELION/CryoSPARC STAR, EMAN .box, Topaz tsv, crYOLO .cbox), on simulated
micrographs (--simulated N), or both. Targets are disks of the particle diameter (from the
files, or --diameter). Writes RUN_DIR/best.pt (best validation F1), RUN_DIR/last.pt (resume with
--resume RUN_DIR/last.pt) and RUN_DIR/history.json; pass best.pt to `cryosegnet pick --model`."""

FINETUNE_DESCRIPTION = """\
Fine-tune a trained U-Net (the shipped default unless --model is given) on a few labelled
micrographs of your protein (5-20 is typical; the paper used 20). Defaults suit small data:
20 epochs of at least 25 steps, learning rate 1e-4 (the paper's); --freeze-encoder trains
only the decoder. Denoising settings and architecture come from the starting model."""


def add_parser(subparsers) -> None:
    """Register ``train`` and ``finetune``."""
    train = subparsers.add_parser(
        "train", help="train the U-Net on labelled and/or simulated micrographs",
        description=TRAIN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _data_arguments(train, labels_required=False)
    sim = train.add_argument_group("simulated data")
    sim.add_argument("--simulated", type=int, default=0, metavar="N",
                     help="add N simulated micrographs to the training data")
    sim.add_argument("--sim-difficulty", default="easy,medium,hard", metavar="LIST",
                     help="simulator difficulties, comma separated; N is split evenly "
                          "(default: easy,medium,hard)")
    sim.add_argument("--sim-size", type=int, default=None, metavar="PX",
                     help="simulated micrograph size (default: the working size)")
    sim.add_argument("--sim-val", type=int, default=None, metavar="N",
                     help="N extra simulated micrographs (another seed) for validation, instead "
                          "of holding out part of the simulated training set")
    sim.add_argument("--sim-option", action="append", default=[], metavar="KEY=VALUE",
                     help="any SimulationConfig field, VALUE as JSON (e.g. diameter=[60,300])")
    model = train.add_argument_group("model")
    model.add_argument("--arch", default="small",
                       help="U-Net preset: tiny, small, large, paper (default: small)")
    model.add_argument("--working-size", type=int, default=1024, metavar="PX",
                       help="long side of the denoised image the U-Net sees (default: 1024)")
    model.add_argument("--denoise-order", choices=("fast", "paper"), default="fast",
                       help="denoise after shrinking (fast) or at full size (paper)")
    model.add_argument("--init", metavar="CKPT",
                       help="warm start: begin from this checkpoint's weights (its architecture "
                            "and denoising settings replace --arch, --working-size and "
                            "--denoise-order) with a fresh optimizer and schedule")
    _recipe_arguments(train, epochs=50, lr=1e-4, val_fraction=0.1)
    train.set_defaults(func=run_train, _defaults=_defaults(train))

    finetune = subparsers.add_parser(
        "finetune", help="fine-tune a trained U-Net on a few labelled micrographs",
        description=FINETUNE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _data_arguments(finetune, labels_required=True)
    finetune.add_argument("--model", metavar="CKPT",
                          help="checkpoint to start from (default: the shipped model)")
    finetune.add_argument("--freeze-encoder", action="store_true",
                          help="train only decoder, attention gates and head")
    _recipe_arguments(finetune, epochs=20, lr=1e-4, val_fraction=0.2)
    finetune.set_defaults(func=run_finetune, _defaults=_defaults(finetune))


def _data_arguments(parser: argparse.ArgumentParser, labels_required: bool) -> None:
    data = parser.add_argument_group("labelled data")
    data.add_argument("--images", nargs="+", metavar="MICROGRAPHS",
                      help="micrograph files, folders or globs")
    data.add_argument("--labels", nargs="+", metavar="COORDS",
                      help="coordinate files or folders, paired with micrographs by name")
    data.add_argument("--diameter", type=float, metavar="PX",
                      help="particle diameter in micrograph pixels, for labels without one")
    data.add_argument("--val-images", nargs="+", metavar="MICROGRAPHS",
                      help="validation micrographs (default: hold out --val-fraction)")
    data.add_argument("--val-labels", nargs="+", metavar="COORDS",
                      help="coordinates for --val-images")
    parser.add_argument("-o", "--output", metavar="RUN_DIR",
                        help="folder for checkpoints and history (default with --resume: its "
                             "folder)")


def _recipe_arguments(parser: argparse.ArgumentParser, epochs: int, lr: float,
                      val_fraction: float) -> None:
    recipe = parser.add_argument_group("training")
    recipe.add_argument("--epochs", type=int, default=epochs, help=f"default: {epochs}")
    recipe.add_argument("--batch-size", type=int, default=4, help="default: 4")
    recipe.add_argument("--lr", type=float, default=lr, help=f"Adam learning rate (default: {lr})")
    recipe.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                        help="learning-rate schedule (default: constant, as the paper)")
    recipe.add_argument("--crop", type=int, default=384, metavar="PX",
                        help="training crop size at working resolution (default: 384)")
    recipe.add_argument("--steps-per-epoch", type=int, default=None, metavar="N",
                        help="batches per epoch (default: about one pass over the pixels)")
    recipe.add_argument("--val-fraction", type=float, default=val_fraction,
                        help=f"micrographs held out for validation (default: {val_fraction})")
    recipe.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    recipe.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    recipe.add_argument("--workers", type=int, default=0,
                        help="processes for simulating/denoising and for loading crops "
                             "(default: 0, all in the main process)")
    recipe.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    recipe.add_argument("--no-augment", action="store_true", help="plain random crops")
    recipe.add_argument("--cache", metavar="DIR",
                        help="denoised-image cache (default: RUN_DIR/cache)")
    recipe.add_argument("--resume", metavar="LAST_PT",
                        help="continue a run from its last.pt (data and recipe as recorded, "
                             "unless given again; raise --epochs to train longer)")
    recipe.add_argument("--no-progress", action="store_true", help="no progress bars")


def _defaults(parser: argparse.ArgumentParser) -> dict:
    return {a.dest: a.default for a in parser._actions if a.dest not in ("help",)}


# ----------------------------------------------------------------------------- running


def run_train(args: argparse.Namespace) -> int:
    return _guarded(args, "train")


def run_finetune(args: argparse.Namespace) -> int:
    return _guarded(args, "finetune")


def _guarded(args: argparse.Namespace, kind: str) -> int:
    try:
        return _run(args, kind)
    except (CryoSegNetError, ValueError, FileNotFoundError) as exc:
        print(f"cryosegnet {kind}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cryosegnet {kind}: interrupted; resume with --resume RUN_DIR/last.pt",
              file=sys.stderr)
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


def _load_pairs(images, labels, diameter, what: str):
    from cryosegnet.evaluation.pairing import load_coordinate_sets, pair_micrographs
    from cryosegnet.io.micrographs import find_micrographs

    if not images or not labels:
        raise ValueError(f"{what}: give both --images and --labels" if what == "training"
                         else "give both --val-images and --val-labels")
    paths = find_micrographs(list(images))
    if not paths:
        raise ValueError(f"no micrographs found in {' '.join(images)}")
    notes: list[str] = []
    sets = load_coordinate_sets(list(labels), diameter=diameter, notes=notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    pairs, images_only, labels_only = pair_micrographs(paths, sets)
    if not pairs:
        raise ValueError(f"no micrograph pairs with a coordinate file by name "
                         f"({len(paths)} micrographs, {len(sets)} coordinate sets)")
    if images_only:
        print(f"note: {len(images_only)} micrograph(s) without labels are not used for "
              f"{what}, e.g. {images_only[0]}", file=sys.stderr)
    if labels_only:
        print(f"note: {len(labels_only)} coordinate set(s) without a micrograph, e.g. "
              f"{labels_only[0]}", file=sys.stderr)
    return pairs


def _simulation_configs(args: argparse.Namespace, working_size: int) -> list:
    from cryosegnet.simulation import SimulationConfig

    options = {}
    for item in args.sim_option:
        key, _, value = item.partition("=")
        if not _:
            raise ValueError(f"--sim-option needs KEY=VALUE, got '{item}'")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    for key, value in options.items():
        if isinstance(value, list):
            options[key] = tuple(value)
    size = args.sim_size or working_size
    names = [d.strip() for d in args.sim_difficulty.split(",") if d.strip()]
    try:
        return [SimulationConfig(size=size, difficulty=d, **options) for d in names]
    except TypeError as exc:
        raise ValueError(f"bad --sim-option: {exc}") from None


def _simulated(args, n: int, settings, seed: int, cache, progress: bool) -> tuple[list, list]:
    """``n`` simulated samples split evenly over the difficulties; (samples, config records)."""
    from cryosegnet.training.dataset import simulated_samples

    configs = _simulation_configs(args, settings.working_size)
    samples, records, start = [], [], 0
    for k, config in enumerate(configs):
        count = n // len(configs) + (1 if k < n % len(configs) else 0)
        if count == 0:
            continue
        samples += simulated_samples(count, config, settings, seed=seed, cache_dir=cache,
                                     progress=progress, start=start, workers=args.workers)
        records.append(
            {"config": config.to_dict(), "seed": seed, "indices": [start, start + count]}
        )
        start += count
    return samples, records


def _run(args: argparse.Namespace, kind: str) -> int:
    from tqdm import tqdm

    from cryosegnet import __version__
    from cryosegnet.preprocessing.denoise import DenoiseSettings
    from cryosegnet.training.augment import AugmentSettings
    from cryosegnet.training.dataset import load_labelled, split_samples
    from cryosegnet.training.finetune import finetune, load_starting_model
    from cryosegnet.training.trainer import TrainConfig, train

    if args.resume:
        _apply_resume(args)
    if not args.output:
        raise ValueError("give -o RUN_DIR")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else out / "cache"
    progress = not args.no_progress

    start_model = None
    if kind == "finetune":
        start_model, settings, _, model_path = load_starting_model(args.model)
    elif getattr(args, "init", None):
        start_model, settings, _, _ = load_starting_model(args.init)
    else:
        settings = DenoiseSettings(working_size=args.working_size, order=args.denoise_order)

    simulated_n = getattr(args, "simulated", 0) or 0
    if not args.images and not args.labels and not simulated_n:
        raise ValueError("no training data: give --images and --labels, or --simulated N")
    labelled, data = [], {"denoise": settings.to_dict()}
    if args.images or args.labels:
        pairs = _load_pairs(args.images, args.labels, args.diameter, "training")
        labelled = load_labelled(pairs, settings, args.diameter, cache, progress, args.workers)
        data["labelled"] = {"images": args.images, "labels": args.labels,
                            "micrographs": [str(p) for p, _ in pairs]}
    simulated = []
    if simulated_n:
        simulated, records = _simulated(args, simulated_n, settings, args.seed, cache, progress)
        data["simulated"] = records

    explicit_val = []
    if args.val_images or args.val_labels:
        val_pairs = _load_pairs(args.val_images, args.val_labels, args.diameter, "validation")
        explicit_val = load_labelled(val_pairs, settings, args.diameter, cache, progress,
                                     args.workers)
        data["validation_labelled"] = [str(p) for p, _ in val_pairs]
    sim_val = []
    if simulated_n and getattr(args, "sim_val", None):
        # Another seed: never one of the training micrographs.
        sim_val, records = _simulated(args, args.sim_val, settings, args.seed + 1_000_003,
                                      cache, progress)
        data["validation_simulated"] = records
    # Hold out part of each source that has no explicit validation set of its own.
    hold_labelled = 0.0 if explicit_val else args.val_fraction
    hold_simulated = 0.0 if sim_val else args.val_fraction
    train_l, val_l = split_samples(labelled, hold_labelled, args.seed)
    train_s, val_s = split_samples(simulated, hold_simulated, args.seed)
    train_samples, val_samples = train_l + train_s, val_l + val_s + explicit_val + sim_val
    if not train_samples:
        raise ValueError("no training micrographs left after the validation split")

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
        freeze_encoder=getattr(args, "freeze_encoder", False),
        augment=AugmentSettings(enabled=not args.no_augment),
        progress=progress,
    )
    metadata = {
        "kind": kind,
        "cryosegnet_version": __version__,
        "command": "cryosegnet " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "cli": _recorded_cli(args),
        "data": data,
    }
    print(f"{kind}: {len(train_samples)} training micrographs "
          f"({sum(len(s.x) for s in train_samples)} particles), {len(val_samples)} validation; "
          f"working size {settings.working_size}; output {out}")
    if labelled:
        from cryosegnet.training.trainer import data_summary

        record = data_summary(labelled)
        if record["diameter_px_median"]:
            angstrom = record["diameter_angstrom_median"]
            print(f"labelled particle diameter (median): {record['diameter_px_median']:.0f} "
                  f"micrograph px{f' ({angstrom:.0f} Å)' if angstrom else ''}; a model trained "
                  "on these labels picks at this size")

    def log_fn(message: str) -> None:
        tqdm.write(message)

    if kind == "finetune":
        result = finetune(train_samples, val_samples, out, model_path, config, metadata,
                          resume=args.resume, log_fn=log_fn)
    else:
        result = train(config, train_samples, val_samples, out, settings, model=start_model,
                       metadata=metadata, resume=args.resume, log_fn=log_fn)
    best = result.best
    if best:
        line = f"best epoch {best.get('epoch')}"
        if "val_best_f1" in best:
            line += (f": validation best F1 {best['val_best_f1']:.3f}, F1 {best['val_f1']:.3f} "
                     f"at the picker's default threshold {best.get('val_threshold', 0.5):g}")
        print(line)
    print(f"wrote {result.best_path} and {result.last_path}")
    return 0
