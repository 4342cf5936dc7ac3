"""Peak memory (RSS) of ``cryosegnet pick`` on big micrographs, CPU only.

Run:  python bench/bench_memory.py [--model CKPT] [--paper-order] [--keep DIR]
      python bench/bench_memory.py --quick     # the 4096² case only: runs/quick/

Writes ``bench/results/bench_memory.json`` (``--quick``: ``runs/quick/``) and prints the table.

Issue 6 asks that picking a 4096² float32 micrograph on CPU peaks at <= 3 GB RSS and that a
super-resolution K3 micrograph (11520 x 8184) works without running out of memory. Each case
runs the real command line in its own child process; the child's peak RSS is the kernel's
``ru_maxrss`` for that child (``os.wait4``, the per-child form of
``getrusage(RUSAGE_CHILDREN)``, so one case's peak never masks another's). A child that only
imports cryosegnet and torch gives the fixed start-up cost.

Without ``--model`` the shipped default U-Net is used when present; otherwise a randomly
initialised U-Net of the default architecture and working size is written to a temp dir:
memory depends on the architecture and the working size, not on the weight values.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
from pathlib import Path

import mrcfile
import numpy as np
from benchlib import add_bench_options, command_line, results_json, run_timed

CASES = {
    "4096x4096 float32": (4096, 4096),
    "11520x8184 float32 (K3 super-resolution)": (8184, 11520),
}
LIMIT_GB = 3.0


def write_micrograph(path: Path, shape: tuple[int, int], seed: int = 0) -> None:
    """Noise plus dark particle-like disks, written row-block by row-block (low parent RSS)."""
    rng = np.random.default_rng(seed)
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=2, overwrite=True) as mrc:
        block = 512
        for start in range(0, shape[0], block):
            rows = min(block, shape[0] - start)
            mrc.data[start : start + rows] = rng.normal(0, 1, (rows, shape[1])).astype(np.float32)
        radius = max(shape) // 100
        yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        disk = (yy**2 + xx**2 <= radius**2).astype(np.float32) * 2.0
        for cy, cx in rng.integers(radius, np.array(shape) - radius - 1, (200, 2)):
            mrc.data[cy - radius : cy + radius + 1, cx - radius : cx + radius + 1] -= disk
        mrc.voxel_size = 0.415


def default_model(folder: Path) -> Path:
    from cryosegnet.model.checkpoint import default_model_path, save_checkpoint
    from cryosegnet.model.unet import AttentionUNet, UNetConfig
    from cryosegnet.preprocessing.denoise import DenoiseSettings

    shipped = default_model_path()
    if shipped.is_file():
        return shipped
    import torch

    torch.manual_seed(0)
    path = folder / "random-default-architecture.pt"
    save_checkpoint(
        path,
        AttentionUNet(UNetConfig()),
        DenoiseSettings(),
        metadata={"purpose": "bench_memory: random weights, default architecture"},
    )
    return path


def run_child(command: list[str]) -> tuple[int, float, float, str]:
    """Run ``command``; return (exit code, peak RSS in GB, wall seconds, output tail)."""
    with tempfile.TemporaryDirectory() as logs:
        timed = run_timed(command, Path(logs) / "child.log", math.inf, stamp=False)
        output = Path(timed.log).read_text(errors="replace").split("\n", 1)[1]  # not "$ ..."
    tail = output.strip().splitlines()[-6:]
    peak_gb = timed.max_rss_mb * 1024 * 1024 / 1e9  # Linux reports kilobytes
    return timed.returncode, peak_gb, timed.wall_s, "\n".join(tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_options(parser, "bench_memory", "the 4096² case only, no K3 micrograph")
    parser.add_argument("--model", help="U-Net checkpoint (default: shipped, else random default)")
    parser.add_argument(
        "--paper-order",
        action="store_true",
        help="also measure --denoise-order paper (filters at full resolution)",
    )
    parser.add_argument("--keep", help="write micrographs and outputs here, not in a temp dir")
    args = parser.parse_args(argv)
    json_path = results_json(args, "bench_memory")
    cases = {k: v for k, v in CASES.items() if not (args.quick and "K3" in k)}

    print(f"command: {command_line()}")
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"device cpu"
    )
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        model = Path(args.model) if args.model else default_model(folder)
        print(f"model: {model}")
        code, base_gb, wall, _ = run_child(
            [sys.executable, "-c", "import torch, cryosegnet.cli.main, cryosegnet.picking.picker"]
        )
        print(f"{'start-up (imports only)':48s} peak RSS {base_gb:5.2f} GB  {wall:6.1f} s")
        measured = [{"case": "start-up (imports only)", "peak_rss_gb": base_gb, "wall_s": wall}]
        runs = [(name, shape, None) for name, shape in cases.items()]
        if args.paper_order:
            runs.append(("4096x4096 float32, --denoise-order paper", (4096, 4096), "paper"))
        worst = 0.0
        failed = False
        for name, shape, order in runs:
            mic = folder / f"bench_{shape[1]}x{shape[0]}.mrc"
            if not mic.exists():
                write_micrograph(mic, shape)
            out = folder / f"out_{shape[1]}x{shape[0]}_{order or 'fast'}"
            command = [
                sys.executable,
                "-m",
                "cryosegnet.cli.main",
                "pick",
                str(mic),
                "-o",
                str(out),
                "--model",
                str(model),
                "--device",
                "cpu",
                "--no-progress",
                "--overwrite",
            ]
            if order:
                command += ["--denoise-order", order]
            code, peak_gb, wall, tail = run_child(command)
            verdict = "ok" if code == 0 else f"FAILED (exit {code})"
            print(f"{name:48s} peak RSS {peak_gb:5.2f} GB  {wall:6.1f} s  {verdict}")
            measured.append({"case": name, "peak_rss_gb": peak_gb, "wall_s": wall, "exit": code})
            if code != 0:
                print(tail)
                failed = True
            if "4096x4096" in name and order is None:
                worst = max(worst, peak_gb)
        verdict = "met" if worst <= LIMIT_GB else "MISSED"
        print(f"target: 4096² float32 <= {LIMIT_GB:.0f} GB: {verdict}")
    record = {"command": command_line(), "limit_gb": LIMIT_GB, "met": verdict == "met"}
    json_path.write_text(json.dumps(record | {"cases": measured}, indent=1) + "\n")
    return 1 if failed or worst > LIMIT_GB else 0


if __name__ == "__main__":
    sys.exit(main())
