"""Particle coordinate files: RELION/CryoSPARC STAR, CryoPPP CSV, EMAN box, Topaz tsv, crYOLO cbox.

Every reader returns the same table, a :class:`pandas.DataFrame` with columns
``x, y, score, diameter`` (and ``micrograph`` when one file holds several micrographs).
Coordinates are particle centres in pixels of the micrograph as read: x = column, y = row.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryosegnet.io.atomic import atomic_path, atomic_write
from cryosegnet.io.errors import CoordinateFileError
from cryosegnet.io.micrographs import MICROGRAPH_SUFFIXES

PICK_COLUMNS = ["x", "y", "score", "diameter"]
COORDINATE_SUFFIXES = (".star", ".csv", ".box", ".txt", ".tsv", ".cbox")


def empty_picks() -> pd.DataFrame:
    """A picks table with no rows but the right columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in PICK_COLUMNS})


def make_picks(x, y, score=None, diameter=None) -> pd.DataFrame:
    """Build a picks table; ``score`` defaults to 1 and ``diameter`` to NaN (unknown)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    n = len(x)
    score = np.ones(n) if score is None else np.broadcast_to(np.asarray(score, float), (n,))
    diameter = (
        np.full(n, np.nan)
        if diameter is None
        else np.broadcast_to(np.asarray(diameter, float), (n,))
    )
    return pd.DataFrame({"x": x, "y": y, "score": score, "diameter": diameter})


# --------------------------------------------------------------------------- writers


def write_coordinate_star(path: str | os.PathLike, picks: pd.DataFrame) -> None:
    """RELION coordinate STAR for one micrograph (what RELION's autopick writes)."""
    table = pd.DataFrame(
        {
            "rlnCoordinateX": picks["x"].to_numpy(float).round(2),
            "rlnCoordinateY": picks["y"].to_numpy(float).round(2),
            "rlnAutopickFigureOfMerit": picks["score"].to_numpy(float).round(5),
            "rlnClassNumber": np.zeros(len(picks), dtype=int),
        }
    )
    _write_star(path, {"": table})


def write_index_star(path: str | os.PathLike, entries: list[tuple[str, str]]) -> None:
    """RELION 4/5 coordinate list: one row per micrograph naming its coordinate file."""
    table = pd.DataFrame(
        {
            "rlnMicrographName": [m for m, _ in entries],
            "rlnMicrographCoordinates": [c for _, c in entries],
        }
    )
    _write_star(path, {"coordinate_files": table})


def write_combined_star(
    path: str | os.PathLike, picks_by_micrograph: dict[str, pd.DataFrame]
) -> None:
    """One STAR with every particle and its ``rlnMicrographName`` (CryoSPARC 'Import Particles')."""
    frames = []
    for name, picks in picks_by_micrograph.items():
        frames.append(
            pd.DataFrame(
                {
                    "rlnMicrographName": name,
                    "rlnCoordinateX": picks["x"].to_numpy(float).round(2),
                    "rlnCoordinateY": picks["y"].to_numpy(float).round(2),
                    "rlnAutopickFigureOfMerit": picks["score"].to_numpy(float).round(5),
                }
            )
        )
    columns = ["rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnAutopickFigureOfMerit"]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    _write_star(path, {"particles": table})


def write_cryoppp_csv(
    path: str | os.PathLike, picks: pd.DataFrame, diameter: float | None = None
) -> None:
    """CryoPPP ground-truth style CSV: ``X-Coordinate,Y-Coordinate,Diameter``."""
    diam = picks["diameter"].to_numpy(float) if diameter is None else np.full(len(picks), diameter)
    table = pd.DataFrame(
        {
            "X-Coordinate": picks["x"].to_numpy(float).round().astype(int),
            "Y-Coordinate": picks["y"].to_numpy(float).round().astype(int),
            "Diameter": np.nan_to_num(diam, nan=0.0).round().astype(int),
        }
    )
    with atomic_write(path, newline="") as handle:
        table.to_csv(handle, index=False)


def write_box(path: str | os.PathLike, picks: pd.DataFrame, box_size: float) -> None:
    """EMAN ``.box``: corner x, corner y, width, height (corner = centre - box/2, as crYOLO)."""
    size = round(box_size)  # the size written; the corner must use it too, or centres drift
    half = size / 2.0
    with atomic_write(path) as handle:
        for x, y in zip(picks["x"], picks["y"]):
            handle.write(f"{x - half:.0f}\t{y - half:.0f}\t{size}\t{size}\n")


def write_topaz_tsv(path: str | os.PathLike, picks_by_micrograph: dict[str, pd.DataFrame]) -> None:
    """Topaz particle list: ``image_name, x_coord, y_coord, score`` (tab separated)."""
    with atomic_write(path) as handle:
        handle.write("image_name\tx_coord\ty_coord\tscore\n")
        for name, picks in picks_by_micrograph.items():
            for x, y, s in zip(picks["x"], picks["y"], picks["score"]):
                handle.write(f"{name}\t{x:.0f}\t{y:.0f}\t{s:.5f}\n")


def _write_star(path: str | os.PathLike, blocks: dict[str, pd.DataFrame]) -> None:
    with atomic_path(path) as tmp:
        starfile.write(blocks, tmp, overwrite=True)


# --------------------------------------------------------------------------- readers


def read_coordinates(path: str | os.PathLike, diameter: float | None = None) -> pd.DataFrame:
    """Read any supported coordinate file into a picks table.

    ``diameter`` fills in the particle diameter for formats that do not carry one.
    """
    path = Path(path)
    if not path.is_file():
        raise CoordinateFileError(path, "no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".star":
            picks = _read_star(path)
        elif suffix == ".cbox":
            picks = _read_cbox(path)
        elif suffix == ".csv":
            picks = _read_csv(path)
        elif suffix == ".box":
            picks = _read_box(path)
        elif suffix in (".txt", ".tsv"):
            picks = _read_tsv(path)
        else:
            raise CoordinateFileError(path, f"unknown coordinate format '{suffix}'")
    except CoordinateFileError:
        raise
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CoordinateFileError(path, f"cannot parse ({reason})") from exc
    if diameter is not None:
        picks["diameter"] = picks["diameter"].fillna(diameter)
    return picks


def _column(table: pd.DataFrame, *names: str) -> str | None:
    lowered = {c.lower().lstrip("_"): c for c in table.columns}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _read_star(path: Path) -> pd.DataFrame:
    blocks = starfile.read(path, always_dict=True)
    table = None
    for block in blocks.values():
        if isinstance(block, pd.DataFrame) and _column(block, "rlnCoordinateX") is not None:
            table = block
            break
    if table is None:
        if any(isinstance(b, pd.DataFrame) and len(b) == 0 for b in blocks.values()) or not blocks:
            return empty_picks()
        raise CoordinateFileError(path, "no rlnCoordinateX/rlnCoordinateY table")
    xcol, ycol = _column(table, "rlnCoordinateX"), _column(table, "rlnCoordinateY")
    score_col = _column(table, "rlnAutopickFigureOfMerit", "rlnParticleScore")
    diam_col = _column(table, "rlnDiameter", "rlnParticleDiameter")
    picks = make_picks(
        table[xcol],
        table[ycol],
        table[score_col] if score_col else None,
        table[diam_col] if diam_col else None,
    )
    mic_col = _column(table, "rlnMicrographName")
    if mic_col is not None:
        picks["micrograph"] = table[mic_col].astype(str).map(_micrograph_name).to_numpy()
    return picks


def _micrograph_name(name: str) -> str:
    """Micrograph name from a path or bare name: folders and an image extension go, other dots
    stay (Topaz writes ``May08_03.13.02.bin`` without extension; ``Path.stem`` would cut it)."""
    base = Path(str(name).strip()).name
    suffix = Path(base).suffix.lower()
    return base[: -len(suffix)] if suffix in MICROGRAPH_SUFFIXES else base


def _read_cbox(path: Path) -> pd.DataFrame:
    """crYOLO ``.cbox``: a STAR ``data_cryolo`` table since crYOLO 1.8, whitespace columns
    ``x y w h confidence`` (corner coordinates, like EMAN box) before that."""
    head = path.read_text(errors="replace")[:4096]
    if "_CoordinateX" not in head and "data_" not in head:
        return _read_box(path)
    blocks = starfile.read(path, always_dict=True)
    table = blocks.get("cryolo")
    if table is None:
        table = next((b for b in blocks.values() if isinstance(b, pd.DataFrame)), None)
    if table is None or len(table) == 0:
        return empty_picks()
    xcol, ycol = _column(table, "CoordinateX"), _column(table, "CoordinateY")
    wcol, hcol = _column(table, "Width"), _column(table, "Height")
    if None in (xcol, ycol, wcol, hcol):
        raise CoordinateFileError(path, "no _CoordinateX/_CoordinateY/_Width/_Height columns")
    width = pd.to_numeric(table[wcol], errors="coerce").to_numpy(float)
    height = pd.to_numeric(table[hcol], errors="coerce").to_numpy(float)
    est_w = _column(table, "EstWidth")
    diameter = width
    if est_w:
        estimated = pd.to_numeric(table[est_w], errors="coerce").to_numpy(float)
        diameter = np.where(np.isfinite(estimated) & (estimated > 0), estimated, width)
    score_col = _column(table, "Confidence")
    return make_picks(
        pd.to_numeric(table[xcol], errors="coerce").to_numpy(float) + width / 2,
        pd.to_numeric(table[ycol], errors="coerce").to_numpy(float) + height / 2,
        pd.to_numeric(table[score_col], errors="coerce") if score_col else None,
        diameter,
    )


def _read_csv(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path)
    xcol = _column(table, "X-Coordinate", "x", "x_coord")
    ycol = _column(table, "Y-Coordinate", "y", "y_coord")
    if xcol is None or ycol is None:
        raise CoordinateFileError(path, "no X-Coordinate/Y-Coordinate columns")
    diam_col = _column(table, "Diameter", "diameter")
    score_col = _column(table, "score", "Confidence")
    return make_picks(
        table[xcol],
        table[ycol],
        table[score_col] if score_col else None,
        table[diam_col] if diam_col else None,
    )


def _read_box(path: Path) -> pd.DataFrame:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return empty_picks()
    values = np.array([[float(v) for v in row[:4]] for row in rows])
    if values.shape[1] < 4:
        raise CoordinateFileError(path, "EMAN box lines need x y width height")
    score = np.array([float(row[4]) for row in rows]) if all(len(r) > 4 for r in rows) else None
    return make_picks(
        values[:, 0] + values[:, 2] / 2, values[:, 1] + values[:, 3] / 2, score, values[:, 2]
    )


def _read_tsv(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t")
    xcol, ycol = _column(table, "x_coord", "x"), _column(table, "y_coord", "y")
    if xcol is None or ycol is None:
        raise CoordinateFileError(path, "no x_coord/y_coord columns (Topaz format)")
    score_col = _column(table, "score")
    picks = make_picks(table[xcol], table[ycol], table[score_col] if score_col else None)
    name_col = _column(table, "image_name")
    if name_col is not None:
        picks["micrograph"] = table[name_col].astype(str).map(_micrograph_name).to_numpy()
    return picks
