"""How much each class average looks like a particle: three measures and one score.

For a class average ``A`` (normalised particle units), the particle circle ``C`` (radius half
the particle diameter) and the background ``O`` (outside the mask, inside the box):

``contrast``
    ``(mean_O(A) - mean_C(A)) / sd_O(A)`` for dark particles (sign flipped for bright ones):
    how far the particle circle stands out from the background, in units of the background's
    fluctuation. Empty ice averages to a flat field (contrast near 0); carbon edges and
    contamination leave structure in the background, which raises ``sd_O``.
``half_correlation``
    Pearson correlation, inside the mask, between the averages of the odd and of the even
    members. Signal repeats in both halves; noise does not.
``size_ratio``
    Diameter of the dark object at the box centre, divided by the particle diameter. The
    object is the connected region, containing (or else nearest to) the centre pixel, of the
    average (Gaussian-smoothed, sigma 1 px) darker than half its darkest value relative to
    the background mean; its diameter is twice the 95th percentile of its pixels' distances
    from the centre (so an object reaching the box edge, as ice contamination and carbon
    edges do, measures large however thin it is). Aggregates and contamination are larger;
    noise averages and fragments are smaller.
``quality``
    ``half_correlation x exp(-ln(size_ratio)^2 / (2 x 0.3^2))`` (0 when the correlation is
    negative): reproducible and particle-sized. It ranks classes; ``--auto`` uses the three
    measures with the thresholds of :class:`SelectionSettings`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from cryosegnet.classification.classify2d import ClassificationResult

SIZE_TOLERANCE = 0.3  # width (natural log units) of the size term of ``quality``


def _disk(size: int, radius: float) -> np.ndarray:
    coords = np.arange(size) - size // 2
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    return (xx**2 + yy**2) <= radius**2


def object_diameter(average: np.ndarray, background: np.ndarray, dark: bool) -> float:
    """Diameter (pixels) of the dark (or bright) object at the box centre (module docstring).

    Parameters
    ----------
    average : numpy.ndarray
        ``(B, B)`` unmasked class average.
    background : numpy.ndarray
        ``(B, B)`` bool, the pixels that set the background level.
    dark : bool
        The object is darker than the background.

    Returns
    -------
    float
        0 when nothing at the centre stands out.
    """
    signal = ndimage.gaussian_filter(average.astype(np.float64), 1.0)
    signal = signal.mean(where=background) - signal
    if not dark:
        signal = -signal
    peak = signal.max()
    if not peak > 0:
        return 0.0
    labels, _ = ndimage.label(signal > peak / 2)
    size = average.shape[-1]
    centre = size // 2
    label = labels[centre, centre]
    if label == 0:  # the centre pixel is not in an object: take the object nearest to it
        found = np.argwhere(labels > 0)
        nearest = found[np.argmin(((found - centre) ** 2).sum(axis=1))]
        label = labels[tuple(nearest)]
    rows, cols = np.nonzero(labels == label)
    distance = np.hypot(rows - centre, cols - centre)
    return float(2 * np.percentile(distance, 95))


def class_quality(result: ClassificationResult) -> pd.DataFrame:
    """The quality measures of every class (see the module docstring).

    Parameters
    ----------
    result : ClassificationResult
        Averages, half-set averages and settings of a classification.

    Returns
    -------
    pandas.DataFrame
        One row per class: ``class`` (1-based), ``size``, ``contrast``,
        ``half_correlation``, ``size_ratio``, ``quality``.
    """
    settings = result.settings
    size = settings.working_box
    particle = _disk(size, settings.diameter_px / 2)
    inside_mask = _disk(size, settings.mask_radius_px)
    background = ~inside_mask
    sign = 1.0 if settings.dark_particles else -1.0
    rows = []
    for k, average in enumerate(result.raw_averages):
        bg = average[background]
        spread = bg.std()
        contrast = sign * (bg.mean() - average[particle].mean()) / max(float(spread), 1e-12)
        first, second = result.half_averages[0, k], result.half_averages[1, k]
        a, b = first[inside_mask], second[inside_mask]
        if a.std() > 1e-12 and b.std() > 1e-12:
            correlation = float(np.corrcoef(a, b)[0, 1])
        else:
            correlation = 0.0
        diameter = object_diameter(average, background, settings.dark_particles)
        ratio = diameter / settings.diameter_px
        size_term = np.exp(-(np.log(ratio) ** 2) / (2 * SIZE_TOLERANCE**2)) if ratio > 0 else 0.0
        rows.append(
            {
                "class": k + 1,
                "size": int(result.sizes[k]),
                "contrast": float(contrast),
                "half_correlation": correlation,
                "size_ratio": float(ratio),
                "quality": float(max(correlation, 0.0) * size_term),
            }
        )
    return pd.DataFrame(rows)
