"""One GPU session: end-to-end throughput on 4096² micrographs, and training at GPU scale.

    # on the lent GPU machine (the EPU micrograph and the shared 3D maps carried beside it):
    python bench/gpu_run.py --device cuda --out $OUT --budget 470 \
        --micrograph .gpu_data/epu2.9_example.mrc --maps .gpu_data/maps/*.mrc
    # on any CPU, in about a minute (what tests/test_bench_gpu_run.py runs):
    python bench/gpu_run.py --quick --out /tmp/gpu_quick

A lent GPU comes for about 15 minutes in all, start-up included, so everything is prepared
here and the device runs this one script, which keeps to ``--budget`` seconds:

1. **Throughput.** The real micrograph is copied ``--copies`` times, and ``cryosegnet pick``
   runs over the copies as a user would run it (reading, denoising, U-Net, size estimate,
   instance stage, writing), once per ``--configs`` entry of reader threads x U-Net batch.
   Micrographs/s is copies over the whole command's wall time, start-up included; the steady
   rate is taken between the first and the last STAR written. Per-stage times on one
   micrograph come from the library, medians of 3 after a warm-up.
2. **CPU and GPU agree.** The same micrographs (the real one and simulated ones) are picked on
   the CPU (ONNX Runtime) and on the GPU (PyTorch, fp16 autocast); picks are matched one to one
   within one working pixel.
3. **Training.** Simulated micrographs (the three difficulties; half of them from the given
   3D maps, the rest procedural) are made and denoised once into a cache; then one
   ``cryosegnet train`` per ``--archs`` entry runs at the same time on the GPU. A short
   calibration run of each sets the steps per epoch so that the cosine schedule ends inside
   the budget. Each run's last and best checkpoints are exported (``export-model``) into
   ``--out`` to be evaluated on the CPU afterwards.

Everything measured goes to ``OUT/gpu_run.json``; logs to ``OUT/gpu_run.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIM_SEED = 101  # training simulations; validation uses the trainer's own offset from it


class Clock:
    """Seconds left of the budget; every phase asks it before starting."""

    def __init__(self, budget: float) -> None:
        self.end = time.perf_counter() + budget

    def left(self) -> float:
        return self.end - time.perf_counter()


def log(message: str, out: Path) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    print(line, flush=True)
    with open(out / "gpu_run.log", "a") as handle:
        handle.write(line + "\n")


def cli(*arguments: str) -> list[str]:
    # Always ``python -m`` (not benchlib.cryosegnet_command): the GPU machine runs the source
    # tree from PYTHONPATH, with no installed ``cryosegnet`` executable.
    return [sys.executable, "-m", "cryosegnet.cli.main", *arguments]


def run(command: list[str], logs: Path, timeout: float, name: str) -> tuple[int, float, str]:
    """Run ``command`` with its output in LOGS/name.txt: (exit code, seconds, output tail)."""
    start = time.perf_counter()
    with open(logs / f"{name}.txt", "w") as handle:
        proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            code = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = -9
    seconds = time.perf_counter() - start
    text = (logs / f"{name}.txt").read_text(errors="replace")
    return code, seconds, text[-1500:]


# ----------------------------------------------------------------------------- throughput
def stage_times(micrograph: Path, device: str) -> dict:
    """Median seconds of each library step on one micrograph (3 repeats after a warm-up)."""
    import torch

    from cryosegnet.io.micrographs import read_micrograph
    from cryosegnet.picking.picker import Picker

    picker = Picker(device=device)
    image = read_micrograph(micrograph).data
    denoised = picker.preprocess(image)
    size = picker.estimate_size(image)
    probability = picker.probability_maps([denoised])[0]
    picker.pick_result(micrograph)

    def timed(function) -> float:
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    steps = {
        "read": lambda: read_micrograph(micrograph),
        "denoise": lambda: picker.preprocess(image),
        "U-Net, batch of 1": lambda: picker.probability_maps([denoised]),
        "U-Net, batch of 8 (per micrograph)": lambda: picker.probability_maps([denoised] * 8),
        "particle size read off the micrograph": lambda: picker.estimate_size(image),
        "instance stage: hybrid (with the bad-region mask)": lambda: picker.instances(
            probability, image.shape, denoised, size
        ),
        "end to end (Picker.pick_result from the file)": lambda: picker.pick_result(micrograph),
    }
    times: dict[str, list[float]] = {}
    for _ in range(3):
        for name, function in steps.items():
            times.setdefault(name, []).append(timed(function))
    medians = {name: float(np.median(values)) for name, values in times.items()}
    medians["U-Net, batch of 8 (per micrograph)"] /= 8
    return {"shape": list(image.shape), "seconds": medians}


def batch_throughput(args: argparse.Namespace, folder: Path, out: Path, clock: Clock) -> list:
    """``cryosegnet pick`` over the copies, once per reader-threads x batch configuration."""
    import starfile

    results = []
    for config in args.configs.split(","):
        workers, batch = (int(v) for v in config.split("x"))
        if clock.left() < args.reserve + 30:
            log(f"throughput: skipping -j {workers} -b {batch} (budget)", out)
            continue
        picks_dir = Path(tempfile.mkdtemp(prefix="picks_", dir=folder.parent))
        command = cli(
            "pick", str(folder), "-o", str(picks_dir), "--device", args.device,
            "-j", str(workers), "-b", str(batch), "--no-progress",
        )  # fmt: skip
        code, seconds, tail = run(
            command, args.logs, clock.left() - args.reserve, f"pick_j{workers}"
        )
        stars = sorted(picks_dir.rglob("*_autopick.star"), key=lambda p: p.stat().st_mtime)
        n_picks = 0
        if (picks_dir / "particles.star").is_file():
            n_picks = len(starfile.read(picks_dir / "particles.star"))
        steady = None
        if len(stars) > 2:
            span = stars[-1].stat().st_mtime - stars[0].stat().st_mtime
            steady = (len(stars) - 1) / span if span > 0 else None
        record = {
            "workers": workers,
            "batch_size": batch,
            "exit_code": code,
            "micrographs": len(stars),
            "seconds": round(seconds, 2),
            "micrographs_per_second": round(len(stars) / seconds, 2),
            "steady_micrographs_per_second": round(steady, 2) if steady else None,
            "picks": n_picks,
            "command": " ".join(["cryosegnet", *command[3:]]),
        }
        log(f"throughput: {record}", out)
        if code != 0:
            record["output_tail"] = tail
        results.append(record)
        shutil.rmtree(picks_dir, ignore_errors=True)
    return results


def agreement(micrographs: list[Path], device: str) -> list[dict]:
    """Picks of the CPU path against the device path, matched within one working pixel."""
    from cryosegnet.evaluation.matching import match_picks
    from cryosegnet.picking.picker import Picker

    cpu, gpu = Picker(device="cpu"), Picker(device=device)
    rows = []
    for path in micrographs:
        a, b = cpu.pick_result(path), gpu.pick_result(path)
        scale = a.working_shape[0] / a.original_shape[0]  # working px per micrograph px
        xy_a = a.picks[["x", "y"]].to_numpy() * scale
        xy_b = b.picks[["x", "y"]].to_numpy() * scale
        match = match_picks(xy_b, b.picks["score"].to_numpy(), xy_a, radius=1.0)
        matched = int(match.is_tp.sum())
        rows.append(
            {
                "micrograph": path.name,
                "cpu_picks": len(xy_a),
                "device_picks": len(xy_b),
                "matched_within_1_working_px": matched,
                "diameter_cpu": a.diameter,
                "diameter_device": b.diameter,
                "fraction_matched": round(matched / max(1, len(xy_a), len(xy_b)), 4),
            }
        )
    return rows


def simulated_micrographs(folder: Path, size: int, count: int) -> list[Path]:
    import mrcfile

    from cryosegnet.simulation import SimulationConfig, simulate_micrograph

    paths = []
    for k, difficulty in enumerate(["easy", "medium", "hard"][:count]):
        sim = simulate_micrograph(SimulationConfig(size=size, difficulty=difficulty), 500 + k)
        path = folder / f"sim_{difficulty}.mrc"
        with mrcfile.new(path) as handle:
            handle.set_data(sim.image.astype(np.float32))
            handle.voxel_size = sim.pixel_size
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- training
def train_command(
    args: argparse.Namespace, arch: str, run_dir: Path, epochs: int, steps: int, workers: int = 0
):
    options = ["--sim-option", "map_probability=0.5", "--sim-option", "map_voxel_size=4.0"]
    if args.maps:
        options += [
            "--sim-option",
            "maps=" + json.dumps([str(Path(m).resolve()) for m in args.maps]),
        ]
    return cli(
        "train", "--simulated", str(args.sims), "--sim-val", str(args.sim_val),
        *(options if args.maps else []),
        "--arch", arch, "--working-size", "1024", "--epochs", str(epochs),
        "--steps-per-epoch", str(steps), "--batch-size", str(args.batch_size),
        "--crop", str(args.crop), "--lr", "1e-3", "--schedule", "cosine", "--seed", str(SIM_SEED),
        "--cache", str(args.work / "cache"), "--workers", str(workers or args.train_workers),
        "--device", args.device, "-o", str(run_dir), "--no-progress",
    )  # fmt: skip


def run_parallel(commands: dict[str, list[str]], logs: Path, timeout: float) -> dict:
    """Start every command at once, wait for all (killing them at ``timeout``): name -> code."""
    start = time.perf_counter()
    procs = {}
    for name, command in commands.items():
        handle = open(logs / f"{name}.txt", "w")  # noqa: SIM115 - closed below
        procs[name] = (
            subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO),
            handle,
        )
    codes = {}
    for name, (proc, handle) in procs.items():
        try:
            codes[name] = proc.wait(timeout=max(1.0, timeout - (time.perf_counter() - start)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            codes[name] = -9
        handle.close()
    return codes


def epoch_seconds(run_dir: Path) -> float | None:
    history = run_dir / "history.json"
    if not history.is_file():
        return None
    epochs = json.loads(history.read_text())
    return float(epochs[-1]["seconds"]) if epochs else None


def training(args: argparse.Namespace, out: Path, clock: Clock) -> dict:
    archs = args.archs.split(",")
    record: dict = {
        "sims": args.sims,
        "sim_val": args.sim_val,
        "maps": [Path(m).name for m in args.maps],
    }
    # 1. Simulate and denoise once into the cache (a one-step run of the first arch).
    code, seconds, tail = run(
        train_command(args, archs[0], args.work / "cache_run", 1, 1, os.cpu_count() or 1),
        args.logs,
        clock.left() - args.reserve,
        "train_cache",
    )
    record["cache_seconds"] = round(seconds, 1)
    log(f"training: cache built in {seconds:.0f} s (exit {code})", out)
    if code != 0:
        record["cache_error"] = tail
        return record
    # 2. Calibrate each arch, all at once as they will run: one epoch of CAL steps.
    cal = args.calibration_steps
    started = time.perf_counter()
    codes = run_parallel(
        {f"train_cal_{a}": train_command(args, a, args.work / f"cal_{a}", 1, cal) for a in archs},
        args.logs,
        clock.left() - args.reserve,
    )
    calibration_wall = time.perf_counter() - started
    record["calibration"] = {
        a: {"exit": codes[f"train_cal_{a}"], "epoch_seconds": epoch_seconds(args.work / f"cal_{a}")}
        for a in archs
    }
    record["calibration_wall_seconds"] = round(calibration_wall, 1)
    log(f"training: calibration {record['calibration']} (wall {calibration_wall:.0f} s)", out)
    # 3. The runs: the steps per epoch that fill what is left (the calibration's epoch time,
    # which counts a validation per CAL steps, over-estimates a step: the runs end early).
    overhead = max(
        5.0,
        calibration_wall - max((r["epoch_seconds"] or 0) for r in record["calibration"].values()),
    )
    available = clock.left() - args.reserve - overhead
    commands, plans = {}, {}
    for arch in archs:
        per_epoch = record["calibration"][arch]["epoch_seconds"]
        if not per_epoch or available < 30:
            continue
        steps = max(10, int(0.85 * cal * available / (args.epochs * per_epoch)))
        plans[arch] = {
            "epochs": args.epochs,
            "steps_per_epoch": steps,
            "batch_size": args.batch_size,
            "crop": args.crop,
        }
        commands[f"train_{arch}"] = train_command(
            args, arch, args.work / f"run_{arch}", args.epochs, steps
        )
    record["plans"] = plans
    log(f"training: plans {plans}, {available:.0f} s available", out)
    started = time.perf_counter()
    codes = run_parallel(commands, args.logs, clock.left() - args.reserve)
    record["train_wall_seconds"] = round(time.perf_counter() - started, 1)
    # 4. Export what the runs made (optimizer state dropped: a file for --model).
    record["runs"] = {}
    for arch in plans:
        run_dir = args.work / f"run_{arch}"
        history = (
            json.loads((run_dir / "history.json").read_text())
            if (run_dir / "history.json").is_file()
            else []
        )
        entry = {
            "exit": codes[f"train_{arch}"],
            "history": history,
            "command": " ".join(["cryosegnet", *commands[f"train_{arch}"][3:]]),
        }
        for which in ("last", "best"):
            if (run_dir / f"{which}.pt").is_file():
                target = out / f"{arch}_{which}.pt"
                export = cli(
                    "export-model",
                    str(run_dir / f"{which}.pt"),
                    "-o",
                    str(target),
                    "--note",
                    f"gpu_run.py: {arch} {which}.pt",
                )
                entry[f"export_{which}"] = run(export, args.logs, 60, f"export_{arch}_{which}")[0]
        record["runs"][arch] = entry
        log(f"training: {arch} exit {entry['exit']}, {len(history)} epochs", out)
    return record


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=470.0, help="seconds for everything")
    parser.add_argument("--reserve", type=float, default=25.0, help="seconds kept for exports")
    parser.add_argument("--micrograph", type=Path, help="the real micrograph to copy")
    parser.add_argument("--copies", type=int, default=160)
    parser.add_argument("--configs", default="8x8,15x8", help="reader threads x U-Net batch")
    parser.add_argument("--maps", nargs="*", default=[])
    parser.add_argument("--sims", type=int, default=720)
    parser.add_argument("--sim-val", type=int, default=12)
    parser.add_argument("--archs", default="tiny,width10")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=384)
    parser.add_argument("--calibration-steps", type=int, default=60)
    parser.add_argument("--train-workers", type=int, default=7)
    parser.add_argument("--parts", default="throughput,agreement,train")
    parser.add_argument("--quick", action="store_true", help="a small CPU run of every part")
    args = parser.parse_args()
    if args.quick:  # every part on a CPU, small: the test of this script
        # No budget to keep to on a CPU: a loaded machine must not skip parts.
        args.device, args.budget, args.copies, args.configs = "cpu", 1200.0, 2, "2x2"
        args.sims, args.sim_val, args.archs, args.epochs = 2, 1, "tiny", 1
        args.batch_size, args.crop, args.calibration_steps, args.train_workers = 2, 128, 1, 0
        args.reserve = 10.0
    clock = Clock(args.budget)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    args.work = Path(tempfile.mkdtemp(prefix="gpu_run_"))
    args.logs = args.work / "logs"  # only 8 files come back from a device run: logs stay here
    args.logs.mkdir()
    import torch

    record: dict = {
        "command": " ".join(sys.argv),
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "quick": args.quick,
    }
    log(f"start: {record}", out)
    parts = args.parts.split(",")
    try:
        data = args.work / "micrographs"
        data.mkdir()
        if args.micrograph is not None:
            source = args.micrograph
        else:  # --quick: a simulated 2048² micrograph stands in for the real one
            (args.work / "source").mkdir()
            source = simulated_micrographs(args.work / "source", 1024, 1)[0]
        if "throughput" in parts:
            for k in range(args.copies):
                shutil.copyfile(source, data / f"mic_{k:04d}{source.suffix}")
            record["stage_seconds"] = stage_times(source, args.device)
            log(f"stages: {record['stage_seconds']}", out)
            record["throughput"] = batch_throughput(args, data, out, clock)
            shutil.rmtree(data, ignore_errors=True)
        if "agreement" in parts and clock.left() > args.reserve + 40:
            # --quick: the source micrograph alone; else three simulated ones beside it
            sims = [] if args.quick else simulated_micrographs(args.work, 2048, 3)
            record["agreement"] = agreement([source, *sims], args.device)
            log(f"agreement: {record['agreement']}", out)
        if "train" in parts and clock.left() > args.reserve + 60:
            record["training"] = training(args, out, clock)
    finally:
        record["seconds_left"] = round(clock.left(), 1)
        (out / "gpu_run.json").write_text(json.dumps(record, indent=1, default=str))
        with open(out / "gpu_run.log", "a") as handle:  # the tail of every command's output
            for path in sorted(args.logs.glob("*.txt")):
                handle.write(f"\n===== {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        shutil.rmtree(args.work, ignore_errors=True)
        log("done", out)


if __name__ == "__main__":
    main()
