"""Helpers shared by the bench scripts (run as ``python bench/NAME.py``, so importable by name)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def wait_with_deadline(
    proc: subprocess.Popen, timeout: float
) -> tuple[int, os.struct_rusage, bool]:
    """Wait for ``proc`` (killing it past ``timeout`` s): (wait status, its own rusage, killed).

    ``os.wait4`` gives the resources of this child alone, so its peak RSS is its own and not
    the maximum over every child the bench ran.
    """
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
    root = Path(__file__).resolve().parent.parent
    try:
        shown = str(script.relative_to(root))
    except ValueError:
        shown = script.name
    return " ".join(["python", shown, *(shlex.quote(a) for a in sys.argv[1:])])
