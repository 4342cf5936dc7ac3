"""``cryosegnet adapt MICROGRAPHS -o RUN_DIR``: fit the U-Net to your own micrographs, no labels.

A thin shim over :func:`cryosegnet.training.adapt.adapt`; defaults come from
:class:`~cryosegnet.training.adapt.AdaptSettings`.
"""

from __future__ import annotations

import argparse
import logging

from cryosegnet.errors import CryoSegNetError
from cryosegnet.training.adapt import AdaptSettings

log = logging.getLogger("cryosegnet")

DESCRIPTION = """\
Self-train the U-Net on your micrographs without any label: pick them with the model, keep the
picks it is sure of (probability >= --positive) as particles, ignore the unsure ones
(--unsure <= probability < --positive), call the rest background, and fine-tune briefly.
Writes RUN_DIR/adapted.pt; pick with `cryosegnet pick ... --model RUN_DIR/adapted.pt`."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``adapt``."""
    defaults = AdaptSettings()
    parser = subparsers.add_parser(
        "adapt",
        help="adapt the U-Net to your micrographs without labels (self-training)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", help="micrograph files, folders or globs")
    parser.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run folder")
    parser.add_argument(
        "-m", "--model", metavar="CKPT", help="checkpoint to start from (default: shipped model)"
    )
    parser.add_argument(
        "-d",
        "--diameter",
        type=float,
        default=None,
        help="particle diameter in micrograph pixels for the pseudo-labels (default: "
        "estimated per micrograph)",
    )
    for name, text in (
        ("positive", "probability at or above which a pick is taken as a particle"),
        ("unsure", "probability below which a candidate is background; between: ignored"),
        ("rounds", "pick-and-train rounds"),
        ("epochs", "epochs per round"),
        ("steps_per_epoch", "batches per epoch"),
        ("lr", "Adam learning rate"),
        ("max_micrographs", "at most this many micrographs, evenly spread, are used"),
    ):
        value = getattr(defaults, name)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=type(value),
            default=value,
            help=f"{text} (default: {value:g})",
        )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training crops")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from cryosegnet.io.micrographs import find_micrographs
    from cryosegnet.training.adapt import adapt

    problems: list[str] = []
    paths = find_micrographs(args.inputs, problems)
    for problem in problems:
        log.error("ERROR %s", problem)
    if not paths:
        raise CryoSegNetError(f"{' '.join(args.inputs)}: no micrographs found")
    settings = AdaptSettings(
        positive=args.positive,
        unsure=args.unsure,
        rounds=args.rounds,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        lr=args.lr,
        max_micrographs=args.max_micrographs,
    )
    adapted = adapt(
        paths,
        args.output,
        model=args.model,
        diameter=args.diameter,
        settings=settings,
        device=args.device,
        seed=args.seed,
    )
    print(f"wrote {adapted}; pick with: cryosegnet pick ... --model {adapted}")
    return 1 if problems else 0
