"""Shared fixtures: small files written by the tests themselves, and ../shared when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cryosegnet.model.checkpoint import save_checkpoint
from cryosegnet.model.unet import AttentionUNet, UNetConfig
from cryosegnet.preprocessing.denoise import DenoiseSettings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# The tests run the U-Net in PyTorch (the reference path) unless they ask for ONNX Runtime
# (tests/test_speed_paths.py checks that both give the same picks): no test model is
# exported into the user's cache.
os.environ.setdefault("CRYOSEGNET_RUNTIME", "torch")


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    """A randomly initialised, very small U-Net checkpoint for fast pipeline tests."""
    torch.manual_seed(0)
    model = AttentionUNet(UNetConfig(base_width=4, depth=5))
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model, DenoiseSettings(working_size=256), metadata={"purpose": "test"})
    return path


@pytest.fixture
def blob_image() -> np.ndarray:
    """A 300x260 float image with dark Gaussian blobs on noise (non-square on purpose)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:260]
    image = rng.normal(0, 1, (300, 260))
    for cy, cx in [(60, 60), (150, 130), (220, 200), (80, 200)]:
        image -= 3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 8**2))
    return image.astype(np.float32)
