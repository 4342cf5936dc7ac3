"""Running RELION's own extraction on coordinates we wrote (tests skip without RELION)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import starfile

RELION_PREPROCESS = shutil.which("relion_preprocess")


def write_micrographs_star(path: Path, names: list[str], pixel_size: float) -> None:
    """A RELION 3.1 micrographs STAR (one optics group) listing ``names``."""
    path.write_text(
        "\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n"
        "_rlnMicrographOriginalPixelSize #3\n_rlnVoltage #4\n_rlnSphericalAberration #5\n"
        "_rlnAmplitudeContrast #6\n_rlnMicrographPixelSize #7\n"
        f"opticsGroup1 1 {pixel_size:.1f} 300.0 2.7 0.1 {pixel_size:.1f}\n\n# version 30001\n\n"
        "data_micrographs\n\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n"
        + "".join(f"{name} 1\n" for name in names)
    )


def relion_extract(micrographs_star: str, coord_dir: str, box: int = 32) -> pd.DataFrame:
    """``relion_preprocess --extract`` of ``coord_dir``'s ``_autopick.star`` files; the
    particles RELION wrote (an AssertionError with RELION's output when it fails)."""
    assert RELION_PREPROCESS is not None, "RELION is not installed"
    run = subprocess.run(
        [
            RELION_PREPROCESS,
            "--i",
            micrographs_star,
            "--coord_dir",
            coord_dir,
            "--coord_suffix",
            "_autopick.star",
            "--part_star",
            "parts.star",
            "--part_dir",
            "Extract/",
            "--extract",
            "--extract_size",
            str(box),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return starfile.read("parts.star", always_dict=True)["particles"]
