"""``cryosegnet pick --radial-filter FILE``: pick with a saved radial filter instead of the U-Net.

The filter (``REFINE_DIR/radial_filter.json`` of ``pick --refine-model radial``) re-picks a new
data collection without the loop: :class:`~cryosegnet.picking.radial_picker.RadialFilterPicker`
in the batch ``pick`` runs, so the outputs are ``pick``'s. Kept apart from ``cli/pick.py`` so
that the picking command only registers the option, checks it and builds the picker here.

Its diameter is the file's; the U-Net's options (model, stage, SAM, size search, empty test,
centring, U-Net batches, devices, Dask) have nothing to act on, so each is refused rather than
ignored.
"""

from __future__ import annotations

import argparse

from cryosegnet.errors import CryoSegNetError
from cryosegnet.picking.config import PickerConfig
from cryosegnet.picking.job import PickerSpec
from cryosegnet.picking.radial_picker import RadialFilterPicker
from cryosegnet.picking.units import Diameter, parse_size
from cryosegnet.training.refine_loop import RADIAL_FILTER_NAME

# pick's options that act on the U-Net or its instance stage: flag -> argparse dest. Given
# with --radial-filter they are refused (their defaults are not None and are listed apart).
_UNUSED = {
    "--model": "model",
    "--sam-checkpoint": "sam_checkpoint",
    "--sam-model-type": "sam_model_type",
    "--points-per-side": "points_per_side",
    "--pred-iou-thresh": "pred_iou_thresh",
    "--stability-score-thresh": "stability_score_thresh",
    "--box-nms-thresh": "box_nms_thresh",
    "--size-tolerance": "size_tolerance",
    "--denoise-order": "denoise_order",
    "--diameter-angstrom": "diameter_angstrom",
    "--refine": "refine",
    "--scheduler": "scheduler",
    "--dask-workers": "dask_workers",
    "--devices": "devices",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--radial-filter`` on ``pick``."""
    parser.add_argument(
        "--radial-filter",
        metavar="FILE",
        help="pick with a radial filter saved by --refine-model radial "
        f"(REFINE_DIR/{RADIAL_FILTER_NAME}) instead of the U-Net: its picks in pick's "
        "layout, less those in bad regions (--keep-bad-regions keeps them), at its own "
        "threshold (-t sets another, in its score units); the particle diameter is the file's "
        "(in pixels: the new micrographs must have the pixel size the filter was learnt at); "
        "a filter the loop learnt from a model fine-tuned on labels adds that model's map, "
        "saved beside it (keep the two files together). "
        "Not with options of the U-Net or its stages, --refine or Dask",
    )


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse what cannot apply with ``--radial-filter``, before anything is read.

    Parameters
    ----------
    args : argparse.Namespace
        ``pick``'s arguments.

    Raises
    ------
    CryoSegNetError
        An option of the U-Net or its stages, ``--refine``, Dask, a diameter in Å or a range,
        or a ``--diameter`` other than the file's (checked in :func:`build_picker`).
    """
    if not args.radial_filter:
        return
    defaults = PickerConfig()
    given = [flag for flag, dest in _UNUSED.items() if getattr(args, dest, None)]
    if args.stage != defaults.stage:
        given.append("--stage")
    if args.size_per_micrograph != defaults.size_estimate.per_micrograph:
        given.append("--size-per-micrograph")
    if args.centre_picks != defaults.centre_picks:
        given.append("--centre-picks")
    if args.batch_size != 1:
        given.append("--batch-size")
    if args.device != PickerSpec().device:
        given.append("--device")
    if given:
        raise CryoSegNetError(
            f"--radial-filter: {', '.join(given)} cannot apply (the filter picks instead of "
            "the U-Net and its stages; its diameter is the file's)"
        )
    if args.diameter is not None:
        size = parse_size(args.diameter)
        if not isinstance(size, Diameter) or size.angstrom:
            raise CryoSegNetError(
                f"--radial-filter: --diameter {args.diameter}: the filter's diameter is in "
                "pixels and comes from its file; give it in pixels or leave it out"
            )


def build_picker(args: argparse.Namespace) -> RadialFilterPicker:
    """The picker of ``--radial-filter FILE`` with ``pick``'s bad-region and threshold options.

    Parameters
    ----------
    args : argparse.Namespace
        ``pick``'s arguments, :func:`check_arguments` passed.

    Returns
    -------
    RadialFilterPicker

    Raises
    ------
    CryoSegNetError
        The file cannot be read or is not a radial filter (one line naming it), or
        ``--diameter`` is not the file's
        (:meth:`~cryosegnet.training.radial_filter.RadialFilter.check_diameter`).
    """
    picker = RadialFilterPicker.load(
        args.radial_filter,
        mask_bad_regions=args.mask_bad_regions,
        threshold=args.threshold,
        skip_empty=args.skip_empty,
    )
    if args.diameter is not None:
        told = parse_size(args.diameter)
        assert isinstance(told, Diameter)  # check_arguments refused the rest
        picker.radial.check_diameter(args.radial_filter, told.value)
    return picker
