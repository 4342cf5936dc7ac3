"""``cryosegnet show MICROGRAPH --picks PICKS -o picture.png``: look at one micrograph's picks."""

from __future__ import annotations

import argparse
from dataclasses import fields

from cryosegnet.cli import options
from cryosegnet.inspection.show import ShowSettings, show_picks

# The one line in `cryosegnet --help`.
HELP = "picture of one micrograph with its picks drawn"

DESCRIPTION = """\
Draw a circle at every pick on one micrograph and write the picture (PNG or JPEG).

--picks is a coordinate file or a picks folder: the micrograph's <stem>.star or
<stem>_autopick.star is found in it, recursively (then <stem>.csv, .box, ...). Without
--picks, the picker runs on the micrograph first (--model, --stage, --diameter, --min-score)
and the bad regions it masks (contamination, carbon, thick ice) are tinted blue.
--map adds the U-Net probability map as a second panel."""


# Every ShowSettings field is an option named as it (its dest), passed on as it is.
SETTINGS_OPTIONS = tuple(field.name for field in fields(ShowSettings))


def add_parser(subparsers) -> argparse.ArgumentParser:
    defaults = ShowSettings()
    parser = options.add_command(subparsers, "show", HELP, DESCRIPTION, run_show)
    parser.add_argument("micrograph", metavar="MICROGRAPH", help="MRC, TIFF, PNG or JPEG")
    parser.add_argument(
        "--picks", metavar="PICKS", help="coordinate file or picks folder (default: run the picker)"
    )
    options.add_output(parser, "picture to write (.png or .jpg)", "PICTURE")
    options.add_min_score(
        parser,
        "draw only picks with figure of merit >= X (default: all)",
        default=defaults.min_score,
    )
    options.add_diameter(
        parser,
        "circle diameter in micrograph pixels for picks without one "
        "(default: their nearest-neighbour spacing); with no --picks, "
        "also the picker's particle diameter",
        default=defaults.diameter,
    )
    options.add_number(
        parser,
        "--size",
        dest="height",
        default=defaults.height,
        metavar="PX",
        help=f"height of the picture in pixels ({defaults.height})",
    )
    options.add_switch(
        parser,
        "--map",
        dest="probability_map",
        default=defaults.probability_map,
        help="add the U-Net probability map as a second panel",
    )
    options.add_model(
        parser, "U-Net checkpoint when the picker runs (default: shipped model)", defaults.model
    )
    options.add_stage(
        parser, defaults.stage, help=f"instance stage when the picker runs ({defaults.stage})"
    )
    options.add_device(
        parser, defaults.device, help=f"device when the picker runs ({defaults.device})"
    )
    options.add_debug(parser)
    return parser


def run_show(args: argparse.Namespace) -> int:
    """Write the picture; errors reach the main CLI as one line."""
    settings = options.settings_from(ShowSettings, args, SETTINGS_OPTIONS)
    result = show_picks(args.micrograph, args.output, picks=args.picks, settings=settings)
    masked = ""
    if result.bad_regions is not None and result.bad_regions.any():
        masked = f", {100 * result.bad_regions.mean():.0f} % tinted as bad regions"
    print(
        f"{args.micrograph}: {len(result.picks)} picks from {result.picks_source}, "
        f"circles {result.diameter:.0f} micrograph px across{masked} -> {result.output}"
    )
    return 0
