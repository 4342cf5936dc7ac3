"""Helpers shared by the bench scripts (run as ``python bench/NAME.py``, so importable by name)."""

from __future__ import annotations

import os
import subprocess
import time


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
