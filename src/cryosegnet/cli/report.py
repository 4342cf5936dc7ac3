"""``cryosegnet report PICKS_DIR [MICROGRAPHS...] -o report.html``: look at a session's picks."""

from __future__ import annotations

import argparse
import shlex
import sys

from cryosegnet.cli import options
from cryosegnet.inspection.report import ReportSettings

# The one line in `cryosegnet --help`.
HELP = "one HTML page with every micrograph's picks and a threshold slider"

DESCRIPTION = """\
Write one self-contained HTML page (no server, no network: open it from a file share) with a
thumbnail of every micrograph and its picks drawn, a histogram of the figure of merit with a
threshold slider that redraws the picks and updates every count, the micrographs sorted and
flagged by pick count and mean score (empty, few, many, low score), and the
`cryosegnet threshold` command that writes the picks cut at the chosen value.

MICROGRAPHS (files, folders, globs) are paired with the picks by file stem; without them the
micrograph paths in PICKS_DIR/autopick.star are used where they exist. Open the page with
#threshold=X after its name to start the slider at X.

With --classes CLASSES (a `cryosegnet classify` folder of these picks) the page also shows the
class averages: click classes to select them (the auto-selected ones to start with; or open
the page with #classes=1,4,7), and their picks are highlighted on the micrographs, counted,
and the `cryosegnet select CLASSES --classes ...` command for the selection is shown.

With --bad-regions each thumbnail is tinted where the picker masked contamination, carbon and
thick ice (made again from the micrograph as the picker made it); a switch on the page shows
or hides the tint."""


# Options named as the ReportSettings fields they set (their dest), passed on as they are.
SETTINGS_OPTIONS = (
    "thumbnail_size",
    "diameter",
    "threshold",
    "output_hint",
    "selection_output_hint",
    "workers",
    "bad_regions",
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    defaults = ReportSettings()
    parser = options.add_command(subparsers, "report", HELP, DESCRIPTION, run_report)
    options.add_picks_folder(parser)
    options.add_micrographs(
        parser, "micrograph files, folders or globs (default: from autopick.star)"
    )
    options.add_output(parser, "HTML file to write", "REPORT_HTML")
    options.add_number(
        parser,
        "--thumbnail-size",
        default=defaults.thumbnail_size,
        metavar="PX",
        help=f"long side of the thumbnails ({defaults.thumbnail_size})",
    )
    options.add_diameter(
        parser,
        "circle diameter in micrograph pixels (default: pick spacing)",
        default=defaults.diameter,
    )
    options.add_number(
        parser,
        "--threshold",
        default=defaults.threshold,
        kind=float,
        metavar="X",
        help="where the slider starts (default: the lowest score)",
    )
    _add_output_hint(
        parser, "--threshold-output", "output_hint", "threshold", "PICKS_DIR_thresholded"
    )
    parser.add_argument(
        "--classes",
        metavar="CLASSES",
        help="a `classify` folder of these picks: show its class grid and `select` command",
    )
    _add_output_hint(
        parser,
        "--select-output",
        "selection_output_hint",
        "select",
        "CLASSES/selected; needs --classes",
    )
    options.add_switch(
        parser,
        "--bad-regions",
        default=defaults.bad_regions,
        help="tint the bad regions the picker masked (contamination, carbon), shown or hidden "
        "on the page; made again from each micrograph (it is denoised: slower)",
    )
    options.add_number(
        parser,
        "-j",
        "--workers",
        default=defaults.workers,
        help=f"threads making thumbnails ({defaults.workers})",
    )
    options.add_debug(parser)
    return parser


def _add_output_hint(
    parser: argparse.ArgumentParser, flag: str, field: str, command: str, default_text: str
) -> None:
    """``flag OUT``: the ``OUT`` the page shows in the ``cryosegnet command`` it displays (the
    ReportSettings ``field``; ``default_text``: what it is without the option)."""
    parser.add_argument(
        flag,
        dest=field,
        default=getattr(ReportSettings(), field),
        metavar="OUT",
        help=f"OUT in the displayed {command} command (default: {default_text})",
    )


def run_report(args: argparse.Namespace) -> int:
    """Write the report; errors reach the main CLI as one line."""
    from cryosegnet.errors import SettingsError
    from cryosegnet.inspection.report import write_report

    if args.selection_output_hint is not None and args.classes is None:
        raise SettingsError("--select-output needs --classes (the classification to select from)")
    settings = options.settings_from(ReportSettings, args, SETTINGS_OPTIONS)
    command = "cryosegnet " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["report"] else None
    summary = write_report(
        args.picks_dir,
        args.output,
        args.micrographs or None,
        settings,
        command=command,
        classes=args.classes,
    )
    print(summary.text())
    return 0
