"""What a pick run reports: its summary, each failure as one line, and the exit code.

Every way of picking (in process, watching a folder, on a Dask cluster) reports through these,
so a batch log and its exit code read the same whichever ran it. Stopping a run (Ctrl-C, a
queue system's SIGTERM) is a stop request here, not a failure.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cryosegnet.errors import CryoSegNetError, first_line
from cryosegnet.io.layout import COMBINED_STAR, INDEX_STAR

log = logging.getLogger("cryosegnet")


def failure_lines(failures: dict, index_failure: str | None) -> list[str]:
    """The end-of-run lines for failed micrographs (one per reason) and a failed index write.

    Shared by every command's summary, so a batch log always reads the same.
    """
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
        """Picks written by this run, over every micrograph it picked."""
        return int(sum(len(p) for p in self.done.values()))

    def text(self) -> str:
        """The end-of-run summary: counts, sizes, failures and where the files went."""
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
                f"judged empty (--skip-empty: no particle evidence), no picks: "
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
    """Where ``picker``'s particle diameter comes from, as :class:`BatchSummary` reports it.

    ``given`` (a diameter override), ``model`` (a fine-tuned model's labels) or
    ``estimated``.
    """
    if getattr(getattr(picker, "postprocess_settings", None), "diameter_override", None):
        return "given"
    if getattr(picker, "model_diameter", None):
        return "model"
    return "estimated"


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


def record_empty(summary: BatchSummary, path: Path, evidence: float) -> None:
    """Record that the empty-micrograph test left ``path`` without picks, and say so.

    Parameters
    ----------
    summary : BatchSummary
        Gets ``path`` in ``empty`` (counted in the end-of-run summary).
    path : Path
        The micrograph.
    evidence : float
        Its particle evidence, under the cut of the test that ran (the U-Net picker's
        :attr:`EmptySettings.min_evidence`, a radial filter's ``min_tail_ratio``).
    """
    summary.empty.append(str(path))
    log.info("%s: judged empty (particle evidence %.2f, under the cut): no picks", path, evidence)


def record_picked(
    summary: BatchSummary,
    path: Path,
    picks: pd.DataFrame,
    diameter: float | None,
    pixel_size: float | None,
    *,
    empty_evidence: float | None = None,
    diameter_source: str | None = None,
) -> None:
    """Record one micrograph whose files are written: its picks, and its size for the summary.

    Parameters
    ----------
    summary : BatchSummary
        Gets ``done[str(path)]``, and the diameter with its pixel size when there is one.
    path : Path
        The micrograph.
    picks : pandas.DataFrame
        Its picks, as written.
    diameter : float or None
        Its particle diameter in micrograph pixels (None or 0: none).
    pixel_size : float or None
        Its pixel size in Å (None: unknown).
    empty_evidence : float or None, optional
        The particle evidence of a micrograph the empty-micrograph test left without picks
        (:func:`record_empty`); None when it was not judged empty.
    diameter_source : str or None, optional
        Where its diameter came from (``PickResult.diameter_source``), when known.
    """
    summary.done[str(path)] = picks
    if empty_evidence is not None:
        record_empty(summary, path, float(empty_evidence))
    if diameter:
        summary.diameters.append(float(diameter))
        if diameter_source is not None:
            summary.diameter_sources.append(diameter_source)
        summary.pixel_sizes.append(pixel_size)


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
    """Make SIGTERM stop a run as Ctrl-C does.

    While inside, SIGTERM raises a stop request (see :data:`STOP_REQUESTS`) in the main
    thread, as Ctrl-C does, so a run can keep its finished work and write its index; the
    previous handler is restored on leaving. Outside the main thread it does nothing.
    """
    if not in_main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def in_main_thread() -> bool:
    """Whether this is the main thread (the only one that may install signal handlers)."""
    return threading.current_thread() is threading.main_thread()
