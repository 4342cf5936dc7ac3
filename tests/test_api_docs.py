"""The API reference (docs/api) builds without a warning: every documented object imports and
every docstring it shows is valid reStructuredText. Skipped without Sphinx (``.[docs]``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api"


def test_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
        + ["-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    page = (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    for name in ("Picker", "read_micrograph", "evaluate_picks", "simulate_micrograph"):
        assert name in page, f"{name} is missing from the API reference"
