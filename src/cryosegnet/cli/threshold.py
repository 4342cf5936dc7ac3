"""``cryosegnet threshold PICKS_DIR --min-score X -o OUT``: re-threshold picks without picking."""

from __future__ import annotations

import argparse

from cryosegnet.cli import options

# The one line in `cryosegnet --help`.
HELP = "re-threshold a picks folder (keep figure of merit >= X)"

DESCRIPTION = """\
Keep the picks whose figure of merit (_rlnAutopickFigureOfMerit) is >= X and write them to OUT
in the same layout as PICKS_DIR (one STAR per micrograph, flat or in RELION's mirrored
folders), with fresh autopick.star and particles.star index files. Pick once with
--threshold 0, look at `cryosegnet report`, then cut here."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = options.add_command(subparsers, "threshold", HELP, DESCRIPTION, run_threshold)
    options.add_picks_folder(parser)
    options.add_min_score(parser, "keep picks with figure of merit >= X", required=True)
    options.add_output(parser, "folder to write (not PICKS_DIR itself)", "OUT")
    options.add_debug(parser)
    return parser


def run_threshold(args: argparse.Namespace) -> int:
    """Write the re-thresholded folder; errors reach the main CLI as one line."""
    from cryosegnet.inspection.threshold import threshold_picks

    summary = threshold_picks(args.picks_dir, args.output, args.min_score)
    print(summary.text())
    print(
        f"wrote {len(summary.files) - 2} coordinate files, {summary.files[-2]} and "
        f"{summary.files[-1]}"
    )
    return 0
