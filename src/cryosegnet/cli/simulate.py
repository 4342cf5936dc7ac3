"""``cryosegnet simulate``: synthetic micrographs with ground truth labels."""

from __future__ import annotations

import argparse
import shlex
import sys

from cryosegnet.cli import options
from cryosegnet.picking.config import MIN_PICK_SIDE
from cryosegnet.simulation.densities import PROCEDURAL_KINDS
from cryosegnet.simulation.micrograph import DENSITY_LEVELS, PRESETS, SimulationConfig

# The smallest micrograph pick accepts: a simulated set is always pickable.
MIN_SIZE = MIN_PICK_SIDE
# About 1 GB of float32 per working copy; the simulation holds several.
MAX_SIZE = 8192


def _size(text: str) -> int | tuple[int, int]:
    """``4096`` or ``HxW`` (rows x columns)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size must be N or HxW, not {text!r}") from exc
    if len(values) == 1 and values[0] >= MIN_SIZE:
        return values[0]
    if len(values) == 2 and min(values) >= MIN_SIZE:
        return values[0], values[1]
    raise argparse.ArgumentTypeError(
        f"size must be N or HxW with N >= {MIN_SIZE} (what pick accepts), not {text!r}"
    )


def _density(text: str) -> str | float:
    if text in DENSITY_LEVELS:
        return text
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"density must be one of {', '.join(DENSITY_LEVELS)} or a coverage fraction"
        ) from exc
    if not 0 < value < 0.7:
        raise argparse.ArgumentTypeError("coverage fraction must be in (0, 0.7)")
    return value


def _range(values: list[float] | None, name: str = "value"):
    """One value fixes it, two give a range LO HI; None keeps the default."""
    if values is None:
        return None
    if len(values) == 1:
        return float(values[0])
    if len(values) != 2 or values[0] > values[1]:
        raise ValueError(f"--{name} takes one value or a range LO HI, got {values}")
    return float(values[0]), float(values[1])


_DEFAULTS = SimulationConfig()


# Long on purpose: the simulate command's options, declared one after another.
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``simulate`` on the main CLI's subparsers."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate micrographs with ground-truth particle labels",
        description="Simulate realistic cryo-EM micrographs (MRC) with ground truth: CryoPPP "
        "CSV, RELION STAR, disk mask PNG and an all-particles table with a pickable flag.",
    )
    p.add_argument("-n", "--num", type=int, default=10, help="number of micrographs (10)")
    options.add_output(p, "output folder")
    p.add_argument("--size", type=_size, default=_DEFAULTS.size, help="image size N or HxW")
    options.add_seed(p, 0, "random seed (0)")
    p.add_argument(
        "--start",
        type=int,
        default=0,
        help="index of the first micrograph; micrograph i always has seed (seed, i)",
    )
    p.add_argument(
        "--difficulty",
        choices=sorted(PRESETS),
        default=_DEFAULTS.difficulty,
        help="preset for SNR, defocus, density, contamination and carbon",
    )
    p.add_argument(
        "--pixel-size",
        type=float,
        default=None,
        help="Å/px of the written image (default: 4096 Å field of view)",
    )
    p.add_argument(
        "--diameter",
        type=float,
        nargs="+",
        metavar="Å",
        help="particle diameter in Å: one value or a range LO HI (50 400)",
    )
    p.add_argument(
        "--diameter-px",
        type=float,
        nargs="+",
        metavar="PX",
        help="particle diameter in pixels (overrides --diameter)",
    )
    p.add_argument(
        "--density",
        type=_density,
        default=None,
        help=f"{'|'.join(DENSITY_LEVELS)} or a coverage fraction (preset)",
    )
    p.add_argument(
        "--shapes",
        nargs="+",
        choices=PROCEDURAL_KINDS,
        default=None,
        help="procedural particle shapes to draw from (all)",
    )
    p.add_argument(
        "--map",
        dest="maps",
        action="append",
        default=[],
        metavar="FILE",
        help="user density: MRC map or PDB/mmCIF model (repeatable)",
    )
    p.add_argument(
        "--map-probability",
        type=float,
        default=None,
        help="chance a micrograph uses a --map density instead of a procedural one",
    )
    p.add_argument(
        "--map-voxel-size", type=float, default=None, help="Å/voxel for maps whose header has none"
    )
    options.add_number(
        p, "--species", default=_DEFAULTS.species, help="particle types per micrograph"
    )
    p.add_argument("--snr", type=float, nargs="+", help="particle SNR: value or range (preset)")
    p.add_argument("--defocus", type=float, nargs="+", help="defocus in µm: value or range")
    p.add_argument(
        "--voltage",
        type=float,
        nargs="+",
        default=list(_DEFAULTS.voltage),
        help="kV, one picked at random per micrograph",
    )
    options.add_number(p, "--cs", default=_DEFAULTS.cs, help="spherical aberration, mm")
    p.add_argument("--dose", type=float, nargs="+", default=None, help="e/Å²: value or range")
    p.add_argument("--no-mtf", action="store_true", help="skip the detector MTF")
    options.add_number(
        p,
        "--detector-pixel-size",
        default=_DEFAULTS.detector_pixel_size,
        help="physical detector pixel in Å, sets the MTF's binning",
    )
    options.add_number(
        p,
        "--edge-min-visible",
        default=_DEFAULTS.edge_min_visible,
        help="fraction of a particle's disk inside the image for it to be labelled; "
        "0.5: its centre inside, as CryoPPP labels",
    )
    carbon = p.add_mutually_exclusive_group()
    carbon.add_argument(
        "--carbon",
        dest="carbon",
        action="store_true",
        default=None,
        help="always include a carbon region",
    )
    carbon.add_argument(
        "--no-carbon", dest="carbon", action="store_false", help="never include carbon"
    )
    p.add_argument(
        "--pick-on-carbon", action="store_true", help="label particles on carbon as pickable"
    )
    p.add_argument("--contamination", type=int, default=None, help="ice blobs per micrograph")
    p.add_argument("--aggregates", type=int, default=None, help="aggregates per micrograph")
    p.add_argument("--prefix", default="sim", help="file name prefix (sim)")
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="regenerate micrographs that are already complete on disk",
    )
    p.add_argument(
        "--allow-large",
        action="store_true",
        help=f"allow --size above {MAX_SIZE} px (memory grows with the square)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


# Options named as the SimulationConfig fields they set, passed on as they are.
SIMULATION_OPTIONS = (
    "size",
    "pixel_size",
    "difficulty",
    "density",
    "map_probability",
    "map_voxel_size",
    "species",
    "cs",
    "detector_pixel_size",
    "edge_min_visible",
    "carbon",
    "pick_on_carbon",
    "contamination",
    "aggregates",
)


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    """Translate parsed arguments to a :class:`SimulationConfig`."""
    kwargs: dict = dict(
        maps=tuple(args.maps),
        voltage=tuple(args.voltage),
        mtf=not args.no_mtf,
        snr=_range(args.snr, "snr"),
        defocus=_range(args.defocus, "defocus"),
        diameter_px=_range(args.diameter_px, "diameter-px"),
    )
    if args.diameter is not None:
        kwargs["diameter"] = _range(args.diameter, "diameter")
    if args.dose is not None:
        kwargs["dose"] = _range(args.dose, "dose")
    if args.shapes:
        kwargs["shapes"] = tuple(args.shapes)
    return options.settings_from(SimulationConfig, args, SIMULATION_OPTIONS, **kwargs)


def run(args: argparse.Namespace) -> int:
    """Simulate ``args.num`` micrographs into ``args.output``; returns the exit code."""
    from cryosegnet.simulation.writer import write_dataset

    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"cryosegnet simulate: {exc}", file=sys.stderr)
        return 2
    if args.num < 1:
        print("cryosegnet simulate: -n must be at least 1", file=sys.stderr)
        return 2
    sides = args.size if isinstance(args.size, tuple) else (args.size, args.size)
    if max(sides) > MAX_SIZE and not getattr(args, "allow_large", False):
        print(
            f"cryosegnet simulate: --size {max(sides)} is above the limit of {MAX_SIZE} px "
            f"(about {sides[0] * sides[1] * 4 * 6 / 1e9:.0f} GB of memory); add --allow-large "
            "to simulate it anyway",
            file=sys.stderr,
        )
        return 2
    try:
        summary = write_dataset(
            args.output,
            config,
            args.num,
            seed=args.seed,
            start=args.start,
            prefix=args.prefix,
            resume=not args.no_resume,
            progress=not args.quiet and sys.stderr.isatty(),
            log_lines=not args.quiet and not sys.stderr.isatty(),
            command=shlex.join(sys.argv),
        )
    except (OSError, ValueError) as exc:
        print(f"cryosegnet simulate: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        n_pick = int(summary["n_pickable"].sum()) if len(summary) else 0
        print(f"wrote {len(summary)} micrographs ({n_pick} pickable particles) to {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (the package CLI normally dispatches here)."""
    parser = argparse.ArgumentParser(prog="cryosegnet")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
