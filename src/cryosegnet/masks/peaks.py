"""Built-in instance stage: particles as peaks of the probability map. Needs no download.

On easy data the U-Net paints solid disks and any segmentation splits them. On hard data (low
dose, small or unseen proteins) its map is a field of weak, fragmented blobs: a fixed
probability threshold then cuts particles into pieces and the watershed reports the pieces. A
particle is still where the map is highest *on the scale of a particle*, so this stage
band-passes the map at the particle scale (smoothed over a particle's core, minus the local
background), takes local maxima and suppresses any maximum within half a diameter of a
stronger one. Each peak's score is its band-passed value (``score="contrast"``, the default):
how far the particle's core stands above its surroundings. That ranks picks far better than
the mean over a thresholded region and needs no mask threshold (bench/studies/tune_threshold.py).
``score="probability"`` scores by the network's own probability averaged over the core
instead, the figure a model that knows what an empty field looks like could calibrate; with
the shipped model it ranks slightly worse and says "empty" no better
(bench/studies/calibrate_score.py, BENCHMARKS.md), so it is an option, not the default.

The diameter comes from the user (``--diameter``) or from the map itself by scale selection
(:func:`estimate_diameter`); every peak then gets a box of that size, so Algorithm 1's modal
box size is that estimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import pandas as pd

from cryosegnet.detection.peaks import local_maxima, suppress_close_peaks
from cryosegnet.masks.base import InstanceMask, particle_boxes
from cryosegnet.preprocessing.filters import gaussian_filter, gaussian_laplace, maximum_filter

__all__ = [
    "PeakMaskGenerator",
    "PeakSettings",
    "estimate_diameter",
    "find_peaks",
    "suppress_close_peaks",
]

# Scale search range in working pixels: below ~8 px a 1024-px working image cannot resolve a
# particle; above 1/8 of the short side only a handful would fit and plateaus (ice, carbon)
# start to look like particles.
MIN_DIAMETER_PX = 8.0
MAX_DIAMETER_FRACTION = 1 / 8
SCALES_PER_OCTAVE = 8
EVIDENCE_COVERAGE = 0.05  # fraction of the image the averaged blobs would cover
PEAK_SCORES = ("probability", "contrast")


@dataclass(frozen=True)
class PeakSettings:
    """Parameters of the peak stage (working pixels)."""

    diameter: float | None = None  # None -> estimated per map
    smooth_fraction: float = 1 / 6  # core Gaussian sigma = fraction * diameter
    background_fraction: float = 0.5  # background Gaussian sigma = fraction * diameter (0: none)
    suppression_fraction: float = 0.5  # no two peaks closer than fraction * diameter
    min_score: float = 0.0  # peaks not above their background are not candidates
    score: str = "contrast"  # contrast: band-passed value; probability: core map value

    def __post_init__(self) -> None:
        if self.diameter is not None and not self.diameter > 0:
            raise ValueError(f"diameter must be positive, got {self.diameter}")
        if self.score not in PEAK_SCORES:
            raise ValueError(
                f"peak score must be one of {', '.join(PEAK_SCORES)}, not {self.score!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def scale_space_evidence(
    probability: np.ndarray,
    diameters: np.ndarray,
    coverage: float = EVIDENCE_COVERAGE,
) -> np.ndarray:
    """Blob strength per candidate diameter: how strongly the map's best blobs respond at d.

    For each diameter d the map is filtered with the scale-normalised Laplacian of Gaussian at
    sigma = d / (2 sqrt 2), the scale at which it responds most to a disk of diameter d
    (Lindeberg's gamma = 2 normalisation makes responses comparable across scales). Its local
    maxima, spaced d / 2, are ranked and the strongest are averaged: as many as particle-sized
    cells would cover ``coverage`` of the image, so the figure compares like with like at every
    scale and is not swayed by the number of peaks. Large scales are computed on a shrunk copy
    of the map (sigma kept near 3 px), so the sweep costs a few small Gaussian filters.
    """
    prob = np.asarray(probability, dtype=np.float32)
    height, width = prob.shape
    floor = 1e-4 * float(np.ptp(prob))  # rounding noise of the filters on flat regions
    evidence = np.zeros(len(diameters))
    for index, diameter in enumerate(diameters):
        sigma = diameter / (2 * np.sqrt(2))
        shrink = max(1, int(sigma // 3))
        small = (
            cv2.resize(prob, (width // shrink, height // shrink), interpolation=cv2.INTER_AREA)
            if shrink > 1
            else prob
        )
        s = sigma / shrink
        response = -(s * s) * gaussian_laplace(small, s)
        spacing = max(3, int(diameter / shrink / 2) | 1)
        is_peak = (response == maximum_filter(response, spacing)) & (response > floor)
        peaks = np.sort(response[is_peak])[::-1]
        count = max(3, int(coverage * height * width / (diameter * diameter)))
        evidence[index] = peaks[:count].mean() if peaks.size else 0.0
    return evidence


def estimate_diameter(probability: np.ndarray) -> float:
    """Particle diameter (working px): the scale at which the map's blobs respond most.

    Exact for solid disks. On weak maps it measures the U-Net's blobs rather than the particles
    (the shipped model paints ~35 working px blobs there whatever the particle size), so it can
    be off by 2x either way; the peak finder tolerates moderate errors (BENCHMARKS.md) and
    ``--diameter`` removes the guess.

    Returns NaN for flat maps and maps too small to search.
    """
    height, width = np.shape(probability)
    largest = min(height, width) * MAX_DIAMETER_FRACTION
    if largest < MIN_DIAMETER_PX or not np.ptp(probability) > 1e-6:
        return float("nan")
    n_scales = int(np.floor(np.log2(largest / MIN_DIAMETER_PX) * SCALES_PER_OCTAVE)) + 1
    diameters = MIN_DIAMETER_PX * 2.0 ** (np.arange(n_scales) / SCALES_PER_OCTAVE)
    evidence = scale_space_evidence(probability, diameters)
    if not np.any(evidence > 0):
        return float("nan")
    return float(diameters[int(np.argmax(evidence))])


def band_pass(
    probability: np.ndarray, diameter: float, smooth_fraction: float, background_fraction: float
) -> np.ndarray:
    """The map smoothed over a particle's core minus its local background.

    The core average (sigma = ``smooth_fraction`` x d) is what makes a particle's fragments one
    peak; subtracting the average over the surroundings (sigma = ``background_fraction`` x d)
    makes the score *contrast* with the neighbourhood, so a map that is high over a whole ice
    or carbon region does not make every peak there look confident. 0 disables the background.
    """
    return _core_and_band(probability, diameter, smooth_fraction, background_fraction)[1]


def _core_and_band(
    probability: np.ndarray, diameter: float, smooth_fraction: float, background_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """(core average, band-passed map) of :func:`band_pass`, sharing the core filter."""
    prob = np.asarray(probability, dtype=np.float32)
    core = gaussian_filter(prob, max(diameter * smooth_fraction, 1.0))
    if background_fraction > 0:
        return core, core - gaussian_filter(prob, diameter * background_fraction)
    return core, core


def find_peaks(
    probability: np.ndarray,
    diameter: float,
    min_score: float = 0.0,
    smooth_fraction: float = 1 / 6,
    suppression_fraction: float = 0.5,
    background_fraction: float = 0.5,
    score: str = "contrast",
) -> pd.DataFrame:
    """Particle centres (working px) as local maxima of the band-passed map (:func:`band_pass`).

    Peaks whose band-passed value is ``min_score`` or less are not candidates. The score is the
    band-passed value itself (``"contrast"``) or the map averaged over the particle's core
    (``"probability"``); a peak closer than ``suppression_fraction`` x d to a higher-scoring one
    is dropped.
    """
    if score not in PEAK_SCORES:
        raise ValueError(f"peak score must be one of {', '.join(PEAK_SCORES)}, not {score!r}")
    d = float(diameter) if np.isfinite(diameter) and diameter > 0 else 16.0
    core, band = _core_and_band(probability, d, smooth_fraction, background_fraction)
    size = max(3, int(d * suppression_fraction) | 1)
    cols, rows, _ = local_maxima(band, size, min_score)
    scores = (core if score == "probability" else band)[rows, cols]
    order = np.argsort(-scores, kind="stable")
    rows, cols, scores = rows[order], cols[order], scores[order]
    keep = suppress_close_peaks(cols, rows, scores, d * suppression_fraction)
    return pd.DataFrame(
        {
            "x": cols[keep].astype(float),
            "y": rows[keep].astype(float),
            "score": scores[keep].astype(float),
            "diameter": d,
        }
    )


class PeakMaskGenerator:
    """Turn a U-Net probability map into one box-shaped instance per map peak, as
    ``settings`` say (default: :class:`PeakSettings`'s)."""

    name = "peaks"

    def __init__(self, settings: PeakSettings | None = None) -> None:
        self.settings = settings or PeakSettings()
        self.last_diameter: float | None = None  # diameter used on the last map (working px)

    def describe(self) -> str:
        """One line for the log: which stage ran, with what."""
        if self.settings.diameter:
            return f"built-in peak finder (diameter {self.settings.diameter:g} working px)"
        return "built-in peak finder"

    def generate(
        self, probability: np.ndarray, diameter: float | None = None
    ) -> list[InstanceMask]:
        """``diameter`` (working px) overrides the generator's own setting for this map."""
        prob = np.nan_to_num(np.asarray(probability, dtype=np.float32), nan=0.0)
        if prob.ndim != 2:
            raise ValueError(f"probability map must be 2-D, got shape {prob.shape}")
        d = diameter or self.settings.diameter or estimate_diameter(prob)
        self.last_diameter = None
        if not (d and np.isfinite(d)):
            return []
        self.last_diameter = float(d)
        s = self.settings
        peaks = find_peaks(
            prob,
            d,
            s.min_score,
            s.smooth_fraction,
            s.suppression_fraction,
            s.background_fraction,
            s.score,
        )
        return particle_boxes(peaks["x"], peaks["y"], peaks["score"], d)
