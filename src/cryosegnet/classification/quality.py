"""How much each class looks like a particle: measures per class, and a decoy test per particle.

Per particle, ``above_decoys``: its score (:func:`judged_scores`: the pose-marginalised
evidence at low SNR, else its correlation) with its class average beats the
``decoy_quantile`` quantile of the correlations that noise decoys reach
(:attr:`ClassificationResult.decoy_scores`: images with the particles' median power spectrum
and random phases, aligned to the same averages over every class, rotation and shift). Picks
of empty ice do not beat it; particles do.

For a class average ``A`` (normalised particle units, so one particle's background noise has
SD 1), with ``n`` members, the particle circle ``C`` (radius half the particle diameter) and the
background ``O`` (outside the mask, inside the box):

``above_decoys``
    Fraction of the members above the decoys. This is also the class's ``quality`` score.
``contrast``
    ``(mean_O(A) - mean_C(A)) / sd_O(A)`` for dark particles (sign flipped for bright ones):
    how far the particle circle stands out from the background, in units of the background's
    fluctuation. Empty ice averages to a flat field (contrast near 0).
``background_sd``
    ``sd_O(A) x sqrt(n)``: the background's fluctuation in units of the noise left after
    averaging ``n`` boxes (about 1 for a flat background; carbon edges, contamination and
    aggregates leave structure there and score well above 1).
``half_correlation``
    Pearson correlation, inside the mask, between the averages of the odd and of the even
    members. Both halves are aligned to the same references, so noise aligned to a
    reference repeats in both: reported, not used by ``--auto``.
``size_ratio``
    Diameter of the dark object at the box centre, divided by the particle diameter. The
    object is the connected region, containing (or else nearest to) the centre pixel, of the
    average (Gaussian-smoothed, sigma 1 px) darker than half its darkest value relative to
    the background mean; its diameter is twice the 95th percentile of its pixels' distances
    from the centre (so an object reaching the box edge measures large however thin it is).
    A particle with distinct domains measures as its darkest domain (0.2-0.7 of the diameter
    for TRPV1 views in simulations), so it is reported, not used by ``--auto``.

``--auto`` keeps a class when ``above_decoys``, ``contrast``, ``background_sd`` and its size
pass the thresholds of :class:`SelectionSettings`, and of its members the ones above the
decoys.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from cryosegnet.classification.classify2d import ClassificationResult


def judged_scores(result: ClassificationResult) -> tuple[np.ndarray, np.ndarray]:
    """What the decoy test compares, of the particles and of the decoys.

    Their pose-marginalised evidence when the classification ran in low-SNR mode
    (:attr:`.classify2d.ClassificationResult.low_snr`), else their best correlations.

    The best correlation over every class, rotation and shift is a maximum over many poses:
    at low SNR noise reaches as high as particles do. The evidence averages over the poses,
    so the freedom to fit noise does not raise it.

    Parameters
    ----------
    result : ClassificationResult
        A classification.

    Returns
    -------
    particles, decoys : numpy.ndarray
        ``(N,)`` and ``(decoys,)``.
    """
    if result.low_snr and len(result.evidence) and len(result.decoy_evidence):
        return result.evidence, result.decoy_evidence
    return result.scores, result.decoy_scores


def decoy_threshold(result: ClassificationResult, quantile: float) -> float:
    """The score (:func:`judged_scores`) that only ``1 - quantile`` of the noise decoys reach.

    Parameters
    ----------
    result : ClassificationResult
        A classification with its decoy scores.
    quantile : float
        In (0, 1).

    Returns
    -------
    float
    """
    return float(np.quantile(judged_scores(result)[1], quantile))


def evidence_threshold(result: ClassificationResult, quantile: float) -> float:
    """The evidence that only ``1 - quantile`` of the noise decoys reach (NaN without decoys).

    Parameters
    ----------
    result : ClassificationResult
        A classification with its decoys' evidence.
    quantile : float
        In (0, 1).

    Returns
    -------
    float
    """
    if not len(result.decoy_evidence):
        return float("nan")
    return float(np.quantile(result.decoy_evidence, quantile))


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


def class_quality(result: ClassificationResult, above_decoys: np.ndarray) -> pd.DataFrame:
    """The quality measures of every class (see the module docstring).

    Parameters
    ----------
    result : ClassificationResult
        Averages, half-set averages and settings of a classification.
    above_decoys : numpy.ndarray
        ``(N,)`` bool, each particle's correlation beats the decoy threshold.

    Returns
    -------
    pandas.DataFrame
        One row per class: ``class`` (1-based), ``size``, ``above_decoys``, ``contrast``,
        ``background_sd``, ``half_correlation``, ``size_ratio``, ``quality``.
    """
    k_all = len(result.raw_averages)
    counts = np.bincount(result.classes, minlength=k_all)
    above = np.bincount(result.classes, weights=above_decoys.astype(float), minlength=k_all)
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
        fraction = float(above[k] / counts[k]) if counts[k] else 0.0
        rows.append(
            {
                "class": k + 1,
                "size": int(result.sizes[k]),
                "above_decoys": fraction,
                "contrast": float(contrast),
                "background_sd": float(spread * np.sqrt(max(int(counts[k]), 1))),
                "half_correlation": correlation,
                "size_ratio": float(diameter / settings.diameter_px),
                "quality": fraction,
            }
        )
    return pd.DataFrame(rows)
