"""Input that would give confident nonsense is refused up front, in one line naming the
file (or option) and the problem: broken models, out-of-range sizes and probabilities,
missing optics groups, labels that cannot be matched, micrographs too small to pick."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from cryosegnet.cli.main import main
from cryosegnet.errors import CheckpointError, CryoSegNetError
from cryosegnet.model.checkpoint import load_model, save_checkpoint
from cryosegnet.model.unet import AttentionUNet, UNetConfig
from cryosegnet.picking.batch import pick_batch
from cryosegnet.preprocessing.denoise import DenoiseSettings


def _simulated(size: int = 256, seed: int = 0, diameter: float = 18.0) -> np.ndarray:
    from cryosegnet.simulation import SimulationConfig, simulate_micrograph

    config = SimulationConfig(size=size, diameter_px=diameter, difficulty="easy", n_views=4)
    return simulate_micrograph(config, seed).image.astype(np.float32)


def _mrc(path: Path, image: np.ndarray, voxel_size: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(image.astype(np.float32))
        if voxel_size is not None:
            mrc.voxel_size = voxel_size
    return path


def _one_line_error(capsys, *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert code != 0, err
    errors = [line for line in err.splitlines() if "ERROR" in line or "error" in line.lower()]
    assert errors and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------ broken models


def _nan_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = AttentionUNet(UNetConfig(base_width=4, depth=4))
    with torch.no_grad():
        next(iter(model.parameters())).view(-1)[0] = float("nan")
    save_checkpoint(path, model, DenoiseSettings(working_size=128))
    return path


def test_checkpoint_with_non_finite_weights_is_refused(tmp_path, capsys):
    path = _nan_checkpoint(tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="not finite") as refused:
        load_model(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    mic = _mrc(tmp_path / "mic.mrc", _simulated())
    err = _one_line_error(capsys, "pick", str(mic), "-o", str(tmp_path / "out"), "-m", str(path))
    assert "not finite" in err and str(path) in err
    assert not (tmp_path / "out" / "mic_autopick.star").exists()


def test_non_finite_probability_map_is_refused(tmp_path):
    from cryosegnet.picking.picker import Picker

    class NanNet(torch.nn.Module):
        def forward(self, batch):
            return torch.full_like(batch, float("nan"))

    picker = Picker.from_parts(NanNet(), DenoiseSettings(working_size=128), stage="peaks")
    with pytest.raises(CryoSegNetError, match="not finite"):
        picker.pick(_simulated())
    mic = _mrc(tmp_path / "mic.mrc", _simulated())
    summary = pick_batch(picker, [mic], tmp_path / "out", progress=False)
    assert list(summary.failures) == [str(mic)]
    assert summary.failures[str(mic)].startswith(f"{mic}: ") and "not finite" in str(
        summary.failures
    )
    assert summary.done == {}
