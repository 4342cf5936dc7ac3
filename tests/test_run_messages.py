"""What the commands print says what happened: the summary names the output folder and where
the diameter came from, notes and warnings appear only when they apply, and progress bars are
drawn on a terminal only."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np

from cryosegnet.cli.main import main


def _mrc(path: Path, seed: int = 0) -> Path:
    from cryosegnet.simulation import SimulationConfig, simulate_micrograph

    path.parent.mkdir(parents=True, exist_ok=True)
    sim = simulate_micrograph(SimulationConfig(size=256, diameter_px=18.0, difficulty="easy"), seed)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(sim.image.astype(np.float32))
    return path


def test_pick_summary_names_the_output_folder_and_a_given_diameter(tmp_path, capsys):
    mic = _mrc(tmp_path / "mic.mrc")
    out = tmp_path / "picks"
    argv = ["pick", str(mic), "-o", str(out), "--stage", "log", "--no-progress"]
    assert main([*argv, "--diameter", "18"]) == 0
    err = capsys.readouterr().err
    assert f"output folder: {out}" in err, err
    assert "estimated diameter" not in err and "diameter: 18.0 px (given)" in err, err


def test_pick_summary_says_estimated_when_it_was(tmp_path, capsys, tiny_model):
    mic = _mrc(tmp_path / "mic.mrc")
    argv = ["pick", str(mic), "-o", str(tmp_path / "p"), "-m", str(tiny_model), "--no-progress"]
    main([*argv, "--stage", "peaks", "--threshold", "0"])
    err = capsys.readouterr().err
    assert "estimated diameter:" in err and "(given)" not in err, err
