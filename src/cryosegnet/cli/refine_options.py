"""``cryosegnet pick --refine``: the options and the hand-off to the label-free loop.

``pick`` picks as always; with ``--refine DIR`` it then runs
:func:`cryosegnet.training.refine_loop.refine_picks` on those picks, re-picking with the
picker ``pick`` built (its stage, threshold and size options) but each round's model. Kept
apart from ``cli/pick.py`` so that the picking command only registers the options and calls
:func:`refine_after`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from cryosegnet.errors import CryoSegNetError, NothingToLearnError
from cryosegnet.picking.job import PickJob
from cryosegnet.training.refine_loop import (
    MODEL_NAME,
    MODELS,
    PICKS_FOLDER,
    RADIAL_FILTER_NAME,
    RefineSettings,
)

DEFAULTS = RefineSettings()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--refine``, ``--refine-model``, ``--refine-rounds``, ``--refine-low-snr`` and
    ``--keep-bad`` on ``pick``."""
    group = parser.add_argument_group(
        "label-free refinement",
        "after picking, repeat: 2D-classify the picks, keep the good classes (re-centred) as "
        "particles and the rejected classes and far ice as background, fine-tune the U-Net "
        "on them, pick again; micrographs whose picks almost all fall in rejected classes "
        "are flagged empty or bad",
    )
    group.add_argument(
        "--refine",
        metavar="REFINE_DIR",
        help="run the loop into REFINE_DIR (not inside the output folder): the final picks "
        f"in REFINE_DIR/{PICKS_FOLDER}, the refined model REFINE_DIR/{MODEL_NAME} (reuse it "
        "with --model), "
        "each round's classes, training run and picks in REFINE_DIR/round<N> (not with "
        "--watch)",
    )
    group.add_argument(
        "--refine-model",
        choices=MODELS,
        default=None,
        help=f"--refine: what the kept picks teach (default: {DEFAULTS.model}). unet: "
        "fine-tune the U-Net, round after round; radial: one round, no fine-tuning: a "
        "rotationally symmetric, noise-whitened matched filter learnt from the kept picks' "
        f"re-centred places re-picks every micrograph (saved as REFINE_DIR/{RADIAL_FILTER_NAME}, "
        "reuse it with --radial-filter"
        "); for round particles (measured on apoferritin with --diameter 68 --centre-picks "
        "--refine-low-snr); auto: radial where the filter sees particles on most micrographs "
        "(its response lopsided towards them), else unet; from a model fine-tuned on labels "
        "radial wherever it can be fitted, with that model's map added",
    )
    group.add_argument(
        "--refine-rounds",
        type=int,
        default=None,
        metavar="N",
        help=f"--refine: at most N fine-tunings (default: {DEFAULTS.rounds}); it stops earlier "
        f"when the kept picks change by less than {DEFAULTS.min_change * 100:g} %% between rounds",
    )
    group.add_argument(
        "--refine-low-snr",
        action="store_true",
        default=DEFAULTS.classify.low_snr,
        help="--refine: classify each round's picks as classify --low-snr does (very weak "
        "particles, apoferritin-like: poses weighed by their posterior, picks judged by their "
        "pose-marginalised evidence against the noise decoys); without it the loop does so "
        "by itself, for the radial filter only, when no class of the starting picks passes",
    )
    group.add_argument(
        "--keep-bad",
        action="store_true",
        default=DEFAULTS.keep_bad,
        help="--refine: keep the picks of micrographs flagged empty or bad (default: they get "
        "none)",
    )


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse refinement options that cannot apply, before anything is picked.

    Raises
    ------
    CryoSegNetError
        ``--refine-model``/``--refine-rounds``/``--refine-low-snr``/``--keep-bad`` without
        ``--refine``, ``--refine`` with ``--watch``, fewer than one round (or more than one
        with ``--refine-model radial``), or a refinement folder inside the output folder (or
        around it).
    """
    if not args.refine:
        if args.refine_rounds is not None:
            raise CryoSegNetError("--refine-rounds: only with --refine REFINE_DIR")
        if args.refine_model is not None:
            raise CryoSegNetError("--refine-model: only with --refine REFINE_DIR")
        if args.keep_bad:
            raise CryoSegNetError("--keep-bad: only with --refine REFINE_DIR")
        if args.refine_low_snr != DEFAULTS.classify.low_snr:
            raise CryoSegNetError("--refine-low-snr: only with --refine REFINE_DIR")
        return
    if args.watch:
        raise CryoSegNetError("--refine: a watch never ends; pick first, then refine")
    if args.refine_rounds is not None and args.refine_rounds < 1:
        raise CryoSegNetError("--refine-rounds: at least 1")
    model = args.refine_model or DEFAULTS.model
    if model == "radial" and args.refine_rounds not in (None, 1):
        raise CryoSegNetError(
            "--refine-rounds: --refine-model radial runs one round (no fine-tuning)"
        )
    refine, output = Path(args.refine).resolve(), Path(args.output).resolve()
    if refine == output or output in refine.parents or refine in output.parents:
        raise CryoSegNetError(
            f"--refine {args.refine}: must be a folder beside the output folder {args.output}, "
            "not it, inside it or around it"
        )


def refine_after(args: argparse.Namespace, code: int, job: PickJob) -> int:
    """``--refine``: run the loop on the finished picks; the worse of the two exit codes.

    Parameters
    ----------
    args : argparse.Namespace
        ``pick``'s arguments (the refinement options).
    code : int
        Exit code of the picking (130, interrupted: nothing is refined).
    job : PickJob
        The pick run just made: its micrographs, output folder and picker; the re-picks run
        in this process with its picker, reader threads and U-Net batch, changing only the
        model.

    Returns
    -------
    int
        0, or the picking's code, or 1 when a re-pick lost a micrograph.
    """
    if not args.refine or code == 130:
        return code
    from cryosegnet.picking.job import InProcess
    from cryosegnet.training.refine_loop import refine_picks

    settings = dataclasses.replace(
        DEFAULTS,
        model=args.refine_model or DEFAULTS.model,
        rounds=args.refine_rounds if args.refine_rounds is not None else DEFAULTS.rounds,
        keep_bad=args.keep_bad,
        classify=dataclasses.replace(
            DEFAULTS.classify, device=job.picker.device or "auto", low_snr=args.refine_low_snr
        ),
    )
    executor = job.executor if isinstance(job.executor, InProcess) else InProcess()
    pick_options = dict(
        batch_size=max(1, executor.batch_size),
        workers=max(1, executor.workers),
        debug=job.debug,
        diameter_angstrom=job.sizes.diameter_angstrom,
        pixel_sizes=job.sizes.pixel_sizes,
        names=job.sizes.names,
    )

    def make_picker(model: Path | None):
        spec = job.picker
        return dataclasses.replace(spec, model=str(model) if model else spec.model).build()

    try:
        summary = refine_picks(
            list(job.inputs),
            job.output,
            args.refine,
            make_picker,
            start_model=job.picker.model,
            settings=settings,
            pick_options=pick_options,
            device=job.picker.device or "auto",
            progress=job.progress and sys.stderr.isatty(),
            log_fn=lambda line: print(line, file=sys.stderr),
        )
    except NothingToLearnError as exc:
        if args.diameter and not args.centre_picks:
            # told the size, a dark-blob pick on a hollow particle still lies on its rim
            raise NothingToLearnError(f"{exc}; with --diameter given, try --centre-picks") from exc
        raise
    print(summary.text(), file=sys.stderr)
    for name, problem in summary.failures.items():
        print(f"FAILED {name}: {problem}", file=sys.stderr)
    return max(code, 1 if summary.failures else 0)
