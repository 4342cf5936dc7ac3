"""``cryosegnet pick``: micrographs in, RELION/CryoSPARC coordinate files out."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from cryosegnet.cli import options, radial_options, refine_options
from cryosegnet.errors import CryoSegNetError
from cryosegnet.io.layout import COMBINED_STAR, INDEX_STAR, OUTPUT_FORMATS
from cryosegnet.io.micrographs import find_micrographs
from cryosegnet.masks.registry import STAGE_REGISTRY
from cryosegnet.masks.sam import SamSettings
from cryosegnet.picking.config import (
    DEFAULT_THRESHOLDS,
    DIAMETER_ANGSTROM_RANGE,
    MIN_DIAMETER_PX,
    PIXEL_SIZE_RANGE,
    PickerConfig,
    check_range,
)
from cryosegnet.picking.job import (
    Dask,
    InProcess,
    OutputOptions,
    PickerSpec,
    PickJob,
    SizeOptions,
    WatchFolder,
    run_pick,
)
from cryosegnet.picking.picker import Picker, _config_with
from cryosegnet.picking.radial_picker import RadialFilterPicker
from cryosegnet.picking.summary import finish_run
from cryosegnet.picking.units import Diameter, PixelSizes, SizeRange, parse_size
from cryosegnet.picking.watch import (
    DEFAULT_SETTLE_SECONDS,
    DEFAULT_WATCH_INTERVAL,
    DEFAULT_WATCH_TIMEOUT,
    check_watch_options,
)
from cryosegnet.postprocessing.bad_regions import BadRegionSettings
from cryosegnet.postprocessing.centring import CentringSettings
from cryosegnet.postprocessing.empty_micrographs import EmptySettings
from cryosegnet.training.radial_filter import RadialFilterSettings

log = logging.getLogger("cryosegnet")

# Larger than any micrograph side: a diameter beyond it cannot be a particle (and would make
# the instance stage allocate for nothing). Checked against each micrograph when it is read.
MAX_DIAMETER = 20000.0

DEFAULTS = PickerConfig()
# SAM's options on the command line: flag -> SamSettings field (defaults read from there).
SAM_FLAGS = {
    "--points-per-side": ("points_per_side", int, "SAM grid density (points per side)"),
    "--pred-iou-thresh": ("pred_iou_thresh", float, "SAM mask filter: predicted IoU"),
    "--stability-score-thresh": (
        "stability_score_thresh",
        float,
        "SAM mask filter: stability score",
    ),
    "--box-nms-thresh": ("box_nms_thresh", float, "SAM box non-maximum suppression IoU"),
}


# Long on purpose: the pick command's options, declared one after another.
def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pick",
        help="pick particles in micrographs",
        description="Pick particles and write one RELION coordinate STAR per micrograph "
        "(OUT/<micrograph's folder>/<stem>_autopick.star, the layout of RELION's AutoPick "
        f"jobs), a RELION coordinate list ({INDEX_STAR}) and one combined STAR "
        f"({COMBINED_STAR}) for CryoSPARC, both listing every result in OUT. A re-run skips "
        "micrographs already picked from the same file with the same options.",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        help="micrograph files, folders or globs (MRC, TIFF, PNG, JPG), or RELION micrographs "
        "STAR files (micrographs_ctf.star, corrected_micrographs.star: names relative to the "
        "RELION project folder, pixel size from the optics groups); none with --watch",
    )
    options.add_output(p, "output folder")
    p.add_argument(
        "-m", "--model", help="U-Net checkpoint (default: the model shipped with cryosegnet)"
    )
    p.add_argument(
        "-t",
        "--threshold",
        type=float,
        default=None,
        help="minimum figure of merit to keep a pick (default: "
        + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_THRESHOLDS.items())
        + "); use 0 to keep every candidate "
        "and re-threshold later on _rlnAutopickFigureOfMerit",
    )
    p.add_argument(
        "-d",
        "--diameter",
        type=str,
        default=None,
        help="particle diameter in micrograph pixels (180), or in Ångström with a suffix (120A, "
        "120Å: converted per micrograph with its pixel size), or a range (100-160A, 40-60: the "
        "size is read off the micrographs within it, its middle where they show none) "
        "(default: the labels' diameter "
        "for a model fine-tuned on labelled micrographs, else read off the micrographs)",
    )
    p.add_argument(
        "--diameter-angstrom",
        type=float,
        default=None,
        metavar="A",
        help="particle diameter in Å (--diameter-angstrom 120 is --diameter 120A)",
    )
    p.add_argument(
        "--angpix",
        type=float,
        default=None,
        help="pixel size in Å/px of every micrograph (default: from the input STAR's optics "
        "group, else the MRC header); needed for an Å diameter when neither has it",
    )
    options.add_stage(
        p,
        DEFAULTS.stage,
        "instance-mask stage: 'auto' is SAM when a checkpoint is found, else 'hybrid' "
        "(the peak finder for a model fine-tuned on labels); "
        + "; ".join(spec.help for spec in STAGE_REGISTRY.values()),
    )
    p.add_argument(
        "--classify",
        metavar="CLASSES_DIR",
        help="after picking, classify the picks in 2D into CLASSES_DIR and select the good "
        "classes there, as 'cryosegnet classify OUTPUT -o CLASSES_DIR --auto' with its "
        "defaults (not with --watch)",
    )
    refine_options.add_arguments(p)
    radial_options.add_arguments(p)
    p.add_argument(
        "--size-per-micrograph",
        action="store_true",
        default=DEFAULTS.size_estimate.per_micrograph,
        help="without --diameter, read the particle size off each micrograph on its own "
        "(default: one size for the batch, the median of the sure estimates of "
        f"{DEFAULTS.size_estimate.batch_sample} micrographs spread through it)",
    )
    p.add_argument(
        "--skip-empty",
        action="store_true",
        default=DEFAULTS.skip_empty,
        help="write no picks on a micrograph whose dark blobs do not outnumber its bright ones "
        f"by {EmptySettings().min_evidence:g} standard errors (empty holes, bare ice); crowded "
        "fields of very weak particles fail this test too, so check the count it reports; "
        "with --radial-filter: one whose filter response has under "
        f"{RadialFilterSettings().min_tail_ratio:g} x as many pixels "
        f"{RadialFilterSettings().empty_level:g} SD above its median as below it",
    )
    p.add_argument(
        "--keep-bad-regions",
        dest="mask_bad_regions",
        action="store_false",
        default=DEFAULTS.mask_bad_regions,
        help="keep picks on contamination, carbon, nearly opaque ice and their rims (by "
        f"default they are dropped, with a margin of {BadRegionSettings().margin:g} particle "
        "diameter round dark regions far larger than a particle and blobs far darker than "
        "the particles picked)",
    )
    p.add_argument(
        "--centre-picks",
        action="store_true",
        default=DEFAULTS.centre_picks,
        help="move each pick, by at most "
        f"{CentringSettings().search_fraction:g} particle diameter, to where a disk of "
        f"{2 * CentringSettings().disk_fraction:g} diameters is darkest against its "
        "surround: the centre of a hollow particle (apoferritin) rather than a dark spot on its "
        "shell; a move is kept only where the particle does not look less rotationally "
        "symmetric, so picks already centred on filled particles stay; give the particle's "
        "outer size with --diameter",
    )
    sam = p.add_argument_group(
        "SAM stage", "options of the SAM stage only: an error with any other stage"
    )
    sam.add_argument(
        "--sam-checkpoint",
        help="SAM weights (.pth); default: $CRYOSEGNET_SAM_CHECKPOINT or ~/.cache/cryosegnet/sam/",
    )
    sam.add_argument(
        "--sam-model-type",
        choices=("vit_h", "vit_l", "vit_b"),
        default=None,
        help="SAM architecture, matching the checkpoint: vit_h (sam_vit_h_4b8939.pth, the "
        "paper's), vit_l (sam_vit_l_0b3195.pth) or vit_b (sam_vit_b_01ec64.pth) "
        f"(default: {DEFAULTS.sam_model_type})",
    )
    for flag, (name, kind, text) in SAM_FLAGS.items():
        sam.add_argument(
            flag,
            type=kind,
            default=None,
            help=f"{text} (default: {getattr(SamSettings(), name):g})",
        )
    sam.add_argument(
        "--size-tolerance",
        type=float,
        default=None,
        help="Algorithm 1 size window: keep masks within th = FACTOR x modal box diagonal of "
        f"the modal size (default: {DEFAULTS.size_tolerance:g}, the window the authors' code "
        "used)",
    )
    p.add_argument(
        "--denoise-order",
        choices=("fast", "paper"),
        default=None,
        help="fast: shrink, then filter (default); paper: filter at full resolution",
    )
    p.add_argument(
        "--format",
        default="star",
        help=f"comma-separated extra outputs from {','.join(OUTPUT_FORMATS)} (STAR always)",
    )
    p.add_argument(
        "--box-size", type=float, default=None, help="box size for .box output (default: diameter)"
    )
    options.add_device(p, PickerSpec().device, "auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("-b", "--batch-size", type=int, default=1, help="micrographs per U-Net batch")
    p.add_argument(
        "-j",
        "--workers",
        type=int,
        default=1,
        help="threads reading and denoising ahead in this process (the default in-process "
        "run); with --scheduler/--dask-workers each Dask worker picks one micrograph at a time "
        "and the workers are the parallelism",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="pick on a running Dask cluster (tcp://host:8786); its workers must see the same "
        "paths (docs/cluster.md)",
    )
    p.add_argument(
        "--dask-workers",
        type=int,
        metavar="N",
        help="pick on a local Dask cluster of N worker processes, one thread each",
    )
    p.add_argument(
        "--devices",
        metavar="LIST",
        help="with Dask: GPUs, e.g. 0,1,2,3 (worker i uses GPU i; N defaults to their number)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="re-pick micrographs that already have output"
    )
    p.add_argument(
        "--watch",
        metavar="DIR",
        help="pick the micrographs of DIR as they appear, each once fully written, until "
        "--watch-timeout seconds pass with nothing new (instead of INPUTS)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=DEFAULT_SETTLE_SECONDS,
        metavar="S",
        help="--watch: seconds a file's size and modification time must stay "
        "unchanged before it is read (default: %(default)s)",
    )
    p.add_argument(
        "--watch-interval",
        type=float,
        default=DEFAULT_WATCH_INTERVAL,
        metavar="S",
        help="--watch: seconds between scans of DIR (default: %(default)s)",
    )
    p.add_argument(
        "--watch-timeout",
        type=float,
        default=DEFAULT_WATCH_TIMEOUT,
        metavar="S",
        help="--watch: stop after S seconds with no new micrograph (default: %(default)s)",
    )
    options.add_no_progress(p)
    options.add_debug(p, "full tracebacks on errors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, should_stop: Callable[[], bool] | None = None) -> int:
    """Pick as the options say; ``should_stop`` is asked between micrographs (a RELION
    External job's abort request)."""
    job, problems = job_from_args(args)
    what = f"watching {job.watch.folder}" if job.watch else f"{len(job.inputs)} micrograph(s)"
    picker: Picker | RadialFilterPicker
    if args.radial_filter:
        picker = radial_options.build_picker(args)
        log.info("cryosegnet pick: %s, %s", what, picker.describe())
    else:
        picker = job.picker.build()
        log.info(
            "cryosegnet pick: %s, model %s, instance stage: %s, device %s, threshold %.3g, "
            "diameter %s",
            what,
            picker.model_path.name if picker.model_path else "in-memory model",
            picker.mask_generator.describe(),
            picker.device,
            picker.threshold,
            _describe_size(args, job, picker),
        )
    summary = run_pick(job, should_stop, picker=picker)
    code = _classify_after(args, finish_run(summary, problems))
    return refine_options.refine_after(args, code, job)


def job_from_args(args: argparse.Namespace) -> tuple[PickJob, list[str]]:
    """The :class:`PickJob` the options ask for, and the inputs refused before picking
    ("path: why", reported among the failures), every option checked first."""
    diameter, size_range = _given_diameter(args)
    px = diameter.value if diameter is not None and not diameter.angstrom else None
    angstrom = diameter.value if diameter is not None and diameter.angstrom else None
    formats = tuple(f.strip().lower() for f in args.format.split(",") if f.strip())
    unknown = sorted(set(formats) - set(OUTPUT_FORMATS))
    if unknown:
        raise CryoSegNetError(f"--format: unknown output format(s) {', '.join(unknown)}")
    _check_numbers(args, px, angstrom)
    _check_device(args.device)
    if not str(args.output).strip():
        raise CryoSegNetError("-o/--output: empty folder name")
    refine_options.check_arguments(args)
    radial_options.check_arguments(args)
    if args.watch and args.inputs:
        raise CryoSegNetError("--watch DIR takes the place of INPUTS: give one or the other")
    if not args.watch and not args.inputs:
        raise CryoSegNetError("no micrographs given (INPUTS, or --watch DIR)")
    if args.watch:
        check_watch_options(args.watch, args.settle, args.watch_interval, args.watch_timeout)
    problems: list[str] = []
    stars = [i for i in args.inputs if _is_star(i)]
    others = [i for i in args.inputs if not _is_star(i)]
    micrographs = [] if args.watch or not others else find_micrographs(others, problems)
    names, star_pixel_sizes = _read_relion_inputs(stars, micrographs)
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    if not micrographs and not args.watch:
        raise CryoSegNetError(f"{' '.join(args.inputs)}: no micrographs found")
    if args.classify and args.watch:
        raise CryoSegNetError(
            "--classify: a watch never ends; run cryosegnet classify on its output instead"
        )
    if args.size_per_micrograph and diameter is not None:
        raise CryoSegNetError("--size-per-micrograph: the diameter is given, so no size is read")
    if size_range is not None:
        try:
            PickerConfig(diameter_range=size_range)  # the physical ranges, up front
        except ValueError as exc:
            raise CryoSegNetError(f"--diameter {size_range}: {exc}") from None
    job = PickJob(
        inputs=tuple(micrographs),
        output=Path(args.output),
        picker=_picker_spec(args, px, size_range, per_micrograph=angstrom is not None),
        outputs=OutputOptions(formats, args.box_size, args.overwrite),
        sizes=SizeOptions(angstrom, PixelSizes(args.angpix, star_pixel_sizes), names),
        executor=_executor(args),
        watch=_watch(args),
        progress=not args.no_progress,
        debug=args.debug,
    )
    return job, problems


def _picker_spec(
    args: argparse.Namespace, px: float | None, size_range, per_micrograph: bool
) -> PickerSpec:
    """The picker the options ask for (``px``: a diameter given in pixels)."""
    sam_options = {
        name: getattr(args, flag[2:].replace("-", "_"))
        for flag, (name, _, _) in SAM_FLAGS.items()
        if getattr(args, flag[2:].replace("-", "_")) is not None
    }
    settings = dict(
        stage=args.stage,
        sam_options=sam_options,
        threshold=args.threshold,
        diameter=px,
        denoise_order=args.denoise_order,
        skip_empty=args.skip_empty,
        size_estimate=dataclasses.replace(
            DEFAULTS.size_estimate, per_micrograph=args.size_per_micrograph
        ),
        mask_bad_regions=args.mask_bad_regions,
        centre_picks=args.centre_picks,
        diameter_range=size_range,
    )
    if args.sam_model_type is not None:
        settings["sam_model_type"] = args.sam_model_type
    if args.size_tolerance is not None:
        settings["size_tolerance"] = args.size_tolerance
    return PickerSpec(
        config=_config_with(None, settings),
        model=args.model,
        device=args.device,
        sam_checkpoint=args.sam_checkpoint,
        diameter_per_micrograph=per_micrograph,
    )


def _executor(args: argparse.Namespace) -> InProcess | Dask:
    """In this process, or on Dask with --scheduler / --dask-workers / --devices."""
    if args.scheduler or args.dask_workers or args.devices:
        from cryosegnet.picking.distributed import parse_devices

        devices = parse_devices(args.devices)
        return Dask(args.scheduler, args.dask_workers, tuple(devices) if devices else None)
    return InProcess(batch_size=max(1, args.batch_size), workers=max(1, args.workers))


def _watch(args: argparse.Namespace) -> WatchFolder | None:
    """--watch DIR with its timings, or None."""
    if not args.watch:
        return None
    return WatchFolder(Path(args.watch), args.settle, args.watch_interval, args.watch_timeout)


def _describe_size(args: argparse.Namespace, job: PickJob, picker: Picker) -> str:
    """The start line's diameter: given, a range, the model's labels, or read off."""
    config = job.picker.config
    angstrom = job.sizes.diameter_angstrom
    given = Diameter(angstrom, "A") if angstrom is not None else None
    if config.diameter is not None:
        given = Diameter(config.diameter, "px")
    size = _describe_given(given, job.sizes.pixel_sizes.uniform, args.size_per_micrograph)
    if config.diameter_range is not None:
        size = (
            f"read off the micrographs within {config.diameter_range} (its middle where they "
            "show no clear scale)"
        )
    if not config.diameter and config.diameter_range is None and picker.model_diameter:
        model_angstrom = picker.model_diameter_angstrom
        size = (
            f"{picker.model_diameter:.0f} micrograph px"
            f"{f' ({model_angstrom:.0f} Å)' if model_angstrom else ''}, from the model's "
            "training labels, converted per micrograph (--diameter overrides)"
        )
    elif not config.diameter and picker.legacy_working_diameter:
        size = (
            f"{picker.legacy_working_diameter:.0f} working px, from the model's training "
            "labels (an older checkpoint; --diameter overrides)"
        )
    return size


def _classify_after(args: argparse.Namespace, code: int) -> int:
    """``--classify``: classify the finished picks; the worse of the two exit codes."""
    if not args.classify or code == 130:  # nothing asked, or interrupted: stop here
        return code
    from cryosegnet.classification.pipeline import classify_picks
    from cryosegnet.classification.settings import ClassifySettings

    summary = classify_picks(
        args.output,
        None,
        args.classify,
        ClassifySettings(device=args.device or "auto"),
        auto=True,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    print(summary.text(), file=sys.stderr)
    for name, problem in summary.failures.items():
        print(f"FAILED {name}: {problem}", file=sys.stderr)
    return max(code, 1 if summary.failures else 0)


def _given_diameter(args: argparse.Namespace) -> tuple[Diameter | None, SizeRange | None]:
    """The diameter asked for (``--diameter`` with its unit, or ``--diameter-angstrom``), or
    the size range (``--diameter 100-160A``)."""
    parsed = parse_size(args.diameter) if args.diameter is not None else None
    size_range = parsed if isinstance(parsed, SizeRange) else None
    given = parsed if isinstance(parsed, Diameter) else None
    if size_range is not None and args.diameter_angstrom is not None:
        raise CryoSegNetError("give --diameter or --diameter-angstrom, not both")
    if args.diameter_angstrom is not None:
        if given is not None:
            raise CryoSegNetError("give --diameter or --diameter-angstrom, not both")
        given = Diameter(float(args.diameter_angstrom), "A")
    return given, size_range


def _describe_given(
    diameter: Diameter | None, pixel_size: float | None, per_micrograph: bool = False
) -> str:
    """The log's diameter: in px and Å when the pixel size is known up front."""
    if diameter is None:
        if per_micrograph:
            return "read off each micrograph"
        return "read off the micrographs (one size for the batch)"
    if diameter.angstrom:
        if pixel_size:
            return (
                f"{diameter.value:g} Å (given; {diameter.value / pixel_size:.1f} px at "
                f"{pixel_size:g} Å/px)"
            )
        return f"{diameter.value:g} Å (given; converted per micrograph with its pixel size)"
    if pixel_size:
        return (
            f"{diameter.value:g} px (given; {diameter.value * pixel_size:.0f} Å at "
            f"{pixel_size:g} Å/px)"
        )
    return f"{diameter.value:g} px (given)"


def _is_star(item: str) -> bool:
    return str(item).lower().endswith(".star")


def _read_relion_inputs(stars: list[str], micrographs: list) -> tuple[dict, dict[str, float]]:
    """Add the micrographs of RELION micrographs STAR files to ``micrographs``; return their
    names (``_rlnMicrographName`` as RELION wrote it, by path) and pixel sizes (by path)."""
    from cryosegnet.io.relion import read_micrographs_star

    names: dict = {}
    pixel_sizes: dict[str, float] = {}
    for star in stars:
        table = read_micrographs_star(star)
        if not table.micrographs:
            raise CryoSegNetError(f"{star}: lists no micrographs")
        for micrograph in table.micrographs:
            path = micrograph.path  # relative to the working folder when inside it
            with contextlib.suppress(ValueError):
                path = path.absolute().relative_to(Path.cwd())
            names[path] = micrograph.name
            if micrograph.pixel_size:
                pixel_sizes[str(path)] = micrograph.pixel_size
            micrographs.append(path)
        log.info(
            "%s: %d micrograph(s) from RELION project %s",
            star,
            len(table.micrographs),
            table.project_dir,
        )
    return names, pixel_sizes


def _check_numbers(args: argparse.Namespace, px: float | None, angstrom: float | None) -> None:
    """Refuse NaN/inf and out-of-range numbers before anything is loaded or written
    (``px``, ``angstrom``: the diameter given, in its unit)."""
    import math

    def finite(name: str, value, positive: bool = False, low=None, high=None) -> None:
        if value is None:
            return
        if not math.isfinite(value):
            raise CryoSegNetError(f"{name}: {value} is not a finite number")
        if positive and value <= 0:
            raise CryoSegNetError(f"{name}: must be positive (got {value:g})")
        if low is not None and value < low:
            raise CryoSegNetError(f"{name}: must be at least {low:g} (got {value:g})")
        if high is not None and value > high:
            raise CryoSegNetError(f"{name}: must be at most {high:g} px (got {value:g})")

    finite("--threshold", args.threshold)
    finite("--diameter", px, positive=True, high=MAX_DIAMETER)
    finite("--diameter (Å)", angstrom, positive=True)
    finite("--angpix", args.angpix, positive=True)
    try:  # physical ranges (picking/config.py); the upper px limit is checked per micrograph
        check_range("--diameter", px, MIN_DIAMETER_PX, None, "px")
        check_range("--diameter", angstrom, *DIAMETER_ANGSTROM_RANGE, "Å")
        check_range("--angpix", args.angpix, *PIXEL_SIZE_RANGE, "Å/px")
    except ValueError as exc:
        raise CryoSegNetError(str(exc)) from None
    finite("--box-size", args.box_size, positive=True, high=MAX_DIAMETER)
    finite("--size-tolerance", args.size_tolerance, positive=True)
    for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
        finite("--" + name.replace("_", "-"), getattr(args, name))


def _check_device(device: str) -> None:
    """A device name torch cannot use is refused in one line, before the model loads."""
    import re

    name = str(device).strip().lower()
    if name in ("auto", "cpu"):
        return
    if not re.fullmatch(r"cuda(:\d+)?|mps", name):
        raise CryoSegNetError(f"--device {device}: unknown device (use auto, cpu, cuda, cuda:N)")
    import torch

    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise CryoSegNetError("--device mps: no Apple GPU available (use --device cpu)")
        return
    if not torch.cuda.is_available():
        raise CryoSegNetError(
            f"--device {device}: no CUDA GPU is available to this PyTorch "
            f"({torch.__version__}); use --device cpu or auto"
        )
    index = int(name.split(":")[1]) if ":" in name else 0
    if index >= torch.cuda.device_count():
        raise CryoSegNetError(
            f"--device {device}: only {torch.cuda.device_count()} CUDA GPU(s) are visible"
        )
