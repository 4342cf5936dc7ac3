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

from dataclasses import asdict, dataclass, field

import numpy as np

from cryosegnet.detection.peaks import local_maxima, suppress_close_peaks
from cryosegnet.masks.base import InstanceMask, particle_boxes
from cryosegnet.preprocessing.filters import gaussian_laplace, on_shrunk_copy


@dataclass(frozen=True)
class ScaleSpace:
    """How a size range is searched blob by blob (``--diameter 100-160A``).

    The scale-normalised LoG is computed at ``scales_per_octave`` diameters per doubling,
    spaced evenly in log size from the range's low end to its high end, as RELION's LoG picker
    (``--LoG_diam_min``/``--LoG_diam_max``) and ``skimage.feature.blob_log`` search theirs.
    Each blob takes the scale it responds to most, refined between the two scales beside it.
    """

    scales_per_octave: int = 4

    def __post_init__(self) -> None:
        if not self.scales_per_octave >= 1:
            raise ValueError(f"scales_per_octave must be at least 1, got {self.scales_per_octave}")

    def diameters(self, low: float, high: float) -> np.ndarray:
        """The diameters searched from ``low`` to ``high`` (both included; one if equal)."""
        if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
            raise ValueError(f"a size range needs 0 < low <= high, got {low:g}-{high:g}")
        if high == low:
            return np.array([float(low)])
        count = max(2, int(np.ceil(np.log2(high / low) * self.scales_per_octave)) + 1)
        return np.geomspace(low, high, count)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LogSettings:
    """Parameters of the LoG stage (fractions of the particle diameter)."""

    # The LoG diameter as a fraction of the particle diameter: 1 matches the whole particle.
    scale_fraction: float = 1.0
    suppression_fraction: float = 0.5  # no two picks closer than fraction * diameter
    scale_space: ScaleSpace = field(default_factory=ScaleSpace)  # a size range

    def __post_init__(self) -> None:
        if not self.scale_fraction > 0:
            raise ValueError(f"scale_fraction must be positive, got {self.scale_fraction}")

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
    darker than the typical pixel (score > 0) are candidates. The one-scale case of
    :func:`dark_blobs_over_scales`.
    """
    cols, rows, values, _ = dark_blobs_over_scales(image, [log_diameter], [min_distance])
    return cols, rows, values


def dark_blobs_over_scales(
    image: np.ndarray, log_diameters, min_distances
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dark blobs of ``image`` over several LoG scales -> (x, y, score, LoG diameter).

    Each pixel keeps its strongest response over the scales, each in its own noise units
    (:func:`noise_units`), and the scale that gave it, as RELION's LoG picker does; blobs are
    the local maxima of that best response (the window of the smallest scale), no two closer
    than the larger of their scales' ``min_distances`` (the stronger is kept). A blob's LoG
    diameter is refined between the scales beside its best one by a parabola in log size, and
    stays within the scales searched. With one scale this is :func:`dark_blobs`.

    Each scale in its own noise units: in one scale's units, the fine scales' noise outranked
    the particles on simulated fields. Either way a single blob's best scale is noisy on weak
    data (its response varies slowly with scale), so the size of one pick is a rough one.

    Parameters
    ----------
    image : ndarray
        2-D image, dark particles.
    log_diameters : sequence of float
        The LoG diameters searched, increasing (px).
    min_distances : sequence of float
        The suppression distance at each of them (px).

    Returns
    -------
    x, y, score, log_diameter : ndarray
        One entry per blob.
    """
    diameters = np.asarray(log_diameters, dtype=float).reshape(-1)
    distances = np.asarray(min_distances, dtype=float).reshape(-1)
    if diameters.size == 0 or diameters.size != distances.size:
        raise ValueError("give one suppression distance for each LoG diameter")
    if diameters.size == 1:
        score = noise_units(log_response(image, float(diameters[0])))
        cols, rows, values = blob_peaks(score, float(distances[0]))
        return cols, rows, values, np.full(len(values), diameters[0])
    stack = np.stack([noise_units(log_response(image, float(d))) for d in diameters])
    best = stack.argmax(axis=0)
    strongest = np.take_along_axis(stack, best[None], axis=0)[0]
    window = float(distances.min())
    cols, rows, values = local_maxima(strongest, max(3, int(window) | 1), 0.0)
    scale = best[rows, cols]
    keep = suppress_close_peaks(cols, rows, values, distances[scale])
    cols, rows, values, scale = cols[keep], rows[keep], values[keep], scale[keep]
    return cols, rows, values, _refined_diameters(stack, diameters, scale, rows, cols)


def _refined_diameters(
    stack: np.ndarray, diameters: np.ndarray, scale: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """Each blob's diameter between the scales searched: the vertex of the parabola through its
    best scale's response and its two neighbours' (log size), kept within half a step of the
    best scale; a blob at either end of the range keeps that end."""
    inner = (scale > 0) & (scale < len(diameters) - 1)
    index = np.clip(scale, 1, len(diameters) - 2)
    below = stack[index - 1, rows, cols]
    centre = stack[index, rows, cols]
    above = stack[index + 1, rows, cols]
    curvature = below - 2 * centre + above
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curvature < 0, 0.5 * (below - above) / curvature, 0.0)
    shift = np.where(inner, np.clip(np.nan_to_num(shift), -0.5, 0.5), 0.0)
    log_sizes = np.log(diameters)
    step = np.diff(log_sizes).mean() if len(diameters) > 1 else 0.0
    return np.exp(log_sizes[scale] + shift * step)


class LogBlobGenerator:
    """Dark blobs of the denoised micrograph at the particle scale, scored in noise units, as
    ``settings`` say (default: :class:`LogSettings`'s)."""

    name = "log"
    needs_unet = False  # the picker hands it the denoised image, not the U-Net map
    sizes_per_blob = True  # a size range is searched blob by blob

    def __init__(self, settings: LogSettings | None = None) -> None:
        self.settings = settings or LogSettings()
        self.last_diameter: float | None = None

    def describe(self) -> str:
        """One line for the log: which stage ran, with what."""
        return "training-free LoG blob detector on the denoised image (no U-Net)"

    def generate(
        self,
        image: np.ndarray,
        diameter: float | None = None,
        *,
        size_range: tuple[float, float] | None = None,
    ) -> list[InstanceMask]:
        """Candidates in ``image`` (denoised uint8 or float, dark particles), working px.

        ``size_range``: (smallest, largest) particle diameter in working px, each blob sized
        within it (:class:`ScaleSpace`); ``diameter`` is then the micrograph's typical size.

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
        s = self.settings
        sizes = np.array([d]) if size_range is None else s.scale_space.diameters(*size_range)
        cols, rows, values, log_sizes = dark_blobs_over_scales(
            img, sizes * s.scale_fraction, sizes * s.suppression_fraction
        )
        blob_sizes = d if size_range is None else log_sizes / s.scale_fraction
        return particle_boxes(cols, rows, values, blob_sizes)
