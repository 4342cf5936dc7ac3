"""RELION project files: micrographs STAR in, pipeline node file and job exit markers out.

What this follows (checked against RELION's source):

* **Micrographs STAR** (``CtfFind/jobNNN/micrographs_ctf.star``,
  ``MotionCorr/jobNNN/corrected_micrographs.star``): RELION 3.1, 4 and 5 write a
  ``data_optics`` table (``_rlnOpticsGroup``, ``_rlnMicrographPixelSize``,
  ``_rlnMicrographOriginalPixelSize``, ...) and a ``data_micrographs`` table
  (``_rlnMicrographName``, ``_rlnOpticsGroup``, ...); RELION 3.0 writes one table
  (``data_``) whose rows may carry ``_rlnDetectorPixelSize`` (µm) and ``_rlnMagnification``.
  Micrograph paths are relative to the RELION project folder (where RELION runs).
* **Output nodes** (``RELION_OUTPUT_NODES.star`` in an External job's folder, read by the
  pipeliner when the job finishes): table ``data_output_nodes`` with ``_rlnPipeLineNodeName``
  and, in RELION 4/5, ``_rlnPipeLineNodeTypeLabel``. The coordinates label is RELION's
  ``LABEL_AUTOPICK_COORDS``: ``MicrographsCoords.star.relion.autopick`` in RELION 4.0
  (``src/pipeline_jobs.h``) and ``MicrographCoordsGroup.star.relion.autopick`` in RELION 5.0
  (``src/pipeline_nodes.h``); the node is the two-column coordinate list ``autopick.star``
  (``_rlnMicrographName``, ``_rlnMicrographCoordinates``), as RELION's own AutoPick job
  writes since 4.0 ("no longer save coords_suffix nodetype", ``pipeline_jobs.cpp``).
  RELION 3.1 has integer ``_rlnPipeLineNodeType``; coordinates are type 2 (``NODE_MIC_COORDS``)
  and the node is ``coords_suffix_<suffix>.star``, a file holding the input micrographs STAR's
  name (as RELION 3.1's AutoPick and the relion-external Topaz/crYOLO wrappers write it).
* **Coordinate file names**: AutoPick writes the picks of ``MotionCorr/job002/Movies/a.mrc``
  to ``AutoPick/jobNNN/Movies/a_autopick.star``: the micrograph's path below its job folder
  (``decomposePipelineFileName``, ``src/funcs.cpp``), extension replaced by
  ``_autopick.star``; ``relion_preprocess --coord_dir`` looks there.
* **External job calling convention** (``RelionJobExternal`` in ``src/pipeline_jobs.cpp``): the
  executable runs in the project folder with ``--o <job folder>``, the chosen inputs as
  ``--in_movies``, ``--in_mics``, ``--in_parts``, ``--in_coords``, ``--in_3dref``,
  ``--in_mask``, ``--j <threads>``, RELION's own ``--pipeline_control <job folder>``, and each
  user parameter as ``--<label> <value>``.
* **Exit markers**: the pipeliner's ``checkProcessCompletion`` (``src/pipeliner.cpp``) looks
  for ``RELION_JOB_EXIT_SUCCESS``, ``RELION_JOB_EXIT_FAILURE`` or ``RELION_JOB_EXIT_ABORTED``
  in the job folder; RELION asks a job to stop by creating ``RELION_JOB_ABORT_NOW``.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import starfile

from cryosegnet.errors import CryoSegNetError
from cryosegnet.io.atomic import atomic_write

OUTPUT_NODES_STAR = "RELION_OUTPUT_NODES.star"
JOB_EXIT_SUCCESS = "RELION_JOB_EXIT_SUCCESS"
JOB_EXIT_FAILURE = "RELION_JOB_EXIT_FAILURE"
JOB_EXIT_ABORTED = "RELION_JOB_EXIT_ABORTED"
JOB_ABORT_NOW = "RELION_JOB_ABORT_NOW"
EXIT_MARKERS = (JOB_EXIT_SUCCESS, JOB_EXIT_FAILURE, JOB_EXIT_ABORTED)

#: RELION's LABEL_AUTOPICK_COORDS per major version (4.0: pipeline_jobs.h; 5.0: pipeline_nodes.h).
COORDINATES_NODE_LABELS = {
    4: "MicrographsCoords.star.relion.autopick",
    5: "MicrographCoordsGroup.star.relion.autopick",
}
#: RELION 3.1's NODE_MIC_COORDS.
COORDINATES_NODE_TYPE_31 = 2
DEFAULT_RELION_VERSION = 4
STAR_VERSION_LINE = {3: "# version 30001", 4: "# version 30001", 5: "# version 50001"}

_JOB_FOLDER = re.compile(r"^job\d+$")


class RelionError(CryoSegNetError):
    """A RELION file that cannot be read or does not say what is needed."""


@dataclass(frozen=True)
class RelionMicrograph:
    """One row of a RELION micrographs STAR.

    Attributes
    ----------
    name : str
        ``_rlnMicrographName`` as written (relative to the project folder): what coordinate
        files must be paired with in ``autopick.star``.
    path : pathlib.Path
        The file: ``name`` resolved against the project folder.
    pixel_size : float or None
        Å per pixel of the micrograph, from its optics group (or its own row in RELION 3.0).
    optics_group : int or None
        ``_rlnOpticsGroup``.
    """

    name: str
    path: Path
    pixel_size: float | None
    optics_group: int | None


@dataclass
class RelionMicrographs:
    """A RELION micrographs STAR as read by :func:`read_micrographs_star`."""

    star: Path
    project_dir: Path
    micrographs: list[RelionMicrograph] = field(default_factory=list)
    optics: pd.DataFrame | None = None

    @property
    def pixel_size(self) -> float | None:
        """The pixel size shared by every micrograph, None if unknown or if groups differ."""
        sizes = {m.pixel_size for m in self.micrographs}
        return sizes.pop() if len(sizes) == 1 else None

    @property
    def paths(self) -> list[Path]:
        return [m.path for m in self.micrographs]


def find_project_dir(star: str | os.PathLike) -> Path:
    """The RELION project folder a STAR file belongs to.

    The nearest folder above ``star`` holding ``default_pipeline.star``; else, for a STAR in a
    job folder (``<JobType>/jobNNN/``), the folder above the job type; else the working
    directory (RELION runs every job from the project folder).

    Parameters
    ----------
    star : str or os.PathLike
        A STAR file inside a RELION project.

    Returns
    -------
    pathlib.Path
    """
    star = Path(star).absolute()
    for folder in star.parents:
        if (folder / "default_pipeline.star").is_file():
            return folder
    if len(star.parents) >= 3 and _JOB_FOLDER.match(star.parent.name):
        return star.parents[2]
    return Path.cwd()


def detect_relion_version(project_dir: str | os.PathLike) -> int | None:
    """RELION's major version from ``default_pipeline.star`` (3, 4 or 5; None if unknown).

    A heuristic on what each version writes: RELION 5 stamps ``# version 50001``, RELION 4
    labels nodes with ``_rlnPipeLineNodeTypeLabel``, RELION 3.1 numbers them with
    ``_rlnPipeLineNodeType``.
    """
    pipeline = Path(project_dir) / "default_pipeline.star"
    try:
        text = pipeline.read_text(errors="replace")[:200000]
    except OSError:
        return None
    if "# version 5" in text:
        return 5
    if "_rlnPipeLineNodeTypeLabel" in text or "_rlnPipeLineProcessTypeLabel" in text:
        return 4
    if "_rlnPipeLineNodeType" in text:
        return 3
    return None


def _column(table: pd.DataFrame, name: str) -> str | None:
    lowered = {str(c).lower().lstrip("_"): c for c in table.columns}
    return lowered.get(name.lower())


def _optics_pixel_sizes(optics: pd.DataFrame) -> dict[int, float]:
    """{optics group: micrograph Å/px}: ``_rlnMicrographPixelSize``, else ``_rlnImagePixelSize``
    (older writers), else ``_rlnMicrographOriginalPixelSize`` (right for unbinned sums)."""
    group_col = _column(optics, "rlnOpticsGroup")
    sizes: dict[int, float] = {}
    for name in ("rlnMicrographPixelSize", "rlnImagePixelSize", "rlnMicrographOriginalPixelSize"):
        col = _column(optics, name)
        if col is None:
            continue
        for i, value in enumerate(pd.to_numeric(optics[col], errors="coerce")):
            group = int(optics[group_col].iloc[i]) if group_col else i + 1
            if pd.notna(value) and value > 0:
                sizes.setdefault(group, float(value))
    return sizes


def _optics_groups(optics: pd.DataFrame) -> set[int]:
    """The optics groups a ``data_optics`` table defines (numbered by row without a column)."""
    group_col = _column(optics, "rlnOpticsGroup")
    if group_col is None:
        return set(range(1, len(optics) + 1))
    return {int(g) for g in pd.to_numeric(optics[group_col], errors="coerce").dropna()}


def read_micrographs_star(
    star: str | os.PathLike, project_dir: str | os.PathLike | None = None
) -> RelionMicrographs:
    """Read a RELION micrographs STAR (RELION 3.0, 3.1, 4 or 5).

    Parameters
    ----------
    star : str or os.PathLike
        ``micrographs_ctf.star``, ``corrected_micrographs.star``, ``micrographs_selected.star``
        or any STAR with ``_rlnMicrographName``.
    project_dir : str or os.PathLike, optional
        The RELION project folder the names are relative to (default:
        :func:`find_project_dir`).

    Returns
    -------
    RelionMicrographs
        Micrographs in file order, with paths resolved and pixel sizes from the optics groups.

    Raises
    ------
    RelionError
        If the file cannot be read, has no ``_rlnMicrographName`` column, or names an optics
        group its ``data_optics`` table does not define.
    """
    star = Path(star)
    if not star.is_file():
        raise RelionError(f"{star}: no such file")
    try:
        blocks = starfile.read(star, always_dict=True)
    except Exception as exc:
        raise RelionError(f"{star}: not a readable STAR file ({exc})") from exc
    root = Path(project_dir) if project_dir is not None else find_project_dir(star)
    optics = blocks.get("optics")
    optics = optics if isinstance(optics, pd.DataFrame) else None
    table = blocks.get("micrographs")
    if not isinstance(table, pd.DataFrame):
        table = next(
            (
                b
                for b in blocks.values()
                if isinstance(b, pd.DataFrame) and _column(b, "rlnMicrographName") is not None
            ),
            None,
        )
    particles = next(
        (
            b
            for b in blocks.values()
            if isinstance(b, pd.DataFrame) and _column(b, "rlnCoordinateX") is not None
        ),
        None,
    )
    if particles is not None:  # every particle would be taken for a micrograph
        raise RelionError(
            f"{star}: a STAR of {len(particles)} particle coordinates, not a micrographs STAR "
            "(one _rlnMicrographName per micrograph): "
            "give the micrographs themselves, or the micrographs STAR they come from "
            "(CtfFind/jobNNN/micrographs_ctf.star, MotionCorr/jobNNN/corrected_micrographs.star)"
        )
    if table is None or _column(table, "rlnMicrographName") is None:
        raise RelionError(f"{star}: no table with _rlnMicrographName (not a micrographs STAR)")
    group_sizes = _optics_pixel_sizes(optics) if optics is not None else {}
    defined = _optics_groups(optics) if optics is not None else None
    name_col = _column(table, "rlnMicrographName")
    group_col = _column(table, "rlnOpticsGroup")
    # RELION 3.0: pixel size per row from the detector pixel (µm) and the magnification.
    det_col, mag_col = _column(table, "rlnDetectorPixelSize"), _column(table, "rlnMagnification")
    own_col = _column(table, "rlnMicrographPixelSize")
    micrographs = []
    for i in range(len(table)):
        name = str(table[name_col].iloc[i]).strip()
        group = int(table[group_col].iloc[i]) if group_col else None
        if group is not None and defined is not None and group not in defined:
            # Not a silent fall-back to the MRC header's pixel size (often a wrong 1.0).
            raise RelionError(
                f"{star}: micrograph {name} is in optics group {group}, which its data_optics "
                f"table does not define (groups: {', '.join(map(str, sorted(defined))) or 'none'})"
            )
        pixel_size = group_sizes.get(group) if group is not None else None
        if pixel_size is None and len(group_sizes) == 1 and group is None:
            pixel_size = next(iter(group_sizes.values()))
        if pixel_size is None and own_col:
            pixel_size = _positive(table[own_col].iloc[i])
        if pixel_size is None and det_col and mag_col:
            detector, mag = _positive(table[det_col].iloc[i]), _positive(table[mag_col].iloc[i])
            if detector and mag:
                pixel_size = detector * 1e4 / mag
        path = Path(name) if Path(name).is_absolute() else root / name
        micrographs.append(
            RelionMicrograph(name=name, path=path, pixel_size=pixel_size, optics_group=group)
        )
    return RelionMicrographs(star=star, project_dir=root, micrographs=micrographs, optics=optics)


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def coordinate_file(
    job_dir: str | os.PathLike, micrograph_name: str, suffix: str = "autopick"
) -> Path:
    """Where RELION expects a micrograph's coordinate file below a picking job's folder.

    ``coordinate_file("External/job004", "MotionCorr/job002/Movies/a.mrc")`` is
    ``External/job004/Movies/a_autopick.star``: as RELION's ``decomposePipelineFileName``
    (``src/funcs.cpp``), everything up to the first ``/jobNNN/`` of the micrograph's name is
    dropped and the rest of its folders kept; a name without a job folder is kept whole.
    """
    parts = [p for p in Path(micrograph_name).parts if p not in ("/", "\\")]
    for i, part in enumerate(parts[1:], start=1):
        if re.match(r"job\d{3}", part):
            parts = parts[i + 1 :]
            break
    relative = Path(*parts)
    return Path(job_dir) / relative.parent / f"{relative.stem}_{suffix}.star"


def node_name(
    job_dir: str | os.PathLike, filename: str, project_dir: str | os.PathLike | None = None
) -> str:
    """A pipeline node name: ``<job folder relative to the project>/<filename>`` (POSIX)."""
    job_dir = Path(job_dir)
    if job_dir.is_absolute():
        root = Path(project_dir) if project_dir is not None else Path.cwd()
        with contextlib.suppress(ValueError):
            job_dir = job_dir.relative_to(root.absolute())
    return (job_dir / filename).as_posix()


def write_output_nodes(
    job_dir: str | os.PathLike,
    nodes: list[tuple[str, str | int]],
    relion_version: int = DEFAULT_RELION_VERSION,
) -> Path:
    """Write ``RELION_OUTPUT_NODES.star`` in ``job_dir``.

    Parameters
    ----------
    job_dir : str or os.PathLike
        The External job's output folder (``--o``).
    nodes : list of (str, str or int)
        (node name relative to the project folder, type label for RELION 4/5 or integer type
        for RELION 3.1).
    relion_version : int
        3 writes ``_rlnPipeLineNodeType``, 4 and 5 ``_rlnPipeLineNodeTypeLabel``.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    column = "_rlnPipeLineNodeType" if relion_version < 4 else "_rlnPipeLineNodeTypeLabel"
    version_line = STAR_VERSION_LINE.get(relion_version, STAR_VERSION_LINE[4])
    lines = [
        version_line,
        "",
        "data_output_nodes",
        "",
        "loop_",
        "_rlnPipeLineNodeName #1",
        f"{column} #2",
    ]
    lines += [f"{name} {label}" for name, label in nodes]
    path = Path(job_dir) / OUTPUT_NODES_STAR
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write("\n".join(lines) + "\n\n")
    return path


def write_coordinates_node(
    job_dir: str | os.PathLike,
    index_name: str = "autopick.star",
    relion_version: int = DEFAULT_RELION_VERSION,
    micrographs_star: str | None = None,
    suffix: str = "autopick",
    project_dir: str | os.PathLike | None = None,
) -> Path:
    """Declare the job's coordinates as its output node, the way RELION's AutoPick does.

    RELION 4/5: node ``<job>/<index_name>`` (the ``autopick.star`` coordinate list, written
    separately) with label :data:`COORDINATES_NODE_LABELS`. RELION 3.1: node
    ``<job>/coords_suffix_<suffix>.star``, written here with ``micrographs_star`` as its
    content, type 2; the coordinate files must then be ``<job>/<micrograph path without
    extension>_<suffix>.star``.

    Parameters
    ----------
    job_dir : str or os.PathLike
        The job's output folder (``--o``), relative to the project folder or absolute.
    index_name : str
        File name of the coordinate list in ``job_dir`` (RELION 4/5).
    relion_version : int
        3, 4 or 5 (see :func:`detect_relion_version`).
    micrographs_star : str, optional
        The input micrographs STAR (``--in_mics``), needed for RELION 3.1.
    suffix : str
        Coordinate-file suffix for RELION 3.1.
    project_dir : str or os.PathLike, optional
        Project folder, to make an absolute ``job_dir`` relative (default: working directory).

    Returns
    -------
    pathlib.Path
        The ``RELION_OUTPUT_NODES.star`` written.
    """
    if relion_version < 4:
        if not micrographs_star:
            raise RelionError("RELION 3.1 coordinate nodes need the input micrographs STAR")
        suffix_file = Path(job_dir) / f"coords_suffix_{suffix}.star"
        suffix_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(suffix_file) as handle:
            handle.write(f"{micrographs_star}\n")
        nodes: list[tuple[str, str | int]] = [
            (node_name(job_dir, suffix_file.name, project_dir), COORDINATES_NODE_TYPE_31)
        ]
    else:
        label = COORDINATES_NODE_LABELS.get(relion_version, COORDINATES_NODE_LABELS[4])
        nodes = [(node_name(job_dir, index_name, project_dir), label)]
    return write_output_nodes(job_dir, nodes, relion_version)


@dataclass
class ExternalJobArgs:
    """The arguments RELION passes to an External job's executable.

    Attributes
    ----------
    output : pathlib.Path
        ``--o``: the job folder (relative to the project folder, where the job runs).
    inputs : dict of str to str
        The input nodes given, by option without dashes (``in_mics``, ``in_coords``, ...).
    threads : int
        ``--j`` (1 when not given).
    params : dict of str to str
        User parameters ``--label value`` (labels without dashes, in order).
    """

    output: Path
    inputs: dict[str, str] = field(default_factory=dict)
    threads: int = 1
    params: dict[str, str] = field(default_factory=dict)

    @property
    def in_mics(self) -> str | None:
        return self.inputs.get("in_mics")


EXTERNAL_INPUTS = ("in_movies", "in_mics", "in_parts", "in_coords", "in_3dref", "in_mask")


def parse_external_job_args(argv: list[str]) -> ExternalJobArgs:
    """Parse RELION's External-job command line (see the module docstring).

    Parameters
    ----------
    argv : list of str
        The arguments after the executable's name.

    Returns
    -------
    ExternalJobArgs

    Raises
    ------
    RelionError
        Without ``--o``, with a non-integer ``--j``, or with an option that has no value.
    """
    values: dict[str, str] = {}
    i = 0
    while i < len(argv):
        option = argv[i]
        if not option.startswith("--") or len(option) == 2:
            raise RelionError(f"unexpected argument {option!r} (RELION passes --label value)")
        name = option[2:]
        if "=" in name:
            name, value = name.split("=", 1)
            i += 1
        elif i + 1 < len(argv) and not (argv[i + 1].startswith("--") and len(argv[i + 1]) > 2):
            value = argv[i + 1]
            i += 2
        else:
            raise RelionError(f"{option} has no value")
        values[name] = value
    if "o" not in values:
        raise RelionError("no --o: RELION gives the job folder as --o External/jobNNN/")
    try:
        threads = int(values.pop("j", "1"))
    except ValueError as exc:
        raise RelionError("--j must be a whole number of threads") from exc
    output = Path(values.pop("o"))
    values.pop("pipeline_control", None)
    inputs = {k: values.pop(k) for k in EXTERNAL_INPUTS if k in values}
    return ExternalJobArgs(output=output, inputs=inputs, threads=threads, params=values)


def clear_exit_markers(job_dir: str | os.PathLike) -> None:
    """Remove earlier exit markers (a job that is continued is running again)."""
    for name in EXIT_MARKERS:
        with contextlib.suppress(FileNotFoundError):
            (Path(job_dir) / name).unlink()


def mark_job_finished(job_dir: str | os.PathLike, success: bool, aborted: bool = False) -> Path:
    """Create the marker RELION's pipeliner waits for (and remove any other).

    Parameters
    ----------
    job_dir : str or os.PathLike
        The job's output folder.
    success : bool
        ``RELION_JOB_EXIT_SUCCESS`` if true, else ``RELION_JOB_EXIT_FAILURE``.
    aborted : bool
        ``RELION_JOB_EXIT_ABORTED`` instead (the job stopped on ``RELION_JOB_ABORT_NOW``);
        the abort request is removed, as RELION's own programs do.

    Returns
    -------
    pathlib.Path
        The marker created.
    """
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    clear_exit_markers(job_dir)
    name = JOB_EXIT_ABORTED if aborted else JOB_EXIT_SUCCESS if success else JOB_EXIT_FAILURE
    marker = job_dir / name
    marker.touch()
    if aborted:
        with contextlib.suppress(FileNotFoundError):
            (job_dir / JOB_ABORT_NOW).unlink()
    return marker


def abort_requested(job_dir: str | os.PathLike) -> bool:
    """Whether RELION asked the job to stop (``RELION_JOB_ABORT_NOW`` in its folder)."""
    return (Path(job_dir) / JOB_ABORT_NOW).exists()
