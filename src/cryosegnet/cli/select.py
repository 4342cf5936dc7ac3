"""``cryosegnet select CLASSES --classes 1,4,7`` or ``--auto``: keep the picks of classes."""

from __future__ import annotations

import argparse

from cryosegnet.cli import options

# The one line in `cryosegnet --help`.
HELP = "keep the picks of chosen 2D classes (--classes 1,4,7 or --auto)"

DESCRIPTION = """\
Write the picks of the chosen classes of a `cryosegnet classify` folder in `pick`'s layout
(per-micrograph <stem>_autopick.star, autopick.star, particles.star) with selection.json
recording the choice. --classes lists class numbers (1-based, as in class_averages.png and
RELION; ranges allowed: 1-3,7); --auto keeps the classes whose quality measures pass the
thresholds recorded with the classification (classes.csv, column auto_selected), and of them
the members whose correlation beats what noise decoys reach (particles.csv, above_decoys),
whose residual against the class average is no outlier (residual_lowpass: neighbours,
aggregates, edges) and that are not a second pick of a particle already kept (re-centred
centres within half a diameter); particles.csv, auto_kept."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = options.add_command(subparsers, "select", HELP, DESCRIPTION, run_select)
    parser.add_argument("classes_dir", metavar="CLASSES", help="folder written by `classify`")
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("--classes", metavar="LIST", help="class numbers to keep, e.g. 1,4,7")
    choice.add_argument("--auto", action="store_true", help="keep the classes that pass")
    options.add_output(parser, "folder to write (default: CLASSES/selected)", "OUT", required=False)
    parser.add_argument(
        "--recentre",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write re-centred coordinates (default: as `classify` did)",
    )
    parser.add_argument(
        "--above-decoys",
        action="store_true",
        help="with --classes: keep only members whose correlation beats the noise decoys "
        "(--auto always does)",
    )
    options.add_debug(parser)
    return parser


def run_select(args: argparse.Namespace) -> int:
    """Write the selection; errors reach the main CLI as one line."""
    from cryosegnet.classification.outputs import read_classification
    from cryosegnet.classification.pipeline import select_classes
    from cryosegnet.classification.selection import parse_classes

    classes = None
    if args.classes is not None:
        _, quality, _ = read_classification(args.classes_dir)
        classes = parse_classes(args.classes, len(quality))
    summary = select_classes(
        args.classes_dir,
        classes=classes,
        auto=args.auto,
        output=args.output,
        recentre=args.recentre,
        above_decoys_only=args.above_decoys,
    )
    print(summary.text())
    return 0
