"""``cryosegnet classify PICKS MICROGRAPHS -o CLASSES``: reference-free 2D classes of picks."""

from __future__ import annotations

import argparse
import sys

from cryosegnet.classification.settings import ClassifySettings
from cryosegnet.cli import options

# The one line in `cryosegnet --help`.
HELP = "reference-free 2D classification of picks (class averages, per-particle classes)"

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

DEFAULTS = ClassifySettings()
# Options named as the ClassifySettings fields they set, passed on as they are.
SETTINGS_OPTIONS = (
    "n_classes",
    "iterations",
    "box_factor",
    "working_box",
    "angle_step",
    "max_shift",
    "low_snr",
    "dark_particles",
    "seed",
    "device",
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    d = DEFAULTS
    parser = options.add_command(subparsers, "classify", HELP, DESCRIPTION, run_classify)
    options.add_picks_folder(parser, "picks", "PICKS", "picks folder written by `pick`")
    options.add_micrographs(
        parser,
        "micrograph files, folders or globs, paired with the picks by file name "
        "(default: the names in PICKS/autopick.star)",
    )
    options.add_output(parser, "folder to write", "CLASSES")
    options.add_number(parser, "-k", "--n-classes", default=d.n_classes, help="number of classes")
    options.add_number(parser, "--iterations", default=d.iterations, help="iterations")
    options.add_diameter(
        parser, "particle diameter in micrograph pixels (default: recorded with the picks)"
    )
    options.add_number(
        parser, "--box-factor", default=d.box_factor, help="box side in particle diameters"
    )
    options.add_number(
        parser,
        "--working-box",
        default=d.working_box,
        metavar="PX",
        help="boxes are shrunk to this side",
    )
    options.add_number(
        parser,
        "--angle-step",
        default=d.angle_step,
        metavar="DEG",
        help="in-plane rotation sampling",
    )
    options.add_number(
        parser,
        "--max-shift",
        default=d.max_shift,
        metavar="F",
        help="largest shift searched, in particle diameters",
    )
    options.add_switch(
        parser,
        "--bright-particles",
        dest="dark_particles",
        turns_off=True,
        default=d.dark_particles,
        help="particles are brighter than the ice (contrast-inverted micrographs)",
    )
    options.add_switch(
        parser,
        "--low-snr",
        default=d.low_snr,
        help="very weak particles (apoferritin-like): weigh each pose by its posterior, so "
        "noise is not aligned into structure, and judge particles by their pose-marginalised "
        "evidence",
    )
    options.add_seed(parser, d.seed)
    options.add_device(parser, d.device, help="auto, cpu or cuda[:N]")
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
    options.add_debug(parser)
    return parser


def run_classify(args: argparse.Namespace) -> int:
    """Classify; 0 on success, 1 when a micrograph could not be used (the rest is written)."""
    from cryosegnet.classification.pipeline import classify_picks

    settings = ClassifySettings(
        **{name: getattr(args, name) for name in SETTINGS_OPTIONS},
        full_iterations=min(DEFAULTS.full_iterations, args.iterations),
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
