"""``cryosegnet finetune``: adapt a trained U-Net to one protein with a few labelled micrographs.

A thin shim: the options are train's data and recipe options (with the fine-tuning defaults of
:data:`cryosegnet.training.finetune.FINETUNE_DEFAULTS`) plus ``--model`` and
``--freeze-encoder``; the run itself is :func:`cryosegnet.cli.train.run_training`.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from cryosegnet.cli import options
from cryosegnet.cli.train import (
    data_arguments,
    data_sources,
    option_defaults,
    recipe_arguments,
    run_training,
    train_config,
)
from cryosegnet.training.finetune import finetune_config
from cryosegnet.training.job import FinetuneJob
from cryosegnet.training.trainer import MIN_STEPS_PER_EPOCH

_DEFAULTS = finetune_config()

# The one line in `cryosegnet --help`.
HELP = "fine-tune a trained U-Net on a few labelled micrographs"

DESCRIPTION = textwrap.fill(
    "Fine-tune a trained U-Net (the shipped default unless --model is given) on a few "
    "labelled micrographs of your protein (5-20 is typical; the paper used 20). Defaults suit "
    f"small data: {_DEFAULTS.epochs} epochs of at least {MIN_STEPS_PER_EPOCH} steps on "
    f"{_DEFAULTS.crop}-px crops, learning rate {_DEFAULTS.lr:g} with a {_DEFAULTS.schedule} "
    f"decay, and target disks of {_DEFAULTS.target_fraction:g} x the labelled diameter (the "
    "particle centres: the model knows the size from the labels). --freeze-encoder trains "
    "only the decoder. Denoising settings and architecture come from the starting model.",
    width=92,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``finetune``."""
    parser = options.add_command(subparsers, "finetune", HELP, DESCRIPTION)
    data_arguments(parser)
    options.add_model(parser, "checkpoint to start from (default: the shipped model)")
    parser.add_argument(
        "--freeze-encoder", action="store_true", help="train only decoder, attention gates and head"
    )
    recipe_arguments(parser, _DEFAULTS)
    parser.set_defaults(func=run_finetune, _defaults=option_defaults(parser))
    return parser


def run_finetune(args: argparse.Namespace) -> int:
    return run_training(args, "finetune", finetune_job)


def finetune_job(args: argparse.Namespace) -> FinetuneJob:
    """The :class:`FinetuneJob` the options ask for."""
    return FinetuneJob(
        output=Path(args.output),
        data=data_sources(args),
        config=train_config(args),
        model=args.model,
        resume=args.resume,
    )
