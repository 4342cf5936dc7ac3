"""Pick a whole session: many micrographs in, RELION/CryoSPARC-ready files out.

One bad micrograph never costs the others: its failure is logged as one line and listed in
the summary. Every file is written atomically, so an interrupted run leaves finished
micrographs intact and nothing half-written; a re-run skips what is already done.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from cryosegnet.errors import MicrographError
from cryosegnet.io.layout import (
    COMBINED_STAR,
    INDEX_STAR,
    make_output_folder,
    refuse_foreign,
)
from cryosegnet.io.micrographs import read_micrograph
from cryosegnet.picking.config import (  # the size rules, shared with the Python API
    MAX_DIAMETER_FRACTION,
    MIN_DIAMETER_PX,
    PIXEL_SIZE_RANGE,
    check_pickable_size,
)
from cryosegnet.picking.particle_size import BatchParticleSize, batch_particle_size
from cryosegnet.picking.picker import Picker
from cryosegnet.picking.results import (
    holding_folder,
    index_into,
    picker_options,
    plan_batch,
    run_options,
    write_result,
)
from cryosegnet.picking.summary import (
    STOP_REQUESTS,
    BatchSummary,
    diameter_source,
    record_failure,
    record_picked,
    sigterm_stops_the_run,
)
from cryosegnet.picking.units import PixelSizes, angstrom_to_pixels, describe_size

if TYPE_CHECKING:
    from cryosegnet.picking.radial_picker import RadialFilterPicker

log = logging.getLogger("cryosegnet")


def pick_batch(
    picker: Picker | RadialFilterPicker,
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

    Parameters
    ----------
    picker : Picker or RadialFilterPicker
        What picks (the U-Net picker, or a saved radial filter); it is not changed.
    micrographs : list of Path
        The micrographs, in order.
    outdir : str or os.PathLike
        The output folder (``cryosegnet pick -o``).
    formats : tuple of str, optional
        Output formats among ``star``, ``csv`` and ``box`` (STAR always).
    overwrite : bool, optional
        Pick again micrographs that already have a valid result.
    batch_size : int, optional
        Micrographs per U-Net batch.
    box_size : float, optional
        Box size of ``.box`` files (default: the diameter).
    workers : int, optional
        Threads reading and denoising ahead of the U-Net.
    progress : bool, optional
        A progress bar (on a terminal) or a line per micrograph.
    debug : bool, optional
        Log full tracebacks of failed micrographs.
    options : dict, optional
        The pick options recorded in each result's manifest (default: the picker's).
    diameter_angstrom : float, optional
        The particle diameter in Å (see above).
    pixel_sizes : PixelSizes, optional
        Pixel sizes given for the micrographs (``--angpix``, an input STAR).
    names : mapping of Path to str, optional
        The names the index files list (see above).
    should_stop : callable, optional
        Asked between micrographs (see above).

    Returns
    -------
    BatchSummary
        What was picked, skipped and failed, with the run's sizes and times.
    """
    outdir = make_output_folder(outdir)
    for name in (INDEX_STAR, COMBINED_STAR):
        refuse_foreign(outdir / name, "index file")
    options = picker_options(picker) if options is None else options
    summary = BatchSummary(outdir=str(outdir), diameter_source=diameter_source(picker))
    sizes = BatchSizes(diameter_angstrom, pixel_sizes or PixelSizes(), dict(names or {}))
    if diameter_angstrom is not None:
        summary.diameter_source = "given"
    run = _BatchRun(picker, outdir, tuple(formats), batch_size, box_size, workers, progress, debug)
    with holding_folder(outdir, run_options(options, sizes, formats, box_size)):
        todo = plan_batch(
            micrographs, outdir, formats, overwrite, box_size, debug, options, summary, sizes
        )
        return _pick_planned(run, todo, options, summary, sizes, should_stop)


@dataclass(frozen=True)
class _BatchRun:
    """What one in-process batch picks with and where it writes.

    :func:`pick_batch`'s arguments, fixed for the whole batch.
    """

    picker: Picker | RadialFilterPicker
    outdir: Path
    formats: tuple[str, ...]
    batch_size: int
    box_size: float | None
    workers: int
    progress: bool
    debug: bool


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
        """The pick options recorded for ``path``.

        An Å diameter with where its pixel size comes from (an unchanged file has an
        unchanged header).
        """
        if self.angstrom is None:
            return options
        source = self.pixel_sizes.explicit(path) or "header"
        return {**options, "diameter": {"angstrom": float(self.angstrom), "pixel_size": source}}


def _pick_planned(
    run: _BatchRun,
    todo: list[tuple[Path, dict]],
    options: dict,
    summary: BatchSummary,
    sizes: BatchSizes,
    should_stop: Callable[[], bool] | None,
) -> BatchSummary:
    """Pick what :func:`plan_batch` left to do, then rebuild the index files.

    Ctrl-C and SIGTERM stop it with what is finished kept and listed.
    """
    start = time.perf_counter()
    bar = tqdm(
        total=len(todo), unit="mic", disable=not run.progress, desc="picking", dynamic_ncols=True
    )
    with sigterm_stops_the_run():
        try:
            _pick_todo(run, todo, options, summary, sizes, should_stop, bar)
        except STOP_REQUESTS:
            summary.interrupted = True
        finally:
            bar.close()
            summary.seconds = time.perf_counter() - start
        index_into(summary, run.outdir, run.outdir)  # still under the SIGTERM handler
    return summary


def _pick_todo(run, todo, options, summary, sizes, should_stop, bar) -> None:
    """Read ahead, pick chunk by chunk and write each micrograph's files as it is done."""
    picker = run.picker
    sources = dict(todo)
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
    n_finished = 0
    chunks = _denoised_chunks(
        picker,
        paths_todo,
        run.batch_size,
        run.workers,
        summary,
        run.debug,
        sizes,
        (batch_size_px, sampled),
    )
    for chunk in chunks:
        if should_stop is not None and should_stop():
            log.info("stop requested: %d micrograph(s) left unpicked", len(todo) - n_finished)
            summary.interrupted = True
            break
        paths = [p for p, _, _, _ in chunk]
        try:
            results = pick_chunk(picker, chunk, sizes)
        except Exception as exc:  # a whole batch failing (e.g. GPU OOM): report each file
            for path in paths:
                record_failure(summary, path, exc, run.debug)
            bar.update(len(paths))
            continue
        for path, result in zip(paths, results, strict=True):
            n_finished += 1
            recorded = sizes.options(path, options)
            if _keep_result(run, path, result, sources[path], recorded, summary, sizes):
                bar.set_postfix(particles=summary.n_particles, refresh=False)
                if not run.progress:  # a batch log gets one line per micrograph, not a bar
                    _log_micrograph(path, result, sizes, n_finished, len(todo))
        bar.update(len(paths))


def _keep_result(run, path: Path, result, source: dict, options: dict, summary, sizes) -> bool:
    """Write one micrograph's files and record it in ``summary``.

    ``source`` and ``options`` go in its manifest (:func:`write_result`). False (a failure
    recorded) when its picks are refused or cannot be written.
    """
    try:
        check_picked_diameter(path, result)
    except MicrographError as exc:
        record_failure(summary, path, exc, run.debug)
        return False
    try:
        layout = sizes.layout(path)
        write_result(run.outdir, layout, result, source, options, run.formats, run.box_size)
    except Exception as exc:  # disk full, read-only, quota...: this one fails
        record_failure(summary, path, exc, run.debug, prefix="cannot write output: ")
        return False
    record_picked(
        summary,
        path,
        result.picks,
        result.diameter,
        sizes.seen_pixel_size.get(path),
        empty_evidence=result.evidence if getattr(result, "empty", False) else None,
        diameter_source=result.diameter_source,
    )
    return True


def _log_micrograph(path: Path, result, sizes, position: int, total: int) -> None:
    """The log line of one picked micrograph (a batch log's stand-in for the progress bar)."""
    size = ""
    if result.diameter and np.isfinite(result.diameter):
        pixel_size = sizes.seen_pixel_size.get(path)
        size = f", diameter {describe_size(result.diameter, pixel_size)}"
        if getattr(result, "diameter_source", None) == "map":
            size += " (unsure: the U-Net map's estimate)"
    log.info("[%d/%d] %s: %d particles%s", position, total, path, len(result.picks), size)


def check_picked_diameter(name, result) -> None:
    """Refuse picks whose particle diameter is too small to be a particle.

    The diameter (estimated from the map, in micrograph pixels) must be at least
    :data:`~cryosegnet.picking.config.MIN_DIAMETER_PX`: smaller "particles" are noise a few
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
    """Pick a chunk of micrographs already read and denoised.

    Each entry is (path, denoised micrograph, shape as read, its size estimate or None,
    :meth:`Picker.size_of`). With an Å diameter, each micrograph is picked at its own pixel
    diameter (:meth:`Picker.told_size`), handed to the picker with the call, not set on it.
    """
    denoised, shapes = [d for _, d, _, _ in chunk], [s for _, _, s, _ in chunk]
    estimates = [e for _, _, _, e in chunk]
    if sizes.angstrom is not None:
        estimates = [
            picker.told_size(sizes.diameter_px[path], shape) for path, _, shape, _ in chunk
        ]
    if any(e is not None for e in estimates):
        return picker.pick_denoised(denoised, shapes, estimates)
    return picker.pick_denoised(denoised, shapes)


def read_for_picking(
    picker, path: Path, sizes: BatchSizes, name: str | os.PathLike | None = None
) -> np.ndarray:
    """Read ``path`` for ``picker``, refusing what cannot be picked.

    Its pixel size and (with an Å diameter) its diameter in px are recorded in ``sizes``; the
    image (float32) is returned.

    The in-process batch and the Dask workers both read with this. ``name``: what errors name
    (default: ``path``).
    """
    name = path if name is None else name
    micrograph = read_micrograph(path)
    image = micrograph.data
    check_pickable_size(name, image.shape, picker)
    pixel_size = sizes.pixel_sizes.resolve(path, micrograph.pixel_size)
    sizes.seen_pixel_size[path] = pixel_size
    check_pixel_size = getattr(picker, "check_pixel_size", None)  # a saved radial filter's
    if check_pixel_size is not None:
        check_pixel_size(name, pixel_size)
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


def read_and_denoise(
    picker, path: Path, sizes: BatchSizes, own_size: bool, name: str | os.PathLike | None = None
) -> tuple:
    """One entry of a chunk for :func:`pick_chunk`: the micrograph read and denoised.

    ``path`` is read with :func:`read_for_picking`; the entry is (path, denoised image, shape
    as read, size estimate). The estimate is :meth:`Picker.size_of` with ``own_size``, else
    None (the size then comes with the call: an Å diameter, or the batch's). The in-process
    batch and the Dask workers both prepare micrographs with this.
    """
    image = read_for_picking(picker, path, sizes, name)
    denoised = picker.preprocess(image)
    size_of = getattr(picker, "size_of", None)  # stand-in pickers may not size
    pixel_size = sizes.seen_pixel_size.get(path)
    estimate = size_of(image, pixel_size) if size_of is not None and own_size else None
    return path, denoised, image.shape, estimate


def _denoised_chunks(
    picker: Picker | RadialFilterPicker,
    paths: list[Path],
    batch_size: int,
    workers: int,
    summary: BatchSummary,
    debug: bool,
    sizes: BatchSizes | None = None,
    particle_size: tuple[BatchParticleSize | None, dict] | None = None,
) -> Iterator[list[tuple]]:
    """Read and denoise ahead of the U-Net (threads: OpenCV and NumPy release the GIL).

    The particle size is the batch's (``particle_size``: it and the micrographs its estimate
    already read and denoised), else read off each micrograph here, while it is in memory.
    """
    batch_size_px, sampled = particle_size or (None, {})

    sizes = sizes or BatchSizes(None, PixelSizes(), {})

    def load(path: Path) -> tuple:
        if path in sampled:
            denoised, shape, estimate = sampled.pop(path)
        else:
            own_size = sizes.angstrom is None and batch_size_px is None
            _, denoised, shape, estimate = read_and_denoise(picker, path, sizes, own_size)
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
