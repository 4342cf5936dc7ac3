"""``cryosegnet`` command line: a thin layer over the library, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cryosegnet import __version__
from cryosegnet.io.errors import CryoSegNetError

# Subcommand modules; each defines add_parser(subparsers) and sets func on its parser.
SUBCOMMAND_MODULES = (
    "pick", "simulate", "train", "finetune", "evaluate", "export_model", "show", "threshold",
    "report", "demo", "relion_external",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryosegnet",
        description="Cryo-EM particle picking: denoise -> attention U-Net -> SAM/built-in "
        "instance masks -> post-processing -> RELION/CryoSPARC STAR.",
    )
    parser.add_argument("--version", action="version", version=f"cryosegnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        # A missing module is a broken install or a typo here: fail, never drop a command.
        module = importlib.import_module(f"cryosegnet.cli.{name}")
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    try:
        return int(args.func(args) or 0)
    except CryoSegNetError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything unforeseen still gets one line, not a traceback
        if debug:
            raise
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        print(f"error: {what} (re-run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
