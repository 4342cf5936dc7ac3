"""``cryosegnet export-model CKPT -o OUT``: a checkpoint for picking, without training state."""

from __future__ import annotations

import argparse
from pathlib import Path

from cryosegnet.cli import options
from cryosegnet.errors import CryoSegNetError

# The one line in `cryosegnet --help`.
HELP = "strip the training state from a checkpoint (for sharing or shipping)"

DESCRIPTION = """\
Copy a training checkpoint (e.g. RUN_DIR/last.pt or best.pt) to OUT with only what picking
needs: weights, architecture, denoising settings and the training record. The optimizer,
scheduler and random-number state kept for --resume are dropped, and so is the per-epoch
history unless --keep-history. This is how the shipped default model is made (see
docs/model-card.md)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = options.add_command(subparsers, "export-model", HELP, DESCRIPTION, run_export_model)
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by train/finetune")
    options.add_output(parser, "file to write (replaced atomically if it exists)", "OUT")
    parser.add_argument(
        "--note",
        metavar="TEXT",
        help="why this checkpoint was chosen; stored as metadata 'shipped_as'",
    )
    parser.add_argument(
        "--keep-history",
        action="store_true",
        help="keep the per-epoch training history in the metadata",
    )
    return parser


def run_export_model(args: argparse.Namespace) -> int:
    """Export; errors (unreadable checkpoint, missing folder) reach main's one-line handler."""
    from cryosegnet.model.checkpoint import export_model

    out = Path(args.output)
    if not out.parent.is_dir():
        raise CryoSegNetError(f"{out.parent}: output folder does not exist")
    export_model(args.checkpoint, out, note=args.note, keep_history=args.keep_history)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
