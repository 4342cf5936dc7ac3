"""Find the per-micrograph coordinate files of a picks folder.

``cryosegnet pick`` writes one STAR file per micrograph, either flat (``<stem>.star``) or in
RELION's layout (``<micrograph's relative folder>/<stem>_autopick.star``), plus index files at
the top (``autopick.star``, ``particles.star``). This module finds the per-micrograph files
in either layout, recursively, and the micrograph each one belongs to.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cryosegnet.errors import CoordinateFileError
from cryosegnet.io.coordinates import COORDINATE_SUFFIXES, read_coordinates, read_index_star
from cryosegnet.io.layout import INDEX_STAR

#: What pickers append to the micrograph stem in a per-micrograph file name (RELION: autopick).
STEM_SUFFIXES = ("_autopick", "")
_HEAD_CHARS = 65536


@dataclass(frozen=True)
class PickFile:
    """One micrograph's coordinate file inside a picks folder.

    Attributes
    ----------
    path : pathlib.Path
        The coordinate file.
    relative : pathlib.Path
        Its path below the picks folder (what a re-thresholded copy mirrors).
    micrograph : str
        The micrograph's name: as the folder's ``autopick.star`` gives it, else the file's
        relative folder and stem with ``.mrc`` (``Movies/a_autopick.star`` -> ``Movies/a.mrc``).
    stem : str
        The micrograph's file stem (``a``), for pairing with micrograph files.
    """

    path: Path
    relative: Path
    micrograph: str
    stem: str


def pick_stem(path: str | os.PathLike) -> str:
    """Micrograph stem of a per-micrograph coordinate file (``a_autopick.star`` -> ``a``)."""
    stem = Path(path).stem
    for suffix in STEM_SUFFIXES:
        if suffix and stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _head(path: Path) -> str:
    with open(path, errors="replace") as handle:
        return handle.read(_HEAD_CHARS)


def is_per_micrograph_star(path: Path) -> bool:
    """A STAR file with coordinates of one micrograph (not an index or a combined file)."""
    try:
        head = _head(path)
    except OSError:
        return False
    return (
        "_rlnCoordinateX" in head
        and "_rlnMicrographName" not in head
        and "_rlnMicrographCoordinates" not in head
    )


def _index_names(picks_dir: Path) -> dict[Path, str]:
    """{resolved coordinate file: micrograph name} from the folder's ``autopick.star``.

    The index's coordinate paths are relative to where ``pick`` ran (a RELION project folder);
    when the picks folder has been moved, the longest tail of the path that exists below the
    picks folder is used.
    """
    index = picks_dir / INDEX_STAR
    if not index.is_file():
        return {}
    try:
        entries = read_index_star(index)
    except Exception:  # an unreadable index is no reason to refuse the picks themselves
        return {}
    names: dict[Path, str] = {}
    for mic, coords in entries:
        parts = Path(coords).parts
        options = [Path(coords)] + [picks_dir.joinpath(*parts[i:]) for i in range(len(parts))]
        found = next((o for o in options if o.is_file()), None)
        if found is not None:
            names.setdefault(found.resolve(), mic)
    return names


def find_pick_files(picks_dir: str | os.PathLike) -> list[PickFile]:
    """Every per-micrograph coordinate STAR file below ``picks_dir``, sorted by relative path.

    Index files (``autopick.star``), combined files (``particles.star``) and hidden files
    (half-written temporary files) are left out.

    Parameters
    ----------
    picks_dir : str or os.PathLike
        A ``cryosegnet pick`` output folder, or any folder of RELION coordinate STAR files.

    Returns
    -------
    list of PickFile

    Raises
    ------
    CoordinateFileError
        If ``picks_dir`` is not a folder or holds no per-micrograph STAR file.
    """
    root = Path(picks_dir)
    if not root.is_dir():
        raise CoordinateFileError(root, "no such folder")
    names = _index_names(root)
    found = []
    for path in sorted(root.rglob("*.star")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if not is_per_micrograph_star(path):
            continue
        stem = pick_stem(path)
        micrograph = names.get(path.resolve())
        if micrograph is None:
            micrograph = (
                str(relative.parent / f"{stem}.mrc") if relative.parent.parts else (f"{stem}.mrc")
            )
        found.append(PickFile(path=path, relative=relative, micrograph=micrograph, stem=stem))
    if not found:
        raise CoordinateFileError(
            root,
            "holds no per-micrograph coordinate STAR files (<stem>.star or <stem>_autopick.star)",
        )
    return found


def find_picks_file(micrograph: str | os.PathLike, picks: str | os.PathLike) -> Path:
    """The coordinate file for ``micrograph`` in ``picks`` (a file, returned as is, or a folder).

    In a folder, looks recursively for ``<stem>.star`` or ``<stem>_autopick.star`` (then the
    other coordinate formats, ``<stem>.csv``, ``.box``, ...). Where several folders hold one,
    the one whose relative folder matches the end of the micrograph's folder wins.

    Parameters
    ----------
    micrograph : str or os.PathLike
        The micrograph's path (only its name and folders are used).
    picks : str or os.PathLike
        A coordinate file or a folder of them.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    CoordinateFileError
        If nothing matches, or two equally good files do.
    """
    picks = Path(picks)
    if picks.is_file():
        return picks
    if not picks.is_dir():
        raise CoordinateFileError(picks, "no such file or folder")
    stem = Path(micrograph).stem
    mic_parents = Path(micrograph).parent.parts

    def agreement(path: Path) -> int:
        """How many of the file's folders match the micrograph's last folders (-1: not all)."""
        folders = path.relative_to(picks).parent.parts
        n = 0
        while n < len(folders) and n < len(mic_parents) and folders[-1 - n] == mic_parents[-1 - n]:
            n += 1
        return n if n == len(folders) else -1

    for suffix in (".star", *[s for s in COORDINATE_SUFFIXES if s != ".star"]):
        for name_suffix in STEM_SUFFIXES:
            matches = [
                p
                for p in sorted(picks.rglob(glob.escape(f"{stem}{name_suffix}{suffix}")))
                if p.is_file() and not p.name.startswith(".")
            ]
            if suffix == ".star":
                matches = [p for p in matches if is_per_micrograph_star(p)]
            if not matches:
                continue
            if len(matches) == 1:
                return matches[0]

            scores = [agreement(p) for p in matches]
            best = max(scores)
            if best >= 0 and scores.count(best) == 1:
                return matches[scores.index(best)]
            raise CoordinateFileError(
                picks,
                f"several coordinate files for {stem}: "
                + ", ".join(str(p) for p in matches[:4])
                + "; give the file itself",
            )
    raise CoordinateFileError(
        picks, f"no coordinate file for micrograph {stem} ({stem}.star or {stem}_autopick.star)"
    )


def read_picks(pick_file: PickFile | str | os.PathLike) -> pd.DataFrame:
    """Read a :class:`PickFile` (or any coordinate file) into a picks table."""
    path = pick_file.path if isinstance(pick_file, PickFile) else Path(pick_file)
    return read_coordinates(path)
