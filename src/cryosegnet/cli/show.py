"""``cryosegnet show MICROGRAPH --picks PICKS -o picture.png``: look at one micrograph's picks."""

from __future__ import annotations

import argparse

from cryosegnet.inspection.show import ShowSettings, show_picks
from cryosegnet.picking.config import STAGE_ALIASES, STAGES

DESCRIPTION = """\
Draw a circle at every pick on one micrograph and write the picture (PNG or JPEG).

--picks is a coordinate file or a picks folder: the micrograph's <stem>.star or
<stem>_autopick.star is found in it, recursively (then <stem>.csv, .box, ...). Without
--picks, the picker runs on the micrograph first (--model, --stage, --diameter, --min-score)
and the bad regions it masks (contamination, carbon, thick ice) are tinted blue.
--map adds the U-Net probability map as a second panel."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    defaults = ShowSettings()
    parser = subparsers.add_parser(
        "show",
        help="picture of one micrograph with its picks drawn",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("micrograph", metavar="MICROGRAPH", help="MRC, TIFF, PNG or JPEG")
    parser.add_argument(
        "--picks", metavar="PICKS", help="coordinate file or picks folder (default: run the picker)"
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="PICTURE", help="picture to write (.png or .jpg)"
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=defaults.min_score,
        metavar="X",
        help="draw only picks with figure of merit >= X (default: all)",
    )
    parser.add_argument(
        "--diameter",
        type=float,
        default=defaults.diameter,
        metavar="PX",
        help="circle diameter in micrograph pixels for picks without one "
        "(default: their nearest-neighbour spacing); with no --picks, "
        "also the picker's particle diameter",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=defaults.height,
        metavar="PX",
        help=f"height of the picture in pixels ({defaults.height})",
    )
    parser.add_argument(
        "--map",
        action="store_true",
        default=defaults.probability_map,
        help="add the U-Net probability map as a second panel",
    )
    parser.add_argument(
        "--model",
        default=defaults.model,
        metavar="CKPT",
        help="U-Net checkpoint when the picker runs (default: shipped model)",
    )
    parser.add_argument(
        "--stage",
        default=defaults.stage,
        choices=STAGES + tuple(STAGE_ALIASES),
        help=f"instance stage when the picker runs ({defaults.stage})",
    )
    parser.add_argument(
        "--device", default=defaults.device, help=f"device when the picker runs ({defaults.device})"
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks on error")
    parser.set_defaults(func=run_show)
    return parser


def run_show(args: argparse.Namespace) -> int:
    """Write the picture; errors reach the main CLI as one line."""
    settings = ShowSettings(
        height=args.size,
        min_score=args.min_score,
        diameter=args.diameter,
        probability_map=args.map,
        model=args.model,
        stage=args.stage,
        device=args.device,
    )
    result = show_picks(args.micrograph, args.output, picks=args.picks, settings=settings)
    masked = ""
    if result.bad_regions is not None and result.bad_regions.any():
        masked = f", {100 * result.bad_regions.mean():.0f} % tinted as bad regions"
    print(
        f"{args.micrograph}: {len(result.picks)} picks from {result.picks_source}, "
        f"circles {result.diameter:.0f} micrograph px across{masked} -> {result.output}"
    )
    return 0
