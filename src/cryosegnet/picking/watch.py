"""Pick during collection: watch a folder and pick each micrograph once it is fully written.

A file is picked once its size and modification time have not changed for ``settle``
seconds (seen unchanged across scans, and last modified at least that long ago), so a
micrograph still being written or copied is never read. Hidden files (``.name``, as rsync and
many transfer tools write before renaming) are ignored. Each micrograph goes through
:func:`~cryosegnet.picking.batch.pick_batch`, which writes its files atomically and rebuilds
``autopick.star`` and ``particles.star`` from every valid result under a lock, so the index
files are consistent after every micrograph. Stopped and started again, the watch skips what
is already picked (``pick_batch``'s resume) and carries on. It stops after ``timeout`` seconds
with no new or changing file, on Ctrl-C or on SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryosegnet.errors import CryoSegNetError
from cryosegnet.io.layout import coordinate_path
from cryosegnet.io.micrographs import MICROGRAPH_SUFFIXES
from cryosegnet.io.paths import what_is_at
from cryosegnet.picking.batch import BatchSizes, pick_batch
from cryosegnet.picking.results import (
    picker_options,
    previous_result,
    result_mismatch,
    source_record,
)
from cryosegnet.picking.summary import (
    STOP_REQUESTS,
    BatchSummary,
    failure_lines,
    sigterm_stops_the_run,
)
from cryosegnet.picking.units import PixelSizes

log = logging.getLogger("cryosegnet")

# A file must keep its size and modification time this long before it is read.
DEFAULT_SETTLE_SECONDS = 5.0
# Time between two scans of the watched folder.
DEFAULT_WATCH_INTERVAL = 2.0
# Stop after this long with no new or changing micrograph (end of the session).
DEFAULT_WATCH_TIMEOUT = 3600.0


@dataclass
class WatchSummary:
    """What a watch did, over all the batches it ran."""

    picked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    n_particles: int = 0
    index_entries: int = 0
    index_failure: str | None = None
    interrupted: bool = False
    seconds: float = 0.0
    outdir: str | None = None

    def add(self, batch: BatchSummary) -> None:
        skipped = set(batch.skipped)
        for path in batch.done:  # picked after all (a file rewritten after a failed read)
            self.failures.pop(path, None)
        self.picked += [p for p in batch.done if p not in skipped]
        self.skipped += batch.skipped
        self.failures.update(batch.failures)
        self.n_particles += sum(len(t) for p, t in batch.done.items() if p not in skipped)
        self.index_entries = batch.index_entries or self.index_entries
        self.index_failure = batch.index_failure or self.index_failure
        self.interrupted = self.interrupted or batch.interrupted

    def text(self) -> str:
        lines = [
            f"watch: micrographs picked: {len(self.picked)}  (skipped, already done: "
            f"{len(self.skipped)})",
            f"particles: {self.n_particles}",
            f"time: {self.seconds:.0f} s",
        ]
        if self.outdir is not None:
            lines.append(f"output folder: {self.outdir}")
        if self.index_entries:
            lines.append(f"index files: {self.index_entries} micrograph(s)")
        lines += failure_lines(self.failures, self.index_failure)
        if self.interrupted:
            lines.append("INTERRUPTED: run the same command again to carry on")
        return "\n".join(lines)


def _signature(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of a regular file, else None."""
    try:
        stat = path.stat()
    except OSError:
        return None
    import stat as stat_module

    if not stat_module.S_ISREG(stat.st_mode):
        return None
    return int(stat.st_size), int(stat.st_mtime_ns)


def scan(folder: Path) -> list[Path]:
    """The micrograph files directly in ``folder`` (no hidden files), oldest first."""
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise CryoSegNetError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from exc
    files = [
        p for p in entries if not p.name.startswith(".") and p.suffix.lower() in MICROGRAPH_SUFFIXES
    ]
    signatures = {p: sig for p in files if (sig := _signature(p)) is not None}
    return sorted(signatures, key=lambda p: (signatures[p][1], p.name))


def check_watch_options(folder, settle: float, interval: float, timeout: float) -> None:
    """Refuse a missing folder and negative or non-finite times before anything is loaded."""
    if not Path(folder).is_dir():
        what = what_is_at(folder)
        problem = "no such folder" if what == "nothing" else f"is {what}, not a folder"
        raise CryoSegNetError(f"--watch {folder}: {problem}")
    for name, value in (
        ("--settle", settle),
        ("--watch-interval", interval),
        ("--watch-timeout", timeout),
    ):
        if not (0 <= value < float("inf")):
            raise CryoSegNetError(f"{name}: must be a finite number >= 0 (got {value})")


def watch_folder(
    picker,
    folder: str | os.PathLike,
    outdir: str | os.PathLike,
    settle: float = DEFAULT_SETTLE_SECONDS,
    interval: float = DEFAULT_WATCH_INTERVAL,
    timeout: float = DEFAULT_WATCH_TIMEOUT,
    batch_size: int = 1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    pick: Callable[[list[Path]], BatchSummary] | None = None,
    **batch_options,
) -> WatchSummary:
    """Pick the micrographs of ``folder`` as they appear, into ``outdir``, until idle.

    ``settle``: seconds a file's size and modification time must stay unchanged before it is
    read. ``interval``: seconds between scans. ``timeout``: stop after this many seconds with
    no new or changing micrograph. ``batch_size``: micrographs per ``pick_batch`` call (and
    per index rebuild). Other keyword arguments go to
    :func:`~cryosegnet.picking.batch.pick_batch` (``formats``, ``overwrite``, ``box_size``,
    ``workers``, ``debug``). A file that changes after it was picked is picked again.
    ``pick``: how one chunk of ready micrographs is picked into ``outdir``; default
    ``pick_batch`` with ``picker`` in this process (the Dask path passes one that sends the
    chunk to its cluster, picking/distributed.py).
    """
    check_watch_options(folder, settle, interval, timeout)
    folder = Path(folder)
    outdir = Path(outdir)
    batch_options.setdefault("progress", False)
    summary = WatchSummary(outdir=str(outdir))
    start = clock()
    log.info(
        "watching %s (a file is picked once unchanged for %g s; stops after %g s idle)",
        folder,
        settle,
        timeout,
    )
    loop = _WatchLoop(
        picker, folder, outdir, settle, interval, timeout, batch_size, clock, sleep, pick,
        batch_options,
    )  # fmt: skip
    with sigterm_stops_the_run(), _timed(summary, clock, start):
        return _watch(loop, summary, start)  # until idle, or stopped (Ctrl-C, SIGTERM)


@dataclass(frozen=True)
class _WatchLoop:
    """What :func:`watch_folder` was asked, handed to its loop as one value."""

    picker: Any  # a Picker, or a stand-in with its interface (tests, the Dask path)
    folder: Path
    outdir: Path
    settle: float
    interval: float
    timeout: float
    batch_size: int
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    pick: Callable[[list[Path]], BatchSummary] | None
    batch_options: dict


@contextlib.contextmanager
def _timed(summary: WatchSummary, clock: Callable[[], float], start: float) -> Iterator[None]:
    """Record the watch's length in ``summary``, however it ends."""
    try:
        yield
    finally:
        summary.seconds = clock() - start


def _watch(loop: _WatchLoop, summary: WatchSummary, start: float) -> WatchSummary:
    """:func:`watch_folder`'s loop: scan, pick what settled, stop when idle or asked to."""
    picker, folder, outdir, clock = loop.picker, loop.folder, loop.outdir, loop.clock
    pick, batch_options = loop.pick, loop.batch_options
    options = picker_options(picker)
    overwrite = bool(batch_options.get("overwrite", False))
    # What pick_batch records per micrograph (an Å diameter adds its pixel size's source).
    sizes = BatchSizes(
        batch_options.get("diameter_angstrom"), batch_options.get("pixel_sizes") or PixelSizes(), {}
    )
    last_activity = start
    # path -> (size, mtime_ns, when first seen with it); path -> signature handled.
    pending: dict[Path, tuple[tuple[int, int], float]] = {}
    handled: dict[Path, tuple[int, int]] = {}
    try:
        while True:
            now = clock()
            ready, settling = _settled_files(folder, pending, handled, now, loop.settle)
            if settling:
                last_activity = now  # a new file, or one still settling, keeps the watch alive
            # Files already picked (a restart): one call skips them all (writing any format
            # they lack) and rebuilds the index once; then the new ones, batch by batch.
            done = [
                p
                for p in ready
                if not overwrite and _already_done(outdir, p, sizes.options(p, options))
            ]
            todo = [p for p in ready if p not in done]
            chunks = [done] if done else []
            step = max(1, loop.batch_size)
            chunks += [todo[i : i + step] for i in range(0, len(todo), step)]
            for chunk in chunks:
                batch = (
                    pick(chunk)
                    if pick is not None
                    else pick_batch(
                        picker, chunk, outdir, batch_size=step, options=options, **batch_options
                    )
                )
                summary.add(batch)
                if batch.interrupted:
                    summary.interrupted = True
                    return summary
            if todo:
                last_activity = clock()
            if clock() - last_activity >= loop.timeout:
                log.info("watch: nothing new in %s for %g s, stopping", folder, loop.timeout)
                return summary
            loop.sleep(loop.interval)
    except STOP_REQUESTS:
        summary.interrupted = True
        return summary


def _settled_files(
    folder: Path,
    pending: dict[Path, tuple[tuple[int, int], float]],
    handled: dict[Path, tuple[int, int]],
    now: float,
    settle: float,
) -> tuple[list[Path], bool]:
    """One scan: the files now ready to pick (unchanged for ``settle`` s; moved from
    ``pending`` to ``handled``), and whether any file is new or still settling."""
    ready: list[Path] = []
    settling = False
    for path in scan(folder):
        signature = _signature(path)
        if signature is None or handled.get(path) == signature:
            continue
        seen = pending.get(path)
        if seen is None or seen[0] != signature:
            pending[path] = (signature, now)
            settling = True
            continue
        unchanged_for = now - seen[1]
        age = time.time() - signature[1] / 1e9
        # (A modification time in the future, a skewed file server's clock: the observed
        # stability alone decides.)
        if unchanged_for >= settle and (age >= settle or age < 0):
            ready.append(path)
        else:
            settling = True
    for path in ready:
        handled[path] = pending.pop(path)[0]
    return ready, settling


def _already_done(outdir: Path, path: Path, options: dict) -> bool:
    """A valid result of this very file with these options exists (pick_batch would skip it):
    checked here so a restart over a long session does not rebuild the index per file."""
    star = coordinate_path(outdir, path)
    if not star.is_file():
        return False
    previous = previous_result(star)
    if previous is None:
        return False
    try:
        return result_mismatch(previous, source_record(path), options) is None
    except OSError:
        return False
