"""Pick a session on a Dask cluster: every worker of every node, one index written by one process.

    summary = pick_distributed(micrographs, "picks", {"model": None, "stage": "peaks"},
                               n_workers=2)                      # a local cluster, 2 processes
    summary = pick_distributed(micrographs, "picks", options,
                               scheduler="tcp://head:8786")      # an existing cluster

The engine is ``dask.distributed``. Each task is one micrograph: the worker reads it from the
shared file system, runs the whole pipeline with a :class:`~cryosegnet.picking.picker.Picker`
it builds once and keeps (one per worker process and set of options, so the models load once)
and writes that micrograph's files atomically, exactly as :func:`~cryosegnet.picking.batch.
pick_batch` does. Only the client (this process) writes the index files (``autopick.star``,
``particles.star``), by :func:`~cryosegnet.picking.results.rebuild_index` once every task is
done, so no two processes ever write them.

A worker that dies (killed, out of memory, node lost) loses nothing: the scheduler re-runs its
tasks on the other workers (a micrograph that kills ``distributed.scheduler.allowed-failures``
workers in a row is reported as failed). Because every write is atomic and a result depends
only on the micrograph and the options, a micrograph that ran twice has one, identical,
result. The output files are those of a single-process run: same picks, same manifest, same
index.

Paths: the client resolves every micrograph and output folder to an absolute path, and the
workers read and write those paths, so they must see the shared file system at the same mount
points (the usual set-up of a cluster; see docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryosegnet.errors import CryoSegNetError, first_line
from cryosegnet.io.layout import make_output_folder, relative_folder
from cryosegnet.picking import results
from cryosegnet.picking.batch import BatchSizes, check_picked_diameter, pick_chunk, read_and_denoise
from cryosegnet.picking.job import Dask, PickerSpec, PickJob
from cryosegnet.picking.summary import (
    STOP_REQUESTS,
    BatchSummary,
    record_failure,
    record_picked,
    sigterm_stops_the_run,
)
from cryosegnet.picking.units import PixelSizes
from cryosegnet.picking.watch import WatchSummary

log = logging.getLogger("cryosegnet")

# One Picker per worker process and set of options: the models load once per worker.
_PICKERS: dict[str, object] = {}
_PICKERS_LOCK = threading.Lock()


@dataclass
class ClusterSummary(BatchSummary):
    """A :class:`BatchSummary` with what each worker did (micrographs and busy seconds)."""

    per_worker: dict[str, int] = field(default_factory=dict)
    worker_seconds: dict[str, float] = field(default_factory=dict)
    n_workers: int = 0

    def text(self) -> str:
        lines = [super().text()]
        if self.per_worker:
            lines.append(f"workers: {self.n_workers} (micrographs, micrographs/s while busy)")
            for worker in sorted(self.per_worker):
                n, busy = self.per_worker[worker], self.worker_seconds.get(worker, 0.0)
                rate = f"{n / busy:.2f}/s" if busy > 0 else "-"
                lines.append(f"  {worker}: {n} ({rate})")
        return "\n".join(lines)


def _worker_picker(
    spec: PickerSpec, devices: Sequence[str] | None, threads: int | None, worker_name=None
):
    """The Picker of this worker process for ``spec`` (built on first use, never changed)."""
    device = _device_of_this_worker(devices, worker_name) if devices else None
    key = spec.key(device)
    with _PICKERS_LOCK:
        picker = _PICKERS.get(key)
        if picker is None:
            if threads:
                _set_compute_threads(threads)
            picker = spec.build(device)
            _PICKERS[key] = picker
    return picker


def _preload(
    spec: PickerSpec, devices: Sequence[str] | None, threads: int | None, dask_worker=None
) -> None:
    """Build this worker's picker and run its U-Net once (loads the CPU runtime's session)."""
    import numpy as np

    name = getattr(dask_worker, "name", None)
    picker = _worker_picker(spec, devices, threads, worker_name=name)
    if getattr(picker.mask_generator, "needs_unet", True):  # type: ignore[attr-defined]
        picker.probability_maps([np.zeros((64, 64), np.uint8)])  # type: ignore[attr-defined]


def _device_of_this_worker(devices: Sequence[str], name=None) -> str:
    """``devices[i % len(devices)]`` for the i-th worker of a local cluster (named 0, 1, ...);
    other workers hash their name onto the list."""
    if name is None:
        try:
            from distributed import get_worker

            name = get_worker().name
        except (ImportError, ValueError):
            return devices[0]
    try:
        index = int(name)
    except (TypeError, ValueError):
        index = sum(str(name).encode())
    return devices[index % len(devices)]


def _set_compute_threads(threads: int) -> None:
    import cv2
    import torch

    torch.set_num_threads(int(threads))
    cv2.setNumThreads(int(threads))


def _pick_one(
    path: str,
    folder: str,
    source: dict,
    options: dict,
    spec: PickerSpec,
    formats: tuple[str, ...],
    box_size: float | None,
    devices: Sequence[str] | None = None,
    threads: int | None = None,
    diameter_angstrom: float | None = None,
    pixel_size: float | None = None,
    file_name: str | None = None,
) -> dict:
    """Worker task: pick one micrograph and write its files into ``folder`` (absolute).

    It reads and picks as pick_batch does (batch.read_and_denoise, batch.pick_chunk):
    ``diameter_angstrom`` is converted with ``pixel_size`` (``--angpix`` or an input STAR's;
    None: the micrograph's header). ``file_name``: the name its files follow (default: the
    file's own; a RELION STAR's micrograph name). Returns a small record for the client; a
    failure of this micrograph is returned, not raised (a raised exception would make the
    scheduler report the task as erred).
    """
    start = time.perf_counter()
    worker = _worker_name()
    name = source["name"]
    local = Path(path)
    sizes = BatchSizes(diameter_angstrom, PixelSizes(given=pixel_size), {})
    try:
        picker = _worker_picker(spec, devices, threads)
        # Each worker sizes its own micrograph (no batch size), unless an Å diameter is given.
        chunk = [read_and_denoise(picker, local, sizes, diameter_angstrom is None, name)]
        result = pick_chunk(picker, chunk, sizes)[0]  # the picker is shared, never changed
        check_picked_diameter(name, result)  # as pick_batch: tiny "particles" are noise
    except Exception as exc:
        return {
            "name": name,
            "ok": False,
            "error": _reason(name, exc),
            "worker": worker,
            "seconds": time.perf_counter() - start,
        }
    try:
        # The folder is this micrograph's own output folder: write as if the micrograph lay
        # there (its file name only), so the worker's current folder does not matter.
        layout = Path(file_name or local.name)
        results.write_result(Path(folder), layout, result, source, options, formats, box_size)
    except Exception as exc:
        return {
            "name": name,
            "ok": False,
            "worker": worker,
            "error": _reason(name, exc, "cannot write output: "),
            "seconds": time.perf_counter() - start,
        }
    return {
        "name": name,
        "ok": True,
        "picks": result.picks,
        "diameter": result.diameter,
        "empty": bool(getattr(result, "empty", False)),
        "evidence": getattr(result, "evidence", None),
        "pixel_size": sizes.seen_pixel_size.get(local),
        "worker": worker,
        "seconds": time.perf_counter() - start,
    }


def _reason(name: str, exc: BaseException, prefix: str = "") -> str:
    """The one-line failure reason pick_batch would print (a string: it crosses processes)."""
    if isinstance(exc, CryoSegNetError):
        return f"{name}: {prefix}{exc}" if prefix else str(exc)
    detail = first_line(exc)
    return f"{name}: {prefix}{type(exc).__name__}: {detail}".rstrip(": ")


def _worker_name() -> str:
    try:
        from distributed import get_worker

        worker = get_worker()
        return f"{worker.name} ({worker.address})"
    except (ImportError, ValueError):
        return "local"


def quiet_dask_logs() -> None:
    """Keep Dask's own log lines (worker start and stop, cancelled-task notices) out of a
    pick's log: in this process, and (through the environment, which Dask reads when a
    process imports it) in the local worker processes started after this. ``--debug`` keeps
    them."""
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    os.environ["DASK_LOGGING__DISTRIBUTED"] = "critical"


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as a batch system sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def local_worker_count(requested: int) -> int:
    """``--dask-workers N`` capped at the CPUs available, with a one-line warning: more
    single-threaded worker processes than CPUs only compete (64 on 2 CPUs hung the run)."""
    cpus = available_cpus()
    if requested > cpus:
        log.warning(
            "WARNING --dask-workers %d: only %d CPU(s) available here; starting %d worker(s)",
            requested,
            cpus,
            cpus,
        )
        return cpus
    return requested


@contextlib.contextmanager
def _client(scheduler: str | None, n_workers: int | None, threads: int, debug: bool = False):
    """A Client on ``scheduler``, or on a LocalCluster of ``n_workers`` processes. Dask's own
    log lines (its workers' start and stop, its warnings) are shown with ``debug`` only."""
    from distributed import Client, LocalCluster

    if not debug:
        quiet_dask_logs()
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    if not n_workers or n_workers < 1:
        raise CryoSegNetError("--dask-workers: give at least one worker (or --scheduler)")
    with (
        LocalCluster(
            n_workers=int(n_workers),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # No dashboard, but the scheduler still serves HTTP (health, metrics): on a free
            # port, not Dask's 8787, which another cluster on the machine may hold (Dask then
            # warns and moves anyway).
            scheduler_kwargs={"dashboard_address": ":0"},
            memory_limit=0,
            env={
                name: str(threads)
                for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
            },
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def pick_distributed(
    micrographs: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    picker: PickerSpec | Mapping | None = None,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    devices: Sequence[str] | None = None,
    threads_per_worker: int | None = 1,
    formats: tuple[str, ...] = ("star",),
    overwrite: bool = False,
    box_size: float | None = None,
    progress: bool = True,
    debug: bool = False,
    client=None,
    options: dict | None = None,
    diameter_angstrom: float | None = None,
    pixel_sizes: PixelSizes | None = None,
    names: Mapping[Path, str] | None = None,
    _task: Callable[..., dict] | None = None,
) -> ClusterSummary:
    """Pick ``micrographs`` on a Dask cluster into ``outdir``; the same files as pick_batch.

    ``picker`` is what every worker builds its own picker from, once: a
    :class:`~cryosegnet.picking.job.PickerSpec`, or :class:`~cryosegnet.picking.picker.Picker`
    keyword arguments (model, stage, threshold, diameter, ...).
    ``scheduler``: the address of a running cluster (``tcp://host:8786``); else ``n_workers``
    worker processes are started on this machine (one thread each; ``devices``, e.g.
    ``["cuda:0", "cuda:1"]``, gives worker i device i modulo their number). An existing
    ``client`` may be passed instead of both. ``threads_per_worker``: torch/OpenCV threads in
    each worker (None: leave their defaults). ``progress`` logs one line per finished
    micrograph with the cluster's micrographs/s. ``options``: what the results' manifests
    record, ``picker_options(picker)`` of a picker built from ``picker`` (default: one
    is built here, on the CPU). ``diameter_angstrom``, ``pixel_sizes`` and ``names`` are
    pick_batch's: an Å diameter converted per micrograph with its pixel size (``--angpix``, an
    input STAR's, else its header's, read on the worker), and the names (a RELION STAR's) the
    index lists and the output layout follows.
    """
    spec = picker if isinstance(picker, PickerSpec) else PickerSpec.from_kwargs(picker or {})
    if diameter_angstrom is not None:  # the workers give each micrograph its px diameter
        spec = replace(spec, diameter_per_micrograph=True)
    out = make_output_folder(outdir)  # as given: the index names files as pick_batch does
    # The client's picker gives the options recorded in every result (and checks them before
    # any worker starts); it is not used to pick.
    if options is None:
        options = results.picker_options(spec.build("cpu"))
    given = spec.config.diameter or diameter_angstrom is not None
    summary = ClusterSummary(outdir=str(outdir), diameter_source="given" if given else "estimated")
    sizes = BatchSizes(diameter_angstrom, pixel_sizes or PixelSizes(), dict(names or {}))
    run = _ClusterRun(
        out,
        options,
        spec,
        tuple(formats),
        box_size,
        list(devices) if devices else None,
        threads_per_worker,
        progress,
        debug,
        _task or _pick_one,
        sizes,
    )
    with (
        results.holding_folder(out, results.run_options(options, sizes, formats, box_size)),
        sigterm_stops_the_run(),  # a queue system's SIGTERM stops it like Ctrl-C
    ):
        try:
            cluster = (client, scheduler, n_workers)
            _plan_and_run(run, [Path(m) for m in micrographs], overwrite, summary, cluster)
        except STOP_REQUESTS:
            summary.interrupted = True
        results.index_into(summary, out, outdir)  # what finished is listed, after a stop too
    return summary


def _plan_and_run(
    run: _ClusterRun, micrographs: list[Path], overwrite: bool, summary, cluster: tuple
) -> None:
    """Skip what is done, then pick the rest on ``cluster``: (an existing client or None, a
    scheduler's address or None, the number of local workers to start)."""
    todo = results.plan_batch(
        micrographs,
        run.out,
        run.formats,
        overwrite,
        run.box_size,
        run.debug,
        run.options,
        summary,
        run.sizes,
    )
    if not todo:
        return
    client, scheduler, n_workers = cluster
    clustered = (
        contextlib.nullcontext(client)
        if client is not None
        else _client(scheduler, n_workers, run.threads or 1, run.debug)
    )
    with clustered as active:
        _run(active, run, todo, summary)


@dataclass(frozen=True)
class _ClusterRun:
    """What every task of one :func:`pick_distributed` call picks with and writes to."""

    out: Path
    options: dict
    spec: PickerSpec
    formats: tuple[str, ...]
    box_size: float | None
    devices: list[str] | None
    threads: int | None
    progress: bool
    debug: bool
    task: Callable[..., dict]
    sizes: BatchSizes


def _run(client, run: _ClusterRun, todo: list[tuple[Path, dict]], summary) -> None:
    """Send every micrograph of ``todo`` to the cluster and record each result as it comes."""
    summary.n_workers = len(client.scheduler_info().get("workers", {}))
    if run.task is _pick_one:
        # Load the models on every worker now, so that the first micrographs' times (and the
        # micrographs/s) are picking only; workers that join later load on their first task.
        try:
            client.run(_preload, run.spec, run.devices, run.threads)
        except Exception as exc:  # a worker that cannot build the picker reports it per task
            log.debug("preloading the picker on the workers failed: %s", exc)
    futures = [_submit(client, run, path, source) for path, source in todo]
    start = time.perf_counter()
    try:
        _collect(futures, run, todo, summary, start)
    except STOP_REQUESTS:
        summary.interrupted = True
        with contextlib.suppress(Exception):
            client.cancel(futures)
    finally:
        summary.seconds = time.perf_counter() - start


def _submit(client, run: _ClusterRun, path: Path, source: dict):
    """One micrograph's task, laid out and recorded as pick_batch would."""
    layout = run.sizes.layout(path)
    folder = os.path.abspath(run.out / relative_folder(layout))  # workers: absolute paths
    return client.submit(
        run.task,
        os.path.abspath(path),
        folder,
        source,
        run.sizes.options(path, run.options),
        run.spec,
        run.formats,
        run.box_size,
        run.devices,
        run.threads,
        diameter_angstrom=run.sizes.angstrom,
        pixel_size=run.sizes.pixel_sizes.explicit(path),
        file_name=layout.name,
        key=f"cryosegnet-pick-{source['path']}-{time.time_ns()}",
        pure=False,
    )


def _collect(futures, run: _ClusterRun, todo, summary, start: float) -> None:
    """Record each task's result in ``summary`` as it finishes (one log line each with
    ``progress``)."""
    from distributed import as_completed

    by_name = {source["name"]: path for path, source in todo}
    for n_done, future in enumerate(as_completed(futures), start=1):
        try:
            record = future.result()
        except Exception as exc:  # the task itself was lost too often (KilledWorker)
            name = _future_name(future, futures, todo)
            record_failure(summary, by_name.get(name, Path(name)), exc, run.debug)
            continue
        path = by_name[record["name"]]
        worker = record.get("worker", "?")
        summary.per_worker[worker] = summary.per_worker.get(worker, 0) + 1
        summary.worker_seconds[worker] = summary.worker_seconds.get(worker, 0.0) + float(
            record.get("seconds", 0.0)
        )
        if not record["ok"]:
            record_failure(summary, path, CryoSegNetError(record["error"]), run.debug)
            continue
        record_picked(
            summary,
            path,
            record["picks"],
            record["diameter"],
            record.get("pixel_size"),
            empty_evidence=record["evidence"] if record.get("empty") else None,
        )
        if run.progress:
            elapsed = time.perf_counter() - start
            log.info(
                "[%d/%d] %s: %d particles (%s); cluster: %.2f micrographs/s",
                n_done,
                len(todo),
                path,
                len(record["picks"]),
                worker,
                n_done / elapsed if elapsed > 0 else 0.0,
            )


def _future_name(future, futures, todo) -> str:
    index = futures.index(future)
    return todo[index][1]["name"]


def parse_devices(text: str | None) -> list[str] | None:
    """``--devices 0,1,2`` -> ``["cuda:0", "cuda:1", "cuda:2"]`` (names like ``cpu`` or
    ``cuda:1`` are kept)."""
    if not text:
        return None
    devices = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        devices.append(f"cuda:{int(item)}" if item.isdigit() else item)
    if not devices:
        raise CryoSegNetError(f"--devices {text}: no device given")
    return devices


def run_on_cluster(job: PickJob, picker) -> ClusterSummary | WatchSummary:
    """Carry out ``job`` (its executor a :class:`~cryosegnet.picking.job.Dask`) on a Dask
    cluster: the micrographs listed, or those of a watched folder as they appear.

    ``picker`` is ``job.picker`` built here: it checked the settings and names the options
    every result records; the workers build their own from ``job.picker``.

    Raises
    ------
    CryoSegNetError
        Both a scheduler and a worker count, or local GPUs this machine does not have.
    """
    cluster = job.executor
    assert isinstance(cluster, Dask)
    devices = list(cluster.devices) if cluster.devices else None
    n_workers = cluster.n_workers or (len(devices) if devices else None)
    if cluster.scheduler and cluster.n_workers:
        raise CryoSegNetError(
            "--scheduler and --dask-workers: give one (a cluster exists, or one is started here)"
        )
    if not cluster.scheduler and n_workers and not devices:  # CPU workers on this machine
        n_workers = local_worker_count(int(n_workers))
    if devices and not cluster.scheduler:  # local workers: their GPUs are this machine's
        _check_local_devices(devices)
    where = cluster.scheduler or f"a local cluster of {n_workers} worker process(es)"
    log.info("picking on Dask: %s%s", where, f", devices {','.join(devices)}" if devices else "")
    common = dict(
        devices=devices,
        formats=job.outputs.formats,
        overwrite=job.outputs.overwrite,
        box_size=job.outputs.box_size,
        progress=job.progress,
        debug=job.debug,
        options=results.picker_options(picker),
        diameter_angstrom=job.sizes.diameter_angstrom,
        pixel_sizes=job.sizes.pixel_sizes,
    )
    if job.watch is not None:
        return _watch_on_cluster(job, picker, n_workers, common)
    return pick_distributed(
        job.inputs,
        job.output,
        job.picker,
        scheduler=cluster.scheduler,
        n_workers=n_workers,
        names=job.sizes.names,
        **common,  # type: ignore[arg-type]
    )


def _watch_on_cluster(job: PickJob, picker, n_workers, common: dict) -> WatchSummary:
    """``--watch DIR`` on Dask: one cluster (and one loaded picker per worker) for the whole
    watch; each scan's ready micrographs go to it together, and this process keeps the index."""
    from cryosegnet.picking.watch import watch_folder

    watch, cluster = job.watch, job.executor
    assert watch is not None and isinstance(cluster, Dask)
    with _client(cluster.scheduler, n_workers, 1, job.debug) as client:

        def pick_on_cluster(chunk: list[Path]) -> ClusterSummary:
            return pick_distributed(chunk, job.output, job.picker, client=client, **common)

        return watch_folder(
            picker,
            watch.folder,
            job.output,
            settle=watch.settle,
            interval=watch.interval,
            timeout=watch.timeout,
            batch_size=UNLIMITED_CHUNK,
            pick=pick_on_cluster,
            overwrite=job.outputs.overwrite,
            diameter_angstrom=job.sizes.diameter_angstrom,
            pixel_sizes=job.sizes.pixel_sizes,
        )


# A watch on Dask sends every micrograph ready at one scan as one chunk: the cluster spreads it.
UNLIMITED_CHUNK = 1 << 30


def _check_local_devices(devices: Sequence[str]) -> None:
    """Refuse GPUs this machine does not have before any worker starts."""
    import torch

    for device in devices:
        if not device.startswith("cuda"):
            continue
        index = int(device.split(":")[1]) if ":" in device else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise CryoSegNetError(
                f"--devices: {device} is not available here ({torch.cuda.device_count()} CUDA "
                "GPU(s) visible to this PyTorch)"
            )
