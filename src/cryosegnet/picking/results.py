"""What a pick run keeps: each micrograph's result with its manifest, resume, the index files.

Every result is one coordinate STAR (and the CSV/box files beside it) whose header holds a
manifest: the micrograph it was picked from (path, size, modification time) and the options
that picked it. A re-run reads the manifest to skip what is done (:func:`result_mismatch`);
the index files (``autopick.star``, ``particles.star``) are rebuilt from every valid result
under a lock (:func:`rebuild_index`), so earlier and concurrent runs are kept; a run holds a
shared lock on its folder for its whole length (:func:`start_run`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cryosegnet.errors import CryoSegNetError
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
from cryosegnet.io.layout import (
    COMBINED_STAR,
    INDEX_STAR,
    LOCK_FILE,
    OUTPUT_FORMATS,
    OUTPUT_SUFFIX,
    RUN_LOCK_FILE,
    coordinate_path,
    output_path,
    refuse_foreign,
)
from cryosegnet.picking.summary import STOP_REQUESTS, BatchSummary, record_failure

if TYPE_CHECKING:
    from cryosegnet.picking.batch import BatchSizes

log = logging.getLogger("cryosegnet")

MANIFEST_VERSION = 1
# Manifest entries that, when they differ, mean the picks would differ: pick again.
PICK_OPTIONS = ("threshold", "diameter", "model_sha256", "stage", "settings")


def source_record(micrograph: Path, name: str | None = None) -> dict:
    """What identifies the micrograph a result was picked from.

    ``name``: the name the index files give it (default: the path as given).
    """
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


def _sizes_vary(picks: pd.DataFrame) -> bool:
    """The picks carry diameters of their own (blobs sized within a range), not one for all."""
    sizes = picks["diameter"].to_numpy(float) if "diameter" in picks else np.array([])
    sizes = sizes[np.isfinite(sizes)]
    return bool(sizes.size) and bool((sizes != sizes[0]).any())


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
    if getattr(result, "empty", False):  # the report says why it has no picks
        manifest["judged_empty"] = True
    size_source = getattr(result, "diameter_source", None)
    if size_source is not None:  # "map": the micrograph's own size estimate was unclear
        manifest["diameter_source"] = size_source
    return manifest


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
            # Picks sized one by one (a size range) keep their own diameters.
            write_cryoppp_csv(path, picks, diameter=None if _sizes_vary(picks) else diameter)
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


def write_result(
    outdir: Path,
    micrograph: Path,
    result,
    source: dict,
    options: dict,
    formats: tuple[str, ...],
    box_size: float | None,
) -> None:
    """Write one micrograph's :class:`PickResult` with its manifest (:func:`result_manifest`).

    Parameters
    ----------
    outdir : Path
        The output folder.
    micrograph : Path
        The name the output layout follows (:func:`write_outputs`).
    result : PickResult
        Its picks and particle diameter.
    source : dict
        The micrograph's identity (:func:`source_record`).
    options : dict
        The pick options that made these picks.
    formats : tuple of str
        Formats to write.
    box_size : float or None
        Box size of the ``.box`` file (default: the diameter).
    """
    manifest = result_manifest(source, options, result)
    write_outputs(outdir, micrograph, result.picks, result.diameter, formats, box_size, manifest)


def _median_diameter(picks: pd.DataFrame) -> float | None:
    values = picks["diameter"].to_numpy(float) if "diameter" in picks else np.array([])
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.median(values)) if len(values) else None


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
            refuse_foreign(star, "coordinate file")
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
        other = other_micrograph(previous, source)
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
                    complete_formats(outdir, sizes.layout(path), previous, formats, box_size)
                except Exception as exc:
                    record_failure(summary, path, exc, debug, prefix="cannot write output: ")
                    continue
                summary.done[str(path)] = previous[0]
                summary.skipped.append(str(path))
                continue
            log.info("%s: picking again (%s: %s)", path, star, reason)
        todo.append((path, source))
    return todo


def complete_formats(outdir, path, previous, formats, box_size) -> None:
    """Write the requested formats an existing result lacks, from its picks.

    Also those whose box size differs, or that its manifest does not list as written with its
    picks; nothing is picked again.
    """
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


def other_micrograph(previous, source: dict) -> str | None:
    """The micrograph an existing result was picked from, when another file than ``source``.

    None when it is the same file, or there is no valid result.
    """
    if previous is None:
        return None
    old = previous[1].get("source", {})
    if not old.get("path") or old.get("path") == source["path"]:
        return None
    return str(old.get("name") or old.get("path"))


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
                refuse_foreign(outdir / name, "index file")
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


@contextlib.contextmanager
def holding_folder(outdir: Path, options: Mapping) -> Iterator[None]:
    """Hold ``outdir`` for a run (:func:`start_run`) while inside; let it go however it ends.

    Parameters
    ----------
    outdir : Path
        The output folder (it exists).
    options : Mapping
        What changes this run's output (:func:`run_options`).

    Raises
    ------
    CryoSegNetError
        Another run with other options is writing into ``outdir``.
    """
    lock = start_run(outdir, options)
    try:
        yield
    finally:
        if lock is not None:
            with contextlib.suppress(OSError):
                lock.close()


def index_into(summary: BatchSummary, outdir: Path, shown: str | os.PathLike) -> None:
    """Rebuild the index files at a run's end (:func:`rebuild_index`), into ``summary``.

    Their entry count, or the one-line failure naming ``shown`` (the folder as the user gave
    it); a stop request meanwhile marks the run interrupted. Called under the run's SIGTERM
    handler, so a kill now leaves no temp index file behind.
    """
    try:
        summary.index_entries = rebuild_index(outdir)
    except STOP_REQUESTS:
        summary.interrupted = True
    except Exception as exc:
        summary.index_failure = f"{shown}: cannot write the index STAR files ({exc})"


def run_options(options: Mapping, sizes: BatchSizes, formats, box_size) -> dict:
    """What two runs into one folder must agree on.

    The pick options (:data:`PICK_OPTIONS`), an Å diameter, the output formats and the box
    size.
    """
    return {
        **{k: options.get(k) for k in PICK_OPTIONS},
        "diameter_angstrom": sizes.angstrom,
        "formats": sorted(set(formats) | {"star"}),
        "box_size": box_size,
    }
