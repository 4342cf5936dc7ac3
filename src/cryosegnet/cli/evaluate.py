"""``cryosegnet evaluate PICKS LABELS``: score any picker's output against labelled centres."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from cryosegnet.cli import options
from cryosegnet.errors import CryoSegNetError

# The one line in `cryosegnet --help`.
HELP = "score picks against labelled particles (precision, recall, F1, AUPRC, Dice)"

DESCRIPTION = """\
Match picks to labelled particle centres one to one (greedy, most confident pick first, within
half a particle diameter unless --radius is given) and report precision, recall and F1 at the
picks' own threshold, the best F1 and its threshold, AUPRC, and pixel Dice (mean over
micrographs), per micrograph and pooled.

PICKS and LABELS are coordinate files or folders of them: RELION/CryoSPARC STAR, CryoPPP CSV,
EMAN/crYOLO .box, crYOLO .cbox, Topaz .txt/.tsv. Files are paired by micrograph name
(mic_autopick.star pairs with mic.csv); files covering several micrographs (combined STAR,
Topaz) are split by their micrograph column."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = options.add_command(subparsers, "evaluate", HELP, DESCRIPTION, run_evaluate)
    parser.add_argument(
        "picks",
        nargs="+",
        metavar="PICKS",
        help="coordinate file(s), folder(s) or glob(s) with the picks",
    )
    parser.add_argument(
        "labels",
        metavar="LABELS",
        help="coordinate file, folder or glob with the labelled (true) particles",
    )
    options.add_output(
        parser,
        "write metrics.json, per_micrograph.csv and pr_curve.png here",
        "REPORT_DIR",
        required=False,
    )
    parser.add_argument(
        "--radius",
        type=float,
        metavar="PX",
        help="match distance in pixels (default: half the particle diameter)",
    )
    options.add_diameter(
        parser,
        "particle diameter in pixels, for labels that do not carry one; "
        "the match radius is then half of it",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="keep picks with score >= T for precision/recall/F1/Dice "
        "(default: every pick in the file)",
    )
    parser.add_argument(
        "--images",
        nargs="+",
        metavar="MICROGRAPHS",
        help="micrographs (files, folders, globs) so Dice is clipped to the image",
    )
    parser.add_argument(
        "--scale-picks",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply pick coordinates by F first, for picks made on binned "
        "micrographs (e.g. 4 for Topaz run at 4x downsampling without "
        "--up-scale)",
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out labelled micrographs that have no picks file "
        "(default: count them as zero picks)",
    )
    parser.add_argument("--no-plot", action="store_true", help="do not draw pr_curve.png")
    return parser


def run_evaluate(args: argparse.Namespace) -> int:
    """Run the evaluation; 0 on success, 1 on a user-facing error (printed as one line)."""
    try:
        return _run(args)
    except (CryoSegNetError, ValueError) as exc:
        print(f"cryosegnet evaluate: error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from cryosegnet.evaluation.metrics import check_match_options, evaluate_picks
    from cryosegnet.evaluation.pairing import (
        drop_duplicate_rows,
        load_coordinate_sets,
        pick_threshold,
    )
    from cryosegnet.evaluation.report import format_table, write_report

    check_match_options(args.radius, args.threshold, args.diameter, prefix="--")
    if not (math.isfinite(args.scale_picks) and args.scale_picks > 0):
        raise ValueError(f"--scale-picks {args.scale_picks:g}: must be a positive, finite factor")
    _refuse_expanded_glob(args.picks, args.labels)
    notes: list[str] = []
    picks = load_coordinate_sets(list(args.picks), notes=notes)
    labels = load_coordinate_sets(args.labels, diameter=args.diameter, notes=notes)
    dropped, where = drop_duplicate_rows(labels)
    if dropped:
        notes.append(
            f"{dropped} duplicate label row(s) dropped (exact repeats, each particle counted "
            f"once) in {len(where)} micrograph(s): {_sample(where)}"
        )
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.scale_picks != 1.0:
        for table in picks.values():
            table[["x", "y"]] *= args.scale_picks
            if "diameter" in table:
                table["diameter"] *= args.scale_picks
    if not labels:
        raise ValueError(f"no labelled micrographs in {args.labels}")
    shapes = _micrograph_shapes(args.images, labels) if args.images else None
    result = evaluate_picks(
        picks,
        labels,
        radius=args.radius,
        threshold=args.threshold,
        diameter=args.diameter,
        shapes=shapes,
        missing_picks="skip" if args.skip_missing else "empty",
        picks_threshold=pick_threshold(list(args.picks)),
    )
    matched = set(picks) & set(labels)
    if not matched:
        raise ValueError(
            "no picks file pairs with a labels file by micrograph name "
            f"(picks: {_sample(picks)}; labels: {_sample(labels)})"
        )
    print(format_table(result))
    if result.labels_without_picks:
        how = "left out" if args.skip_missing else "counted as zero picks"
        print(
            f"{len(result.labels_without_picks)} labelled micrograph(s) without picks ({how}): "
            f"{_sample(result.labels_without_picks)}",
            file=sys.stderr,
        )
    if result.picks_without_labels:
        print(
            f"{len(result.picks_without_labels)} picked micrograph(s) without labels "
            f"(not scored): {_sample(result.picks_without_labels)}",
            file=sys.stderr,
        )
    if args.output:
        inputs = {
            "picks": [str(Path(p)) for p in args.picks],
            "labels": str(args.labels),
            "images": args.images,
            "scale_picks": args.scale_picks,
        }
        paths = write_report(result, args.output, extra=inputs, plot=not args.no_plot)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _micrograph_shapes(images: list[str], labels: dict) -> dict[str, tuple[int, int]]:
    """The shape of each labelled micrograph found among ``images`` (``--images``), by key,
    so that Dice is clipped to the image; a note names those not found."""
    from cryosegnet.evaluation.pairing import micrograph_key
    from cryosegnet.io.micrographs import find_micrographs, read_micrograph

    shapes = {}
    for path in find_micrographs(list(images)):
        key = micrograph_key(path.name)
        if key in labels:
            shapes[key] = read_micrograph(path).shape
    missing = sorted(set(labels) - set(shapes))
    if missing:
        print(
            f"note: no micrograph for {len(missing)} labelled micrograph(s), e.g. "
            f"{missing[0]}; their Dice is not clipped to the image",
            file=sys.stderr,
        )
    return shapes


def _refuse_expanded_glob(picks: list[str], labels: str) -> None:
    """``evaluate picks/ labels/*.csv`` unquoted: the shell hands over every CSV, the last one
    becomes LABELS and the others PICKS. Files beside LABELS with its extension among PICKS
    can only come from that; refuse rather than score the wrong thing."""
    label_path = Path(labels)
    if not label_path.is_file() or len(picks) < 2:
        return
    siblings = [
        p
        for p in picks
        if Path(p).is_file()
        and Path(p).parent.resolve() == label_path.parent.resolve()
        and Path(p).suffix.lower() == label_path.suffix.lower()
    ]
    if siblings:
        raise ValueError(
            f"LABELS {labels} and PICKS {siblings[0]} (+{len(siblings) - 1} more) are files of "
            "one folder: an unquoted glob was expanded by the shell. Give the labels folder, or "
            "quote the pattern (e.g. 'labels/*.csv')"
        )


def _sample(names, n: int = 3) -> str:
    names = sorted(names)
    text = ", ".join(names[:n])
    return text + (f" (+{len(names) - n} more)" if len(names) > n else "")
