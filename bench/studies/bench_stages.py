"""Where the time of one 4096² micrograph goes, per stage, before and after the CPU speed-ups.

Study, decided 2026-12-01: the U-Net runs on ONNX Runtime and the peak stage's filters on
OpenCV (``preprocessing/filters.py``): the same picks, 3.1 -> 1.7 s end to end per 4096²
micrograph on one thread. ``bench/default_speed.py`` now times the default picker.

Run:  python bench/studies/bench_stages.py [--threads 1,2] [--repeats 3] [--batch 4] [--model CKPT]

Micrographs: one simulated 4096² MRC (``cryosegnet simulate --size 4096 --seed 9100``, made
in ``--work``, default ``runs/bench_stages/``) and the real EPU 4096² MRC
``../shared/data/real/unlabeled-raw/epu2.9_example.mrc`` (skipped when absent).

Stages: read (MRC to float32), denoise (the paper's chain at the working size), U-Net (the
probability map), instance stage (built-in peak finder, *including* the diameter estimate,
which is also timed on its own) and write (the RELION coordinate STAR). The speed-ups are
measured against the code they replace, in the same process and interleaved repeat by
repeat, so both see the same machine load:

* U-Net: PyTorch eager (before) vs ONNX Runtime (after, ``model/onnx_runtime.py``);
* instance stage and diameter estimate: ``scipy.ndimage`` filters (before) vs the OpenCV ones
  of ``preprocessing/filters.py`` (after); both must give the same diameter and picks (checked
  here and in ``tests/test_speed_paths.py``).

"End to end" is the sum of the per-stage medians (one micrograph, one after the other).
``--batch N`` also times ``pick_batch`` on N copies of the simulated micrograph with the
after-configuration, where reading and denoising the next micrograph overlaps the U-Net and
the instance stage of the current one (the read-ahead thread of ``picking/batch.py``).

Each thread count runs in its own child process (``OMP_NUM_THREADS`` etc., torch, OpenCV and
ONNX Runtime set to it). Medians over ``--repeats``. Writes ``bench/results/bench_stages.json``
and ``bench/results/bench_stages.md`` (the table, also printed); ``--table-only`` regenerates
the table from the JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time

import benchlib
from benchlib import REPO, RESULTS, median, rel, thread_env

EPU = Path("..") / "shared" / "data" / "real" / "unlabeled-raw" / "epu2.9_example.mrc"
STAGE_ROWS = [
    ("read", "read"),
    ("denoise", "denoise"),
    ("unet_torch", "U-Net, PyTorch (before)"),
    ("unet_onnx", "U-Net, ONNX Runtime (after)"),
    ("diameter_scipy", "diameter estimate, scipy.ndimage (before)"),
    ("diameter_opencv", "diameter estimate, OpenCV (after)"),
    ("instances_scipy", "instance stage incl. estimate (before)"),
    ("instances_opencv", "instance stage incl. estimate (after)"),
    ("write", "write STAR"),
    ("total_before", "**end to end, before**"),
    ("total_after", "**end to end, after**"),
    ("batch_after", "batch, s per micrograph (after, read-ahead overlapped)"),
]


# ---------------------------------------------------------------------------- child process


def _reference_filters():
    """Context manager: masks/peaks.py on scipy.ndimage (the code the OpenCV filters replace)."""
    import contextlib

    from scipy import ndimage as ndi

    from cryosegnet.masks import peaks

    @contextlib.contextmanager
    def swap():
        saved = peaks.gaussian_filter, peaks.gaussian_laplace, peaks.maximum_filter
        peaks.gaussian_filter = lambda im, s: ndi.gaussian_filter(im, s, mode="reflect")
        peaks.gaussian_laplace = lambda im, s: ndi.gaussian_laplace(im, s, mode="reflect")
        peaks.maximum_filter = lambda im, size: ndi.maximum_filter(im, size=size)
        try:
            yield
        finally:
            peaks.gaussian_filter, peaks.gaussian_laplace, peaks.maximum_filter = saved

    return swap


def _same_picks(a, b) -> bool:
    import numpy as np
    from scipy.spatial import cKDTree

    if len(a) != len(b):
        return False
    if not len(a):
        return True
    distance, partner = cKDTree(b[["x", "y"]].to_numpy()).query(a[["x", "y"]].to_numpy())
    scores = np.abs(a["score"].to_numpy() - b["score"].to_numpy()[partner])
    return bool(
        distance.max() <= 1.0 and len(set(partner.tolist())) == len(a) and scores.max() <= 1e-3
    )


def _timed(times: dict[str, list[float]], key: str, fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    times.setdefault(key, []).append(time.perf_counter() - start)
    return value


def child(args: argparse.Namespace) -> dict:
    import cv2
    import torch

    threads = int(args.threads)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)

    from cryosegnet.io.coordinates import write_coordinate_star
    from cryosegnet.io.micrographs import read_micrograph
    from cryosegnet.masks import peaks
    from cryosegnet.picking.batch import pick_batch
    from cryosegnet.picking.picker import Picker

    reference_filters = _reference_filters()
    before = Picker(model=args.model, device="cpu", stage="peaks", runtime="torch")
    after = Picker(model=args.model, device="cpu", stage="peaks", runtime="onnx")
    out: dict = {"threads": threads, "micrographs": {}}
    scratch = Path(tempfile.mkdtemp(prefix="bench_stages_"))
    try:
        for name, path in args.micrographs:
            times: dict[str, list[float]] = {}
            # Warm-up (not timed): first-call costs, the one-off ONNX export.
            image = read_micrograph(path).data
            denoised = after.preprocess(image)
            after.probability_maps([denoised])
            before.probability_maps([denoised])
            checks: dict = {}
            star = scratch / f"{name}_autopick.star"
            for _ in range(args.repeats):
                image = _timed(times, "read", lambda p: read_micrograph(p).data, path)
                denoised = _timed(times, "denoise", after.preprocess, image)
                ref_map = _timed(times, "unet_torch", before.probability_maps, [denoised])[0]
                fast_map = _timed(times, "unet_onnx", after.probability_maps, [denoised])[0]
                with reference_filters():
                    d_ref = _timed(times, "diameter_scipy", peaks.estimate_diameter, ref_map)
                    r_ref = _timed(times, "instances_scipy", before.instances, ref_map, image.shape)
                d_fast = _timed(times, "diameter_opencv", peaks.estimate_diameter, fast_map)
                r_fast = _timed(times, "instances_opencv", after.instances, fast_map, image.shape)
                _timed(times, "write", write_coordinate_star, star, r_fast.picks)
                checks = {
                    "map_max_abs_diff": float(abs(ref_map - fast_map).max()),
                    "diameter_before": float(d_ref),
                    "diameter_after": float(d_fast),
                    "n_picks_before": len(r_ref.picks),
                    "n_picks_after": len(r_fast.picks),
                    "same_picks": _same_picks(r_fast.picks, r_ref.picks),
                }
            medians = {k: median(v) for k, v in times.items()}
            shared = medians["read"] + medians["denoise"] + medians["write"]
            medians["total_before"] = shared + medians["unet_torch"] + medians["instances_scipy"]
            medians["total_after"] = shared + medians["unet_onnx"] + medians["instances_opencv"]
            out["micrographs"][name] = {"seconds": medians, "all": times, "checks": checks}
        if args.batch and args.batch_source:
            folder = scratch / "batch"
            folder.mkdir()
            copies = []
            for i in range(args.batch):
                copy = folder / f"copy_{i:02d}.mrc"
                shutil.copyfile(args.batch_source, copy)
                copies.append(copy)
            runs = []
            for repeat in range(max(1, args.repeats // 2)):
                start = time.perf_counter()
                summary = pick_batch(
                    after, copies, scratch / f"picks{repeat}", progress=False, workers=1
                )
                runs.append((time.perf_counter() - start) / args.batch)
                assert not summary.failures, summary.failures
            out["batch"] = {"n": args.batch, "seconds_per_micrograph": runs}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------- parent process


def ensure_simulated(work: Path) -> Path:
    return benchlib.ensure_simulated(work, cwd=REPO)


def table(result: dict) -> str:
    runs = result["runs"]
    names = list(result["micrographs"])
    header = ["stage"] + [f"{n}, {r['threads']} thr" for n in names for r in runs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, label in STAGE_ROWS:
        cells = []
        for name in names:
            for run in runs:
                if key == "batch_after":
                    batch = run.get("batch")
                    value = (
                        median(batch["seconds_per_micrograph"])
                        if batch and name == result.get("batch_micrograph")
                        else None
                    )
                else:
                    value = run["micrographs"].get(name, {}).get("seconds", {}).get(key)
                cells.append(f"{value:.2f}" if value is not None else "")
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Seconds per micrograph, medians of "
        f"{result['repeats']} interleaved repeats; machine: {result['machine']}; "
        f"load average {result['load_before']} before, {result['load_after']} after "
        "(a shared machine: other jobs ran beside)."
    )
    for name in names:
        for run in runs:
            c = run["micrographs"][name]["checks"]
            lines.append(
                f"- {name}, {run['threads']} thr: same picks before/after: {c['same_picks']} "
                f"({c['n_picks_before']} / {c['n_picks_after']}), diameter "
                f"{c['diameter_before']:.1f} / {c['diameter_after']:.1f} working px, "
                f"U-Net map max |diff| {c['map_max_abs_diff']:.1e}"
            )
    if result.get("batch_micrograph"):
        lines.append(
            f"- batch: {runs[0]['batch']['n']} copies of {result['batch_micrograph']} "
            "through `pick_batch` (read-ahead thread, ONNX Runtime, OpenCV filters)"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--batch", type=int, default=4, help="micrographs in the batch timing (0: none)"
    )
    parser.add_argument("--model", default=None, help="U-Net checkpoint (default: shipped)")
    parser.add_argument("--work", default=str(REPO / "runs" / "bench_stages"))
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--micrograph", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--batch-source", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS / "bench_stages.json", RESULTS / "bench_stages.md"
    if args.child:
        args.micrographs = [m.split("=", 1) for m in args.micrograph]
        print(json.dumps(child(args)))
        return 0
    if args.table_only:
        text = table(json.loads(json_path.read_text()))
        md_path.write_text(text)
        print(text)
        return 0
    micrographs = {"simulated 4096²": ensure_simulated(Path(args.work))}
    epu = (REPO / EPU).resolve()
    if epu.is_file():
        micrographs["EPU 4096²"] = epu
    else:
        print(f"skipping the EPU micrograph: {EPU} not found", file=sys.stderr)
    load_before = [round(x, 1) for x in os.getloadavg()]
    runs = []
    for threads in [int(t) for t in args.threads.split(",")]:
        env = dict(os.environ)
        env.update(thread_env(threads))
        command = [
            sys.executable,
            __file__,
            "--child",
            "--threads",
            str(threads),
            "--repeats",
            str(args.repeats),
            "--batch",
            str(args.batch),
        ]
        command += [f"--micrograph={name}={path}" for name, path in micrographs.items()]
        command += ["--batch-source", str(micrographs["simulated 4096²"])]
        if args.model:
            command += ["--model", args.model]
        print(f"{threads} thread(s)...", file=sys.stderr)
        done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "repeats": args.repeats,
        "load_before": load_before,
        "load_after": [round(x, 1) for x in os.getloadavg()],
        "micrographs": {name: rel(path) for name, path in micrographs.items()},
        "batch_micrograph": "simulated 4096²" if args.batch else None,
        "runs": runs,
    }
    json_path.write_text(json.dumps(result, indent=1))
    text = table(result)
    md_path.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
