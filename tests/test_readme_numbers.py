"""Numbers the README gives users must fit the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

from cryosegnet.picking.config import DEFAULT_THRESHOLDS, PickerConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_example_score_cuts_are_stricter_than_the_default_stage_threshold():
    """A ``--min-score`` in the README is meant to drop weak picks of a default run: at or
    below the default stage's own threshold it would keep them all."""
    text = README.read_text()
    cuts = [float(v) for v in re.findall(r"--min-score ([0-9.]+)", text)]
    cuts += [float(v) for v in re.findall(r"#threshold=([0-9.]+)", text)]
    assert cuts
    default_stage = "hybrid" if PickerConfig().stage == "auto" else PickerConfig().stage
    assert all(cut > DEFAULT_THRESHOLDS[default_stage] for cut in cuts)


def test_the_virtual_environment_comes_before_the_first_install():
    text = README.read_text()
    assert text.index("python3 -m venv") < text.index("pip install")
