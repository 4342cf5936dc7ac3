"""Training-free instance stage: dark blobs of the denoised micrograph (Laplacian of Gaussian).

Particles in a cryo-EM micrograph are compact objects darker than the ice around them. The
scale-normalised Laplacian of Gaussian (LoG) at sigma = d / (2 sqrt 2) responds most to a dark
disk of diameter d, so its local maxima are particle candidates — the detector RELION's
``--LoG`` autopicker uses. It needs no trained model and no download, which makes it the
honest floor any learned picker has to beat, and a picker in its own right for a protein the
shipped U-Net has never seen.

It runs on the denoised image (``denoise``'s output, the image the U-Net sees), not the U-Net
map, so the U-Net does not run at all with this stage. It cannot guess the particle size
reliably on low-contrast data (the finest scale always responds most to shot noise), so it
needs the diameter: ``--diameter``, or the size a fine-tuned model learnt from its labels.

The score of a pick is its LoG response in units of the response's robust spread over the
whole micrograph (1.4826 x the median absolute deviation), like RELION's LoG thresholds in
standard deviations: a blob scoring 3 stands three noise levels above the typical pixel at
that scale, on any micrograph and at any dose, so one threshold means the same thing
everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cryosegnet.detection.peaks import local_maxima, suppress_close_peaks
from cryosegnet.masks.base import InstanceMask, particle_boxes
from cryosegnet.preprocessing.filters import gaussian_laplace, on_shrunk_copy


@dataclass(frozen=True)
class LogSettings:
    """Parameters of the LoG stage (fractions of the particle diameter)."""

    # The LoG diameter as a fraction of the particle diameter: 1 matches the whole particle.
    scale_fraction: float = 1.0
    suppression_fraction: float = 0.5  # no two picks closer than fraction * diameter

    def to_dict(self) -> dict:
        return asdict(self)


def log_response(image: np.ndarray, diameter: float) -> np.ndarray:
    """Scale-normalised LoG of ``image`` for dark disks of ``diameter`` px (positive = dark).

    Large scales are computed on an area-shrunk copy and enlarged back, which changes the
    response by far less than the noise and keeps a 4k micrograph's filter cheap.
    """
    sigma = diameter / (2 * np.sqrt(2))
    return on_shrunk_copy(image, sigma, lambda small, s: (s * s) * gaussian_laplace(small, s))


def robust_spread(values: np.ndarray) -> float:
    """1.4826 x median absolute deviation: the standard deviation of Gaussian noise."""
    sample = values[:: max(1, values.shape[0] // 512), :: max(1, values.shape[1] // 512)]
    centre = float(np.median(sample))
    spread = 1.4826 * float(np.median(np.abs(sample - centre)))
    return spread if spread > 0 else float(np.std(sample)) or 1.0


def noise_units(response: np.ndarray) -> np.ndarray:
    """``response`` around its median in units of its :func:`robust_spread`."""
    return (response - float(np.median(response))) / robust_spread(response)


def blob_peaks(score: np.ndarray, min_distance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local maxima of ``score`` above 0, no two closer than ``min_distance`` (the stronger is
    kept) -> (x, y, score); a flat region counts as one maximum
    (:func:`~cryosegnet.detection.peaks.local_maxima`)."""
    cols, rows, values = local_maxima(score, max(3, int(min_distance) | 1), 0.0)
    keep = suppress_close_peaks(cols, rows, values, min_distance)
    return cols[keep], rows[keep], values[keep]


def dark_blobs(
    image: np.ndarray, log_diameter: float, min_distance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dark blobs of ``image`` at the LoG scale of ``log_diameter`` px -> (x, y, score).

    Local maxima of the LoG response in noise units (:func:`robust_spread` of the response
    around its median), no two closer than ``min_distance`` (the stronger is kept); only blobs
    darker than the typical pixel (score > 0) are candidates.
    """
    return blob_peaks(noise_units(log_response(image, log_diameter)), min_distance)


class LogBlobGenerator:
    """Dark blobs of the denoised micrograph at the particle scale, scored in noise units."""

    name = "log"
    needs_unet = False  # the picker hands it the denoised image, not the U-Net map

    def __init__(
        self,
        *,
        scale_fraction: float = LogSettings.scale_fraction,
        suppression_fraction: float = LogSettings.suppression_fraction,
    ) -> None:
        if not scale_fraction > 0:
            raise ValueError(f"scale_fraction must be positive, got {scale_fraction}")
        self.settings = LogSettings(scale_fraction, suppression_fraction)
        self.last_diameter: float | None = None

    def describe(self) -> str:
        """One line for the log: which stage ran, with what."""
        return "training-free LoG blob detector on the denoised image (no U-Net)"

    def generate(self, image: np.ndarray, diameter: float | None = None) -> list[InstanceMask]:
        """Candidates in ``image`` (denoised uint8 or float, dark particles), working px.

        Raises
        ------
        ValueError
            Without a diameter: this stage cannot estimate one.
        """
        if not (diameter and np.isfinite(diameter) and diameter > 0):
            raise ValueError(
                "the LoG stage needs the particle diameter (--diameter, or a fine-tuned model)"
            )
        img = np.nan_to_num(np.asarray(image, dtype=np.float32))
        if img.ndim != 2:
            raise ValueError(f"image must be 2-D, got shape {img.shape}")
        d = float(diameter)
        self.last_diameter = d
        cols, rows, values = dark_blobs(
            img, d * self.settings.scale_fraction, d * self.settings.suppression_fraction
        )
        return particle_boxes(cols, rows, values, d)
