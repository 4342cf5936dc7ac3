"""``cryosegnet show``: one micrograph with its picks drawn, as a PNG/JPEG for a person to judge."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from cryosegnet.errors import CryoSegNetError
from cryosegnet.inspection.display import (
    display_image,
    draw_mask,
    draw_picks,
    estimate_display_diameter,
)
from cryosegnet.inspection.picksets import find_picks_file, read_picks
from cryosegnet.io.atomic import atomic_write
from cryosegnet.io.micrographs import read_micrograph


@dataclass(frozen=True)
class ShowSettings:
    """How ``show`` draws; the CLI's defaults are these.

    Attributes
    ----------
    height : int
        Height of each panel in pixels of the picture.
    min_score : float or None
        Draw only picks with figure of merit >= this (None: all picks in the file; when the
        picker runs, its default threshold).
    diameter : float or None
        Circle diameter in micrograph pixels for picks whose file carries none (None: the
        picks' nearest-neighbour spacing). When the picker runs, also its ``--diameter``.
    probability_map : bool
        Add a right-hand panel with the U-Net probability map (runs the U-Net).
    model : str or None
        U-Net checkpoint when the picker runs (None: the shipped model).
    stage : str
        Instance stage when the picker runs (``auto``, ``peaks``, ``sam``, ``log``).
    device : str
        Device when the picker runs.
    """

    height: int = 1024
    min_score: float | None = None
    diameter: float | None = None
    probability_map: bool = False
    model: str | None = None
    stage: str = "auto"
    device: str = "cpu"


@dataclass
class ShowResult:
    """What ``show`` drew: the picks (micrograph pixels), the circle diameter and the file;
    ``bad_regions``: the picker's bad-region mask when it ran here and made one."""

    picks: pd.DataFrame
    diameter: float
    output: Path
    picks_source: str
    bad_regions: np.ndarray | None = None


def show_picks(
    micrograph: str | os.PathLike,
    output: str | os.PathLike,
    picks: str | os.PathLike | pd.DataFrame | None = None,
    settings: ShowSettings | None = None,
) -> ShowResult:
    """Draw a circle at every pick on the micrograph and write the picture; when the picker
    runs here, tint the bad regions it masked (contamination, carbon: no picks there).

    Parameters
    ----------
    micrograph : str or os.PathLike
        The micrograph (MRC, TIFF, PNG, JPEG).
    output : str or os.PathLike
        Picture to write; the format follows the extension (``.png``, ``.jpg``).
    picks : str, os.PathLike, pandas.DataFrame or None
        A coordinate file, a picks folder (the micrograph's ``<stem>.star`` or
        ``<stem>_autopick.star`` is found in it, recursively), or a picks table. None: run the
        picker on the micrograph (``settings.model``, ``settings.stage``).
    settings : ShowSettings, optional
        Drawing options (defaults: :class:`ShowSettings`).

    Returns
    -------
    ShowResult

    Raises
    ------
    CryoSegNetError
        If the micrograph or the picks cannot be read, or the picture cannot be written.
    """
    settings = settings or ShowSettings()
    image = read_micrograph(micrograph).data
    panels: list[np.ndarray] = []
    picture = None
    probability = None
    bad_regions = None  # the picker's bad-region mask, drawn when the picker runs here
    if picks is None or settings.probability_map:
        from cryosegnet.picking.picker import Picker

        picker = Picker(
            model=settings.model,
            device=settings.device,
            stage=settings.stage,
            diameter=settings.diameter,
            threshold=settings.min_score,
        )
        denoised = picker.preprocess(image)
        probability = picker.probability_maps([denoised])[0]
        # The LoG stage reads the denoised image instead of the map (shown all the same).
        stage_input = (
            probability
            if getattr(picker.mask_generator, "needs_unet", True)
            else denoised.astype(np.float32)
        )
        if picks is None:
            result = picker.instances(stage_input, image.shape, denoised)
            table, bad_regions = result.picks, result.bad_regions
            source = f"picker ({picker.stage} stage, threshold {picker.threshold:g})"
            picture = denoised
    if isinstance(picks, pd.DataFrame):
        table, source = picks, "table"
    elif picks is not None:
        path = find_picks_file(micrograph, picks)
        table, source = read_picks(path), str(path)
    if settings.min_score is not None and len(table):
        table = table[table["score"] >= settings.min_score]
    diameter = settings.diameter or estimate_display_diameter(table, image.shape)

    if picture is None:
        picture = display_image(image, settings.height)
    else:
        picture = cv2.resize(
            picture, _size(picture.shape, settings.height), interpolation=cv2.INTER_AREA
        )
    scale = picture.shape[0] / image.shape[0]
    if bad_regions is not None:
        picture = draw_mask(picture, bad_regions)
    panels.append(
        draw_picks(picture, table, scale, diameter, thickness=max(1, settings.height // 400))
    )
    if settings.probability_map and probability is not None:
        heat = cv2.applyColorMap(
            (np.clip(probability, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS
        )
        panels.append(
            cv2.resize(heat, (panels[0].shape[1], panels[0].shape[0]), interpolation=cv2.INTER_AREA)
        )
    figure = np.hstack(panels)
    output = Path(output)
    if output.suffix.lower() not in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
        raise CryoSegNetError(f"{output}: give a .png or .jpg file name for the picture")
    output.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(output.suffix.lower(), figure)
    if not ok:
        raise CryoSegNetError(f"{output}: could not encode the picture")
    with atomic_write(output, "wb") as handle:
        handle.write(encoded.tobytes())
    return ShowResult(
        picks=table.reset_index(drop=True),
        diameter=float(diameter),
        output=output,
        picks_source=source,
        bad_regions=bad_regions,
    )


def _size(shape: tuple[int, ...], height: int) -> tuple[int, int]:
    """cv2 (width, height) for a picture ``height`` tall with the aspect ratio of ``shape``."""
    return max(1, int(round(height * shape[1] / shape[0]))), max(1, int(height))
