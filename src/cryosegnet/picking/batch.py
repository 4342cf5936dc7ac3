"""Pick a whole session: many micrographs in, RELION/CryoSPARC-ready files out.

One bad micrograph never costs the others: its failure is logged as one line and listed in
the summary. Every file is written atomically, so an interrupted run leaves finished
micrographs intact and nothing half-written; a re-run skips what is already done.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cryosegnet.errors import CryoSegNetError, MicrographError, first_line
from cryosegnet.io.atomic import TEMP_MARK, is_temp_file
from cryosegnet.io.coordinates import (
    check_micrograph_name,
    combined_star_text,
    index_star_text,
    make_picks,
    read_own_star,
    star_header,
    write_box,
    write_coordinate_star,
    write_cryoppp_csv,
    write_star_texts,
)
from cryosegnet.io.micrographs import micrograph_stem, read_micrograph
from cryosegnet.io.paths import what_is_at
from cryosegnet.picking.config import (  # the size rules, shared with the Python API
    MAX_DIAMETER_FRACTION,
    MIN_DIAMETER_PX,
    PIXEL_SIZE_RANGE,
    check_pickable_size,
)
from cryosegnet.picking.particle_size import BatchParticleSize, batch_particle_size
from cryosegnet.picking.picker import Picker
from cryosegnet.picking.units import PixelSizes, angstrom_to_pixels, describe_size
from cryosegnet.postprocessing.empty_micrographs import EmptySettings

log = logging.getLogger("cryosegnet")

INDEX_STAR = "autopick.star"
COMBINED_STAR = "particles.star"
OUTPUT_FORMATS = ("star", "csv", "box")
# Per-micrograph files are <stem>_autopick.<format>, as RELION's own AutoPick jobs name them:
# they can never be taken for the index files above, whatever the micrograph is called.
OUTPUT_SUFFIX = "_autopick"
LOCK_FILE = ".cryosegnet.lock"
RUN_LOCK_FILE = ".cryosegnet.run.lock"
MANIFEST_VERSION = 1
# Manifest entries that, when they differ, mean the picks would differ: pick again.
PICK_OPTIONS = ("threshold", "diameter", "model_sha256", "stage", "settings")
_RELION_JOB = re.compile(r"job\d{3}")


def failure_lines(failures: dict, index_failure: str | None) -> list[str]:
    """The end-of-run lines for failed micrographs (one per reason) and a failed index write,
    shared by every command's summary so a batch log always reads the same."""
    lines = []
    if failures:
        lines.append(f"FAILED: {len(failures)} micrograph(s)")
        lines += [f"  {reason}" for reason in failures.values()]
    if index_failure:
        lines.append(f"FAILED: {index_failure}")
    return lines


def finish_run(summary, problems: Sequence[str] = ()) -> int:
    """Print a run's end summary to stderr and return ``cryosegnet pick``'s exit code.

    ``summary`` is any run's summary (:class:`BatchSummary`, a watch's or a cluster's: each has
    ``failures``, ``index_failure``, ``interrupted`` and ``text()``); ``problems`` are inputs
    refused before picking ("path: why"), reported among its failures. 130 after an
    interruption, 1 when a micrograph or the index failed, else 0.
    """
    for problem in problems:
        summary.failures[problem.split(":", 1)[0]] = problem
    print(summary.text(), file=sys.stderr)
    if summary.interrupted:
        return 130
    return 1 if summary.failures or summary.index_failure else 0


@dataclass
class BatchSummary:
    """What a batch did; ``failures`` maps micrograph path to its one-line reason."""

    done: dict[str, pd.DataFrame] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    diameters: list[float] = field(default_factory=list)
    # Where each diameter came from (PickResult.diameter_source): given, model, micrograph, map.
    diameter_sources: list[str] = field(default_factory=list)
    # Å/px of each micrograph in ``diameters`` whose pixel size is known (else None).
    pixel_sizes: list[float | None] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    index_failure: str | None = None
    index_entries: int = 0
    # Micrographs the empty-micrograph test (``--skip-empty``) left without picks.
    empty: list[str] = field(default_factory=list)
    # The output folder, and where the particle diameter came from: "estimated" (from each
    # map), "given" (--diameter) or "model" (a fine-tuned model's labels).
    outdir: str | None = None
    diameter_source: str = "estimated"

    @property
    def n_particles(self) -> int:
        return int(sum(len(p) for p in self.done.values()))

    def text(self) -> str:
        n_new = len(self.done) - len(self.skipped)
        lines = [
            f"micrographs picked: {n_new}  (skipped, already done: {len(self.skipped)})",
            f"particles: {self.n_particles}",
        ]
        if self.outdir is not None:
            lines.append(f"output folder: {self.outdir}")
        diameters = [d for d in self.diameters if np.isfinite(d) and d > 0]
        if diameters:
            what = {
                "given": "diameter: {:.1f} px (given)",
                "model": "diameter: {:.1f} px (the model's labels, median)",
            }.get(self.diameter_source, "estimated diameter: {:.1f} px (median)")
            line = what.format(np.median(diameters))
            angstrom = [
                d * a
                for d, a in zip(self.diameters, self.pixel_sizes, strict=False)
                if a and np.isfinite(d) and d > 0
            ]
            if angstrom:
                line += f", {np.median(angstrom):.0f} Å"
            low, high = np.percentile(diameters, [10, 90])
            if high > low:
                line += f" (10-90 %: {low:.0f}-{high:.0f} px)"
            lines.append(line)
            in_range = self.diameter_sources.count("range")
            if in_range:
                lines.append(
                    f"no clear particle scale within the range on {in_range} of "
                    f"{len(self.diameter_sources)} micrograph(s): the range's middle was used"
                )
            unsure = self.diameter_sources.count("map")
            if unsure:
                lines.append(
                    f"particle size unsure on {unsure} of {len(self.diameter_sources)} "
                    "micrograph(s): no clear particle scale in their pixels, so the U-Net "
                    "map's estimate was used there; give --diameter, or a rough range such as "
                    "--diameter 100-160A"
                )
        if n_new and self.seconds:
            lines.append(f"time: {self.seconds:.1f} s ({n_new / self.seconds:.2f} micrographs/s)")
        if self.empty:
            lines.append(
                f"judged empty (no dark-blob excess over bright blobs), no picks: "
                f"{len(self.empty)} micrograph(s)"
            )
        if self.index_entries:
            lines.append(
                f"{INDEX_STAR}, {COMBINED_STAR}: {self.index_entries} micrograph(s) "
                "(every result in the output folder)"
            )
        lines += failure_lines(self.failures, self.index_failure)
        if self.interrupted:
            lines.append("INTERRUPTED: re-run the same command to finish the rest")
        return "\n".join(lines)


def diameter_source(picker) -> str:
    """Where ``picker``'s particle diameter comes from, as :class:`BatchSummary` reports it:
    ``given`` (a diameter override), ``model`` (a fine-tuned model's labels) or
    ``estimated``."""
    if getattr(getattr(picker, "postprocess_settings", None), "diameter_override", None):
        return "given"
    if getattr(picker, "model_diameter", None):
        return "model"
    return "estimated"


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


def source_record(micrograph: Path, name: str | None = None) -> dict:
    """What identifies the micrograph a result was picked from; ``name``: the name the index
    files give it (default: the path as given)."""
    stat = micrograph.stat()
    return {
        "name": str(micrograph) if name is None else name,
        "path": os.path.abspath(micrograph),
        "size": int(stat.st_size),
        "mtime_ns": int(stat.st_mtime_ns),
    }


def picker_options(picker) -> dict:
    """The options of ``picker`` that change its picks (recorded with every result)."""
    model = getattr(picker, "model_path", None)
    options = {
        "threshold": _jsonable(getattr(picker, "threshold", None)),
        "stage": getattr(picker, "stage", None),
        "model": str(model) if model else None,
        "model_sha256": _file_hash(Path(model)) if model else None,
    }
    post = getattr(picker, "postprocess_settings", None)
    options["diameter"] = _jsonable(getattr(post, "diameter_override", None))
    generator = getattr(picker, "mask_generator", None)
    denoise = getattr(picker, "denoise_settings", None)
    settings = {
        "size_tolerance": _jsonable(getattr(post, "tolerance_factor", None)),
        "border_fraction": _jsonable(getattr(picker, "border_fraction", None)),
        "denoise": denoise.to_dict()
        if denoise is not None and hasattr(denoise, "to_dict")
        else None,
        "instances": generator.describe()
        if generator is not None and hasattr(generator, "describe")
        else None,
    }
    config = getattr(picker, "config", None)
    if getattr(config, "skip_empty", False):
        # Only when on: results written before the option existed keep matching.
        settings["skip_empty"] = True
    if getattr(config, "mask_bad_regions", False):
        # On by default, so results made without the mask (before it, or with
        # --keep-bad-regions) are picked again rather than taken as done.
        settings["mask_bad_regions"] = True
    if getattr(config, "centre_picks", False):
        # Only when on: results written before the option existed keep matching.
        settings["centre_picks"] = True
    if getattr(getattr(config, "size_estimate", None), "per_micrograph", False):
        settings["size_per_micrograph"] = True
    size_range = getattr(config, "diameter_range", None)
    if size_range is not None:
        settings["diameter_range"] = str(size_range)
    options["settings"] = json.loads(json.dumps(settings, default=str))
    return options


def _jsonable(value):
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


_HASHES: dict[tuple[str, int, int], str] = {}


def _file_hash(path: Path) -> str | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def write_outputs(
    outdir: Path,
    micrograph: Path,
    picks: pd.DataFrame,
    diameter: float | None,
    formats: tuple[str, ...],
    box_size: float | None,
    manifest: dict,
    listed: tuple[str, ...] | None = None,
) -> None:
    """Write one micrograph's coordinate files: all of them, or (on an error) none.

    Parameters
    ----------
    outdir : Path
        The output folder; files go where :func:`output_path` puts them.
    micrograph : Path
        The micrograph (or the name the output layout follows).
    picks : pandas.DataFrame
        Its picks (``x``, ``y``, ``score``, ``diameter``), in micrograph pixels.
    diameter : float or None
        The particle diameter in px, recorded in the manifest (and the box size by default).
    formats : tuple of str
        Formats to write (:data:`OUTPUT_FORMATS`); the STAR is always written, and last: it
        is the marker that the micrograph is done.
    box_size : float or None
        Box size of the ``.box`` file (default: the diameter).
    manifest : dict
        What the result was picked from and with (``version``, ``source``, ``options``),
        stored in the STAR for :func:`previous_result`.
    listed : tuple of str, optional
        The formats the manifest names as present (default: ``formats``).
    """
    written: list[Path] = []
    star = coordinate_path(outdir, micrograph)
    star.parent.mkdir(parents=True, exist_ok=True)
    diameter = float(diameter) if diameter is not None and np.isfinite(diameter) else None
    try:
        # Extra formats first: the STAR is the 'done' marker, so it is written last.
        if "csv" in formats:
            path = output_path(outdir, micrograph, "csv")
            write_cryoppp_csv(path, picks, diameter=diameter)
            written.append(path)
        if "box" in formats:
            size = box_size or diameter or _median_diameter(picks) or 0.0
            path = output_path(outdir, micrograph, "box")
            write_box(path, picks, box_size=size)
            written.append(path)
        listed = formats if listed is None else listed
        manifest = {
            **manifest,
            "formats": sorted(set(listed) | {"star"}),
            "box_size": box_size,
            "diameter_px": diameter,
            "n_picks": int(len(picks)),
        }
        write_coordinate_star(star, picks, manifest=manifest)
    except BaseException:
        # No orphan CSV/box without its STAR: the micrograph has all its outputs or none.
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    # A side format the manifest does not list belongs to earlier picks: never leave it
    # beside the new ones (a re-pick with fewer formats would otherwise keep stale files).
    for fmt in set(OUTPUT_FORMATS) - set(manifest["formats"]):
        with contextlib.suppress(FileNotFoundError):
            output_path(outdir, micrograph, fmt).unlink()


def _median_diameter(picks: pd.DataFrame) -> float | None:
    values = picks["diameter"].to_numpy(float) if "diameter" in picks else np.array([])
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.median(values)) if len(values) else None


class _Terminate(BaseException):
    """Raised from the SIGTERM handler so a batch stops like it does on Ctrl-C.

    A BaseException, like KeyboardInterrupt, so the per-micrograph ``except Exception``
    handlers cannot mistake a stop request for one micrograph's failure.
    """


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise _Terminate()


# What stops a run early (Ctrl-C, SIGTERM from a queue system), as opposed to a failure.
STOP_REQUESTS = (KeyboardInterrupt, _Terminate)


@contextlib.contextmanager
def sigterm_stops_the_run() -> Iterator[None]:
    """While inside, SIGTERM raises a stop request (see :data:`STOP_REQUESTS`) in the main
    thread, as Ctrl-C does, so a run can keep its finished work and write its index; the
    previous handler is restored on leaving. Outside the main thread it does nothing."""
    if not _in_main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def pick_batch(
    picker: Picker,
    micrographs: list[Path],
    outdir: str | os.PathLike,
    formats: tuple[str, ...] = ("star",),
    overwrite: bool = False,
    batch_size: int = 1,
    box_size: float | None = None,
    workers: int = 1,
    progress: bool = True,
    debug: bool = False,
    options: dict | None = None,
    diameter_angstrom: float | None = None,
    pixel_sizes: PixelSizes | None = None,
    names: Mapping[Path, str] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> BatchSummary:
    """Pick every micrograph, write per-micrograph files, the RELION index and the combined STAR.

    A micrograph whose existing result was made from the same file (path, size, mtime) with the
    same pick options is skipped (formats it lacks are written from its picks); anything else
    is picked again, and the log says why. The index files are rebuilt, under a lock, from
    every valid result in the output folder, so earlier and concurrent runs are kept.

    ``diameter_angstrom`` fixes the particle diameter in Å: each micrograph is picked at
    ``diameter_angstrom / pixel size`` px, its pixel size from ``pixel_sizes`` (``--angpix``,
    an input STAR), else from its header; a micrograph with no pixel size fails. ``names``
    gives micrographs the name the index files list and the output layout follows (RELION's
    ``_rlnMicrographName`` of a micrographs STAR; default: the path as given).
    ``should_stop`` is asked between micrographs; when it returns True the batch stops as on
    Ctrl-C (``interrupted``), keeping what is finished.
    """
    outdir = make_output_folder(outdir)
    for name in (INDEX_STAR, COMBINED_STAR):
        _refuse_foreign(outdir / name, "index file")
    options = picker_options(picker) if options is None else options
    summary = BatchSummary(outdir=str(outdir), diameter_source=diameter_source(picker))
    sizes = BatchSizes(diameter_angstrom, pixel_sizes or PixelSizes(), dict(names or {}))
    if diameter_angstrom is not None:
        summary.diameter_source = "given"
    run_lock = start_run(outdir, run_options(options, sizes, formats, box_size))
    try:
        return _pick_batch(
            picker,
            micrographs,
            outdir,
            formats,
            overwrite,
            batch_size,
            box_size,
            workers,
            progress,
            debug,
            options,
            summary,
            sizes,
            should_stop,
        )
    finally:
        if run_lock is not None:
            with contextlib.suppress(OSError):
                run_lock.close()


@dataclass
class BatchSizes:
    """Per-micrograph sizes and names of one batch (see :func:`pick_batch`).

    Parameters
    ----------
    angstrom : float or None
        The particle diameter in Å (``--diameter 120A``), or None for a diameter in px or none.
    pixel_sizes : PixelSizes
        Where pixel sizes come from (``--angpix``, an input STAR), before the MRC header.
    names : dict
        Micrograph path -> the name the index files list and the output layout follows.
    seen_pixel_size, diameter_px : dict
        Filled as micrographs are read: Å/px (None: unknown), and the px diameter to pick at.
    """

    angstrom: float | None
    pixel_sizes: PixelSizes
    names: dict[Path, str]
    # Filled as micrographs are read: Å/px (None: unknown) and px diameter to pick at.
    seen_pixel_size: dict[Path, float | None] = field(default_factory=dict)
    diameter_px: dict[Path, float] = field(default_factory=dict)

    def layout(self, path: Path) -> Path:
        """What the output layout follows: the micrograph's name if it has one."""
        name = self.names.get(path)
        return Path(name) if name is not None else path

    def options(self, path: Path, options: dict) -> dict:
        """The pick options recorded for ``path``: an Å diameter with where its pixel size
        comes from (an unchanged file has an unchanged header)."""
        if self.angstrom is None:
            return options
        source = self.pixel_sizes.explicit(path) or "header"
        return {**options, "diameter": {"angstrom": float(self.angstrom), "pixel_size": source}}


def plan_batch(
    micrographs, outdir, formats, overwrite, box_size, debug, options, summary, sizes
) -> list[tuple[Path, dict]]:
    """What to pick: (path, source record) per micrograph, in order.

    Finished micrographs (a complete result from the same file with the same options) are
    skipped and recorded in ``summary`` (their missing formats written from the existing
    picks); unreadable or clashing ones are recorded as failures. The in-process batch and the
    Dask client both plan with this, so they skip and refuse exactly alike.
    """
    todo: list[tuple[Path, dict]] = []
    seen: dict[Path, Path] = {}
    for path in micrographs:
        star = coordinate_path(outdir, sizes.layout(path))
        if star in seen:
            record_failure(
                summary,
                path,
                CryoSegNetError(
                    f"{path}: its output {star} is also the output of {seen[star]} (same name in "
                    "folders RELION lays out alike); pick them into separate output folders"
                ),
                debug,
            )
            continue
        seen[star] = path
        try:
            check_micrograph_name(sizes.names.get(path, str(path)))  # here, not in the index
            _refuse_foreign(star, "coordinate file")
            source = source_record(path, sizes.names.get(path))
        except CryoSegNetError as exc:
            record_failure(summary, path, exc, debug)
            continue
        except OSError as exc:
            problem = {errno.ELOOP: "symbolic link loop", errno.ENOENT: "no such file"}.get(
                exc.errno or 0, f"cannot read ({exc.strerror or exc})"
            )
            record_failure(summary, path, CryoSegNetError(f"{path}: {problem}"), debug)
            continue
        previous = previous_result(star) if star.exists() else None
        other = _other_micrograph(previous, source)
        if other is not None:
            # Never lose a result: RELION lays out equal names from two jobs alike, so the
            # two cannot share one output folder (not even with --overwrite).
            record_failure(
                summary,
                path,
                CryoSegNetError(
                    f"{path}: its output {star} holds the picks of another micrograph, {other} "
                    "(same name in folders RELION lays out alike); pick it into another output "
                    "folder, or remove that file to replace them"
                ),
                debug,
            )
            continue
        if star.exists() and not overwrite:
            reason = (
                result_mismatch(previous, source, sizes.options(path, options))
                if previous
                else "it is incomplete"
            )
            if previous is not None and reason is None:
                try:
                    _complete_formats(outdir, sizes.layout(path), previous, formats, box_size)
                except Exception as exc:
                    record_failure(summary, path, exc, debug, prefix="cannot write output: ")
                    continue
                summary.done[str(path)] = previous[0]
                summary.skipped.append(str(path))
                continue
            log.info("%s: picking again (%s: %s)", path, star, reason)
        todo.append((path, source))
    return todo


def _pick_batch(
    picker,
    micrographs,
    outdir,
    formats,
    overwrite,
    batch_size,
    box_size,
    workers,
    progress,
    debug,
    options,
    summary,
    sizes,
    should_stop,
) -> BatchSummary:
    todo = plan_batch(
        micrographs, outdir, formats, overwrite, box_size, debug, options, summary, sizes
    )

    start = time.perf_counter()
    bar = tqdm(
        total=len(todo), unit="mic", disable=not progress, desc="picking", dynamic_ncols=True
    )
    sources = dict(todo)
    n_finished = 0
    previous_handler = signal.getsignal(signal.SIGTERM)
    in_main_thread = _in_main_thread()
    try:
        if in_main_thread:  # inside the try: a SIGTERM right after this is caught below
            signal.signal(signal.SIGTERM, _on_sigterm)
        paths_todo = [p for p, _ in todo]
        batch_size_px: BatchParticleSize | None = None
        sampled: dict[Path, tuple] = {}
        if sizes.angstrom is None:
            batch_size_px, sampled = batch_particle_size(
                picker,
                paths_todo,
                lambda path: read_for_picking(picker, path, sizes),
                sizes.seen_pixel_size.get,
            )
        for chunk in _denoised_chunks(
            picker, paths_todo, batch_size, workers, summary, debug, sizes, (batch_size_px, sampled)
        ):
            if should_stop is not None and should_stop():
                log.info("stop requested: %d micrograph(s) left unpicked", len(todo) - n_finished)
                summary.interrupted = True
                break
            paths = [p for p, _, _, _ in chunk]
            try:
                results = pick_chunk(picker, chunk, sizes)
            except Exception as exc:  # a whole batch failing (e.g. GPU OOM): report each file
                for path in paths:
                    record_failure(summary, path, exc, debug)
                bar.update(len(paths))
                continue
            for path, result in zip(paths, results, strict=True):
                manifest = result_manifest(sources[path], sizes.options(path, options), result)
                n_finished += 1
                try:
                    check_picked_diameter(path, result)
                except MicrographError as exc:
                    record_failure(summary, path, exc, debug)
                    continue
                try:
                    write_outputs(
                        outdir,
                        sizes.layout(path),
                        result.picks,
                        result.diameter,
                        formats,
                        box_size,
                        manifest,
                    )
                except Exception as exc:  # disk full, read-only, quota...: this one fails
                    record_failure(summary, path, exc, debug, prefix="cannot write output: ")
                    continue
                summary.done[str(path)] = result.picks
                if getattr(result, "empty", False):
                    record_empty(summary, path, float(result.evidence))
                if result.diameter:
                    summary.diameters.append(float(result.diameter))
                    summary.diameter_sources.append(result.diameter_source)
                    summary.pixel_sizes.append(sizes.seen_pixel_size.get(path))
                bar.set_postfix(particles=summary.n_particles, refresh=False)
                if not progress:  # a batch log gets one line per micrograph instead of a bar
                    size = ""
                    if result.diameter and np.isfinite(result.diameter):
                        pixel_size = sizes.seen_pixel_size.get(path)
                        size = f", diameter {describe_size(result.diameter, pixel_size)}"
                        if getattr(result, "diameter_source", None) == "map":
                            size += " (unsure: the U-Net map's estimate)"
                    log.info(
                        "[%d/%d] %s: %d particles%s",
                        n_finished,
                        len(todo),
                        path,
                        len(result.picks),
                        size,
                    )
            bar.update(len(paths))
    except (KeyboardInterrupt, _Terminate):
        summary.interrupted = True
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
    try:
        # Still under our SIGTERM handler: a kill now must not leave a temp index file behind.
        summary.index_entries = rebuild_index(outdir)
    except (KeyboardInterrupt, _Terminate):
        summary.interrupted = True
    except Exception as exc:
        summary.index_failure = f"{outdir}: cannot write the index STAR files ({exc})"
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)
    return summary


def check_picked_diameter(name, result) -> None:
    """Refuse picks whose particle diameter (estimated from the map, in micrograph pixels) is
    below :data:`~cryosegnet.picking.config.MIN_DIAMETER_PX`: such "particles" are noise a few
    pixels wide (a micrograph too small for the model's working size, or without particles),
    hundreds of them per micrograph.

    Raises
    ------
    MicrographError
        Naming ``name``, the diameter and what to do.
    """
    diameter = getattr(result, "diameter", None)
    if diameter is None or not np.isfinite(diameter) or not len(result.picks):
        return
    if float(diameter) < MIN_DIAMETER_PX:
        raise MicrographError(
            name,
            f"estimated particle diameter {float(diameter):.1f} px is below the {MIN_DIAMETER_PX:g}"
            " px that picking accepts (the micrograph is too small for the model, or its "
            "picks are noise); no picks written: give --diameter",
        )


def pick_chunk(picker, chunk, sizes: BatchSizes) -> list:
    """Pick a chunk of (path, denoised micrograph, shape as read, its size estimate or None,
    :meth:`Picker.size_of`); with an Å diameter, each micrograph is picked at its own pixel
    diameter (:meth:`Picker.told_size`), handed to the picker with the call, not set on it."""
    denoised, shapes = [d for _, d, _, _ in chunk], [s for _, _, s, _ in chunk]
    estimates = [e for _, _, _, e in chunk]
    if sizes.angstrom is not None:
        estimates = [
            picker.told_size(sizes.diameter_px[path], shape) for path, _, shape, _ in chunk
        ]
    if any(e is not None for e in estimates):
        return picker.pick_denoised(denoised, shapes, estimates)
    return picker.pick_denoised(denoised, shapes)


def _complete_formats(outdir, path, previous, formats, box_size) -> None:
    """Write the requested formats an existing result lacks (or whose box size differs, or
    that its manifest does not list as written with its picks) from its picks, without picking
    again."""
    picks, manifest = previous
    listed = set(manifest.get("formats", []))
    # A format the manifest does not list may be a file left from earlier picks: rewrite it.
    missing = {
        f
        for f in formats
        if f != "star" and (f not in listed or not output_path(outdir, path, f).is_file())
    }
    if "box" in formats and box_size != manifest.get("box_size"):
        missing.add("box")
    if not missing:
        return
    log.info("%s: writing %s from the existing picks", path, ", ".join(sorted(missing)))
    kept = set(manifest.get("formats", [])) | set(formats)
    write_outputs(
        outdir,
        path,
        picks,
        manifest.get("diameter_px"),
        tuple(sorted(missing)),
        box_size,
        manifest,
        listed=tuple(sorted(kept)),
    )


def _other_micrograph(previous, source: dict) -> str | None:
    """The name of the micrograph an existing result was picked from, when that is another
    file than ``source`` (None when it is the same file, or there is no valid result)."""
    if previous is None:
        return None
    old = previous[1].get("source", {})
    if not old.get("path") or old.get("path") == source["path"]:
        return None
    return str(old.get("name") or old.get("path"))


def _refuse_foreign(path: Path, what: str) -> None:
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


def previous_result(star: Path) -> tuple[pd.DataFrame, dict] | None:
    """The result an earlier run wrote into a micrograph's coordinate STAR.

    Parameters
    ----------
    star : Path
        The micrograph's coordinate STAR (:func:`coordinate_path`).

    Returns
    -------
    tuple of (pandas.DataFrame, dict) or None
        ``(picks, manifest)``, or None when the file is incomplete (cut short, interrupted),
        unreadable, or has no manifest (an older cryosegnet): the micrograph is picked again.
    """
    try:
        blocks = read_own_star(star)
    except CryoSegNetError:
        return None
    _, manifest = star_header(star)
    if not manifest or manifest.get("version") != MANIFEST_VERSION:
        return None
    table = next((b for b in blocks.values() if isinstance(b, pd.DataFrame)), None)
    if table is None or "rlnCoordinateX" not in table or len(table) != manifest.get("n_picks"):
        return None
    picks = make_picks(
        table["rlnCoordinateX"],
        table["rlnCoordinateY"],
        table["rlnAutopickFigureOfMerit"],
        manifest.get("diameter_px"),
    )
    return picks, manifest


def result_mismatch(previous, source: dict, options: dict) -> str | None:
    """Why an existing result does not stand for this micrograph with these options.

    Parameters
    ----------
    previous : tuple of (pandas.DataFrame, dict)
        The existing result, from :func:`previous_result`.
    source : dict
        The micrograph now (:func:`source_record`).
    options : dict
        The pick options now (:func:`picker_options`, with :meth:`BatchSizes.options`).

    Returns
    -------
    str or None
        The reason to pick again, or None when the result can be kept.
    """
    _, manifest = previous
    old = manifest.get("source", {})
    if old.get("path") != source["path"]:
        return f"it was picked from another file, {old.get('path')}"
    if (old.get("size"), old.get("mtime_ns")) != (source["size"], source["mtime_ns"]):
        return "the micrograph file has changed since"
    old_options = manifest.get("options", {})
    changed = [k for k in PICK_OPTIONS if old_options.get(k) != options.get(k)]
    if changed:
        return "picked with other options: " + ", ".join(changed)
    return None


def rebuild_index(outdir: str | os.PathLike) -> int:
    """Rewrite ``autopick.star`` and ``particles.star`` from every valid result in ``outdir``.

    Runs under an exclusive ``fcntl`` lock on ``outdir/.cryosegnet.lock`` (released by the
    kernel if the process dies), so concurrent runs into one folder never lose entries.
    Returns the number of micrographs listed.
    """
    outdir = Path(outdir)
    with open(outdir / LOCK_FILE, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            for name in (INDEX_STAR, COMBINED_STAR):
                _refuse_foreign(outdir / name, "index file")
            entries: dict[str, tuple[Path, pd.DataFrame]] = {}
            for star in sorted(outdir.rglob(f"*{OUTPUT_SUFFIX}.star")):
                if any(p.startswith(".") for p in star.relative_to(outdir).parts):
                    continue  # temp files and hidden folders
                previous = previous_result(star)
                if previous is None:
                    continue
                picks, manifest = previous
                name = manifest.get("source", {}).get("name")
                if name and name not in entries:
                    entries[name] = (star, picks)
            # Both texts first, then both files together: the pair never disagrees.
            index = index_star_text([(n, str(s)) for n, (s, _) in entries.items()])
            combined = combined_star_text({n: p for n, (_, p) in entries.items()})
            write_star_texts({outdir / INDEX_STAR: index, outdir / COMBINED_STAR: combined})
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return len(entries)


def start_run(outdir: Path, options: Mapping | None = None):
    """Start a run into ``outdir``: hold a shared lock on it for the run.

    Runs with the same pick options may share a folder (each rebuilds the index from every
    result); a run with other options is refused while another run holds the folder, since
    the two would replace each other's picks of the same micrographs. The first run into an
    idle folder (no other run holds the lock) records its options in the lock file and removes
    the temp files that a killed run left behind.

    Parameters
    ----------
    outdir : Path
        The output folder (it exists).
    options : Mapping, optional
        What changes this run's output (:func:`run_options`); runs compare it.

    Returns
    -------
    file or None
        The open lock file, to close when the run ends; None in a folder that cannot be
        written (every write then fails, and is reported, anyway).

    Raises
    ------
    CryoSegNetError
        Another run with other options is writing into ``outdir``.
    """
    mine = json.loads(json.dumps(dict(options or {}), sort_keys=True, default=str))
    try:
        lock = open(outdir / RUN_LOCK_FILE, "a+")  # noqa: SIM115 - held for the whole run
        guard = open(outdir / LOCK_FILE, "a")  # noqa: SIM115 - closed below
    except OSError:
        return None  # a read-only folder: every write will fail and be reported anyway
    try:
        # One run at a time joins or takes the folder (the index lock), so a run that finds
        # the folder taken always finds the options of the run that took it.
        fcntl.flock(guard.fileno(), fcntl.LOCK_EX)
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another run is writing here: its temp files are live
            lock.seek(0)
            try:
                theirs = json.loads(lock.read() or "{}")
            except ValueError:
                theirs = {}
            changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            if changed:
                lock.close()
                raise CryoSegNetError(
                    f"{outdir}: another cryosegnet run is writing into this folder with other "
                    f"options ({', '.join(changed)}); wait for it to finish or choose another "
                    "output folder"
                ) from None
        else:
            lock.seek(0)
            lock.truncate()
            lock.write(json.dumps(mine, sort_keys=True))
            lock.flush()
            for path in outdir.rglob(f".*{TEMP_MARK}*"):
                if is_temp_file(path) and path.is_file():
                    with contextlib.suppress(OSError):
                        path.unlink()
                        log.info("removed %s, left by an interrupted run", path)
        fcntl.flock(lock.fileno(), fcntl.LOCK_SH)
    finally:
        guard.close()
    return lock


def run_options(options: Mapping, sizes: BatchSizes, formats, box_size) -> dict:
    """What two runs into one folder must agree on: the pick options (:data:`PICK_OPTIONS`),
    an Å diameter, the output formats and the box size."""
    return {
        **{k: options.get(k) for k in PICK_OPTIONS},
        "diameter_angstrom": sizes.angstrom,
        "formats": sorted(set(formats) | {"star"}),
        "box_size": box_size,
    }


def read_for_picking(
    picker, path: Path, sizes: BatchSizes, name: str | os.PathLike | None = None
) -> np.ndarray:
    """Read ``path`` for ``picker``, refusing what cannot be picked, and record its pixel size
    and (with an Å diameter) its diameter in px in ``sizes``; the image (float32) is returned.

    The in-process batch and the Dask workers both read with this. ``name``: what errors name
    (default: ``path``).
    """
    name = path if name is None else name
    micrograph = read_micrograph(path)
    image = micrograph.data
    check_pickable_size(name, image.shape, picker)
    pixel_size = sizes.pixel_sizes.resolve(path, micrograph.pixel_size)
    sizes.seen_pixel_size[path] = pixel_size
    given = getattr(getattr(picker, "postprocess_settings", None), "diameter_override", None)
    diameter, what = given, f"--diameter {given:g} px" if given else ""
    if sizes.angstrom is not None:
        if pixel_size is None:
            raise MicrographError(
                name,
                f"--diameter {sizes.angstrom:g} Å needs the pixel size, and none is "
                "known (no pixel size in its header or an input STAR): give --angpix",
            )
        if not PIXEL_SIZE_RANGE[0] <= pixel_size <= PIXEL_SIZE_RANGE[1]:
            source = "--angpix or the input STAR" if sizes.pixel_sizes.explicit(path) else "header"
            raise MicrographError(
                name,
                f"pixel size {pixel_size:g} Å/px (from its {source}) is outside the range "
                f"{PIXEL_SIZE_RANGE[0]:g}-{PIXEL_SIZE_RANGE[1]:g} Å/px that picking accepts; "
                "give --angpix",
            )
        diameter = angstrom_to_pixels(sizes.angstrom, pixel_size)
        what = f"--diameter {sizes.angstrom:g} Å ({diameter:.1f} px at {pixel_size:g} Å/px)"
        sizes.diameter_px[path] = diameter
    if diameter:
        largest = MAX_DIAMETER_FRACTION * min(image.shape)
        if not MIN_DIAMETER_PX <= diameter <= largest:
            raise MicrographError(
                name,
                f"{what} is outside the range {MIN_DIAMETER_PX:g}-{largest:g} px that picking "
                f"accepts on this {image.shape[1]}x{image.shape[0]} px micrograph (at most half "
                "its short side)",
            )
    return image


def _denoised_chunks(
    picker: Picker,
    paths: list[Path],
    batch_size: int,
    workers: int,
    summary: BatchSummary,
    debug: bool,
    sizes: BatchSizes | None = None,
    particle_size: tuple[BatchParticleSize | None, dict] | None = None,
) -> Iterator[list[tuple]]:
    """Read and denoise ahead of the U-Net (threads: OpenCV and NumPy release the GIL); the
    particle size is the batch's (``particle_size``: it and the micrographs its estimate
    already read and denoised), else read off each micrograph here, while it is in memory."""
    batch_size_px, sampled = particle_size or (None, {})

    sizes = sizes or BatchSizes(None, PixelSizes(), {})

    def load(path: Path) -> tuple:
        if path in sampled:
            denoised, shape, estimate = sampled.pop(path)
        else:
            image = read_for_picking(picker, path, sizes)
            denoised, shape = picker.preprocess(image), image.shape
            size_of = getattr(picker, "size_of", None)  # stand-in pickers may not size
            use_own = sizes.angstrom is None and batch_size_px is None
            pixel_size = sizes.seen_pixel_size.get(path)
            estimate = size_of(image, pixel_size) if size_of is not None and use_own else None
        if batch_size_px is not None:
            working = picker.denoise_settings.working_size
            estimate = batch_size_px.estimate_for(shape, working)
        return path, denoised, shape, estimate

    chunk: list[tuple] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        window = max(batch_size, workers) * 2
        # Consumed entries become None, so a denoised image is freed once it is picked.
        futures: list[Future | None] = [pool.submit(load, p) for p in paths[:window]]
        next_index = len(futures)
        try:
            for position in range(len(paths)):
                future = futures[position]
                assert future is not None  # each position is consumed once, in order
                if next_index < len(paths):
                    futures.append(pool.submit(load, paths[next_index]))
                    next_index += 1
                try:
                    chunk.append(future.result())
                except Exception as exc:
                    record_failure(summary, paths[position], exc, debug)
                    continue
                finally:
                    futures[position] = None  # release the denoised image once consumed
                if len(chunk) >= batch_size:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk
        finally:  # stopped early (Ctrl-C, SIGTERM): don't start reads nobody will pick
            for pending in futures:
                if pending is not None:
                    pending.cancel()


def record_failure(
    summary: BatchSummary, path: Path, exc: BaseException, debug: bool, prefix: str = ""
) -> None:
    """Record that one micrograph failed, as one line, and show that line.

    Parameters
    ----------
    summary : BatchSummary
        Gets ``failures[str(path)]``, the one-line reason.
    path : Path
        The micrograph.
    exc : BaseException
        What went wrong; a :class:`~cryosegnet.errors.CryoSegNetError` is its own message,
        anything else is named by its type.
    debug : bool
        Log the traceback too (else the line goes to stderr).
    prefix : str, optional
        Put before the problem (``"cannot write output: "``).
    """
    if isinstance(exc, CryoSegNetError):
        # An error of the whole step (a broken model's map) names no file: name the micrograph.
        named = str(path) in str(exc) or getattr(exc, "path", None)
        reason = str(exc) if named else f"{path}: {exc}"
    else:
        detail = first_line(exc)
        reason = f"{path}: {prefix}{type(exc).__name__}: {detail}".rstrip(": ")
    if prefix and isinstance(exc, CryoSegNetError):
        reason = f"{path}: {prefix}{exc}"
    summary.failures[str(path)] = reason
    if debug:
        log.exception(reason)
    else:
        tqdm.write(f"ERROR {reason}", file=sys.stderr)


def result_manifest(source: dict, options: dict, result) -> dict:
    """The manifest written beside one micrograph's picks (see :func:`write_outputs`).

    Parameters
    ----------
    source : dict
        The micrograph's identity (path, size, modification time) for ``--continue``.
    options : dict
        The picking options that made these picks, as :func:`picker_options` records them.
    result : PickResult
        Its ``evidence`` (the empty-micrograph test's, when it ran) is kept, so that a user
        can see afterwards how close a micrograph came to being judged empty.

    Returns
    -------
    dict
        JSON-safe manifest.
    """
    manifest = {"version": MANIFEST_VERSION, "source": source, "options": options}
    evidence = getattr(result, "evidence", None)
    if evidence is not None:
        manifest["evidence"] = round(float(evidence), 3)
    size_source = getattr(result, "diameter_source", None)
    if size_source is not None:  # "map": the micrograph's own size estimate was unclear
        manifest["diameter_source"] = size_source
    return manifest


def record_empty(summary: BatchSummary, path: Path, evidence: float) -> None:
    """Record that the empty-micrograph test left ``path`` without picks, and say so.

    Parameters
    ----------
    summary : BatchSummary
        Gets ``path`` in ``empty`` (counted in the end-of-run summary).
    path : Path
        The micrograph.
    evidence : float
        Its particle evidence, below :attr:`EmptySettings.min_evidence`.
    """
    summary.empty.append(str(path))
    log.info(
        "%s: judged empty (evidence %.1f < %g): no picks",
        path,
        evidence,
        EmptySettings().min_evidence,
    )


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
