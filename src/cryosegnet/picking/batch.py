"""Pick a whole session: many micrographs in, RELION/CryoSPARC-ready files out.

One bad micrograph never costs the others: its failure is logged as one line and listed in
the summary. Every file is written atomically, so an interrupted run leaves finished
micrographs intact and nothing half-written; a re-run skips what is already done.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cryosegnet.io.coordinates import (
    read_coordinates,
    write_box,
    write_combined_star,
    write_coordinate_star,
    write_cryoppp_csv,
    write_index_star,
)
from cryosegnet.io.errors import CryoSegNetError
from cryosegnet.io.micrographs import micrograph_stem, read_micrograph
from cryosegnet.picking.picker import Picker, PickResult

log = logging.getLogger("cryosegnet")

INDEX_STAR = "autopick.star"
COMBINED_STAR = "particles.star"
OUTPUT_FORMATS = ("star", "csv", "box")


@dataclass
class BatchSummary:
    """What a batch did; ``failures`` maps micrograph path to its one-line reason."""

    done: dict[str, pd.DataFrame] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    diameters: list[float] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def n_particles(self) -> int:
        return int(sum(len(p) for p in self.done.values()))

    def text(self) -> str:
        n_new = len(self.done) - len(self.skipped)
        lines = [
            f"micrographs picked: {n_new}  (skipped, already done: {len(self.skipped)})",
            f"particles: {self.n_particles}",
        ]
        if self.diameters:
            lines.append(f"estimated diameter: {np.median(self.diameters):.1f} px (median)")
        if n_new and self.seconds:
            lines.append(f"time: {self.seconds:.1f} s ({n_new / self.seconds:.2f} micrographs/s)")
        if self.failures:
            lines.append(f"FAILED: {len(self.failures)} micrograph(s)")
            lines += [f"  {reason}" for reason in self.failures.values()]
        if self.interrupted:
            lines.append("INTERRUPTED: re-run the same command to finish the rest")
        return "\n".join(lines)


def coordinate_path(outdir: Path, micrograph: Path) -> Path:
    return outdir / f"{micrograph_stem(micrograph)}.star"


def _write_outputs(
    outdir: Path,
    micrograph: Path,
    result: PickResult,
    formats: tuple[str, ...],
    box_size: float | None,
) -> None:
    stem = micrograph_stem(micrograph)
    picks = result.picks
    written: list[Path] = []
    try:
        # Extra formats first: the STAR is the 'done' marker, so it is written last.
        if "csv" in formats:
            write_cryoppp_csv(outdir / f"{stem}.csv", picks, diameter=result.diameter)
            written.append(outdir / f"{stem}.csv")
        if "box" in formats:
            size = box_size or result.diameter or 0.0
            write_box(outdir / f"{stem}.box", picks, box_size=size)
            written.append(outdir / f"{stem}.box")
        write_coordinate_star(coordinate_path(outdir, micrograph), picks)
    except BaseException:
        # No orphan CSV/box without its STAR: the micrograph has all its outputs or none.
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise


class _Terminate(BaseException):
    """Raised from the SIGTERM handler so a batch stops like it does on Ctrl-C.

    A BaseException, like KeyboardInterrupt, so the per-micrograph ``except Exception``
    handlers cannot mistake a stop request for one micrograph's failure.
    """


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise _Terminate()


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
) -> BatchSummary:
    """Pick every micrograph, write per-micrograph files, the RELION index and the combined STAR."""
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise CryoSegNetError(f"{outdir}: output path exists and is not a folder") from exc
    except OSError as exc:
        raise CryoSegNetError(
            f"{outdir}: cannot create the output folder ({exc.strerror or exc})"
        ) from exc
    if not os.access(outdir, os.W_OK):
        raise CryoSegNetError(f"{outdir}: output folder is not writable")
    summary = BatchSummary()
    todo: list[Path] = []
    for path in micrographs:
        star = coordinate_path(outdir, path)
        if star.exists() and not overwrite:
            try:
                summary.done[str(path)] = _previous_picks(star)
                summary.skipped.append(str(path))
                continue
            except CryoSegNetError:
                pass  # unreadable previous output: pick again
        todo.append(path)
    _check_unique_stems(todo)

    start = time.perf_counter()
    bar = tqdm(
        total=len(todo), unit="mic", disable=not progress, desc="picking", dynamic_ncols=True
    )
    previous_handler = signal.getsignal(signal.SIGTERM)
    in_main_thread = _in_main_thread()
    try:
        if in_main_thread:  # inside the try: a SIGTERM right after this is caught below
            signal.signal(signal.SIGTERM, _on_sigterm)
        for chunk in _denoised_chunks(picker, todo, batch_size, workers, summary, debug):
            paths = [p for p, _, _ in chunk]
            try:
                results = picker.pick_denoised([d for _, d, _ in chunk], [s for _, _, s in chunk])
            except Exception as exc:  # a whole batch failing (e.g. GPU OOM): report each file
                for path in paths:
                    _record_failure(summary, path, exc, debug)
                bar.update(len(paths))
                continue
            for path, result in zip(paths, results, strict=True):
                try:
                    _write_outputs(outdir, path, result, formats, box_size)
                except Exception as exc:  # disk full, read-only, quota...: this one fails
                    _record_failure(summary, path, exc, debug, prefix="cannot write output: ")
                    continue
                summary.done[str(path)] = result.picks
                if result.diameter:
                    summary.diameters.append(float(result.diameter))
                bar.set_postfix(particles=summary.n_particles, refresh=False)
            bar.update(len(paths))
    except (KeyboardInterrupt, _Terminate):
        summary.interrupted = True
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
    try:
        # Still under our SIGTERM handler: a kill now must not leave a temp index file behind.
        _write_session_files(outdir, summary)
    except (KeyboardInterrupt, _Terminate):
        summary.interrupted = True
    except Exception as exc:
        summary.failures[str(outdir)] = f"{outdir}: cannot write the index STAR files ({exc})"
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)
    return summary


def _previous_picks(star: Path) -> pd.DataFrame:
    """Picks of an earlier run; a file without a coordinate table (empty, garbage, cut short by
    another tool) is not 'done' with zero particles but unreadable, so it gets picked again."""
    try:
        complete = "_rlnCoordinateX" in star.read_text(errors="replace")
    except OSError as exc:
        raise CryoSegNetError(f"{star}: unreadable ({exc})") from exc
    if not complete:
        raise CryoSegNetError(f"{star}: no coordinate table")
    return read_coordinates(star)


def _write_session_files(outdir: Path, summary: BatchSummary) -> None:
    names = {path: str(path) for path in summary.done}
    write_index_star(
        outdir / INDEX_STAR,
        [(names[p], str(coordinate_path(outdir, Path(p)))) for p in summary.done],
    )
    write_combined_star(
        outdir / COMBINED_STAR, {names[p]: picks for p, picks in summary.done.items()}
    )


def _denoised_chunks(
    picker: Picker,
    paths: list[Path],
    batch_size: int,
    workers: int,
    summary: BatchSummary,
    debug: bool,
) -> Iterator[list[tuple[Path, np.ndarray, tuple[int, int]]]]:
    """Read and denoise ahead of the U-Net (threads: OpenCV and NumPy release the GIL)."""

    def load(path: Path) -> tuple[Path, np.ndarray, tuple[int, int]]:
        image = read_micrograph(path).data
        return path, picker.preprocess(image), image.shape

    chunk: list[tuple[Path, np.ndarray, tuple[int, int]]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        window = max(batch_size, workers) * 2
        futures = [pool.submit(load, p) for p in paths[:window]]
        next_index = len(futures)
        try:
            for position in range(len(paths)):
                future = futures[position]
                if next_index < len(paths):
                    futures.append(pool.submit(load, paths[next_index]))
                    next_index += 1
                try:
                    chunk.append(future.result())
                except Exception as exc:
                    _record_failure(summary, paths[position], exc, debug)
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


def _record_failure(
    summary: BatchSummary, path: Path, exc: BaseException, debug: bool, prefix: str = ""
) -> None:
    if isinstance(exc, CryoSegNetError):
        reason = str(exc)
    else:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        reason = f"{path}: {prefix}{type(exc).__name__}: {detail}".rstrip(": ")
    if prefix and isinstance(exc, CryoSegNetError):
        reason = f"{path}: {prefix}{exc}"
    summary.failures[str(path)] = reason
    if debug:
        log.exception(reason)
    else:
        tqdm.write(f"ERROR {reason}", file=sys.stderr)


def _check_unique_stems(paths: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in paths:
        stem = micrograph_stem(path)
        if stem in seen:
            raise CryoSegNetError(
                f"{path}: same name as {seen[stem]}; outputs are named by micrograph stem, "
                "so pick these folders separately"
            )
        seen[stem] = path


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
