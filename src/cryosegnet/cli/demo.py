"""``cryosegnet demo [-o DIR]``: simulate, pick, evaluate, report — the whole job in one command."""

from __future__ import annotations

import argparse
import sys

from cryosegnet.cli import options
from cryosegnet.demo import DEMO_MAX_SIZE, DemoSettings

# The one line in `cryosegnet --help`.
HELP = "simulate, pick, evaluate and report on a few micrographs (a first run)"

DESCRIPTION = """\
Simulate a few small micrographs with ground truth (fixed seed: the same figures every run),
pick them with the shipped model, score the picks against the truth, and write the HTML report
and one picture under DIR. Prints what to open and the figures obtained."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    defaults = DemoSettings()
    parser = options.add_command(subparsers, "demo", HELP, DESCRIPTION, run_demo)
    options.add_output(
        parser,
        "folder for everything the demo writes (default: %(default)s)",
        "DIR",
        required=False,
        default="demo",
    )
    options.add_number(
        parser,
        "-n",
        "--num",
        default=defaults.n_micrographs,
        help="micrographs to simulate (default: %(default)s)",
    )
    options.add_number(
        parser,
        "--size",
        default=defaults.size,
        metavar="PX",
        help="side of each micrograph in pixels (default: %(default)s)",
    )
    options.add_seed(parser, defaults.seed, help="simulation seed (default: %(default)s)")
    options.add_device(
        parser,
        defaults.device,
        help="auto (CUDA when available), cpu, cuda ... (default: %(default)s)",
    )
    options.add_debug(parser)
    return parser


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo and print what to open; errors reach the main CLI as one line."""
    from cryosegnet.cli.simulate import MIN_SIZE
    from cryosegnet.demo import run_demo as demo
    from cryosegnet.errors import CryoSegNetError

    if args.num < 1:
        raise CryoSegNetError("-n/--num: at least 1 micrograph")
    if not MIN_SIZE <= args.size <= DEMO_MAX_SIZE:
        raise CryoSegNetError(
            f"--size: {MIN_SIZE}-{DEMO_MAX_SIZE} px for the demo (got {args.size})"
        )
    settings = DemoSettings(
        n_micrographs=args.num, size=args.size, seed=args.seed, device=args.device
    )
    result = demo(args.output, settings, progress=sys.stderr.isatty())
    print(result.text())
    return 0
