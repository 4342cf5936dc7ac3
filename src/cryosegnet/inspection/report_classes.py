"""The 2D classes of ``cryosegnet report --classes``: a classification folder, ready for the page.

``cryosegnet classify`` writes one row per particle in ``particles.csv`` with the pick's
micrograph, its coordinate file and the pick's own ``x``/``y``; the report finds each of its
picks there (same coordinate file, else same micrograph, within half a pixel of the pick or of
its re-centred position, so the re-centred picks of ``classify --recentre`` and ``select`` are
found too), so the page can
highlight the picks of the classes one selects and count them as ``cryosegnet select`` would.
The class averages become small inline PNGs (no files next to the page).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cryosegnet.classification.outputs import AVERAGES_MRCS, read_classification
from cryosegnet.errors import CryoSegNetError
from cryosegnet.inspection.picksets import PickFile

MATCH_TOLERANCE_PX = 0.5
"""A pick and a particle are the same when their coordinates differ by less than this."""

UNCLASSIFIED = 0
"""The class number given to a pick that is not in the classification."""


@dataclass(frozen=True)
class ClassTile:
    """One class of the page's class grid.

    Attributes
    ----------
    number : int
        Class number (1-based, as in the classification's files and ``select --classes``).
    size : int
        Particles in the class.
    auto_selected : bool
        Whether ``cryosegnet select --auto`` keeps it.
    png : str
        The class average as a base64 PNG.
    """

    number: int
    size: int
    auto_selected: bool
    png: str


@dataclass(frozen=True)
class ReportClasses:
    """A classification folder as the report shows it.

    Attributes
    ----------
    folder : pathlib.Path
        The classification folder (``CLASSES`` of ``cryosegnet select CLASSES``).
    tiles : tuple of ClassTile
        Every class, by number.
    particles : pandas.DataFrame
        ``micrograph``, ``source``, ``x``, ``y``, ``recentred_x``, ``recentred_y``, ``class``,
        ``above_decoys`` of every classified particle.
    """

    folder: Path
    tiles: tuple[ClassTile, ...]
    particles: pd.DataFrame

    def classes_of(self, pick_file: PickFile, picks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The class of each pick of one micrograph, and whether it beat the noise decoys.

        Parameters
        ----------
        pick_file : PickFile
            The micrograph's coordinate file in the report's picks folder.
        picks : pandas.DataFrame
            Its picks (``x``, ``y``).

        Returns
        -------
        classes : numpy.ndarray
            ``int`` class number per pick, in the picks' order (:data:`UNCLASSIFIED` where
            none).
        above_decoys : numpy.ndarray
            ``bool`` per pick: what ``cryosegnet select --above-decoys`` keeps of its class
            (False where unclassified).
        """
        rows, index = self._particle_rows(pick_file, picks)
        found = index >= 0
        classes = np.full(len(picks), UNCLASSIFIED, dtype=int)
        above_decoys = np.zeros(len(picks), dtype=bool)
        classes[found] = rows["class"].to_numpy(int)[index[found]]
        above_decoys[found] = rows["above_decoys"].to_numpy(bool)[index[found]]
        return classes, above_decoys

    def _particle_rows(
        self, pick_file: PickFile, picks: pd.DataFrame
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """The micrograph's particles (same file, else same micrograph) and, for each pick,
        the row of its particle there (-1: none), at the pick or at its re-centred place."""
        table = self.particles
        rows = table[table["source"] == str(pick_file.relative)]
        if rows.empty:
            rows = table[table["micrograph"] == pick_file.micrograph]
        index = np.full(len(picks), -1)
        if rows.empty or not len(picks):
            return rows, index
        points = np.nan_to_num(picks[["x", "y"]].to_numpy(float), nan=-1e9)
        for place in (["x", "y"], ["recentred_x", "recentred_y"]):
            todo = np.flatnonzero(index < 0)
            if not todo.size:
                break
            tree = cKDTree(rows[place].to_numpy(float))
            distance, nearest = tree.query(points[todo], distance_upper_bound=MATCH_TOLERANCE_PX)
            hit = np.isfinite(distance)
            index[todo[hit]] = nearest[hit]
        return rows, index


def read_report_classes(folder: str | os.PathLike, tile_px: int = 96) -> ReportClasses:
    """Read a ``cryosegnet classify`` folder for the report.

    Parameters
    ----------
    folder : str or os.PathLike
        The classification folder.
    tile_px : int
        Side of each class average's picture in pixels.

    Returns
    -------
    ReportClasses

    Raises
    ------
    CryoSegNetError
        If the folder is not a complete classification folder, or its averages do not match
        its class table.
    """
    import mrcfile

    folder = Path(folder)
    _, classes, particles = read_classification(folder)
    averages_path = folder / AVERAGES_MRCS
    try:
        with mrcfile.open(averages_path, permissive=True) as mrc:
            averages = np.asarray(mrc.data, dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise CryoSegNetError(f"{averages_path}: unreadable class averages ({exc})") from exc
    if averages.ndim == 2:  # one class
        averages = averages[None]
    numbers = classes["class"].to_numpy(int)
    if averages.ndim != 3 or numbers.size and numbers.max() > len(averages):
        raise CryoSegNetError(
            f"{averages_path}: {len(averages)} averages for classes up to {numbers.max()}"
        )
    tiles = tuple(
        ClassTile(
            number=int(number),
            size=int(size),
            auto_selected=bool(auto),
            png=_png(averages[int(number) - 1], tile_px),
        )
        for number, size, auto in zip(numbers, classes["size"], classes["auto_selected"])
    )
    return ReportClasses(
        folder=folder,
        tiles=tiles,
        particles=particles[
            [
                "micrograph",
                "source",
                "x",
                "y",
                "recentred_x",
                "recentred_y",
                "class",
                "above_decoys",
            ]
        ].copy(),
    )


def _png(average: np.ndarray, side: int) -> str:
    """A class average as a base64 PNG, contrast set by its 1st and 99th percentiles."""
    low, high = np.percentile(average, [1, 99]) if average.size else (0.0, 1.0)
    scaled = (average - low) / (high - low) if high > low else np.zeros_like(average)
    picture = (np.clip(scaled, 0, 1) * 255).astype(np.uint8)
    picture = cv2.resize(picture, (side, side), interpolation=cv2.INTER_LINEAR)
    ok, encoded = cv2.imencode(".png", picture)
    if not ok:
        raise CryoSegNetError("could not encode a class average as PNG")
    return base64.b64encode(encoded.tobytes()).decode("ascii")
