"""Throughput of ``pick_distributed`` on this machine against the in-process ``pick_batch``.

Run:  python bench/bench_distributed.py [--n 8] [--workers 2] [--repeats 2] [--model CKPT]
      python bench/bench_distributed.py --quick     # 2 micrographs, one repeat: runs/quick/

Micrographs: ``--n`` copies of one simulated 4096² MRC (``cryosegnet simulate --size 4096
--seed 9100``, in ``--work``, default ``runs/bench_distributed/``; copies because simulating
4096² micrographs costs more than picking them, and the throughput does not depend on the
content).

Runs, alternated repeat by repeat so that they see the same machine load:

* ``in-process``: ``pick_batch`` with one compute thread (torch, OpenCV, BLAS; its read-ahead
  thread still denoises the next micrograph on the other core);
* ``in-process, 1 core``: the same pinned to one core (``sched_setaffinity``): strictly
  single-threaded;
* ``local cluster``: ``pick_distributed(n_workers=W)``, W worker processes of one thread each;
* once, ``separate processes``: ``dask scheduler`` and W ``dask worker --nthreads 1``
  started as their own processes on localhost (as on a real cluster), then
  ``pick_distributed(scheduler=...)``; its output files must equal the in-process ones.

Micrographs/s is the number picked over the picking time (``BatchSummary.seconds``: from the
first task to the last result, without start-up or the index); the wall time with the
cluster's start-up is recorded too, as is every worker's peak RSS. Writes
``bench/results/bench_distributed.json`` and ``.md``.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy/torch load: the in-process run gets one thread

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import benchlib  # noqa: E402
from benchlib import REPO, median  # noqa: E402


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _files(outdir: Path) -> dict[str, str]:
    """Per-micrograph STAR files (relative path -> content) and particles.star."""
    files = {
        str(p.relative_to(outdir)): p.read_text() for p in sorted(outdir.rglob("*_autopick.star"))
    }
    files["particles.star"] = (outdir / "particles.star").read_text()
    return files


def _separate_processes(work: Path, workers: int):
    """Start ``dask scheduler`` and ``workers`` ``dask worker`` processes; return (address,
    processes)."""
    dask = Path(sys.executable).with_name("dask")
    command = [str(dask)] if dask.exists() else [sys.executable, "-m", "dask"]
    scheduler_file = work / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    env = dict(os.environ)
    processes = [
        subprocess.Popen(
            [
                *command,
                "scheduler",
                "--scheduler-file",
                str(scheduler_file),
                "--no-dashboard",
                "--port",
                "0",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    deadline = time.time() + 120
    while not scheduler_file.exists() and time.time() < deadline:
        time.sleep(0.2)
    address = json.loads(scheduler_file.read_text())["address"]
    for i in range(workers):
        processes.append(
            subprocess.Popen(
                [
                    *command,
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--memory-limit",
                    "0",
                    "--no-dashboard",
                    "--name",
                    str(i),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return address, processes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchlib.add_bench_options(parser, "bench_distributed", "2 micrographs, one repeat")
    parser.add_argument("--n", type=int, default=8, help="micrographs (copies)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default=None)
    parser.add_argument("--work", default=str(REPO / "runs" / "bench_distributed"))
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeats = 2, 1
    json_path = benchlib.results_json(args, "bench_distributed")

    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from distributed import Client

    from cryosegnet.picking.batch import pick_batch
    from cryosegnet.picking.distributed import _client, pick_distributed
    from cryosegnet.picking.picker import Picker

    work = Path(args.work)
    sim = benchlib.ensure_simulated(work)
    mics = work / "mics"
    mics.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(args.n):
        copy = mics / f"copy_{i:02d}.mrc"
        if not copy.exists():
            shutil.copyfile(sim, copy)
        paths.append(copy)
    kwargs = {"model": args.model, "device": "cpu", "stage": "peaks"}
    picker = Picker(**kwargs)
    picker.pick(paths[0])  # warm-up: the one-off ONNX export, first-call costs
    load_before = [round(x, 1) for x in os.getloadavg()]
    runs: dict[str, list[dict]] = {"in-process": [], "in-process, 1 core": [], "local cluster": []}
    all_cpus = os.sched_getaffinity(0)
    for repeat in range(args.repeats):
        # Strictly single-threaded: pinned to one core, so the read-ahead thread of pick_batch
        # cannot overlap denoising with the U-Net on the second core.
        out = work / f"in_process_1core_{repeat}"
        shutil.rmtree(out, ignore_errors=True)
        os.sched_setaffinity(0, {min(all_cpus)})
        try:
            start = time.perf_counter()
            summary = pick_batch(picker, paths, out, progress=False)
            wall = time.perf_counter() - start
        finally:
            os.sched_setaffinity(0, all_cpus)
        runs["in-process, 1 core"].append(
            {"seconds": summary.seconds, "wall": wall, "rate": args.n / summary.seconds}
        )
        out = work / f"in_process_{repeat}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        summary = pick_batch(picker, paths, out, progress=False)
        wall = time.perf_counter() - start
        assert not summary.failures, summary.failures
        runs["in-process"].append(
            {"seconds": summary.seconds, "wall": wall, "rate": args.n / summary.seconds}
        )
        out = work / f"local_cluster_{repeat}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        with _client(None, args.workers, 1) as client:
            summary = pick_distributed(paths, out, kwargs, client=client, progress=False)
            rss = client.run(_peak_rss_mb)
        wall = time.perf_counter() - start
        assert not summary.failures, summary.failures
        runs["local cluster"].append(
            {
                "seconds": summary.seconds,
                "wall": wall,
                "rate": args.n / summary.seconds,
                "per_worker": summary.per_worker,
                "worker_peak_rss_mb": sorted(rss.values()),
            }
        )
        print(
            f"repeat {repeat}: in-process {runs['in-process'][-1]['rate']:.2f}/s, "
            f"local cluster {runs['local cluster'][-1]['rate']:.2f}/s",
            file=sys.stderr,
        )
    reference = _files(work / "in_process_0")

    address, processes = _separate_processes(work, args.workers)
    try:
        out = work / "separate_processes"
        shutil.rmtree(out, ignore_errors=True)
        with Client(address) as client:
            client.wait_for_workers(args.workers, timeout=180)
            start = time.perf_counter()
            summary = pick_distributed(paths, out, kwargs, client=client, progress=False)
            wall = time.perf_counter() - start
            rss = client.run(_peak_rss_mb)
        assert not summary.failures, summary.failures
        same = _files(out) == reference
        separate = {
            "seconds": summary.seconds,
            "wall": wall,
            "rate": args.n / summary.seconds,
            "per_worker": summary.per_worker,
            "worker_peak_rss_mb": sorted(rss.values()),
            "same_files_as_in_process": same,
        }
    finally:
        for process in processes[::-1]:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    local_same = all(_files(work / f"local_cluster_{r}") == reference for r in range(args.repeats))

    rate_in = median([r["rate"] for r in runs["in-process"]])
    rate_core = median([r["rate"] for r in runs["in-process, 1 core"]])
    rate_cluster = median([r["rate"] for r in runs["local cluster"]])
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "n_micrographs": args.n,
        "workers": args.workers,
        "repeats": args.repeats,
        "load_before": load_before,
        "load_after": [round(x, 1) for x in os.getloadavg()],
        "runs": runs,
        "separate_processes": separate,
        "local_cluster_same_files_as_in_process": local_same,
        "speedup_local_cluster": rate_cluster / rate_in,
        "speedup_local_cluster_vs_one_core": rate_cluster / rate_core,
    }
    json_path.write_text(json.dumps(result, indent=1))
    rss_cluster = max(max(r["worker_peak_rss_mb"]) for r in runs["local cluster"])
    lines = [
        f"| run ({args.n} × 4096² MRC) | micrographs/s (median) | × in-process | wall incl. "
        "start-up, s | same files as in-process | worker peak RSS, MB |",
        "|---|---|---|---|---|---|",
        f"| in-process `pick_batch`, 1 compute thread + read-ahead thread | {rate_in:.2f} | 1.00 | "
        f"{median([r['wall'] for r in runs['in-process']]):.1f} | (reference) | |",
        f"| in-process, pinned to 1 core | {rate_core:.2f} | {rate_core / rate_in:.2f} | "
        f"{median([r['wall'] for r in runs['in-process, 1 core']]):.1f} | | |",
        f"| local cluster, {args.workers} workers × 1 thread | {rate_cluster:.2f} | "
        f"{rate_cluster / rate_in:.2f} | {median([r['wall'] for r in runs['local cluster']]):.1f}"
        f" | {local_same} | {rss_cluster:.0f} |",
        f"| scheduler + {args.workers} workers as separate processes | {separate['rate']:.2f} | "
        f"{separate['rate'] / rate_in:.2f} | {separate['wall']:.1f} | "
        f"{separate['same_files_as_in_process']} | {max(separate['worker_peak_rss_mb']):.0f} |",
        "",
        f"Medians of {args.repeats} alternating repeats; machine: {result['machine']}, load "
        f"average {result['load_before']} before, {result['load_after']} after (shared: other "
        "jobs ran beside). Micrographs/s over the picking time (first task to last result).",
    ]
    text = "\n".join(lines) + "\n"
    json_path.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
