"""cryosegnet vs Topaz, side by side on the same micrographs in the same run.

Run:  python bench/compare_topaz.py [--model PATH] [--sam-checkpoint PATH]
                                    [--sets real,synthetic,epu]
      python bench/compare_topaz.py --quick     # the real set only, no extra Topaz rows

For each set the two pickers run back to back (so they share the machine's load), each in its
own subprocess, and both are scored by ``cryosegnet evaluate``:

* **real**: the labelled EMPIAR-10146 apoferritin micrographs (PNG, particle diameter 68 px).
  Topaz 0.3.20 cannot read PNG (its loader returns a PIL object), so they are converted to
  float32 MRC first, rows unchanged (row 0 = top of the PNG); cryosegnet reads the PNGs.
  The conversion is timed separately and not charged to Topaz.
* **synthetic**: a held-out hard set made by ``cryosegnet simulate`` (4096², seed >= 9000, which
  training never uses); labels are the simulator's ``<stem>.csv`` (pickable particles).
* **epu**: the raw EPU 4096² MRC, timing only (no labels).

cryosegnet: ``cryosegnet pick --stage peaks --threshold 0`` (every candidate kept, so best F1
and AUPRC see them all); "at default threshold" re-scores with
``--threshold DEFAULT_PEAK_THRESHOLD`` (``DEFAULT_SAM_THRESHOLD`` for the SAM stage, which
runs only with ``--sam-checkpoint``). The particle diameter is *not* given: it estimates it.
A second row, "diameter given", passes the labelled diameter with ``--diameter`` as Topaz is
given it, so the two can be compared on equal terms.

Topaz: ``topaz preprocess -s S`` then ``topaz extract -r R -t T -x S`` with the pretrained
``resnet16_u64`` (its default model). Topaz must be told the particle size; the rule is
``S = max(1, round(d / (2 * target_radius)))`` with target radius 10 px (resnet16_u64 wants a
particle radius of ~7-12 px after downsampling) and ``R = round(d / 2 / S)``, with ``d`` the
known particle diameter (the labels' median, per micrograph; micrographs sharing S run in one
Topaz call). Topaz scores are log-likelihood ratios: its default threshold is 0 (p >= 0.5);
extraction runs down to ``T`` (default -10) to keep the low-scoring candidates for the PR curve.

Matching radius: half the labelled particle diameter (``cryosegnet evaluate``'s default).
Time: wall and CPU (user + sys) seconds of the whole command (start-up, I/O, denoising /
preprocessing included) divided by the number of micrographs, plus an estimate excluding
start-up; peak RSS from ``wait4`` on each subprocess (max over Topaz's two processes).
Output: a markdown table on stdout and in ``bench/results/compare_topaz.md``, the full record in
``compare_topaz.json``; generated data (micrographs, picks, reports, overlays) under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import peers
from benchlib import (
    APOFERRITIN,
    EPU_FILE,
    REPO,
    TOPAZ,
    add_bench_options,
    cryosegnet_command,
    fmt,
    log_tail,
    results_json,
    run_timed,
    stem_of,
    write_mrc,
)

from cryosegnet.io.jsonsafe import json_default, json_safe

TOPAZ_DEFAULT_THRESHOLD = 0.0  # log-likelihood ratio 0 = p(particle) 0.5


# ----------------------------------------------------------------------------- running tools


# Runs ``topaz ARGS`` after importing every Topaz command module (and so torch), printing a
# marker when the imports are done: the wall time to the marker is Topaz's start-up.
TOPAZ_MARKER = "[bench] topaz imports done"
TOPAZ_LAUNCHER = (  # one line, so the logged command stays one line
    "import importlib, pkgutil, sys; import topaz.commands, topaz.main; "
    "[importlib.import_module('topaz.commands.' + m.name) "
    "for m in pkgutil.iter_modules(topaz.commands.__path__)]; "
    f"print({TOPAZ_MARKER!r}, file=sys.stderr, flush=True); "
    "sys.argv = ['topaz'] + sys.argv[1:]; sys.exit(topaz.main.main())"
)


def topaz_command(topaz: Path, *arguments: str) -> list[str]:
    """``topaz ARGS`` through the start-up-marking launcher (same interpreter as ``topaz``)."""
    python = topaz.with_name("python")
    if not python.exists():
        return [str(topaz), *arguments]
    return [str(python), "-c", TOPAZ_LAUNCHER, *arguments]


# ----------------------------------------------------------------------------- data sets


@dataclass
class Dataset:
    """Micrographs for each tool, their labels (None: timing only) and known diameters."""

    name: str
    description: str
    images: list[Path]  # what cryosegnet reads
    topaz_images: list[Path]  # what Topaz reads (MRC)
    labels_dir: Path | None
    diameters: dict[str, float]  # micrograph stem -> particle diameter (px) for Topaz
    shapes: dict[str, tuple[int, int]]
    prepare_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def _label_diameter(csv: Path, fallback: float) -> float:
    table = pd.read_csv(csv)
    column = next((c for c in table.columns if c.lower().startswith("diam")), None)
    if column is None or not len(table):
        return fallback
    return float(table[column].median())


def prepare_real(work: Path, source: Path) -> Dataset:
    """The labelled PNGs; Topaz gets float32 MRC copies with the same row order."""
    from cryosegnet.io.micrographs import read_micrograph

    labels_src = sorted((source / "labels").glob("*.csv"))
    if not labels_src:
        raise FileNotFoundError(f"no labels in {source / 'labels'}")
    images, topaz_images, diameters, shapes = [], [], {}, {}
    labels_dir = work / "labels"
    mrc_dir = work / "mrc"
    labels_dir.mkdir(parents=True, exist_ok=True)
    mrc_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for csv in labels_src:
        stem = csv.name[: -len(".csv")]
        png = source / "micrographs" / f"{stem}.png"
        if not png.is_file():
            continue
        shutil.copy(csv, labels_dir / csv.name)
        data = read_micrograph(png).data
        mrc = mrc_dir / f"{stem}.mrc"
        write_mrc(mrc, data)
        images.append(png)
        topaz_images.append(mrc)
        diameters[stem] = _label_diameter(csv, 68.0)
        shapes[stem] = tuple(data.shape)
    return Dataset(
        name="real",
        description=f"EMPIAR-10146 apoferritin, {len(images)} labelled PNG micrographs "
        f"({shapes[next(iter(shapes))][1]}x{shapes[next(iter(shapes))][0]}), CryoPPP labels",
        images=images,
        topaz_images=topaz_images,
        labels_dir=labels_dir,
        diameters=diameters,
        shapes=shapes,
        prepare_s=time.perf_counter() - t0,
        notes=[
            "Topaz reads float32 MRC copies of the PNGs (topaz 0.3.20 cannot read PNG); "
            "conversion time not charged to Topaz"
        ],
    )


def prepare_synthetic(
    work: Path, n: int, size: int, seed: int, difficulty: str, timeout: float
) -> Dataset:
    """Simulate (once; re-runs reuse complete files) and gather labels and diameters."""
    if seed < 9000:
        raise ValueError("held-out synthetic seeds must be >= 9000 (training never uses them)")
    sim_dir = work / f"{difficulty}_n{n}_s{size}_seed{seed}"
    command = [
        *cryosegnet_command(),
        "simulate",
        "-n",
        str(n),
        "--difficulty",
        difficulty,
        "--size",
        str(size),
        "--seed",
        str(seed),
        "-q",
        "-o",
        str(sim_dir),
    ]
    timed = run_timed(command, work / "simulate.log", timeout)
    if not timed.ok:
        raise RuntimeError(f"simulate failed: {log_tail(timed.log)}")
    labels_dir = work / "labels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    images, diameters, shapes = [], {}, {}
    for mrc in sorted(sim_dir.glob("*.mrc")):
        stem = stem_of(mrc)
        csv = sim_dir / f"{stem}.csv"
        if not csv.is_file():
            continue
        shutil.copy(csv, labels_dir / csv.name)
        images.append(mrc)
        diameters[stem] = _label_diameter(csv, float("nan"))
        shapes[stem] = (size, size)
    summary = sim_dir / "micrographs.csv"
    if summary.is_file():  # the simulator's own per-micrograph diameter, for empty label files
        table = pd.read_csv(summary)
        for stem, d in zip(table["stem"].astype(str), table["diameter_px"], strict=True):
            if stem in diameters and not math.isfinite(diameters[stem]):
                diameters[stem] = float(d)
    return Dataset(
        name="synthetic",
        description=f"held-out simulated '{difficulty}' set: {len(images)} x {size}², "
        f"seed {seed} (`{shlex.join(['cryosegnet', *command[len(cryosegnet_command()) :]])}`)",
        images=images,
        topaz_images=images,
        labels_dir=labels_dir,
        diameters=diameters,
        shapes=shapes,
        prepare_s=timed.wall_s,
    )


def prepare_epu(path: Path, diameter: float) -> Dataset:
    """Timing only: one raw EPU 4096² MRC, no labels, particle size assumed for Topaz."""
    import mrcfile

    with mrcfile.mmap(path, permissive=True) as handle:
        shape = tuple(int(v) for v in handle.data.shape[-2:])
    stem = stem_of(path)
    return Dataset(
        name="epu",
        description=f"raw EPU MRC {path.name} ({shape[1]}x{shape[0]}), timing only",
        images=[path],
        topaz_images=[path],
        labels_dir=None,
        diameters={stem: diameter},
        shapes={stem: shape},
        notes=[f"no labels; Topaz told a particle diameter of {diameter:g} px"],
    )


# ----------------------------------------------------------------------------- pickers


@dataclass
class ToolRun:
    """A picker on one set: where its picks are, its resource use, and its settings."""

    tool: str
    dataset: str
    n_micrographs: int
    ok: bool
    picks: str | None
    default_threshold: float
    wall_s: float = float("nan")
    cpu_s: float = float("nan")
    max_rss_mb: float = float("nan")
    startup_s: float = float("nan")  # wall seconds not spent on micrographs (estimate)
    steps: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    error: str = ""

    def per_mic(self, value: float) -> float:
        return value / self.n_micrographs if self.n_micrographs else float("nan")


def run_cryosegnet(
    ds: Dataset, work: Path, args: argparse.Namespace, sam: bool, given_diameter: bool = False
) -> ToolRun:
    """``cryosegnet pick`` with every candidate kept; the batch time excludes start-up.

    ``given_diameter``: told the labelled diameter with ``--diameter``, as Topaz is (one call
    per distinct diameter; times and start-up summed, RSS the maximum)."""
    from cryosegnet.picking.picker import DEFAULT_PEAK_THRESHOLD, DEFAULT_SAM_THRESHOLD

    tool = "cryosegnet (SAM)" if sam else "cryosegnet (built-in)"
    out = work / ("cryosegnet_sam" if sam else "cryosegnet")
    if given_diameter:
        tool, out = tool[:-1] + ", diameter given)", out.with_name(out.name + "_diameter")
    shutil.rmtree(out, ignore_errors=True)
    groups: dict[float | None, list[Path]] = {}
    for path in ds.images:
        key = round(ds.diameters[stem_of(path)], 1) if given_diameter else None
        groups.setdefault(key, []).append(path)
    default_t = DEFAULT_SAM_THRESHOLD if sam else DEFAULT_PEAK_THRESHOLD
    run = ToolRun(
        tool,
        ds.name,
        len(ds.images),
        True,
        str(out),
        default_t,
        settings={
            "threshold for candidates": 0,
            "default threshold": default_t,
            "diameter": (
                "labelled (--diameter), like Topaz" if given_diameter else "estimated by cryosegnet"
            ),
        },
    )
    run.wall_s = run.cpu_s = run.max_rss_mb = run.startup_s = 0.0
    for index, (diameter, paths) in enumerate(groups.items()):
        command = [
            *cryosegnet_command(),
            "pick",
            *map(str, paths),
            "-o",
            str(out),
            "--threshold",
            "0",
            "--device",
            args.device,
            "--no-progress",
        ]
        if args.model:
            command += ["--model", str(args.model)]
        if sam:
            command += [
                "--stage",
                "sam",
                "--sam-checkpoint",
                str(args.sam_checkpoint),
                "--sam-model-type",
                args.sam_model_type,
            ]
        else:
            command += ["--stage", "peaks"]
        if diameter is not None:
            command += ["--diameter", f"{diameter:g}"]
        timed = run_timed(
            command, work / f"{out.name}_{index}.log", args.timeout, threads=args.threads
        )
        run.steps.append(timed.to_dict())
        run.wall_s += timed.wall_s
        run.cpu_s += timed.cpu_s
        run.max_rss_mb = max(run.max_rss_mb, timed.max_rss_mb)
        # The batch summary's "time: X s" (lines in the log carry a "[  t.tts] " stamp).
        text = Path(timed.log).read_text(errors="replace")
        match = re.search(r"^(?:\[[ \d.]+s\] )?time: ([\d.]+) s", text, re.M)
        run.startup_s += max(0.0, timed.wall_s - float(match.group(1))) if match else math.nan
        if not timed.ok:
            run.ok = False
            run.error = f"exit {timed.returncode}: {log_tail(timed.log)}"
    return run


def topaz_factor(diameter: float, target_radius: float) -> tuple[int, int]:
    """(downsampling factor S, extraction radius R in downsampled px) for a particle diameter."""
    factor = max(1, int(round(diameter / (2.0 * target_radius))))
    return factor, max(1, int(round(diameter / 2.0 / factor)))


def run_topaz(
    ds: Dataset, work: Path, args: argparse.Namespace, target_radius: float | None = None
) -> ToolRun:
    """Preprocess + extract per group of micrographs sharing a downsampling factor.

    ``target_radius`` (px after downsampling) overrides ``--topaz-target-radius``: a
    sensitivity row, named with its radius."""
    primary = target_radius is None
    target_radius = args.topaz_target_radius if primary else target_radius
    out = work / ("topaz" if primary else f"topaz_r{target_radius:g}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    groups: dict[tuple[int, int], list[Path]] = {}
    for path in ds.topaz_images:
        factor, radius = topaz_factor(ds.diameters[stem_of(path)], target_radius)
        groups.setdefault((factor, radius), []).append(path)
    name = "Topaz resnet16_u64" + ("" if primary else f" (radius ~{target_radius:g} px)")
    run = ToolRun(
        name,
        ds.name,
        len(ds.topaz_images),
        True,
        str(out / "topaz_picks.txt"),
        TOPAZ_DEFAULT_THRESHOLD,
    )
    run.settings = {
        "model": "resnet16_u64 (topaz extract default)",
        "target radius after downsampling": target_radius,
        "extract threshold (candidates)": args.topaz_threshold,
        "default threshold": TOPAZ_DEFAULT_THRESHOLD,
        "groups": [
            {
                "downsample": f,
                "radius_ds_px": r,
                "diameter_px": sorted({round(ds.diameters[stem_of(p)], 1) for p in paths}),
                "particle_radius_after_downsampling": sorted(
                    {round(ds.diameters[stem_of(p)] / 2 / f, 1) for p in paths}
                ),
                "n": len(paths),
            }
            for (f, r), paths in sorted(groups.items())
        ],
    }
    tables, wall, cpu, rss, startup, errors = [], 0.0, 0.0, 0.0, 0.0, []
    for (factor, radius), paths in sorted(groups.items()):
        pre = out / f"preprocessed_s{factor}"
        picks = out / f"picks_s{factor}_r{radius}.txt"
        threads = ["-j", str(args.threads)] if args.threads > 0 else []
        steps = [
            ["preprocess", "-s", str(factor), *threads, "-o", str(pre), *map(str, paths)],
            [
                "extract",
                "-r",
                str(radius),
                "-t",
                str(args.topaz_threshold),
                "-x",
                str(factor),
                *threads,
                "-o",
                str(picks),
                *[str(pre / f"{stem_of(p)}.mrc") for p in paths],
            ],
        ]
        for k, arguments in enumerate(steps):
            run.settings.setdefault("commands", []).append(
                shlex.join(["topaz", *(a for a in arguments if not a.endswith(".mrc"))])
                + " MICROGRAPHS.mrc"
            )
            timed = run_timed(
                topaz_command(args.topaz, *arguments),
                out / f"s{factor}_{k}_{arguments[0]}.log",
                args.timeout,
                marker=TOPAZ_MARKER,
                threads=args.threads,
            )
            run.steps.append(timed.to_dict())
            wall, cpu, rss = wall + timed.wall_s, cpu + timed.cpu_s, max(rss, timed.max_rss_mb)
            startup += timed.marker_s
            if not timed.ok:
                errors.append(
                    f"{arguments[0]} -s {factor}: exit {timed.returncode}: {log_tail(timed.log)}"
                )
                break
        else:
            tables.append(pd.read_csv(picks, sep="\t"))
    run.wall_s, run.cpu_s, run.max_rss_mb = wall, cpu, rss
    run.startup_s = startup  # NaN if a call never printed the marker
    if tables:
        pd.concat(tables, ignore_index=True).to_csv(run.picks, sep="\t", index=False)
    if errors:
        run.error = "; ".join(errors)
        run.ok = False
    return run


# ----------------------------------------------------------------------------- evaluation


def evaluate(run: ToolRun, ds: Dataset, work: Path, args: argparse.Namespace) -> dict:
    """``cryosegnet evaluate`` at the tool's default threshold (best F1 / AUPRC use all picks)."""
    report = work / f"report_{re.sub(r'[^a-z0-9]+', '_', run.tool.lower()).strip('_')}"
    command = [
        *cryosegnet_command(),
        "evaluate",
        run.picks,
        str(ds.labels_dir),
        "-o",
        str(report),
        "--threshold",
        repr(run.default_threshold),
    ]
    timed = run_timed(command, report.with_suffix(".log"), args.timeout)
    if not timed.ok:
        return {
            "error": f"evaluate exit {timed.returncode}: {log_tail(timed.log)}",
            "command": shlex.join(command),
        }
    payload = json.loads((report / "metrics.json").read_text())
    return {
        "pooled": payload["pooled"],
        "per_micrograph": payload["per_micrograph"],
        "report": str(report),
        "command": shlex.join(command),
    }


def convention_check(picks: str, ds: Dataset, threshold: float) -> dict:
    """Best F1 of the picks as written, with x and y swapped, and with y flipped
    (``peers.convention_check``)."""
    from cryosegnet.evaluation.pairing import load_coordinate_sets

    return peers.convention_check(
        load_coordinate_sets(picks),
        load_coordinate_sets(str(ds.labels_dir)),
        {key: shape[0] for key, shape in ds.shapes.items()},
        threshold,
    )


def labels_self_check(ds: Dataset, work: Path, args: argparse.Namespace) -> dict:
    """Evaluate the labels against themselves through the CLI: must give F1 = 1."""
    command = [
        *cryosegnet_command(),
        "evaluate",
        str(ds.labels_dir),
        str(ds.labels_dir),
        "-o",
        str(work / "report_labels_vs_labels"),
        "--no-plot",
    ]
    timed = run_timed(command, work / "report_labels_vs_labels.log", args.timeout)
    if not timed.ok:
        return {"error": log_tail(timed.log)}
    pooled = json.loads((work / "report_labels_vs_labels" / "metrics.json").read_text())["pooled"]
    return {k: pooled[k] for k in ("n_labels", "f1", "best_f1", "auprc")}


def overlay(ds: Dataset, runs: list[ToolRun], out: Path) -> str | None:
    """Labels and each tool's top picks on the most-labelled micrograph (``peers.overlay``)."""
    shown = [(run.tool, run.picks) for run in runs if run.ok and run.picks]
    return peers.overlay(ds.images, ds.labels_dir, ds.diameters, shown, out, ds.name)


# ----------------------------------------------------------------------------- report


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(
            (k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in text.splitlines())
        )
        info["cpu"] = fields.get("Model name", "?")
        info["cpus"] = fields.get("CPU(s)", "?")
        info["threads_per_core"] = fields.get("Thread(s) per core", "?")
    except (OSError, subprocess.CalledProcessError):
        info["cpu"] = platform.processor() or "?"
        info["cpus"] = str(os.cpu_count())
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    return info


def versions(topaz: Path) -> dict:
    out = {}
    try:
        import torch

        import cryosegnet

        out["cryosegnet"] = cryosegnet.__version__
        out["torch (cryosegnet)"] = torch.__version__
    except Exception as exc:  # noqa: BLE001
        out["cryosegnet"] = f"? ({exc})"
    python = topaz.with_name("python")
    try:
        out["topaz"] = subprocess.run(
            [str(python), "-c", "import topaz, torch; print(topaz.__version__, torch.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out["topaz"] = "?"
    try:
        out["git"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    return out


def results_table(records: list[dict]) -> str:
    head = (
        "| set | tool | mics | picks @default | precision | recall | F1 @default | best F1 "
        "(score >=) | AUPRC | wall s/mic | CPU s/mic | s/mic excl. start-up | peak RSS GB "
        "| status |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in records:
        p = (r.get("evaluation") or {}).get("pooled") or {}
        n = r["n_micrographs"] or 1
        status = (
            "ok"
            if r["ok"] and "error" not in (r.get("evaluation") or {})
            else ("FAILED: " + (r["error"] or r["evaluation"].get("error", ""))[:160])
        )
        best = f"{fmt(p.get('best_f1'))} ({fmt(p.get('best_threshold'), 2)})" if p else "-"
        excl = (r["wall_s"] - r["startup_s"]) / n if math.isfinite(r["startup_s"]) else math.nan
        lines.append(
            f"| {r['dataset']} | {r['tool']} | {r['n_micrographs']} | "
            f"{p.get('n_picks', '-')} | {fmt(p.get('precision'))} | {fmt(p.get('recall'))} | "
            f"{fmt(p.get('f1'))} | {best} | {fmt(p.get('auprc'))} | {fmt(r['wall_s'] / n, 1)} | "
            f"{fmt(r['cpu_s'] / n, 1)} | {fmt(excl, 1)} | {fmt(r['max_rss_mb'] / 1024, 2)} | "
            f"{status} |"
        )
    return "\n".join(lines)


def targets_table(records: list[dict]) -> str:
    """Issue 5's targets, cryosegnet (built-in) against Topaz per set."""
    lines = [
        "| set | ΔF1 @default (target ≥ +0.05) | Δ best F1 (≥ +0.05) | Δ best F1 vs "
        "strongest Topaz row | CPU time ratio cryosegnet/Topaz (≤ 0.33) | wall ratio | "
        "wall ratio excl. start-up | cryosegnet peak RSS (≤ 3 GB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        ours = next(
            (
                r
                for r in records
                if r["dataset"] == dataset and r["tool"] == "cryosegnet (built-in)"
            ),
            None,
        )
        theirs = next(
            (r for r in records if r["dataset"] == dataset and r["tool"] == "Topaz resnet16_u64"),
            None,
        )
        candidates = [
            r
            for r in records
            if r["dataset"] == dataset and r["tool"].startswith("Topaz") and r["ok"]
        ]
        strongest = max(candidates, key=_best_f1, default=None)
        if not ours or not theirs:
            continue
        po = ((ours.get("evaluation") or {}).get("pooled")) or {}
        pt = ((theirs.get("evaluation") or {}).get("pooled")) or {}

        def diff(key: str, po=po, pt=pt) -> str:
            if key not in po or key not in pt:
                return "-"
            return f"{po[key] - pt[key]:+.3f}"

        ratio = ours["cpu_s"] / theirs["cpu_s"] if theirs["cpu_s"] else math.nan
        wall = ours["wall_s"] / theirs["wall_s"] if theirs["wall_s"] else math.nan
        net_ours = ours["wall_s"] - ours["startup_s"]  # NaN when start-up is unknown
        net_theirs = theirs["wall_s"] - theirs["startup_s"]
        net = net_ours / net_theirs if net_theirs > 0 else math.nan
        vs_best = "-"
        if strongest is not None and _best_f1(strongest) >= 0 and _best_f1(ours) >= 0:
            vs_best = f"{_best_f1(ours) - _best_f1(strongest):+.3f} ({strongest['tool']})"
        lines.append(
            f"| {dataset} | {diff('f1')} | {diff('best_f1')} | {vs_best} | "
            f"{fmt(ratio, 2)} | "
            f"{fmt(wall, 2)} | {fmt(net, 2)} | {fmt(ours['max_rss_mb'] / 1024, 2)} GB |"
        )
    return "\n".join(lines)


def _best_f1(run: dict) -> float:
    pooled = (run.get("evaluation") or {}).get("pooled") or {}
    value = pooled.get("best_f1")
    return value if isinstance(value, float) and math.isfinite(value) else -1.0


def write_markdown(record: dict) -> str:
    m, v = record["machine"], record["versions"]
    parts = [
        "# cryosegnet vs Topaz (benchmark)",
        "",
        f"- date: {record['date']}",
        f"- command: `{record['command']}`",
        f"- machine: {m.get('cpu')}, {m.get('cpus')} CPUs "
        f"({m.get('threads_per_core')} thread/core), {m.get('memory_gb', '?')} GB RAM, "
        f"no GPU; {m.get('platform')}",
        f"- load average at start / end: {record['load_start']} / {record['load_end']} "
        "(other jobs share this machine: both tools run back to back per set so they see "
        "the same load; CPU seconds are less load-sensitive than wall seconds)",
        f"- versions: {', '.join(f'{k} {val}' for k, val in v.items())}",
        f"- cryosegnet model: `{record['model']['path']}` ({record['model'].get('note', '')})",
        "- threads per tool: "
        + (
            f"{record['threads']} (OMP/MKL/OpenBLAS/OpenCV variables and Topaz `-j`)"
            if record["threads"] > 0
            else "each tool's defaults"
        ),
        "",
        "## Results",
        "",
        results_table(record["runs"]),
        "",
        "F1 @default: cryosegnet keeps picks with figure of merit >= "
        f"{record['thresholds']['cryosegnet (built-in)']} (DEFAULT_PEAK_THRESHOLD); Topaz "
        "keeps log-likelihood ratio >= 0 (p >= 0.5). Best F1 and AUPRC use every candidate "
        "(cryosegnet `--threshold 0`; Topaz `extract -t "
        f"{record['topaz_threshold']}`). Matching: `cryosegnet evaluate`, greedy one-to-one "
        "within half the labelled particle diameter. Times: whole command per micrograph "
        "(start-up, reading, denoising/preprocessing, writing); 'excl. start-up' is "
        "cryosegnet's own batch timer (after model load), and for Topaz the wall time minus "
        "each call's start-up (interpreter + imports, up to a marker printed by a launcher that "
        "imports Topaz's command modules and then runs `topaz.main`). Peak RSS: max over the "
        "tool's processes (`wait4`).",
        "",
        "## Targets (cryosegnet built-in vs Topaz)",
        "",
        targets_table(record["runs"]),
        "",
        "## Sets and Topaz settings",
        "",
    ]
    for ds in record["datasets"]:
        parts.append(
            f"- **{ds['name']}**: {ds['description']}"
            + (f" ({'; '.join(ds['notes'])})" if ds["notes"] else "")
        )
        for run in record["runs"]:
            if run["dataset"] == ds["name"] and run["tool"].startswith("Topaz"):
                for g in run["settings"].get("groups", []):
                    parts.append(
                        f"  - Topaz: d = {', '.join(f'{d:g}' for d in g['diameter_px'])} px -> "
                        f"`preprocess -s {g['downsample']}` (radius after downsampling "
                        f"{', '.join(f'{r:g}' for r in g['particle_radius_after_downsampling'])}"
                        f" px), `extract -r {g['radius_ds_px']} -t {record['topaz_threshold']} "
                        f"-x {g['downsample']}` ({g['n']} micrograph(s))"
                    )
    parts += [
        "",
        "Rule: `S = max(1, round(d / 20))`, i.e. particle radius about 10 px after downsampling "
        "(resnet16_u64 is trained for radii of roughly 7-12 px); `-r = round(d / 2 / S)`; "
        "coordinates are scaled back by `-x S`. Topaz is given the true diameter (it cannot "
        "estimate it); cryosegnet is not (it estimates it per micrograph).",
        "",
        "## Coordinate checks",
        "",
    ]
    for ds in record["datasets"]:
        if ds.get("labels_self_check"):
            parts.append(
                f"- {ds['name']}: labels vs themselves through `cryosegnet evaluate`: "
                f"{json.dumps(ds['labels_self_check'])}"
            )
        for tool, variants in ds.get("convention_check", {}).items():
            parts.append(
                f"- {ds['name']}, {tool}: best F1 (AUPRC) as written / x<->y swapped / "
                "y flipped: "
                + " / ".join(
                    f"{fmt(val['best_f1'])} ({fmt(val['auprc'])})" for val in variants.values()
                )
            )
        if ds.get("overlay"):
            parts.append(f"- {ds['name']}: overlay `{ds['overlay']}`")
    if record.get("notes"):
        parts += ["", "## Notes", ""] + [f"- {n}" for n in record["notes"]]
    parts += [
        "",
        f"Raw record: `{record['json']}`; picks, logs and reports: `{record['work']}`.",
        "",
    ]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="cryosegnet U-Net checkpoint (default: the shipped model)",
    )
    parser.add_argument(
        "--sam-checkpoint",
        type=Path,
        default=None,
        help="also run the SAM instance stage with these weights",
    )
    parser.add_argument("--sam-model-type", default="vit_h", choices=("vit_h", "vit_l", "vit_b"))
    parser.add_argument(
        "--sets", default="real,synthetic,epu", help="comma-separated subset of real,synthetic,epu"
    )
    parser.add_argument("--real-dir", type=Path, default=APOFERRITIN)
    parser.add_argument("--epu", type=Path, default=EPU_FILE)
    parser.add_argument(
        "--epu-diameter",
        type=float,
        default=160.0,
        help="particle diameter (px) Topaz is told for the unlabelled EPU image "
        "(160 -> -s 8, the usual Topaz recipe at ~1 Å/px)",
    )
    parser.add_argument("--synthetic-n", type=int, default=8)
    parser.add_argument("--synthetic-size", type=int, default=4096)
    parser.add_argument("--synthetic-seed", type=int, default=9001)
    parser.add_argument("--synthetic-difficulty", default="hard")
    parser.add_argument("--topaz", type=Path, default=TOPAZ, help="topaz executable")
    parser.add_argument(
        "--topaz-target-radius",
        type=float,
        default=10.0,
        help="particle radius (px) wanted after Topaz downsampling",
    )
    parser.add_argument(
        "--topaz-threshold",
        type=float,
        default=-10.0,
        help="topaz extract -t: lowest log-likelihood ratio kept as a candidate",
    )
    parser.add_argument(
        "--topaz-alt-radius",
        type=float,
        nargs="*",
        default=[17.0],
        help="extra Topaz rows with these target radii (sensitivity check; "
        "the targets compare against the strongest Topaz row)",
    )
    parser.add_argument(
        "--topaz-alt-sets",
        default="real",
        help="labelled sets that get the extra Topaz rows (real)",
    )
    parser.add_argument("--skip-topaz", action="store_true")
    parser.add_argument("--skip-cryosegnet", action="store_true")
    parser.add_argument("--device", default="cpu", help="cryosegnet --device (cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for both tools (OMP/MKL/OpenBLAS/OpenCV variables, "
        "Topaz -j); 0 keeps each tool's defaults. Default 1: on a shared "
        "machine multi-threaded torch under contention inflates wall *and* CPU "
        "time several-fold (spinning threads)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="seconds before a single tool call is killed and reported failed",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=REPO / "runs" / "compare_topaz",
        help="generated data: micrographs, picks, logs, reports (gitignored)",
    )
    add_bench_options(parser, "compare_topaz", "the real set only, no extra Topaz rows")
    args = parser.parse_args(argv)
    if args.quick:
        args.sets, args.topaz_alt_radius = "real", []

    from cryosegnet.model.checkpoint import default_model_path
    from cryosegnet.picking.picker import DEFAULT_PEAK_THRESHOLD, DEFAULT_SAM_THRESHOLD

    model_path = args.model or default_model_path()
    model_info = {"path": str(model_path)}
    if model_path.is_file():
        model_info["size_mb"] = round(model_path.stat().st_size / 2**20, 1)
        try:
            import torch

            meta = torch.load(model_path, map_location="cpu", weights_only=True).get("metadata")
            model_info["metadata"] = meta
            model_info["note"] = json.dumps(meta, default=str)[:200]
        except Exception as exc:  # noqa: BLE001
            model_info["note"] = f"unreadable: {exc}"
    else:
        model_info["note"] = "MISSING"
    command = "python bench/compare_topaz.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    record: dict = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command.strip(),
        "machine": machine(),
        "versions": versions(args.topaz),
        "model": model_info,
        "load_start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "thresholds": {
            "cryosegnet (built-in)": DEFAULT_PEAK_THRESHOLD,
            "cryosegnet (SAM)": DEFAULT_SAM_THRESHOLD,
            "Topaz": TOPAZ_DEFAULT_THRESHOLD,
        },
        "topaz_threshold": args.topaz_threshold,
        "threads": args.threads,
        "runs": [],
        "datasets": [],
        "notes": [],
        "work": str(args.work),
    }
    args.work.mkdir(parents=True, exist_ok=True)
    topaz_ok = not args.skip_topaz and args.topaz.exists()
    if not args.skip_topaz and not topaz_ok:
        record["notes"].append(f"Topaz not found at {args.topaz}: not run")

    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        work = args.work / name
        try:
            if name == "real":
                ds = prepare_real(work, args.real_dir)
            elif name == "synthetic":
                ds = prepare_synthetic(
                    work,
                    args.synthetic_n,
                    args.synthetic_size,
                    args.synthetic_seed,
                    args.synthetic_difficulty,
                    args.timeout,
                )
            elif name == "epu":
                ds = prepare_epu(args.epu, args.epu_diameter)
            else:
                raise ValueError(f"unknown set {name!r}")
        except Exception as exc:  # noqa: BLE001 - a broken set is reported, not fatal
            record["notes"].append(f"set {name}: could not prepare: {exc}")
            print(f"[bench] set {name}: could not prepare: {exc}", file=sys.stderr)
            continue
        print(f"[bench] {ds.name}: {ds.description}", file=sys.stderr)
        ds_record = {
            "name": ds.name,
            "description": ds.description,
            "notes": ds.notes,
            "prepare_s": round(ds.prepare_s, 1),
            "convention_check": {},
        }
        runs: list[ToolRun] = []
        jobs = []
        if not args.skip_cryosegnet:
            jobs.append(
                ("cryosegnet", lambda ds=ds, work=work: run_cryosegnet(ds, work, args, sam=False))
            )
            if ds.labels_dir is not None:
                jobs.append(
                    (
                        "cryosegnet, diameter given",
                        lambda ds=ds, work=work: run_cryosegnet(
                            ds, work, args, sam=False, given_diameter=True
                        ),
                    )
                )
            if args.sam_checkpoint:
                jobs.append(
                    (
                        "cryosegnet SAM",
                        lambda ds=ds, work=work: run_cryosegnet(ds, work, args, sam=True),
                    )
                )
        if topaz_ok:
            jobs.append(("Topaz", lambda ds=ds, work=work: run_topaz(ds, work, args)))
            alt_sets = {x.strip() for x in args.topaz_alt_sets.split(",")}
            if ds.labels_dir is not None and ds.name in alt_sets:
                for radius in args.topaz_alt_radius:
                    jobs.append(
                        (
                            f"Topaz radius {radius:g}",
                            lambda ds=ds, work=work, r=radius: run_topaz(
                                ds, work, args, target_radius=r
                            ),
                        )
                    )
        for label, job in jobs:
            print(f"[bench] {ds.name}: running {label} ...", file=sys.stderr)
            try:
                run = job()
            except Exception as exc:  # noqa: BLE001
                run = ToolRun(
                    label,
                    ds.name,
                    len(ds.images),
                    False,
                    None,
                    math.nan,
                    error=f"{type(exc).__name__}: {exc}",
                )
            print(
                f"[bench] {ds.name}: {run.tool}: {'ok' if run.ok else run.error} "
                f"({run.wall_s:.1f} s wall, {run.cpu_s:.1f} s CPU)",
                file=sys.stderr,
            )
            runs.append(run)
        for run in runs:
            entry = asdict(run)
            if ds.labels_dir is not None and run.ok and run.picks:
                try:
                    entry["evaluation"] = evaluate(run, ds, work, args)
                    ds_record["convention_check"][run.tool] = convention_check(
                        run.picks, ds, run.default_threshold
                    )
                except Exception as exc:  # noqa: BLE001
                    entry["evaluation"] = {"error": f"{type(exc).__name__}: {exc}"}
            record["runs"].append(entry)
        if ds.labels_dir is not None:
            try:
                ds_record["labels_self_check"] = labels_self_check(ds, work, args)
                ds_record["overlay"] = overlay(ds, runs, work / "overlay.png")
            except Exception as exc:  # noqa: BLE001
                ds_record["notes"].append(f"check failed: {type(exc).__name__}: {exc}")
        record["datasets"].append(ds_record)

    record["load_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    json_path = results_json(args, "compare_topaz")
    record["json"] = str(json_path)
    markdown = _portable(write_markdown(record))
    json_path.with_suffix(".md").write_text(markdown)
    Path(record["json"]).write_text(
        _portable(json.dumps(json_safe(record), indent=2, default=json_default)) + "\n"
    )
    print(markdown)
    failed = [r for r in record["runs"] if not r["ok"]]
    return 1 if failed or not record["runs"] else 0


def _portable(text: str) -> str:
    """Committed results name paths relative to the repository root, not this machine's."""
    return text.replace(f"{REPO}/", "").replace(f"{REPO.parent}/", "../")


if __name__ == "__main__":
    sys.exit(main())
