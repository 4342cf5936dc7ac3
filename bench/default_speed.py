"""Per-stage time of the default picker on one real 4096² micrograph, one CPU thread.

    OMP_NUM_THREADS=1 python bench/default_speed.py            # bench/results/default_speed.json
    OMP_NUM_THREADS=1 python bench/default_speed.py --quick    # one repeat, runs/quick/

The real EPU micrograph (``../shared/data/real/unlabeled-raw/epu2.9_example.mrc``) goes through
the shipped model's pipeline stage by stage: read (MRC to float32), denoise, U-Net (ONNX
Runtime), the particle size read off the micrograph (a batch does this on 8 of its micrographs,
``--size-per-micrograph`` on each), instance stage (with the bad-region mask), and the whole
``Picker.pick`` from the file (read and size estimate included). The
instance stage is timed for the hybrid stage (the default without SAM) and the peak finder
(the previous default) on the same map, interleaved repeat by repeat so both see the same
machine load; medians of ``--repeats``. The goal it is measured against: <= 1.2 s end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np
from benchlib import EPU_FILE, add_bench_options, command_line, results_json

from cryosegnet.io.micrographs import read_micrograph
from cryosegnet.picking.picker import Picker

STAGES = ("hybrid", "peaks")


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_options(parser, "default_speed", "one repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    json_path = results_json(args, "default_speed")
    cv2.setNumThreads(1)
    pickers = {stage: Picker(device="cpu", stage=stage, runtime="onnx") for stage in STAGES}
    image = read_micrograph(EPU_FILE).data
    reference = pickers["hybrid"]
    denoised = reference.preprocess(image)
    probability = reference.probability_maps([denoised])[0]  # also loads the ONNX session
    size = reference.estimate_size(image)
    for picker in pickers.values():
        picker.pick(EPU_FILE)  # warm start: sessions, caches
    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        steps = {
            "read": lambda: read_micrograph(EPU_FILE),
            "denoise": lambda: reference.preprocess(image),
            "U-Net": lambda: reference.probability_maps([denoised]),
            "particle size read off the micrograph": lambda: reference.estimate_size(image),
        }
        for stage, picker in pickers.items():
            steps[f"instance stage: {stage}"] = lambda p=picker: p.instances(
                probability, image.shape, denoised, size
            )
            steps[f"end to end (Picker.pick from the file): {stage}"] = lambda p=picker: p.pick(
                EPU_FILE
            )
        for name, function in steps.items():
            times.setdefault(name, []).append(seconds(function))
    medians = {name: float(np.median(values)) for name, values in times.items()}
    record = {
        "command": command_line(args),
        "micrograph": EPU_FILE.name,
        "shape": list(image.shape),
        "threads": 1,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "repeats": repeats,
        "load_average": list(os.getloadavg()),
        "seconds": medians,
        "picks": {stage: len(p.pick(EPU_FILE)) for stage, p in pickers.items()},
    }
    json_path.write_text(json.dumps(record, indent=2))
    json_path.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))
    return 0


def markdown(record: dict) -> str:
    lines = [
        f"Real {record['shape'][1]}x{record['shape'][0]} EPU micrograph, shipped model, 1 thread "
        f"(OMP_NUM_THREADS={record['omp_num_threads']}), median of {record['repeats']}; load "
        f"average {', '.join(f'{v:.1f}' for v in record['load_average'])} on 2 CPUs. "
        f"Command: `{record['command']}`.",
        "",
        "| step | seconds |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value:.2f} |" for name, value in record["seconds"].items()]
    picks = ", ".join(f"{stage} {n}" for stage, n in record["picks"].items())
    lines += ["", f"Picks at the default threshold: {picks}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
