"""Load coordinate files or folders and pair them with micrographs by name.

Tools name their outputs differently (``mic_autopick.star``, ``CBOX/mic.cbox``, one Topaz tsv
for a whole dataset), so pairing works on a normalised micrograph name: the file stem, with a
known picker suffix removed. ``.bin`` and other dots inside a name are part of it.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cryosegnet.errors import CoordinateFileError
from cryosegnet.io.atomic import is_temp_file
from cryosegnet.io.coordinates import COORDINATE_SUFFIXES, read_coordinates, read_index_star
from cryosegnet.io.micrographs import MICROGRAPH_SUFFIXES

# Suffixes pickers append to the micrograph name in their output files.
PICKER_SUFFIXES = (
    "autopick",
    "manualpick",
    "picks",
    "pick",
    "picked",
    "particles",
    "coords",
    "coordinates",
    "cryolo",
    "topaz",
    "cryosegnet",
    "labels",
    "label",
    "gt",
    "groundtruth",
    "ground_truth",
)
_SUFFIX_RE = re.compile(
    r"[_\-.](" + "|".join(sorted(PICKER_SUFFIXES, key=len, reverse=True)) + r")$", re.I
)


def micrograph_key(name: str) -> str:
    """Normalised micrograph name used for pairing (``a/mic_01_autopick.star`` -> ``mic_01``)."""
    base = Path(str(name)).name
    suffix = Path(base).suffix.lower()
    if suffix in COORDINATE_SUFFIXES or suffix in MICROGRAPH_SUFFIXES:
        base = base[: -len(suffix)]
    previous = None
    while previous != base:
        previous = base
        base = _SUFFIX_RE.sub("", base)
    return base


# Per-micrograph files that pickers write into subfolders mirroring the micrographs' folders
# (RELION's AutoPick jobs and cryosegnet: <folder>/<stem>_autopick.star) are found recursively.
RECURSIVE_SUFFIX = "_autopick"


def _visible(path: Path, root: Path) -> bool:
    """Not a hidden file or folder (temp files of an interrupted write are hidden)."""
    return not is_temp_file(path) and not any(
        part.startswith(".") for part in path.relative_to(root).parts
    )


def coordinate_files(source: str | os.PathLike) -> list[Path]:
    """A coordinate file, a folder of them or a glob -> sorted file list.

    In a folder: its coordinate files, plus ``*_autopick.*`` files in its subfolders (the
    layout RELION and ``cryosegnet pick`` write); hidden and temp files are ignored.
    """
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        top = [p for p in path.iterdir() if p.is_file() and _visible(p, path)]
        nested = [
            p
            for p in path.rglob(f"*{RECURSIVE_SUFFIX}.*")
            if p.parent != path
            and p.is_file()
            and _visible(p, path)
            and p.stem.lower().endswith(RECURSIVE_SUFFIX)
        ]
        files = sorted(p for p in top + nested if p.suffix.lower() in COORDINATE_SUFFIXES)
        if not files:
            raise CoordinateFileError(
                path, "folder holds no coordinate files (.star .csv .box .cbox .tsv .txt)"
            )
        return files
    files = sorted(
        Path(p) for p in glob.glob(str(source)) if Path(p).is_file() and not is_temp_file(p)
    )
    if not files:
        raise CoordinateFileError(path, "no such file or folder")
    return files


# When one micrograph has coordinates in several files (a picker's output folder often holds
# STAR, CSV and box copies plus a combined STAR), per-micrograph files win over multi-micrograph
# ones, then formats that keep the score win over those that drop it.
_FORMAT_RANK = {".star": 0, ".cbox": 1, ".tsv": 2, ".txt": 2, ".csv": 3, ".box": 4}


@dataclass
class _Candidate:
    key: str
    table: pd.DataFrame
    path: Path
    multi: bool

    @property
    def rank(self) -> tuple[int, int]:
        return int(self.multi), _FORMAT_RANK.get(self.path.suffix.lower(), 9)


def _is_index_star(path: Path) -> bool:
    """RELION coordinate index (``autopick.star``): micrograph -> coordinate file, no picks."""
    if path.suffix.lower() != ".star":
        return False
    head = path.read_text(errors="replace")[:65536]
    return "_rlnMicrographCoordinates" in head and "_rlnCoordinateX" not in head


def _index_entries(path: Path) -> list[tuple[str, Path | None]]:
    """(micrograph name, coordinate file or None if not found) for each row of an index STAR."""
    entries = []
    for mic, coords in read_index_star(path):
        # RELION paths are relative to the project folder (usually the working directory);
        # also try the index's own folder, where a copied output folder keeps them.
        options = [Path(coords), path.parent / coords, path.parent / Path(coords).name]
        entries.append((mic, next((o for o in options if o.is_file()), None)))
    return entries


def load_coordinate_sets(
    source: str | os.PathLike | list,
    diameter: float | None = None,
    notes: list[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Read every coordinate file of ``source`` into {micrograph key: picks table}.

    A file with a micrograph column (combined STAR, Topaz tsv) is split by that column; a RELION
    index STAR is followed to the files it lists; other files stand for the micrograph their
    name gives. Where several files cover one micrograph, a per-micrograph file beats a
    combined one and a scored format beats an unscored one; two equally good files for one
    micrograph is an error, because silently choosing one would change the score. In a folder,
    files that do not parse as coordinates are skipped; anything skipped or shadowed is
    described in ``notes``.
    """
    notes = notes if notes is not None else []
    sources = source if isinstance(source, list | tuple) else [source]
    candidates: list[_Candidate] = []

    def add_file(path: Path, key: str | None, multi: bool, lenient: bool) -> None:
        try:
            picks = read_coordinates(path, diameter=diameter)
        except CoordinateFileError as exc:
            if not lenient:
                raise
            notes.append(f"skipped {path}: {exc.problem}")
            return
        if "micrograph" in picks.columns:
            for name, group in picks.groupby("micrograph", sort=True):
                table = group.drop(columns="micrograph").reset_index(drop=True)
                candidates.append(_Candidate(micrograph_key(str(name)), table, path, True))
        else:
            candidates.append(_Candidate(key or micrograph_key(path.name), picks, path, multi))

    for item in sources:
        folder = Path(item).is_dir()
        for path in coordinate_files(item):
            if _is_index_star(path):
                for mic, coords in _index_entries(path):
                    if coords is None:
                        notes.append(f"{path}: coordinate file for {mic} not found")
                    else:
                        add_file(coords, micrograph_key(mic), True, lenient=folder)
            else:
                add_file(path, None, False, lenient=folder)

    tables: dict[str, pd.DataFrame] = {}
    by_key: dict[str, list[_Candidate]] = {}
    for candidate in candidates:
        by_key.setdefault(candidate.key, []).append(candidate)
    shadowed: dict[Path, int] = {}
    borrowed: list[Path] = []
    for key, group in by_key.items():
        group = sorted(group, key=lambda c: c.rank)
        best = group[0]
        for other in group[1:]:
            if other.rank == best.rank and other.path.resolve() != best.path.resolve():
                raise CoordinateFileError(
                    other.path, f"micrograph '{key}' already has coordinates from {best.path}"
                )
            if other.path.resolve() != best.path.resolve() and not _same_centres(
                other.table, best.table
            ):  # copies of the same picks (a pick folder's CSV, box, particles.star): no news
                shadowed[other.path] = shadowed.get(other.path, 0) + 1
        tables[key] = _with_diameters(best, group[1:], borrowed)
    if borrowed:
        notes.append(
            f"particle diameters for {len(borrowed)} micrograph(s) taken from files with the same "
            f"particles, e.g. {borrowed[0]} (the preferred file has none)"
        )
        for path in borrowed:
            shadowed.pop(path, None)
    if shadowed:
        example = next(iter(shadowed))
        notes.append(
            f"{len(shadowed)} coordinate file(s) repeat micrographs already read from preferred "
            f"files (per-micrograph before combined, STAR before CSV/box) and were not used, "
            f"e.g. {example}"
        )
    return tables


def _same_centres(a: pd.DataFrame, b: pd.DataFrame, tolerance: float = 0.01) -> bool:
    """The two tables list the same particle centres (in any order, to ``tolerance`` px)."""
    if len(a) != len(b):
        return False
    if not len(a):
        return True
    first = a[["x", "y"]].to_numpy(float)
    second = b[["x", "y"]].to_numpy(float)
    first = first[np.lexsort((first[:, 1].round(2), first[:, 0].round(2)))]
    second = second[np.lexsort((second[:, 1].round(2), second[:, 0].round(2)))]
    return bool(np.allclose(first, second, atol=tolerance))


def _with_diameters(
    best: _Candidate, others: list[_Candidate], borrowed: list[Path]
) -> pd.DataFrame:
    """The preferred table, with diameters taken over from another file when it has none.

    When the preferred table carries no particle diameter (a STAR of centres) and another file
    for the same micrograph has the same particles with diameters (the CryoPPP CSV beside it),
    those diameters are taken over.
    """
    table = best.table
    if len(table) == 0 or np.isfinite(table["diameter"].to_numpy(float)).any():
        return table
    for other in others:
        theirs = other.table
        if len(theirs) != len(table) or not np.isfinite(theirs["diameter"].to_numpy(float)).all():
            continue
        xs, their_xs = np.sort(table["x"].to_numpy(float)), np.sort(theirs["x"].to_numpy(float))
        if np.allclose(xs, their_xs, atol=1.0):
            table = table.copy()
            order = np.lexsort((table["y"].to_numpy(float), table["x"].to_numpy(float)))
            their_order = np.lexsort((theirs["y"].to_numpy(float), theirs["x"].to_numpy(float)))
            diameters = np.empty(len(table))
            diameters[order] = theirs["diameter"].to_numpy(float)[their_order]
            table["diameter"] = diameters
            borrowed.append(other.path)
            return table
    return table


def pair_micrographs(
    image_paths: list[Path], label_sets: dict[str, pd.DataFrame]
) -> tuple[list[tuple[Path, pd.DataFrame]], list[str], list[str]]:
    """Match micrographs to label tables: (pairs, images without labels, labels without images)."""
    by_key = {micrograph_key(p.name): p for p in image_paths}
    pairs = [(by_key[k], label_sets[k]) for k in sorted(by_key) if k in label_sets]
    images_only = sorted(str(by_key[k]) for k in by_key if k not in label_sets)
    labels_only = sorted(k for k in label_sets if k not in by_key)
    return pairs, images_only, labels_only


def drop_duplicate_rows(tables: dict[str, pd.DataFrame]) -> tuple[int, list[str]]:
    """Drop exact repeats of a row (same centre, same values) from each table, in place.

    A labels file with every particle listed twice (two exports concatenated) would otherwise
    count each particle twice: recall halves, and one pick can match only one copy.

    Parameters
    ----------
    tables : dict of str to pandas.DataFrame
        Coordinate tables by micrograph (as :func:`load_coordinate_sets` returns them).

    Returns
    -------
    tuple of (int, list of str)
        The number of rows dropped, and the micrographs they were dropped from.
    """
    dropped, where = 0, []
    for key, table in tables.items():
        repeats = table.duplicated()
        if repeats.any():
            tables[key] = table[~repeats].reset_index(drop=True)
            dropped += int(repeats.sum())
            where.append(key)
    return dropped, sorted(where)


def pick_threshold(sources: list) -> float | None:
    """The score threshold cryosegnet picked ``sources`` (files or folders) with, if known.

    Known when every per-micrograph STAR among them records it in its manifest (the highest,
    if they differ); None otherwise (picks of another tool, or no such file).

    The PR curve of picks thresholded when they were made stops at that threshold; with a
    threshold of 0 (every candidate kept) it stops because the picker found nothing more.
    """
    from cryosegnet.io.coordinates import star_header

    stars: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            stars += sorted(path.rglob("*_autopick.star"))
        elif path.name.endswith("_autopick.star"):
            stars.append(path)
    thresholds = []
    for star in stars:
        _, manifest = star_header(star)
        value = ((manifest or {}).get("options") or {}).get("threshold")
        if not isinstance(value, int | float):
            return None
        thresholds.append(float(value))
    return max(thresholds) if thresholds else None
