"""Helpers shared by the bench scripts (run as ``python bench/NAME.py``, so importable by name).

Paths (``REPO``, ``SHARED``, the data sets), timed child processes (``run_timed``: wall, CPU and
peak RSS of that child alone, its output in a log), thread pinning, the ``cryosegnet``
executable, and the small formatting helpers of the results tables. No numpy or torch at import
time: ``bench_distributed.py`` sets its thread variables before those load.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RESULTS = REPO / "bench" / "results"
APOFERRITIN = SHARED / "data" / "real" / "empiar10146-apoferritin"
EPU_FILE = SHARED / "data" / "real" / "unlabeled-raw" / "epu2.9_example.mrc"
REAL = SHARED / "data" / "real"
# Real micrographs with visible particles and no labels: the benches check on them that a
# setting leaves real particles alone.
UNLABELLED = {
    "EPU": REAL / "unlabeled-raw" / "epu2.9_example.mrc",
    "FEI": REAL / "unlabeled-raw" / "fei-extended.mrc",
    "T20S": REAL / "unlabeled-misc" / "empiar10025-t20s_14sep05c_00024sq_00003hl_00002es_c.png",
    "80S ribosome": REAL / "unlabeled-misc" / "empiar10028-ribosome80S_061.png",
}
# Where a --quick run writes its results unless --json says otherwise: never over the committed
# figures of bench/results/.
QUICK_RESULTS = REPO / "runs" / "quick"
# $TOPAZ, else a topaz-venv beside the repository (where the benchmark machine has it).
TOPAZ = Path(os.environ.get("TOPAZ", REPO.parent / "topaz-venv" / "bin" / "topaz"))


def add_bench_options(parser, name: str, quick: str) -> None:
    """The options every live bench takes, so each runs the same way.

    ``--quick``: a small run of a few minutes (what ``quick`` says) that checks the bench
    still works end to end; its figures go to ``runs/quick/NAME.json`` (git-ignored), never over
    the committed ones. ``--json``: where the results go (default ``bench/results/NAME.json``),
    their table beside them as ``.md``.
    """
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a few minutes' check run ({quick}); results to runs/quick/ unless --json",
    )
    parser.add_argument(
        "--json",
        default=None,
        help=f"results JSON, its table beside it as .md (default bench/results/{name}.json)",
    )


def results_json(args, name: str) -> Path:
    """The results path of a live bench run: ``--json``, else by ``--quick`` (see
    ``add_bench_options``); its folder exists."""
    if args.json:
        path = Path(args.json)
    else:
        path = (QUICK_RESULTS if args.quick else RESULTS) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_results(path: Path | str, record: dict, table: str, indent: int = 1) -> None:
    """Write a bench's ``record`` as JSON at ``path`` and its ``table`` as Markdown beside it.

    Each file is written whole or not at all (a temp file renamed over it), so a bench killed
    mid-write keeps its previous figures rather than a half-written file.
    """
    from cryosegnet.io.atomic import atomic_write

    path = Path(path)
    with atomic_write(path) as handle:
        handle.write(json.dumps(record, indent=indent) + "\n")
    with atomic_write(path.with_suffix(".md")) as handle:
        handle.write(table)


def wait_with_deadline(
    proc: subprocess.Popen, timeout: float
) -> tuple[int, os.struct_rusage, bool]:
    """Wait for ``proc`` (killing it past ``timeout`` s): (wait status, its own rusage, killed).

    ``os.wait4`` gives the resources of this child alone, so its peak RSS is its own and not
    the maximum over every child the bench ran. An infinite ``timeout`` waits without polling.
    """
    if timeout == math.inf:
        _, status, usage = os.wait4(proc.pid, 0)
        return status, usage, False
    deadline = time.perf_counter() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            return status, usage, False
        if time.perf_counter() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            return status, usage, True
        time.sleep(0.02)


# The simulated 4096² micrograph the speed benches time (a seed no training uses).
SIM_SEED = 9100


def ensure_simulated(work: Path, cwd: Path | None = None) -> Path:
    """``work/sim4096/sim_00000.mrc``, simulated once with ``cryosegnet simulate``."""
    folder = work / "sim4096"
    path = folder / "sim_00000.mrc"
    if not path.is_file():
        command = [
            sys.executable,
            "-m",
            "cryosegnet.cli.main",
            "simulate",
            "-n",
            "1",
            "--size",
            "4096",
            "--seed",
            str(SIM_SEED),
            "-o",
            str(folder),
        ]
        subprocess.run(command, check=True, cwd=cwd)
    return path


def command_line(args: object | None = None) -> str:
    """The command that ran this bench script, as recorded in its results JSON.

    Paths are shown relative to the repository so results never name a machine's folders.
    """
    import shlex

    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(REPO))
    except ValueError:
        shown = script.name
    return " ".join(["python", shown, *(shlex.quote(a) for a in sys.argv[1:])])


# ----------------------------------------------------------------------------- paths, commands


def rel(path: Path | str) -> str:
    """A path relative to the repository (for the committed record), else as given."""
    try:
        return os.path.relpath(Path(path).resolve(), REPO)
    except ValueError:
        return str(path)


def display(command: list[str]) -> list[str]:
    """The command as recorded: executables by name, not by their path on this machine."""
    first = command[0]
    if first == sys.executable:
        first = "python"
    elif os.sep in first:
        first = Path(first).name
    return [first, *command[1:]]


def cryosegnet_command() -> list[str]:
    """The ``cryosegnet`` executable beside this interpreter, else ``python -m``."""
    exe = Path(sys.executable).with_name("cryosegnet")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cryosegnet.cli.main"]


def stem_of(path: Path) -> str:
    """The file name without its last suffix (``a.b.png`` -> ``a.b``)."""
    return path.name[: -len(path.suffix)] if path.suffix else path.name


def write_mrc(path: Path, data, voxel_size: float | None = None) -> None:
    """``data`` as a float32 MRC (rows unchanged), with ``voxel_size`` (A/px) when given."""
    import mrcfile
    import numpy as np

    with mrcfile.new(path, overwrite=True) as handle:
        handle.set_data(np.ascontiguousarray(data, dtype=np.float32))
        if voxel_size is not None:
            handle.voxel_size = voxel_size


def mrc_copies(images: list[Path], folder: Path, voxel_size: float | None = None) -> list[Path]:
    """``folder/<stem>.mrc`` float32 copies of ``images`` (row 0 = top of the PNG); a copy
    already there is kept."""
    from cryosegnet.io.micrographs import read_micrograph

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for image in images:
        mrc = folder / f"{stem_of(image)}.mrc"
        if not mrc.is_file():
            write_mrc(mrc, read_micrograph(image).data, voxel_size)
        out.append(mrc)
    return out


# ----------------------------------------------------------------------------- timed child runs

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENCV_FOR_THREADS_NUM",
)


def thread_env(threads: int, variables: tuple[str, ...] = THREAD_VARIABLES) -> dict[str, str]:
    """Environment pinning torch/BLAS/OpenCV to ``threads`` threads (0: leave the defaults)."""
    return {name: str(threads) for name in variables} if threads > 0 else {}


@dataclass
class Timed:
    """One child process: its command, exit code, wall/CPU seconds, peak RSS, its log, and the
    wall seconds until it printed ``marker`` (its start-up), NaN if it never did."""

    command: list[str]
    returncode: int
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    log: str
    marker_s: float = float("nan")
    cwd: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def to_dict(self, relative: bool = False) -> dict:
        """The JSON record of this run: the command as a list, the log as given and the marker
        time; ``relative``: the committed form, the command as one line with executables by
        name (``display``), ``cwd`` and ``log`` relative to the repository, no marker time."""
        if relative:
            head = {
                "command": shlex.join(display(self.command)),
                "cwd": rel(self.cwd) if self.cwd else ".",
            }
            tail = {"log": rel(self.log)}
        else:
            head, tail = {"command": self.command}, {"log": self.log, "marker_s": self.marker_s}
        figures = {
            "returncode": self.returncode,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "max_rss_mb": self.max_rss_mb,
        }
        return {**head, **figures, **tail}


def run_timed(
    command: list[str],
    log: Path,
    timeout: float = 3600.0,
    *,
    marker: str | None = None,
    threads: int = 0,
    variables: tuple[str, ...] = THREAD_VARIABLES,
    cwd: Path | None = None,
    stamp: bool = True,
    shown: list[str] | None = None,
) -> Timed:
    """Run ``command`` (in ``cwd``), its output into ``log``; resource use from ``os.wait4``
    (this child alone, so peak RSS is its own); killed past ``timeout`` seconds.

    The log starts with ``$ COMMAND`` (``shown``, default the command as run). ``stamp``: each
    output line is prefixed with the wall seconds since the start (``[  12.34s] ``), and
    ``marker_s`` is when a line first contained ``marker``; otherwise the output goes straight
    into the log. ``threads`` > 0 pins ``variables`` to it (``thread_env``).
    """
    if marker and not stamp:
        raise ValueError("a marker is timed only with stamp=True")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **thread_env(threads, variables)}
    marker_s = [float("nan")]
    with open(log, "w") as handle:
        handle.write("$ " + shlex.join(command if shown is None else shown) + "\n")
        handle.flush()
        t0 = time.perf_counter()
        if not stamp:
            proc = subprocess.Popen(
                command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd
            )
            status, usage, killed = wait_with_deadline(proc, timeout)
            wall = time.perf_counter() - t0
        else:
            proc = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                text=True,
                errors="replace",
            )

            def pump() -> None:
                for line in proc.stdout:
                    now = time.perf_counter() - t0
                    if marker and marker in line and not math.isfinite(marker_s[0]):
                        marker_s[0] = now
                    handle.write(f"[{now:8.2f}s] {line}")

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            status, usage, killed = wait_with_deadline(proc, timeout)
            if killed:
                handle.write(f"\n[bench] killed after {timeout:.0f} s\n")
            wall = time.perf_counter() - t0
            reader.join(timeout=10)
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not reap it again
    return Timed(
        command=command,
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024.0,  # Linux: kB
        log=str(log),
        marker_s=marker_s[0],
        cwd=None if cwd is None else str(cwd),
    )


def log_tail(path: str | Path, n: int = 3, command_line: bool = False) -> str:
    """The last ``n`` non-blank lines of a ``run_timed`` log, one line (at most 400 characters),
    without time stamps and (unless ``command_line``) without the ``$ COMMAND`` line."""
    try:
        text = Path(path).read_text(errors="replace")
        if not command_line and text.startswith("$ "):
            text = text.split("\n", 1)[1]
        lines = [re.sub(r"^\[[ \d.]+s\] ", "", ln) for ln in text.splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-400:]


# ----------------------------------------------------------------------------- tables


def fmt(value, digits: int = 3) -> str:
    """A number for a results table with ``digits`` decimals; ``-`` for None/NaN/inf; anything
    else as ``str``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return str(value)


def median(values: list[float]) -> float:
    """The median (mean of the middle two for an even count)."""
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


def apoferritin_labels(split: str, diameter: float = 68.0) -> tuple[list[Path], dict]:
    """The apoferritin micrographs of ``split`` (``train``/``test``) and their labels by stem
    (x, y and the labelled ``diameter``), for the benches that score picks in process."""
    import csv

    import pandas as pd

    paths, labels = [], {}
    with open(APOFERRITIN / "splits.csv") as handle:
        for row in csv.DictReader(handle):
            if row["split"] != split:
                continue
            path = APOFERRITIN / "micrographs" / row["micrograph"]
            table = pd.read_csv(APOFERRITIN / row["labels"])
            paths.append(path)
            labels[path.stem] = pd.DataFrame(
                {"x": table["X-Coordinate"], "y": table["Y-Coordinate"], "diameter": diameter}
            )
    return paths, labels


def apoferritin_split(name: str) -> list[str]:
    """The stems of the apoferritin micrographs of split ``name`` (``train``/``test``)."""
    import pandas as pd

    table = pd.read_csv(APOFERRITIN / "splits.csv")
    return [m[: -len(".png")] for m in table.loc[table["split"] == name, "micrograph"]]


def apoferritin_maps(picker, split: str = "train", diameter: float = 68.0) -> tuple[list, dict]:
    """(stem, denoised, U-Net map, micrograph shape) of each apoferritin micrograph of
    ``split`` through ``picker``, and their labels (``apoferritin_labels``)."""
    from cryosegnet.io.micrographs import read_micrograph

    paths, labels = apoferritin_labels(split, diameter)
    inputs = []
    for path in paths:
        image = read_micrograph(path).data
        denoised = picker.preprocess(image)
        inputs.append((path.stem, denoised, picker.probability_maps([denoised])[0], image.shape))
    return inputs, labels


def finetune_command(out: Path, epochs: int | None = None, fraction: float = 1.0) -> list[str]:
    """The ``cryosegnet finetune`` arguments of the few-label track (the 12 apoferritin
    ``train`` micrographs): its recipe, or with ``epochs`` None only the data and output
    (finetune's own defaults)."""
    train = apoferritin_split("train")
    data = [
        "finetune",
        "--images",
        *[str(APOFERRITIN / "micrographs" / f"{s}.png") for s in train],
        "--labels",
        *[str(APOFERRITIN / "labels" / f"{s}.csv") for s in train],
        "-o",
        str(out),
    ]
    if epochs is None:
        return data + ["--no-progress"]
    return data + [
        "--epochs",
        str(epochs),
        "--steps-per-epoch",
        "25",
        "--batch-size",
        "4",
        "--crop",
        "256",
        "--lr",
        "5e-4",
        "--schedule",
        "cosine",
        "--seed",
        "1",
        "--no-progress",
        "--target-fraction",
        f"{fraction:g}",
    ]


def score_prepared(picker, prepared: list, labels: dict, diameter: float | None) -> dict:
    """Best F1 / AUPRC of ``picker`` on prepared micrographs, told ``diameter`` or not.

    ``prepared``: (name, denoised, U-Net map, shape, size estimate) per micrograph, so the
    same maps are scored under every size (bench/size_estimate.py and its studies).
    """
    from cryosegnet import Picker, evaluate_picks

    told = None
    if diameter is not None:
        config = picker.config.with_changes(diameter=diameter)
        told = Picker.from_parts(picker.unet, picker.denoise_settings, picker.stage, config)
    picks = {}
    for name, denoised, probability, shape, estimate in prepared:
        if told is None:
            picks[name] = picker.instances(probability, shape, denoised, estimate).picks
        else:
            picks[name] = told.instances(probability, shape, denoised).picks
    pooled = evaluate_picks(picks, labels, threshold=picker.threshold).pooled
    return {k: round(float(pooled[k]), 4) for k in ("best_f1", "auprc", "f1")}
