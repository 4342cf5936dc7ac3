"""The CryoSegNet denoising chain (paper, Methods 3.1), with its border artefacts fixed.

Gaussian blur -> standardise to 8-bit -> FastNLMeans -> Wiener filter -> CLAHE -> guided filter.
By default the micrograph is first shrunk to the U-Net's working resolution, which both averages
shot noise and makes the expensive filters ~16x cheaper on a 4k micrograph; ``order="paper"``
runs the chain at full resolution and shrinks afterwards, as the authors did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class DenoiseSettings:
    """Parameters of the denoising chain; defaults are the authors' values except the NLM
    windows (see below)."""

    working_size: int = 1024
    order: str = "fast"  # "fast": shrink first; "paper": filter at full resolution, then shrink
    gaussian_kernel: int = 9
    clip_sigma: float = 3.0
    nlm_h: float = 10.0
    # FastNLMeans windows: the authors' 7 / 21 px, at the working size of the "fast" order,
    # cost 0.6 s of a 4k micrograph's 1.6 s; 5 / 11 give the same picking figures on the real
    # apoferritin splits in 0.45 s less (bench/studies/nlm_window.py, BENCHMARKS.md).
    nlm_template: int = 5
    nlm_search: int = 11
    wiener_kernel: int = 9
    wiener_k: float = 30.0
    clahe_clip: float = 2.0
    clahe_grid: int = 16
    guided_radius: int = 20
    guided_eps: float = 0.1
    # The authors' kernel sizes are in pixels of a ~4k micrograph. In "fast" order the filters
    # run at the working resolution, so their spatial sizes are multiplied by this factor
    # (1024 / 4096): a 20-px guided-filter radius would otherwise be a 41-px box at 1024 px and
    # blur particles of 20-50 px away.
    spatial_scale: float = 0.25

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DenoiseSettings:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def working_scale(shape: tuple[int, int], working_size: int) -> float:
    """Scale that brings the micrograph's long side to ``working_size`` (aspect ratio kept)."""
    return working_size / float(max(shape))


def working_shape(shape: tuple[int, int], working_size: int) -> tuple[int, int]:
    scale = working_scale(shape, working_size)
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area-average when shrinking (it also averages noise), bilinear when enlarging."""
    if image.shape[:2] == tuple(shape):
        return image
    shrinking = shape[0] < image.shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (shape[1], shape[0]), interpolation=interpolation)


def standardize_to_uint8(image: np.ndarray, clip_sigma: float) -> np.ndarray:
    """Z-score, clip outliers (hot pixels, contamination) at ``clip_sigma``, map to 0..255.

    Centre and spread are the median and MAD, so a dark ice crystal or a carbon film covering
    part of the micrograph does not squeeze the particles into a few grey levels.
    """
    image = image.astype(np.float32)
    sample = image[:: max(1, image.shape[0] // 512), :: max(1, image.shape[1] // 512)]
    centre = float(np.median(sample))
    spread = 1.4826 * float(np.median(np.abs(sample - centre)))
    if not spread > 0:
        spread = float(image.std()) or 1.0
    z = (image - centre) / spread
    z = np.clip(z, -clip_sigma, clip_sigma)
    return np.round((z + clip_sigma) * (255.0 / (2 * clip_sigma))).astype(np.uint8)


def gaussian_psf(size: int) -> np.ndarray:
    """The authors' Wiener kernel: a ``size``x``size`` Gaussian with sigma = size / 3."""
    g = cv2.getGaussianKernel(size, size / 3.0)
    kernel = g @ g.T
    return kernel / kernel.sum()


def wiener_filter(image: np.ndarray, kernel: np.ndarray, k: float) -> np.ndarray:
    """Frequency-domain Wiener deconvolution without wrap-around.

    The authors filtered the raw image with a periodic FFT, which bleeds each border into the
    opposite one (stripes along the edges). Reflect-padding by more than the kernel support and
    cropping afterwards removes that, and centring the kernel removes their half-kernel shift.
    """
    pad = max(kernel.shape) * 2
    padded = cv2.copyMakeBorder(
        image.astype(np.float32), pad, pad, pad, pad, borderType=cv2.BORDER_REFLECT_101
    )
    kernel_full = np.zeros(padded.shape, dtype=np.float64)
    kh, kw = kernel.shape
    kernel_full[:kh, :kw] = kernel
    kernel_full = np.roll(kernel_full, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    h = np.fft.rfft2(kernel_full)
    transfer = np.conj(h) / (np.abs(h) ** 2 + k)
    out = np.fft.irfft2(np.fft.rfft2(padded) * transfer, s=padded.shape)
    return out[pad:-pad, pad:-pad].astype(np.float32)


def to_uint8_range(image: np.ndarray) -> np.ndarray:
    """Stretch a float image to 0..255 (the Wiener filter shrinks intensities by ~1/(1+K)).

    The 0.5-99.5 percentiles, not min-max, set the range so a few extreme pixels (a
    contamination blob) cannot flatten everything else.
    """
    lo, hi = (float(v) for v in np.percentile(image, (0.5, 99.5)))
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip(np.round((image - lo) * scale), 0, 255).astype(np.uint8)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al. guided filter on [0, 1] images; edge-preserving smoothing of ``src``."""
    ksize = (2 * radius + 1, 2 * radius + 1)
    i = guide.astype(np.float32) / 255.0
    p = src.astype(np.float32) / 255.0

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, ksize, borderType=cv2.BORDER_REFLECT_101)

    mean_i, mean_p = box(i), box(p)
    cov_ip = box(i * p) - mean_i * mean_p
    var_i = box(i * i) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    q = box(a) * i + box(b)
    return np.clip(q * 255.0, 0, 255).astype(np.uint8)


def _odd(size: float) -> int:
    return max(1, int(round(size)) // 2 * 2 + 1)


def filter_chain(
    image: np.ndarray, settings: DenoiseSettings, spatial_scale: float = 1.0
) -> np.ndarray:
    """Run the paper's six filters on a float image at its current resolution -> uint8."""
    k = _odd(settings.gaussian_kernel * spatial_scale)
    blurred = cv2.GaussianBlur(image.astype(np.float32), (k, k), 0) if k > 1 else image
    eight_bit = standardize_to_uint8(blurred, settings.clip_sigma)
    nlm = cv2.fastNlMeansDenoising(
        eight_bit,
        None,
        h=settings.nlm_h,
        templateWindowSize=settings.nlm_template,
        searchWindowSize=settings.nlm_search,
    )
    wiener = to_uint8_range(
        wiener_filter(
            nlm, gaussian_psf(_odd(settings.wiener_kernel * spatial_scale)), settings.wiener_k
        )
    )
    clahe = cv2.createCLAHE(
        clipLimit=settings.clahe_clip, tileGridSize=(settings.clahe_grid, settings.clahe_grid)
    ).apply(wiener)
    radius = max(1, round(settings.guided_radius * spatial_scale))
    return guided_filter(clahe, wiener, radius, settings.guided_eps)


def denoise(image: np.ndarray, settings: DenoiseSettings | None = None) -> np.ndarray:
    """Denoise a micrograph and return it as uint8 at the working resolution."""
    settings = settings or DenoiseSettings()
    target = working_shape(image.shape, settings.working_size)
    if settings.order == "paper":
        return resize(filter_chain(image, settings), target)
    if settings.order != "fast":
        raise ValueError(f"unknown denoising order '{settings.order}' (use 'fast' or 'paper')")
    shrunk = resize(image.astype(np.float32), target)
    return filter_chain(shrunk, settings, settings.spatial_scale)
