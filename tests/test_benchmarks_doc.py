"""BENCHMARKS.md quotes the benches' generated tables verbatim (no figure copied by hand)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_benchmarks_md_is_generated_from_the_results():
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "tools" / "make_benchmarks.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<!-- generated from bench/results/" in (REPO / "BENCHMARKS.md").read_text()


def test_real_goals_summary_is_generated_from_the_results():
    """The goals-and-levers summary is rebuilt from the other benches' JSON, so a bench re-run
    without regenerating it is caught here."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "tools" / "real_goals.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO / "bench",
    )
    assert result.returncode == 0, result.stdout + result.stderr
