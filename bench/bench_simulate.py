"""Throughput of the training stream: micrographs per second on one CPU core.

Run:  OMP_NUM_THREADS=1 python bench/bench_simulate.py [--size 1024] [--n 20]
      OMP_NUM_THREADS=1 python bench/bench_simulate.py --quick   # 3 per difficulty

Writes ``bench/results/bench_simulate.json`` (``--quick``: ``runs/quick/``) and prints the rates.

The target is >= 2 micrographs/s at 1024² on one core, so that training can draw a
fresh micrograph every step. The first micrograph of each difficulty is excluded (imports,
FFT plan warm-up).
"""

from __future__ import annotations

import os

# Pin every numerical library to one thread before numpy/scipy/cv2 are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
from benchlib import add_bench_options, command_line, results_json  # noqa: E402

from cryosegnet.simulation import SimulationConfig, stream  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_options(parser, "bench_simulate", "3 micrographs per difficulty")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--n", type=int, default=20, help="micrographs per difficulty")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n = 3 if args.quick else args.n
    json_path = results_json(args, "bench_simulate")
    cv2.setNumThreads(1)
    command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} {command_line()}"
    print(f"command: {command}")
    print(f"python {platform.python_version()} on {platform.machine()}, size {args.size}²")
    total_n, total_t = 0, 0.0
    rates: dict[str, float] = {}
    for difficulty in ("easy", "medium", "hard"):
        gen = stream(SimulationConfig(size=args.size, difficulty=difficulty), seed=args.seed)
        next(gen)  # warm-up
        times, particles = [], 0
        for _ in range(n):
            t0 = time.perf_counter()
            sim = next(gen)
            times.append(time.perf_counter() - t0)
            particles += len(sim.particles)
        rate = len(times) / sum(times)
        rates[difficulty] = rate
        total_n += len(times)
        total_t += sum(times)
        median = 1e3 * sorted(times)[len(times) // 2]
        print(
            f"{difficulty:>6}: {rate:5.2f} micrographs/s  (median {median:.0f} ms, "
            f"max {1e3 * max(times):.0f} ms, {particles / len(times):.0f} particles/micrograph)"
        )
    print(f"overall: {total_n / total_t:.2f} micrographs/s at {args.size}² on one core")
    record = {
        "command": command,
        "size": args.size,
        "micrographs_per_difficulty": n,
        "micrographs_per_s": rates | {"overall": total_n / total_t},
        "target_per_s": 2.0,
    }
    json_path.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
