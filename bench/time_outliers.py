"""No slow micrograph: the default picker's time on every micrograph of every shared real set.

    OMP_NUM_THREADS=1 python bench/time_outliers.py           # bench/results/time_outliers.json
    OMP_NUM_THREADS=1 python bench/time_outliers.py --quick   # 3 micrographs a set, runs/quick/

A picker whose time depends on what a micrograph shows (a flat region read as thousands of
peaks, a crowded field's suppression growing with the square of its candidates) stalls a
session on the one micrograph that triggers it. Every micrograph of the shared real sets
(apoferritin, the quality set, the raw EPU and FEI micrographs, the UCSF contamination
micrograph, the two processed ones) is picked from its file with the default ``Picker`` on
one thread, after one warm-up pick, and timed. Every micrograph is read at the same working
size, so within a set (micrographs of one size) the time should hardly vary: the goal is that
none takes more than 2 x its set's median. Per megapixel, the figure the goal was first
written in, is reported too, but it compares micrographs of different sizes that all cost
about one working image, so it is the within-set ratio that finds an outlier.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np
from benchlib import APOFERRITIN, REAL, add_bench_options, command_line, rel, results_json

from cryosegnet.picking.picker import Picker

#: The goal: no micrograph slower than this many times its set's median.
MAX_RATIO = 2.0


def shared_sets() -> dict[str, list]:
    """Every shared real micrograph, by set (the sets' own file layouts)."""
    sets = {
        "apoferritin": sorted((APOFERRITIN / "micrographs").glob("*.png")),
        "quality set": sorted((REAL / "micrograph-quality" / "Examples").glob("*/*.png")),
        "raw EPU and FEI": sorted((REAL / "unlabeled-raw").glob("*.mrc")),
        "UCSF contamination": [REAL / "ucsf-contamination" / "micrograph.mrc"],
        "processed (80S, T20S)": sorted((REAL / "unlabeled-misc").glob("*.png")),
    }
    return {name: paths for name, paths in sets.items() if paths and paths[0].exists()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_options(parser, "time_outliers", "3 micrographs a set")
    args = parser.parse_args(argv)
    json_path = results_json(args, "time_outliers")
    cv2.setNumThreads(1)
    picker = Picker(device="cpu")
    sets = shared_sets()
    if not sets:
        raise SystemExit("no shared real micrograph found (../shared/data/real)")
    picker.pick(next(iter(sets.values()))[0])  # warm start: sessions, caches
    rows = []
    for name, paths in sets.items():
        for path in paths[:3] if args.quick else paths:
            start = time.perf_counter()
            result = picker.pick_result(path)  # what Picker.pick does, with the shape read
            seconds = time.perf_counter() - start
            rows.append(
                {"set": name, "micrograph": rel(path), "shape": list(result.original_shape),
                 "seconds": seconds, "picks": len(result.picks)}
            )  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    record = {
        "command": command_line(args),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average": list(os.getloadavg()),
        "max_ratio_goal": MAX_RATIO,
        "sets": summarise(rows),
        "rows": rows,
    }
    json_path.write_text(json.dumps(record, indent=1) + "\n")
    json_path.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))
    return 0


def summarise(rows: list[dict]) -> list[dict]:
    """Per set: the median and slowest time, their ratio, and the same per megapixel."""
    out = []
    for name in dict.fromkeys(row["set"] for row in rows):
        mine = [row for row in rows if row["set"] == name]
        seconds = np.array([row["seconds"] for row in mine])
        megapixels = np.array([row["shape"][0] * row["shape"][1] / 1e6 for row in mine])
        slowest = int(np.argmax(seconds))
        out.append(
            {
                "set": name,
                "micrographs": len(mine),
                "median_s": float(np.median(seconds)),
                "max_s": float(seconds[slowest]),
                "slowest": mine[slowest]["micrograph"],
                "max_over_median": float(seconds[slowest] / np.median(seconds)),
                "median_s_per_megapixel": float(np.median(seconds / megapixels)),
            }
        )
    return out


def markdown(record: dict) -> str:
    sets = record["sets"]
    every = [row["seconds"] / (row["shape"][0] * row["shape"][1] / 1e6) for row in record["rows"]]
    worst = max(s["max_over_median"] for s in sets)
    verdict = "met" if worst <= record["max_ratio_goal"] else "not met"
    lines = [
        f"`{record['command']}` (OMP_NUM_THREADS={record['omp_num_threads']}; load average "
        f"{', '.join(f'{v:.1f}' for v in record['load_average'])} on 2 CPUs)",
        "",
        "The default picker (`Picker.pick` from the file, one thread) on every shared real "
        f"micrograph. Goal: none slower than {record['max_ratio_goal']:g} x its set's median "
        f"(slowest now: {worst:.2f} x, {verdict}).",
        "",
        "| set | micrographs | median s | slowest s | slowest / median | median s per Mpx |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s['set']} | {s['micrographs']} | {s['median_s']:.2f} | {s['max_s']:.2f} | "
        f"{s['max_over_median']:.2f} | {s['median_s_per_megapixel']:.3f} |"
        for s in sets
    ]
    lines += [
        "",
        f"Per megapixel over all sets: median {np.median(every):.3f} s, slowest "
        f"{max(every):.3f} s ({max(every) / np.median(every):.1f} x; the small micrographs "
        "cost one working image each, as the large ones do).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
