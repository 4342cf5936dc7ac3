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
from collections.abc import Mapping
from pathlib import Path

from cryosegnet.errors import CryoSegNetError
from cryosegnet.training.refine_loop import MODEL_NAME, PICKS_FOLDER, RefineSettings

DEFAULTS = RefineSettings()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--refine``, ``--refine-rounds`` and ``--keep-bad`` on ``pick``."""
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
        "--refine-rounds",
        type=int,
        default=None,
        metavar="N",
        help=f"--refine: at most N fine-tunings (default: {DEFAULTS.rounds}); it stops earlier "
        f"when the kept picks change by less than {DEFAULTS.min_change * 100:g} %% between rounds",
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
        ``--refine-rounds``/``--keep-bad`` without ``--refine``, ``--refine`` with
        ``--watch``, fewer than one round, or a refinement folder inside the output folder (or
        around it).
    """
    if not args.refine:
        if args.refine_rounds is not None:
            raise CryoSegNetError("--refine-rounds: only with --refine REFINE_DIR")
        if args.keep_bad:
            raise CryoSegNetError("--keep-bad: only with --refine REFINE_DIR")
        return
    if args.watch:
        raise CryoSegNetError("--refine: a watch never ends; pick first, then refine")
    if args.refine_rounds is not None and args.refine_rounds < 1:
        raise CryoSegNetError("--refine-rounds: at least 1")
    refine, output = Path(args.refine).resolve(), Path(args.output).resolve()
    if refine == output or output in refine.parents or refine in output.parents:
        raise CryoSegNetError(
            f"--refine {args.refine}: must be a folder beside the output folder {args.output}, "
            "not it, inside it or around it"
        )


def refine_after(
    args: argparse.Namespace,
    code: int,
    micrographs: list[Path],
    picker_kwargs: Mapping,
    pick_options: Mapping,
) -> int:
    """``--refine``: run the loop on the finished picks; the worse of the two exit codes.

    Parameters
    ----------
    args : argparse.Namespace
        ``pick``'s arguments.
    code : int
        Exit code of the picking (130, interrupted: nothing is refined).
    micrographs : list of pathlib.Path
        The micrographs picked.
    picker_kwargs : mapping
        The keyword arguments ``pick`` built its :class:`~cryosegnet.picking.picker.Picker`
        with; the re-picks change only the model.
    pick_options : mapping
        Keyword arguments of :func:`cryosegnet.picking.batch.pick_batch` for the re-picks.

    Returns
    -------
    int
        0, or the picking's code, or 1 when a re-pick lost a micrograph.
    """
    if not args.refine or code == 130:
        return code
    from cryosegnet.picking.picker import Picker
    from cryosegnet.training.refine_loop import refine_picks

    settings = dataclasses.replace(
        DEFAULTS,
        rounds=args.refine_rounds if args.refine_rounds is not None else DEFAULTS.rounds,
        keep_bad=args.keep_bad,
        classify=dataclasses.replace(DEFAULTS.classify, device=args.device or "auto"),
    )

    def make_picker(model: Path | None) -> Picker:
        return Picker(**{**picker_kwargs, "model": model or picker_kwargs.get("model")})

    summary = refine_picks(
        micrographs,
        args.output,
        args.refine,
        make_picker,
        start_model=picker_kwargs.get("model"),
        settings=settings,
        pick_options=pick_options,
        device=args.device or "auto",
        progress=not args.no_progress and sys.stderr.isatty(),
        log_fn=lambda line: print(line, file=sys.stderr),
    )
    print(summary.text(), file=sys.stderr)
    for name, problem in summary.failures.items():
        print(f"FAILED {name}: {problem}", file=sys.stderr)
    return max(code, 1 if summary.failures else 0)
