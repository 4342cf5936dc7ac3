"""``cryosegnet classify PICKS MICROGRAPHS -o CLASSES``: reference-free 2D classes of picks."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from cryosegnet.classification.settings import ClassifySettings

DESCRIPTION = """\
Cut a box around every pick (box_factor x the particle diameter, the diameter the picks
record unless --diameter is given), shrink it to the working box, normalise it (zero mean,
unit SD outside a circular mask, ramp removed, as RELION) and classify the boxes into K
classes without references: each iteration aligns every particle to every class average
over in-plane rotations and shifts (Fourier cross-correlation with rotated averages) and
averages the aligned members; averages are centred and masked each iteration.

Writes to CLASSES: class_averages.mrcs and class_averages.png (number and size of every
class), classes.csv (size and quality measures per class), particles.csv (class,
correlation, rotation psi and shift of every particle), classification.json, and the picks
with their class numbers in `pick`'s layout (per-micrograph <stem>_autopick.star,
autopick.star, particles.star). --auto also writes the picks of the classes that pass the
quality thresholds to CLASSES/selected; `cryosegnet select` chooses again later."""

_DEFAULTS = {f.name: f.default for f in fields(ClassifySettings)}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "classify",
        help="reference-free 2D classification of picks (class averages, per-particle classes)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("picks", metavar="PICKS", help="picks folder written by `pick`")
    parser.add_argument(
        "micrographs",
        nargs="*",
        metavar="MICROGRAPHS",
        help="micrograph files, folders or globs, paired with the picks by file name "
        "(default: the names in PICKS/autopick.star)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="CLASSES", help="folder to write")
    parser.add_argument(
        "-k", "--n-classes", type=int, default=_DEFAULTS["n_classes"], help="number of classes"
    )
    parser.add_argument(
        "--iterations", type=int, default=_DEFAULTS["iterations"], help="iterations"
    )
    parser.add_argument(
        "--diameter",
        type=float,
        metavar="PX",
        help="particle diameter in micrograph pixels (default: recorded with the picks)",
    )
    parser.add_argument(
        "--box-factor",
        type=float,
        default=_DEFAULTS["box_factor"],
        help="box side in particle diameters",
    )
    parser.add_argument(
        "--working-box",
        type=int,
        default=_DEFAULTS["working_box"],
        metavar="PX",
        help="boxes are shrunk to this side",
    )
    parser.add_argument(
        "--angle-step",
        type=float,
        default=_DEFAULTS["angle_step"],
        metavar="DEG",
        help="in-plane rotation sampling",
    )
    parser.add_argument(
        "--max-shift",
        type=float,
        default=_DEFAULTS["max_shift"],
        metavar="F",
        help="largest shift searched, in particle diameters",
    )
    parser.add_argument(
        "--bright-particles",
        action="store_true",
        help="particles are brighter than the ice (contrast-inverted micrographs)",
    )
    parser.add_argument(
        "--low-snr",
        action="store_true",
        default=_DEFAULTS["low_snr"],
        help="very weak particles (apoferritin-like): weigh each pose by its posterior, so "
        "noise is not aligned into structure, and judge particles by their pose-marginalised "
        "evidence",
    )
    parser.add_argument("--seed", type=int, default=_DEFAULTS["seed"], help="random seed")
    parser.add_argument("--device", default=_DEFAULTS["device"], help="auto, cpu or cuda[:N]")
    parser.add_argument(
        "--recentre",
        action="store_true",
        help="write coordinates moved by the alignment shift (centred on the particle as "
        "its class average places it)",
    )
    parser.add_argument(
        "--auto",
        action="store_true",
        help="also write the picks of the classes that pass the quality thresholds to "
        "CLASSES/selected",
    )
    parser.add_argument("--debug", action="store_true", help="tracebacks on error")
    parser.set_defaults(func=run_classify)
    return parser


def run_classify(args: argparse.Namespace) -> int:
    """Classify; 0 on success, 1 when a micrograph could not be used (the rest is written)."""
    from cryosegnet.classification.pipeline import classify_picks

    settings = ClassifySettings(
        n_classes=args.n_classes,
        iterations=args.iterations,
        box_factor=args.box_factor,
        working_box=args.working_box,
        angle_step=args.angle_step,
        max_shift=args.max_shift,
        dark_particles=not args.bright_particles,
        low_snr=args.low_snr,
        full_iterations=min(_DEFAULTS["full_iterations"], args.iterations),
        seed=args.seed,
        device=args.device,
    )
    summary = classify_picks(
        args.picks,
        list(args.micrographs) or None,
        args.output,
        settings,
        diameter=args.diameter,
        recentre=args.recentre,
        auto=args.auto,
    )
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    print(summary.text())
    print(f"wrote {summary.output}")
    for name, problem in summary.failures.items():
        print(f"FAILED {name}: {problem}", file=sys.stderr)
    return 1 if summary.failures else 0
