"""Where a pick run's files go: the output folder, its per-micrograph files and index files.

The layout is RELION's own AutoPick layout
(``<output>/<micrograph's folder>/<stem>_autopick.star``), so RELION, CryoSPARC and the
``cryosegnet`` commands that read picks (show, threshold, classify) find them where they look.
Only the names live here; what goes into the files is :mod:`cryosegnet.picking.results`'s.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from cryosegnet.errors import CryoSegNetError
from cryosegnet.io.coordinates import star_header
from cryosegnet.io.micrographs import micrograph_stem
from cryosegnet.io.paths import what_is_at

INDEX_STAR = "autopick.star"
COMBINED_STAR = "particles.star"
OUTPUT_FORMATS = ("star", "csv", "box")
# Per-micrograph files are <stem>_autopick.<format>, as RELION's own AutoPick jobs name them:
# they can never be taken for the index files above, whatever the micrograph is called.
OUTPUT_SUFFIX = "_autopick"
# The index lock (held while the index files are rebuilt) and the run lock (held by every
# run writing into the folder; it records the run's options).
LOCK_FILE = ".cryosegnet.lock"
RUN_LOCK_FILE = ".cryosegnet.run.lock"
_RELION_JOB = re.compile(r"job\d{3}")


def relative_folder(micrograph: str | os.PathLike) -> Path:
    """Folder under the output folder for a micrograph's files, as RELION lays them out.

    RELION looks for ``<coord_dir>/<micrograph's folder>/<stem><suffix>``, with everything up
    to the first ``jobNNN/`` folder dropped (``MotionCorr/job002/Movies/a.mrc`` -> ``Movies``;
    checked against relion_preprocess 3.1.3). A relative path (or an absolute one inside the
    current folder) mirrors its folder relative to the current folder; an absolute path
    outside it, or one climbing out with ``..``, mirrors its whole absolute folder
    (``/data/s1/a.mrc`` -> ``data/s1``), which is where RELION looks for an absolute
    micrograph name and keeps equal stems apart.
    """
    path = Path(os.path.normpath(micrograph))
    if path.is_absolute() or ".." in path.parts:
        absolute = Path(os.path.abspath(path))
        try:
            folder = absolute.parent.relative_to(Path(os.path.abspath(os.getcwd())))
        except ValueError:
            folder = Path(*absolute.parent.parts[1:])  # drop the root ('/')
    else:
        folder = path.parent
    parts = folder.parts
    for i, part in enumerate(parts[1:], start=1):  # as io.relion.coordinate_file
        if _RELION_JOB.match(part):
            return Path(*parts[i + 1 :])
    return folder


def output_path(
    outdir: str | os.PathLike, micrograph: str | os.PathLike, fmt: str = "star"
) -> Path:
    """``<outdir>/<relative folder>/<stem>_autopick.<fmt>`` (see :func:`relative_folder`)."""
    stem = micrograph_stem(micrograph)
    return Path(outdir) / relative_folder(micrograph) / f"{stem}{OUTPUT_SUFFIX}.{fmt}"


def coordinate_path(outdir: Path, micrograph: Path) -> Path:
    return output_path(outdir, micrograph, "star")


def make_output_folder(outdir: str | os.PathLike) -> Path:
    """Create the output folder (and its parents) or refuse, in one line saying what is in
    the way (a file, a symbolic link to a missing target, a link loop) or why it cannot be
    written.

    Parameters
    ----------
    outdir : str or os.PathLike
        The output folder (``-o``).

    Returns
    -------
    Path
        ``outdir``, an existing writable folder.

    Raises
    ------
    CryoSegNetError
        The folder cannot be made or written.
    """
    if str(outdir).strip() == "":
        raise CryoSegNetError("output folder: empty name (give -o DIR)")
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise CryoSegNetError(
            f"{outdir}: output path is {what_is_at(outdir)}, not a folder"
        ) from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP or outdir.is_symlink():
            raise CryoSegNetError(
                f"{outdir}: output path is {what_is_at(outdir)}, not a folder"
            ) from exc
        raise CryoSegNetError(
            f"{outdir}: cannot create the output folder ({exc.strerror or exc})"
        ) from exc
    if not outdir.is_dir():
        raise CryoSegNetError(f"{outdir}: output path is {what_is_at(outdir)}, not a folder")
    if not os.access(outdir, os.W_OK):
        raise CryoSegNetError(f"{outdir}: output folder is not writable")
    return outdir


def refuse_foreign(path: Path, what: str) -> None:
    """Never replace a non-empty file that cryosegnet did not write (e.g. RELION's own)."""
    try:
        if not path.exists() and not path.is_symlink():
            return
        if path.is_dir() or not path.is_file():
            raise CryoSegNetError(f"{path}: exists and is not a regular file; move it away")
        if path.stat().st_size == 0:
            return
    except OSError as exc:
        raise CryoSegNetError(f"{path}: cannot check ({exc.strerror or exc})") from exc
    ours, _ = star_header(path)
    if not ours and not _written_by_cryosegnet_0_1(path):
        raise CryoSegNetError(
            f"{path}: {what} not written by cryosegnet; it is left untouched: move it away or "
            "choose another output folder"
        )


# What cryosegnet 0.1 wrote (through starfile, without a mark) into autopick.star and
# particles.star: exactly these columns. RELION's and CryoSPARC's files have other columns.
_LEGACY_COLUMNS = (
    {"rlnMicrographName", "rlnMicrographCoordinates"},
    {"rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnAutopickFigureOfMerit"},
)


def _written_by_cryosegnet_0_1(path: Path) -> bool:
    """An index file of cryosegnet 0.1 (before files were marked), so an upgrade can rewrite it."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    if not head.startswith("# Created by the starfile Python package"):
        return False
    columns = set(re.findall(r"^_(rln\w+)", head, flags=re.M))
    return columns in _LEGACY_COLUMNS
