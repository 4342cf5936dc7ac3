"""Throughput of the training stream: micrographs per second on one CPU core.

Run:  OMP_NUM_THREADS=1 python bench/bench_simulate.py [--size 1024] [--n 20]

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
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402

from cryosegnet.simulation import SimulationConfig, stream  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--n", type=int, default=20, help="micrographs per difficulty")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    print(
        f"command: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} python "
        + " ".join(["bench/bench_simulate.py", *sys.argv[1:]])
    )
    print(f"python {platform.python_version()} on {platform.machine()}, size {args.size}²")
    total_n, total_t = 0, 0.0
    for difficulty in ("easy", "medium", "hard"):
        gen = stream(SimulationConfig(size=args.size, difficulty=difficulty), seed=args.seed)
        next(gen)  # warm-up
        times, particles = [], 0
        for _ in range(args.n):
            t0 = time.perf_counter()
            sim = next(gen)
            times.append(time.perf_counter() - t0)
            particles += len(sim.particles)
        rate = len(times) / sum(times)
        total_n += len(times)
        total_t += sum(times)
        median = 1e3 * sorted(times)[len(times) // 2]
        print(
            f"{difficulty:>6}: {rate:5.2f} micrographs/s  (median {median:.0f} ms, "
            f"max {1e3 * max(times):.0f} ms, {particles / len(times):.0f} particles/micrograph)"
        )
    print(f"overall: {total_n / total_t:.2f} micrographs/s at {args.size}² on one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
