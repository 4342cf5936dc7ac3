"""Cut, downsample and normalise boxes around picks (the particle stack to classify).

Picks are read from a ``cryosegnet pick`` folder (any folder of per-micrograph RELION
coordinate STAR files) and paired with micrographs by name, as ``cryosegnet report`` does.
Each micrograph is shrunk once so that a box of ``box_factor`` particle diameters becomes
``working_box`` pixels, and the boxes are cut from the shrunk image on its pixel grid; the
box centre's position in micrograph pixels is kept, so alignment shifts convert back exactly.

A box reaching over the micrograph's edge is kept and padded: the missing pixels are set to
the background mean (0 after normalisation) and left out of the normalisation statistics.
Picks whose centre lies outside the micrograph are skipped (counted in the notes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd

from cryosegnet.classification.settings import ClassifySettings
from cryosegnet.errors import CoordinateFileError, CryoSegNetError, MicrographError
from cryosegnet.inspection.picksets import PickFile, find_pick_files, read_picks
from cryosegnet.inspection.report import _pair_images as pair_images
from cryosegnet.io.coordinates import star_header
from cryosegnet.io.micrographs import read_micrograph


@dataclass
class ParticleStack:
    """Normalised boxes and where each came from.

    Attributes
    ----------
    images : numpy.ndarray
        ``(N, B, B)`` float32 boxes, zero mean and unit SD outside the mask.
    table : pandas.DataFrame
        One row per box: ``micrograph`` (name as the picks' index gives it), ``source`` (the
        pick file's path below the picks folder), ``x``, ``y`` (the pick), ``score`` (its
        figure of merit), ``box_x``, ``box_y`` (the box centre, micrograph pixels) and
        ``scale_x``, ``scale_y`` (micrograph pixels per working pixel).
    micrographs : list of tuple of str
        ``(source, micrograph name)`` of every picks file, also those without picks.
    diameter_px : float
        Particle diameter in micrograph pixels the boxes were cut for.
    failures : dict of str to str
        Micrographs that could not be used, with the reason.
    notes : list of str
        Picks left out, and why.
    """

    images: np.ndarray
    table: pd.DataFrame
    micrographs: list[tuple[str, str]]
    diameter_px: float
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def picks_diameter(pick_files: list[PickFile], tables: list[pd.DataFrame]) -> float | None:
    """Median particle diameter (px) of the picks: their ``diameter`` column, else the
    ``diameter_px`` ``cryosegnet pick`` records in each STAR's manifest."""
    values: list[float] = []
    for pick_file, table in zip(pick_files, tables, strict=True):
        column = table["diameter"].to_numpy(float)
        column = column[np.isfinite(column) & (column > 0)]
        if len(column):
            values += column.tolist()
            continue
        _, manifest = star_header(pick_file.path)
        recorded = (manifest or {}).get("diameter_px")
        if isinstance(recorded, int | float) and np.isfinite(recorded) and recorded > 0:
            values += [float(recorded)] * max(1, len(table))
    return float(np.median(values)) if values else None


def normalise_boxes(boxes: np.ndarray, valid: np.ndarray, radius: float) -> np.ndarray:
    """Subtract a plane fitted to the background and scale it to zero mean, unit SD.

    The background is every valid pixel outside ``radius`` (from the box centre), as
    RELION's ``--norm`` with ramp removal. Invalid (padded) pixels become 0.

    Parameters
    ----------
    boxes : numpy.ndarray
        ``(n, B, B)`` boxes.
    valid : numpy.ndarray
        ``(n, B, B)`` bool, False where a box reaches beyond the micrograph.
    radius : float
        Background starts at this distance from the centre (pixels).

    Returns
    -------
    numpy.ndarray
        ``(n, B, B)`` float32.
    """
    size = boxes.shape[-1]
    coords = np.arange(size, dtype=np.float64) - size // 2
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    outside = (xx**2 + yy**2) > radius**2
    weight = (valid & outside[None]).reshape(len(boxes), -1).astype(np.float64)
    design = np.stack((np.ones(size * size), xx.reshape(-1), yy.reshape(-1)), axis=1)
    values = boxes.reshape(len(boxes), -1).astype(np.float64)
    normal = np.einsum("np,pi,pj->nij", weight, design, design) + 1e-6 * np.eye(3)
    rhs = np.einsum("np,pi,np->ni", weight, design, values)
    plane = np.linalg.solve(normal, rhs[..., None])[..., 0] @ design.T
    values = values - plane
    count = weight.sum(axis=1).clip(min=1)
    mean = (weight * values).sum(axis=1) / count
    sd = np.sqrt((weight * (values - mean[:, None]) ** 2).sum(axis=1) / count)
    values = (values - mean[:, None]) / np.where(sd > 1e-12, sd, 1.0)[:, None]
    values[~valid.reshape(len(boxes), -1)] = 0.0
    return values.reshape(boxes.shape).astype(np.float32)


def cut_boxes(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    diameter_px: float,
    settings: ClassifySettings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
    """Boxes around ``(x, y)`` from one micrograph, at the working size, normalised.

    Parameters
    ----------
    image : numpy.ndarray
        The micrograph, ``(H, W)``.
    x, y : numpy.ndarray
        Pick centres in micrograph pixels (x = column, y = row); all inside the image.
    diameter_px : float
        Particle diameter in micrograph pixels.
    settings : ClassifySettings
        ``box_factor``, ``working_box`` and ``mask_factor``.

    Returns
    -------
    boxes : numpy.ndarray
        ``(n, B, B)`` float32.
    box_x, box_y : numpy.ndarray
        Box centres in micrograph pixels (the pick snapped to the shrunk image's grid).
    padded : numpy.ndarray
        ``(n,)`` bool, True where the box reached over the edge.
    scale : tuple of float
        Micrograph pixels per working pixel, (x, y).
    """
    size = settings.working_box
    factor = settings.box_factor * diameter_px / size  # micrograph px per working px
    height, width = image.shape
    new_w, new_h = max(1, round(width / factor)), max(1, round(height / factor))
    method = cv2.INTER_AREA if factor > 1 else cv2.INTER_CUBIC
    small = cv2.resize(image.astype(np.float32), (new_w, new_h), interpolation=method)
    scale_x, scale_y = width / new_w, height / new_h
    # Pixel i of the shrunk image covers [i, i + 1) * scale; its centre is (i + 0.5) scale - 0.5.
    cx = np.round((x + 0.5) / scale_x - 0.5).astype(int)
    cy = np.round((y + 0.5) / scale_y - 0.5).astype(int)
    half = size // 2
    pad = size
    padded_image = np.pad(small, pad, mode="constant")
    valid_image = np.pad(np.ones_like(small, dtype=bool), pad, mode="constant")
    rows = cy[:, None] - half + pad + np.arange(size)[None]
    cols = cx[:, None] - half + pad + np.arange(size)[None]
    boxes = padded_image[rows[:, :, None], cols[:, None, :]]
    valid = valid_image[rows[:, :, None], cols[:, None, :]]
    boxes = normalise_boxes(boxes, valid, settings.mask_radius_px)
    box_x = (cx + 0.5) * scale_x - 0.5
    box_y = (cy + 0.5) * scale_y - 0.5
    return boxes, box_x, box_y, ~valid.all(axis=(1, 2)), (scale_x, scale_y)


def extract_particles(
    picks_dir: str | os.PathLike,
    micrographs: list[str] | None,
    settings: ClassifySettings,
    diameter: float | None = None,
) -> ParticleStack:
    """Every pick of ``picks_dir`` as a normalised box at the working size.

    Parameters
    ----------
    picks_dir : str or os.PathLike
        A ``cryosegnet pick`` output folder (per-micrograph STAR files, flat or in RELION's
        ``<folder>/<stem>_autopick.star`` layout).
    micrographs : list of str or None
        Micrograph files, folders or globs, paired with the picks by file stem; None: the
        micrograph names in the picks' ``autopick.star`` (as paths).
    settings : ClassifySettings
        Box size, working size and mask.
    diameter : float, optional
        Particle diameter in micrograph pixels; default: from the picks.

    Returns
    -------
    ParticleStack

    Raises
    ------
    CryoSegNetError
        If ``picks_dir`` holds no picks files, no diameter is known, or no micrograph could
        be paired and read.
    """
    pick_files = find_pick_files(picks_dir)
    tables = [read_picks(pf) for pf in pick_files]
    if diameter is None:
        diameter = picks_diameter(pick_files, tables)
        if diameter is None:
            raise CoordinateFileError(
                picks_dir, "the picks carry no particle diameter; give --diameter PX"
            )
    if not diameter > 0:
        raise CryoSegNetError(f"particle diameter must be positive, not {diameter}")
    images = pair_images(pick_files, micrographs)
    stack: list[np.ndarray] = []
    rows: list[pd.DataFrame] = []
    failures: dict[str, str] = {}
    notes: list[str] = []
    outside_total = padded_total = 0
    for pick_file, table in zip(pick_files, tables, strict=True):
        if len(table) == 0:
            continue
        path = images.get(pick_file.relative)
        if path is None:
            failures[pick_file.micrograph] = "no micrograph file found for these picks"
            continue
        try:
            image = read_micrograph(path).data
        except MicrographError as exc:
            failures[pick_file.micrograph] = exc.problem
            continue
        height, width = image.shape
        x, y = table["x"].to_numpy(float), table["y"].to_numpy(float)
        inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
        outside_total += int((~inside).sum())
        if not inside.any():
            continue
        boxes, box_x, box_y, padded, (sx, sy) = cut_boxes(
            image, x[inside], y[inside], diameter, settings
        )
        padded_total += int(padded.sum())
        stack.append(boxes)
        rows.append(
            pd.DataFrame(
                {
                    "micrograph": pick_file.micrograph,
                    "source": str(pick_file.relative),
                    "x": x[inside],
                    "y": y[inside],
                    "score": table["score"].to_numpy(float)[inside],
                    "box_x": box_x,
                    "box_y": box_y,
                    "scale_x": sx,
                    "scale_y": sy,
                }
            )
        )
    if outside_total:
        notes.append(f"{outside_total} pick(s) with the centre outside the micrograph skipped")
    if padded_total:
        notes.append(
            f"{padded_total} box(es) reach over the micrograph edge: padded with the "
            "background mean"
        )
    if not stack and failures:
        name, problem = next(iter(failures.items()))
        raise MicrographError(name, f"{problem} (and no other micrograph could be used)")
    size = settings.working_box
    return ParticleStack(
        images=np.concatenate(stack) if stack else np.zeros((0, size, size), np.float32),
        table=pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(),
        micrographs=[(str(pf.relative), pf.micrograph) for pf in pick_files],
        diameter_px=float(diameter),
        failures=failures,
        notes=notes,
    )
