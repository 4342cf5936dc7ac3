"""Particle-size estimators that read a particle's outer extent, against the shipped one.

    python bench/studies/size_candidates.py     # writes bench/results/size_candidates.{json,md}

Decided (2026-12-04), a negative result: none of the four replaces the shipped estimate or
its fallback; each is right on cases where another is wrong (BENCHMARKS.md, "The particle
size, read off the micrographs").

The shipped estimate (detection/size.py: the LoG scale of greatest dark skew) reads a filled
particle's dark core, about 0.6 x the labelled diameter of the simulator's large particles,
and finds no clear scale on the apoferritin micrographs. Three estimators that should read the
outer extent instead are measured here on the same sets as bench/size_estimate.py (the
apoferritin ``train`` split, simulated fields of 14-76 px at every difficulty, the UCSF
micrograph of about 40 px); none is shipped (see BENCHMARKS.md for why):

* ``disk skew``: the skew of a disk-minus-surround contrast (disk 0.5 d, surround to 0.75 d;
  a hollow particle's shell darkens the whole disk), in place of the LoG;
* ``disk extremes``: the scale where the 50 strongest dark disks stand out most above the 50
  strongest light ones (in units of the contrast map's noise), the light ones measuring how
  high noise alone reaches at that scale;
* ``outer radius``: pick the 100 strongest dark blobs at the shipped estimate's scale,
  average their patches, and take twice the radius where the rotational average comes back
  to within 10 % of the dark depth from the background;
* ``outer radius, isolated``: the same from the 100 of the 300 strongest blobs with the
  fewest others within 1.5 of that scale (neighbours no longer darken the average's tail).

Then ``disk extremes`` pooled over several micrographs of one protein (its curves summed, as
a batch would): over random sets of 4 and 8 apoferritin ``train`` micrographs, and over
batches of 6 simulated micrographs of one shape, size and difficulty, with how clear the
pooled peak is (peak over the highest value more than two scales away).

Last, the default picker's best F1 / AUPRC on the apoferritin ``train`` split (radius d/2,
pooled) told the labelled 68 px and told what the pooled estimate of all 12 reads: what using
it as the batch's size would give there.

Size estimates take a couple of minutes on one core; the scoring, one U-Net pass per
apoferritin micrograph.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

import argparse
import json
import time

import cv2
import numpy as np
from benchlib import (
    RESULTS,
    SHARED,
    UNLABELLED,
    apoferritin_labels,
    command_line,
    fmt,
    score_prepared,
    write_results,
)
from scipy.spatial import cKDTree

from cryosegnet.detection.size import SizeEstimateSettings, estimate_size, flatten
from cryosegnet.io.micrographs import read_micrograph
from cryosegnet.masks.log_blobs import log_response
from cryosegnet.preprocessing.denoise import resize, working_shape
from cryosegnet.simulation import SimulationConfig, simulate_micrograph

SIM_DIAMETERS = (14, 20, 28, 40, 56, 76)
DIFFICULTIES = ("easy", "medium", "hard")
SIM_SEED = 5000  # as bench/size_estimate.py
UCSF = SHARED / "data" / "real" / "ucsf-contamination" / "micrograph.mrc"
WORKING = 1024
PIXELS_PER_SCALE = 16.0  # disk estimators: each scale filtered on a copy where d spans this
TOP = 50  # disk extremes: strongest dark / light disks compared
FIRST_PICKS = 100  # outer radius: dark blobs averaged
RETURN_FRACTION = 0.1  # outer radius: back to within this fraction of the depth
ISOLATION = 1.5  # outer radius, isolated: neighbours counted within this x the scale
POOL_SHAPES = ("globular", "shell")
POOL_DIFFICULTIES = ("medium", "hard")
POOL_DIAMETERS = (20.0, 40.0, 76.0)
POOL_SEED = 7000  # seeds 7000 + i: no training set uses them


def working(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The micrograph shrunk to the working size, and working px per micrograph px."""
    img = np.asarray(image, dtype=np.float32)
    small = resize(img, working_shape(img.shape, WORKING))
    return small, small.shape[1] / img.shape[1]


def sets() -> list[tuple[str, float, np.ndarray, float]]:
    """(name, labelled diameter in micrograph px (NaN: none), working image, scale)."""
    out = []
    if (SHARED / "data").is_dir():
        paths, _ = apoferritin_labels("train")
        for path in paths:
            out.append(
                (f"apoferritin train {path.stem}", 68.0, *working(read_micrograph(path).data))
            )
    for difficulty in DIFFICULTIES:
        for i, diameter in enumerate(SIM_DIAMETERS):
            config = SimulationConfig(size=1024, difficulty=difficulty, diameter_px=float(diameter))
            sim = simulate_micrograph(config, rng=SIM_SEED + i)
            out.append((f"sim {difficulty} {diameter}px", float(diameter), *working(sim.image)))
    if UCSF.is_file():
        out.append(("ucsf-contamination (by eye)", 40.0, *working(read_micrograph(UCSF).data)))
    for name, path in UNLABELLED.items():
        if path.is_file():
            out.append((name, float("nan"), *working(read_micrograph(path).data)))
    return out


def disk_kernel(inner: float, outer: float) -> np.ndarray:
    """Mean of the surround ring minus mean of the disk (high on a dark disk)."""
    half = int(np.ceil(outer))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    radius = np.hypot(xx, yy)
    disk, ring = radius <= inner, (radius > inner) & (radius <= outer)
    return (ring / ring.sum() - disk / disk.sum()).astype(np.float32)


def disk_response(flat: np.ndarray, diameter: float) -> tuple[np.ndarray, float]:
    """Disk contrast at ``diameter`` on a copy where it spans PIXELS_PER_SCALE px (borders
    cut), and the diameter in that copy's pixels."""
    factor = max(1.0, diameter / PIXELS_PER_SCALE)
    small = flat
    if factor > 1:
        size = (round(flat.shape[1] / factor), round(flat.shape[0] / factor))
        small = cv2.resize(flat, size, interpolation=cv2.INTER_AREA)
    d = diameter / factor
    response = cv2.filter2D(small, cv2.CV_32F, disk_kernel(0.5 * d, 0.75 * d))
    margin = int(0.75 * d) + 1
    return response[margin:-margin, margin:-margin], d


def skew(values: np.ndarray) -> float:
    centred = values - values.mean()
    var = float((centred * centred).mean())
    return float((centred**3).mean() / var**1.5) if var > 0 else 0.0


def strongest(response: np.ndarray, diameter: float, count: int) -> float:
    """Mean of the ``count`` highest local maxima (no two within half a diameter)."""
    size = 2 * int(diameter / 2) + 1
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    peaks = response[response >= cv2.dilate(response, element)]
    return float(np.sort(peaks)[::-1][:count].mean())


def scales(image: np.ndarray) -> np.ndarray:
    s = SizeEstimateSettings()
    largest = min(image.shape) * s.max_fraction
    n = int(np.floor(np.log2(largest / s.min_diameter) * s.scales_per_octave)) + 1
    return s.min_diameter * 2.0 ** (np.arange(n) / s.scales_per_octave)


def flattened(image: np.ndarray) -> np.ndarray:
    s = SizeEstimateSettings()
    largest = min(image.shape) * s.max_fraction
    return flatten(image, s.flatten_fraction * largest, s.clip_sigma)


def disk_skew(image: np.ndarray) -> float:
    flat, ds = flattened(image), scales(image)
    values = []
    for d in ds:
        response, small_d = disk_response(flat, d)
        step = max(1, round(small_d / 3))
        values.append(skew(response[::step, ::step].astype(np.float64).ravel()))
    return float(ds[int(np.argmax(values))])


def disk_extremes(image: np.ndarray) -> float:
    ds, values = disk_extremes_curve(image)
    return float(ds[int(np.argmax(values))])


def disk_extremes_curve(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(diameters, strongest dark minus strongest light disks at each, noise units)."""
    flat, ds = flattened(image), scales(image)
    values = []
    for d in ds:
        response, small_d = disk_response(flat, d)
        centre = float(np.median(response))
        spread = 1.4826 * float(np.median(np.abs(response - centre))) or 1.0
        z = (response - centre) / spread
        values.append(strongest(z, small_d, TOP) - strongest(-z, small_d, TOP))
    return ds, np.array(values)


def clearness(values: np.ndarray) -> tuple[int, float]:
    """(index of the peak, peak over the highest value more than two scales from it)."""
    best = int(np.argmax(values))
    away = np.concatenate([values[: max(0, best - 2)], values[best + 3 :]])
    return best, float(values[best] / max(float(away.max()) if len(away) else 0.0, 1e-3))


def outer_radius(image: np.ndarray, start: float, isolated: bool = False) -> float:
    flat = flattened(image)
    response = log_response(flat, start)
    size = 2 * int(start / 2) + 1
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    rows, cols = np.nonzero(response >= cv2.dilate(response, element))
    order = np.argsort(response[rows, cols])[::-1][: 3 * FIRST_PICKS if isolated else FIRST_PICKS]
    if isolated:
        points = np.c_[cols[order], rows[order]]
        crowd = [len(n) - 1 for n in cKDTree(points).query_ball_point(points, ISOLATION * start)]
        order = order[np.lexsort((np.arange(len(order)), crowd))[:FIRST_PICKS]]
    half = int(1.5 * start)
    total, n = np.zeros((2 * half + 1, 2 * half + 1)), 0
    for row, col in zip(rows[order], cols[order], strict=True):
        if half <= col < flat.shape[1] - half and half <= row < flat.shape[0] - half:
            total += flat[row - half : row + half + 1, col - half : col + half + 1]
            n += 1
    if n == 0:
        return float("nan")
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    ring = np.hypot(xx, yy).astype(int).ravel()
    profile = (np.bincount(ring, (total / n).ravel()) / np.bincount(ring))[: half + 1]
    background = float(np.median(profile[int(1.1 * start) :]))
    darkest = int(np.argmin(profile[: max(1, int(0.75 * start))]))
    depth = background - profile[darkest]
    radius = darkest
    while radius < half and profile[radius] < background - RETURN_FRACTION * depth:
        radius += 1
    return 2.0 * radius


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(RESULTS / "size_candidates.json"))
    args = parser.parse_args()
    rows = []
    for name, truth, image, scale in sets():
        started = time.perf_counter()
        shipped = estimate_size(image)
        labelled = truth if np.isfinite(truth) else None  # JSON has no NaN
        row = {"set": name, "labelled_px": labelled, "sure": shipped.sure}
        estimates = {
            "shipped": shipped.diameter,
            "disk skew": disk_skew(image),
            "disk extremes": disk_extremes(image),
            "outer radius": outer_radius(image, shipped.diameter),
            "outer radius, isolated": outer_radius(image, shipped.diameter, isolated=True),
        }
        row["estimates_px"] = {
            k: round(v / scale, 1) if np.isfinite(v) else None for k, v in estimates.items()
        }
        row["seconds"] = round(time.perf_counter() - started, 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    record = {"command": command_line(), "rows": rows, "pooled": pooled(), "scored": scored()}
    write_results(args.json, record, markdown(record))
    print(markdown(record))
    return 0


def pooled() -> list[dict]:
    """``disk extremes`` summed over several micrographs of one protein."""
    out = []
    if (SHARED / "data").is_dir():
        paths, _ = apoferritin_labels("train")
        curves, scale = [], 1.0
        for path in paths:
            image, scale = working(read_micrograph(path).data)
            ds, values = disk_extremes_curve(image)
            curves.append(values)
        rng = np.random.default_rng(0)
        for count in (4, 8):
            reads, clear = [], []
            for _ in range(30):
                chosen = rng.choice(len(curves), count, replace=False)
                best, ratio = clearness(np.sum([curves[i] for i in chosen], axis=0))
                reads.append(ds[best] / scale / 68.0)
                clear.append(ratio)
            out.append(
                {
                    "set": f"apoferritin train, 30 random sets of {count}",
                    "ratio_range": [round(min(reads), 2), round(max(reads), 2)],
                    "clearness_range": [round(min(clear), 1), round(max(clear), 1)],
                }
            )
    for shape in POOL_SHAPES:
        for difficulty in POOL_DIFFICULTIES:
            for diameter in POOL_DIAMETERS:
                config = SimulationConfig(
                    size=1024, difficulty=difficulty, diameter_px=diameter, shapes=(shape,)
                )
                curves = []
                for seed in range(6):
                    sim = simulate_micrograph(config, rng=POOL_SEED + seed)
                    ds, values = disk_extremes_curve(sim.image.astype(np.float32))
                    curves.append(values)
                best, ratio = clearness(np.sum(curves, axis=0))
                row = {
                    "set": f"sim {shape} {difficulty} {diameter:g}px, 6 micrographs",
                    "ratio_range": [round(float(ds[best]) / diameter, 2)] * 2,
                    "clearness_range": [round(ratio, 1)] * 2,
                }
                print(json.dumps(row), flush=True)
                out.append(row)
    return out


def scored() -> list[dict]:
    """The default picker on apoferritin ``train`` told 68 px and the pooled estimate."""
    if not (SHARED / "data").is_dir():
        return []
    from cryosegnet import Picker

    picker = Picker(device="cpu")
    paths, labels = apoferritin_labels("train")
    prepared, curves, scale = [], [], 1.0
    for path in paths:
        image = read_micrograph(path).data
        small, scale = working(image)
        ds, values = disk_extremes_curve(small)
        curves.append(values)
        denoised = picker.preprocess(image)
        probability = picker.probability_maps([denoised])[0]
        prepared.append((path.stem, denoised, probability, image.shape, None))
    best, _ = clearness(np.sum(curves, axis=0))
    pooled_px = round(float(ds[best]) / scale, 1)
    return [
        {"told_px": told, **score_prepared(picker, prepared, labels, told)}
        for told in (68.0, pooled_px)
    ]


def within(estimate: float | None, truth: float | None) -> bool:
    return estimate is not None and truth is not None and abs(estimate / truth - 1) <= 0.15


def markdown(record: dict) -> str:
    """Estimate / labelled size per set and estimator; a count within ±15 % per estimator."""
    names = list(record["rows"][0]["estimates_px"])
    lines = [
        f"`{record['command']}`",
        "",
        "Estimate over the labelled size (micrograph px); **bold**: within ±15 %. *shipped*: "
        "detection/size.py (unsure ones marked ?), the U-Net map's fallback not applied.",
        "",
        "| set | labelled px | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    hits = dict.fromkeys(names, 0)
    labelled = 0
    for row in record["rows"]:
        truth = row["labelled_px"]
        cells = []
        for name in names:
            value = row["estimates_px"][name]
            mark = "?" if name == "shipped" and not row["sure"] else ""
            if truth is None or value is None:
                cells.append(f"{fmt(value, 1)} px{mark}")
                continue
            text = f"{value / truth:.2f}{mark}"
            hits[name] += within(value, truth)
            cells.append(f"**{text}**" if within(value, truth) else text)
        labelled += truth is not None
        lines.append(f"| {row['set']} | {fmt(truth, 0)} | " + " | ".join(cells) + " |")
    lines.append(
        f"| within ±15 % | of {labelled} | " + " | ".join(str(hits[n]) for n in names) + " |"
    )
    lines += [
        "",
        "*disk extremes* pooled over micrographs of one protein (curves summed): estimate over "
        "the labelled size, and how clear the pooled peak is.",
        "",
        "| micrographs pooled | estimate / labelled | clearness |",
        "|---|---|---|",
    ]
    for row in record.get("pooled", []):
        low, high = row["ratio_range"]
        c_low, c_high = row["clearness_range"]
        ratio = f"{low:.2f}" if low == high else f"{low:.2f}-{high:.2f}"
        clear = f"{c_low:.1f}" if c_low == c_high else f"{c_low:.1f}-{c_high:.1f}"
        lines.append(f"| {row['set']} | {ratio} | {clear} |")
    if record.get("scored"):
        lines += [
            "",
            "The default picker on the apoferritin `train` split told the labelled size and "
            "the pooled estimate of its 12 micrographs (pooled best F1 / AUPRC, radius d/2).",
            "",
            "| told px | best F1 | AUPRC |",
            "|---|---|---|",
        ]
        for row in record["scored"]:
            lines.append(f"| {row['told_px']:g} | {fmt(row['best_f1'])} | {fmt(row['auprc'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
