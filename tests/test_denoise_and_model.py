from __future__ import annotations

import numpy as np
import pytest
import torch

from cryosegnet.errors import CheckpointError
from cryosegnet.model.checkpoint import load_model, save_checkpoint
from cryosegnet.model.unet import PRESETS, AttentionUNet, UNetConfig, config_from_name
from cryosegnet.preprocessing.denoise import (
    DenoiseSettings,
    denoise,
    gaussian_psf,
    wiener_filter,
    working_shape,
)


@pytest.mark.parametrize("order", ["fast", "paper"])
def test_denoise_shape_and_dtype(blob_image, order):
    out = denoise(blob_image, DenoiseSettings(working_size=128, order=order))
    assert out.dtype == np.uint8
    assert out.shape == working_shape(blob_image.shape, 128) == (128, 111)


def test_denoise_keeps_blobs_dark(blob_image):
    out = denoise(blob_image, DenoiseSettings(working_size=260)).astype(float)
    scale = 260 / 300
    inside = out[int(150 * scale), int(130 * scale)]
    assert inside < np.median(out) - 10


def test_wiener_filter_leaves_no_border_stripes():
    """A left-right intensity ramp: a periodic FFT would bleed the bright right edge into
    the dark left edge. Our padded filter must keep the edge columns like the interior."""
    ramp = np.tile(np.linspace(0, 255, 200, dtype=np.float32), (120, 1))
    out = wiener_filter(ramp, gaussian_psf(9), 30.0)
    # Normalise to the interior's affine relation with the input and check the borders follow it.
    interior = out[:, 20:-20]
    slope, intercept = np.polyfit(ramp[:, 20:-20].ravel(), interior.ravel(), 1)
    predicted = slope * ramp + intercept
    error = np.abs(out - predicted)
    assert error[:, :3].max() < 0.05 * np.ptp(interior)
    assert error[:, -3:].max() < 0.05 * np.ptp(interior)


@pytest.mark.parametrize("shape", [(37, 45), (64, 64), (101, 77)])
def test_unet_output_shape_for_odd_sizes(shape):
    model = AttentionUNet(UNetConfig(base_width=2)).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 1, *shape))
    assert out.shape == (2, 1, *shape)


def test_paper_preset_has_2048_bottleneck():
    assert config_from_name("paper").widths == [64, 128, 256, 512, 1024, 2048]
    assert set(PRESETS) >= {"paper", "small", "tiny"}
    with pytest.raises(ValueError, match="unknown U-Net preset"):
        config_from_name("enormous")


def test_checkpoint_round_trip_is_self_describing(tmp_path):
    model = AttentionUNet(UNetConfig(base_width=3))
    settings = DenoiseSettings(working_size=512, order="paper")
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, settings, metadata={"epochs": 3})
    loaded, loaded_settings, payload = load_model(path)
    assert loaded.config == model.config
    assert loaded_settings == settings
    assert payload["metadata"]["epochs"] == 3
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    random_file = tmp_path / "random.pt"
    random_file.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(CheckpointError, match="random.pt: not a readable"):
        load_model(random_file)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not a cryosegnet U-Net checkpoint"):
        load_model(other)
    mismatched = tmp_path / "mismatch.pt"
    save_checkpoint(mismatched, AttentionUNet(UNetConfig(base_width=2)), DenoiseSettings())
    payload = torch.load(mismatched, weights_only=True)
    payload["architecture"]["base_width"] = 4
    torch.save(payload, mismatched)
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(mismatched)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_dark_contamination_does_not_flatten_particles(blob_image):
    """A huge dark outlier (ice crystal) must not squeeze the particles into a few grey levels."""
    image = blob_image.copy()
    image[:40, :40] = -200.0
    out = denoise(image, DenoiseSettings(working_size=260)).astype(float)
    scale = 260 / 300
    inside = out[int(150 * scale), int(130 * scale)]
    background = np.median(out[100:, 100:])
    assert background - inside > 20
