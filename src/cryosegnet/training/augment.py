"""Random crops with the augmentations that keep a particle a particle.

Flips and 90° rotations (particles have no preferred in-plane orientation), scale jitter (the
same protein at other magnifications / working sizes), and brightness, contrast and gamma
jitter (ice thickness, dose and denoising vary between sessions). Geometry is applied to
image and target together; intensity only to the image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentSettings:
    """Ranges of the random transforms; ``enabled=False`` gives plain random crops."""

    enabled: bool = True
    flips: bool = True
    scale: tuple[float, float] = (0.8, 1.25)  # zoom factor, drawn log-uniformly
    brightness: float = 0.08  # added offset, fraction of full range
    contrast: tuple[float, float] = (0.75, 1.33)
    gamma: tuple[float, float] = (0.8, 1.25)
    noise: float = 0.02  # std of added Gaussian noise, fraction of full range

    def to_dict(self) -> dict:
        return asdict(self)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    if high <= low:
        return float(low)
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def random_crop(
    image: np.ndarray,
    target: np.ndarray,
    size: int,
    rng: np.random.Generator,
    settings: AugmentSettings | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size``x``size`` crop: (image float32 in [0, 1], target float32 0/1, 2 = ignored).

    ``image`` is the uint8 denoised micrograph, ``target`` its disk mask. Images smaller than
    the window are reflect-padded (the target is padded with background).
    """
    settings = settings or AugmentSettings(enabled=False)
    zoom = _log_uniform(rng, *settings.scale) if settings.enabled else 1.0
    window = max(8, int(round(size / zoom)))
    height, width = image.shape
    pad_h, pad_w = max(0, window - height), max(0, window - width)
    if pad_h or pad_w:
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT_101)
        target = cv2.copyMakeBorder(target, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
        height, width = image.shape
    r0 = int(rng.integers(0, height - window + 1))
    c0 = int(rng.integers(0, width - window + 1))
    img = image[r0 : r0 + window, c0 : c0 + window]
    tgt = target[r0 : r0 + window, c0 : c0 + window]
    if window != size:
        interpolation = cv2.INTER_AREA if window > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interpolation)
        tgt = _resize_target(tgt, size)
    img = img.astype(np.float32) / 255.0
    tgt = tgt.astype(np.float32)
    if settings.enabled and settings.flips:
        k = int(rng.integers(4))
        flip = bool(rng.integers(2))
        img, tgt = np.rot90(img, k), np.rot90(tgt, k)
        if flip:
            img, tgt = img[:, ::-1], tgt[:, ::-1]
    if settings.enabled:
        img = jitter_intensity(img, rng, settings)
    return np.ascontiguousarray(img), np.ascontiguousarray(tgt)


def _resize_target(target: np.ndarray, size: int) -> np.ndarray:
    """Resize a 0/1 target (with ignored pixels = 2, see training/dataset.py) to ``size``:
    each class is resized on its own and thresholded at one half, particles first."""
    particle = cv2.resize(
        (target == 1).astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR
    )
    out = (particle >= 0.5).astype(np.float32)
    if (target == 2).any():
        ignored = cv2.resize(
            (target == 2).astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR
        )
        out[(ignored >= 0.5) & (out == 0)] = 2.0
    return out


def jitter_intensity(
    image: np.ndarray, rng: np.random.Generator, settings: AugmentSettings
) -> np.ndarray:
    """Gamma, contrast about the mean, brightness offset and a little noise; stays in [0, 1]."""
    gamma = _log_uniform(rng, *settings.gamma)
    out = np.power(np.clip(image, 0.0, 1.0), gamma)
    contrast = _log_uniform(rng, *settings.contrast)
    mean = float(out.mean())
    out = (out - mean) * contrast + mean + rng.uniform(-settings.brightness, settings.brightness)
    if settings.noise > 0:
        out = out + rng.normal(0.0, settings.noise, size=out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
