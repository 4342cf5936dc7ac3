"""The GPU session script (bench/gpu_run.py) runs every part on a CPU with ``--quick``.

A lent GPU comes for minutes at a time, so the script must work the first time it runs there:
this runs the same code paths (the batch pick, the CPU-GPU agreement, the cache, calibration and
training runs and the export) on a CPU, small.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cryosegnet.picking.picker import Picker

REPO = Path(__file__).resolve().parents[1]


def test_the_quick_gpu_session_measures_every_part_and_exports_loadable_models(tmp_path):
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_run.py"), "--quick", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    record = json.loads((out / "gpu_run.json").read_text())
    (run,) = record["throughput"]
    assert run["exit_code"] == 0 and run["micrographs"] == 2 and run["picks"] > 0
    assert set(record["stage_seconds"]["seconds"]) >= {"read", "denoise", "U-Net, batch of 1"}
    # The CPU against itself: every pick matched within one working pixel.
    assert [row["fraction_matched"] for row in record["agreement"]] == [1.0]
    training = record["training"]
    assert training["runs"]["tiny"]["exit"] == 0
    assert len(training["runs"]["tiny"]["history"]) == 1
    # At most 8 files come back from a device run: the logs stay behind, folded into one.
    assert sorted(p.name for p in out.iterdir()) == [
        "gpu_run.json", "gpu_run.log", "tiny_best.pt", "tiny_last.pt",
    ]  # fmt: skip
    picker = Picker(model=out / "tiny_last.pt", device="cpu")
    assert picker.denoise_settings.working_size == 1024
