"""Write (and read back) a classification folder and selected picks.

A classification folder holds ``class_averages.mrcs`` and ``class_averages.png``,
``classes.csv`` (size and quality per class), ``particles.csv`` (every particle's class,
correlation, rotation and shift), ``classification.json`` (settings and what was read), and
the picks in ``cryosegnet pick``'s layout: a STAR per micrograph at the same relative path as
in the picks folder, with ``autopick.star`` (micrograph -> file) and ``particles.star`` (every
particle with its micrograph) at the top, so RELION and CryoSPARC import them unchanged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryosegnet.errors import CryoSegNetError
from cryosegnet.io.atomic import atomic_path, atomic_write
from cryosegnet.io.coordinates import MANIFEST_PREFIX, write_index_star, write_star
from cryosegnet.io.layout import COMBINED_STAR, INDEX_STAR

AVERAGES_MRCS = "class_averages.mrcs"
AVERAGES_PNG = "class_averages.png"
CLASSES_CSV = "classes.csv"
PARTICLES_CSV = "particles.csv"
RECORD_JSON = "classification.json"
SELECTION_JSON = "selection.json"


def write_json(path: Path, data: dict) -> None:
    """Pretty JSON, atomically."""
    with atomic_write(path, encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")


def write_averages_mrcs(path: Path, averages: np.ndarray, pixel_size: float) -> None:
    """Class averages as an MRC stack (``.mrcs``), written atomically.

    Parameters
    ----------
    path : pathlib.Path
        Destination.
    averages : numpy.ndarray
        ``(K, B, B)`` images.
    pixel_size : float
        Size of a working pixel in micrograph pixels (recorded as the voxel size; in Å only
        if the micrographs' pixels are 1 Å).
    """
    import mrcfile

    with atomic_path(path) as temp:
        with mrcfile.new(temp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(averages, dtype=np.float32))
            mrc.header.ispg = 0  # an image stack, not a volume
            mrc.voxel_size = float(pixel_size)


def write_averages_png(
    path: Path, averages: np.ndarray, quality: pd.DataFrame, selected: list[int]
) -> None:
    """A grid of the averages, each titled with its number and size; selected ones framed.

    Parameters
    ----------
    path : pathlib.Path
        Destination PNG.
    averages : numpy.ndarray
        ``(K, B, B)`` images.
    quality : pandas.DataFrame
        :func:`cryosegnet.classification.quality.class_quality`'s table (for the sizes).
    selected : list of int
        Class numbers (1-based) to frame in green.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(averages)
    columns = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.75 * rows), dpi=100)
    axes = np.atleast_1d(axes).reshape(-1)
    for ax in axes:
        ax.set_axis_off()
    for i, average in enumerate(averages):
        ax = axes[i]
        ax.imshow(average, cmap="gray")
        number = i + 1
        ax.set_title(f"#{number}  n={int(quality['size'].iloc[i])}", fontsize=8)
        if number in selected:
            ax.set_axis_on()
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("limegreen")
                spine.set_linewidth(3)
    figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, format="png")
    plt.close(figure)


def particle_table(stack_table: pd.DataFrame, result) -> pd.DataFrame:
    """Per-particle table: pick, class (1-based), correlation, psi, shift, re-centred centre.

    The shift is where the particle's centre sits relative to the box centre, converted to
    micrograph pixels; ``recentred_x = box_x + shift_x``.

    Parameters
    ----------
    stack_table : pandas.DataFrame
        :attr:`cryosegnet.classification.extract.ParticleStack.table`.
    result : ClassificationResult
        The classification of those boxes.

    Returns
    -------
    pandas.DataFrame
        ``stack_table`` plus ``class``, ``correlation``, ``psi``, ``shift_x``, ``shift_y``,
        ``recentred_x``, ``recentred_y``, ``evidence`` and ``certainty``
        (:class:`.classify2d.ClassificationResult`).
    """
    table = stack_table.copy()
    table["class"] = result.classes.astype(int) + 1
    table["correlation"] = result.scores.astype(float)
    table["evidence"] = result.evidence.astype(float)
    table["certainty"] = result.certainty.astype(float)
    table["psi"] = result.angles.astype(float)
    table["shift_x"] = result.shifts[:, 0] * table["scale_x"].to_numpy(float)
    table["shift_y"] = result.shifts[:, 1] * table["scale_y"].to_numpy(float)
    table["recentred_x"] = table["box_x"] + table["shift_x"]
    table["recentred_y"] = table["box_y"] + table["shift_y"]
    return table


def write_pick_folder(
    outdir: Path,
    particles: pd.DataFrame,
    micrographs: list[tuple[str, str]],
    recentre: bool,
    manifest: dict,
) -> list[Path]:
    """Per-micrograph STAR files in the picks folder's layout, plus the two index files.

    Parameters
    ----------
    outdir : pathlib.Path
        Folder to write into.
    particles : pandas.DataFrame
        :func:`particle_table` rows to write.
    micrographs : list of tuple of str
        ``(relative STAR path, micrograph name)`` of every micrograph, so one without
        particles still gets its (empty) file.
    recentre : bool
        Write the re-centred coordinates instead of the picks'.
    manifest : dict
        Recorded as a comment line in each per-micrograph STAR.

    Returns
    -------
    list of pathlib.Path
        Files written, index files last.
    """
    xcol, ycol = ("recentred_x", "recentred_y") if recentre else ("x", "y")
    groups = dict(tuple(particles.groupby("source", sort=False))) if len(particles) else {}
    written: list[Path] = []
    entries: list[tuple[str, str]] = []
    combined = []
    comments = [MANIFEST_PREFIX + json.dumps(manifest, sort_keys=True)]
    for source, name in micrographs:
        rows = groups.get(source, particles.iloc[:0])
        table = pd.DataFrame(
            {
                "rlnCoordinateX": rows[xcol].to_numpy(float).round(2),
                "rlnCoordinateY": rows[ycol].to_numpy(float).round(2),
                "rlnAutopickFigureOfMerit": rows["score"].to_numpy(float).round(5),
                "rlnClassNumber": rows["class"].to_numpy(int),
                "rlnAnglePsi": rows["psi"].to_numpy(float).round(2),
            }
        )
        path = outdir / source
        path.parent.mkdir(parents=True, exist_ok=True)
        write_star(path, {"": table}, comments=comments)
        written.append(path)
        entries.append((name, str(path)))
        combined.append(table.assign(rlnMicrographName=name))
    columns = [
        "rlnMicrographName",
        "rlnCoordinateX",
        "rlnCoordinateY",
        "rlnAutopickFigureOfMerit",
        "rlnClassNumber",
        "rlnAnglePsi",
    ]
    everything = pd.concat(combined, ignore_index=True)[columns] if combined else None
    write_index_star(outdir / INDEX_STAR, entries)
    write_star(
        outdir / COMBINED_STAR,
        {"particles": everything if everything is not None else pd.DataFrame(columns=columns)},
    )
    return written + [outdir / INDEX_STAR, outdir / COMBINED_STAR]


def read_classification(folder: str | os.PathLike) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """(record, classes table, particles table) of a classification folder.

    Parameters
    ----------
    folder : str or os.PathLike
        A folder written by ``cryosegnet classify``.

    Returns
    -------
    tuple of (dict, pandas.DataFrame, pandas.DataFrame)
        ``classification.json``, ``classes.csv`` and ``particles.csv``.

    Raises
    ------
    CryoSegNetError
        If the folder is not a complete classification folder.
    """
    folder = Path(folder)
    paths = [folder / RECORD_JSON, folder / CLASSES_CSV, folder / PARTICLES_CSV]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise CryoSegNetError(
            f"{folder}: not a classification folder (no {', '.join(missing)}); "
            "run `cryosegnet classify` first"
        )
    try:
        record = json.loads(paths[0].read_text(encoding="utf-8"))
        classes = pd.read_csv(paths[1])
        particles = pd.read_csv(paths[2], dtype={"micrograph": str, "source": str})
    except (OSError, ValueError) as exc:
        raise CryoSegNetError(f"{folder}: unreadable classification ({exc})") from exc
    return record, classes, particles
