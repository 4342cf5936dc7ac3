"""Choose classes: automatically from their quality, or as the user lists them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cryosegnet.classification.settings import SelectionSettings
from cryosegnet.errors import SettingsError


def auto_select(quality: pd.DataFrame, settings: SelectionSettings) -> list[int]:
    """Class numbers (1-based) whose measures pass every threshold of ``settings``.

    Parameters
    ----------
    quality : pandas.DataFrame
        :func:`cryosegnet.classification.quality.class_quality`'s table.
    settings : SelectionSettings
        Thresholds.

    Returns
    -------
    list of int
        Sorted class numbers.
    """
    if len(quality) == 0:
        return []
    average_size = quality["size"].sum() / len(quality)
    keep = (
        (quality["above_decoys"] >= settings.min_above_decoys)
        & (quality["contrast"] >= settings.min_contrast)
        & (quality["background_sd"] <= settings.max_background_sd)
        & (quality["size"] >= settings.min_fraction * average_size)
    )
    return sorted(int(c) for c in quality.loc[keep, "class"])


def keep_particles(
    particles: pd.DataFrame,
    classes: list[int],
    settings: SelectionSettings,
    diameter_px: float,
) -> np.ndarray:
    """Which members of ``classes`` ``--auto`` keeps (:class:`SelectionSettings`).

    A member is kept when it is above the decoys (with ``evidence_test``, in evidence too),
    its residual is no outlier among the members above the decoys, and no kept particle
    with a higher correlation has its re-centred centre within ``duplicate_distance``
    diameters (on the same micrograph).

    Parameters
    ----------
    particles : pandas.DataFrame
        ``particles.csv``: ``micrograph``, ``class``, ``correlation``, ``above_decoys``,
        ``recentred_x``, ``recentred_y`` and (tables written before these tests lack them,
        and skip the test) ``residual_lowpass`` and ``evidence_above_decoys``.
    classes : list of int
        Classes kept (1-based).
    settings : SelectionSettings
        Thresholds.
    diameter_px : float
        Particle diameter in micrograph pixels.

    Returns
    -------
    numpy.ndarray
        ``(len(particles),)`` bool.
    """
    keep = np.array(particles["class"].isin(classes) & particles["above_decoys"].astype(bool))
    if settings.evidence_test and "evidence_above_decoys" in particles:
        keep &= particles["evidence_above_decoys"].to_numpy(bool)
    if "residual_lowpass" in particles and keep.any() and np.isfinite(settings.max_residual_z):
        residual = particles["residual_lowpass"].to_numpy(float)
        median = np.median(residual[keep])
        spread = 1.4826 * np.median(np.abs(residual[keep] - median))
        keep &= residual <= median + settings.max_residual_z * spread
    if settings.duplicate_distance > 0 and keep.any():
        keep &= ~_duplicates(particles, keep, settings.duplicate_distance * diameter_px)
    return keep


def redo_selection(
    record: dict,
    quality: pd.DataFrame,
    particles: pd.DataFrame,
    selection: SelectionSettings,
) -> tuple[list[int], pd.DataFrame, pd.DataFrame]:
    """``--auto`` redone on a written classification at other thresholds.

    The per-particle decoy tests (correlation and, where recorded, evidence) and each class's
    share above the decoys depend on ``selection.decoy_quantile``, so they are recomputed from
    the decoy scores the classification recorded before the classes are chosen.

    Parameters
    ----------
    record : dict
        ``classification.json`` as read.
    quality : pandas.DataFrame
        ``classes.csv``.
    particles : pandas.DataFrame
        ``particles.csv``.
    selection : SelectionSettings
        The thresholds.

    Returns
    -------
    chosen : list of int
        The classes kept.
    quality, particles : pandas.DataFrame
        Copies with ``above_decoys`` (and ``evidence_above_decoys``, ``auto_kept``) redone.
    """
    quality, particles = quality.copy(), particles.copy()
    threshold = float(np.quantile(record["decoy_scores"], selection.decoy_quantile))
    column = record.get("decoy_score_column", "correlation")
    particles["above_decoys"] = particles[column] > threshold
    if record.get("decoy_evidence") and "evidence" in particles:
        floor = float(np.quantile(record["decoy_evidence"], selection.decoy_quantile))
        particles["evidence_above_decoys"] = particles["evidence"] > floor
    shares = particles.groupby("class")["above_decoys"].mean()
    quality["above_decoys"] = shares.reindex(quality["class"]).fillna(0.0).to_numpy()
    chosen = auto_select(quality, selection)
    particles["auto_kept"] = keep_particles(
        particles, chosen, selection, float(record["diameter_px"])
    )
    return chosen, quality, particles


def _duplicates(particles: pd.DataFrame, candidates: np.ndarray, distance: float) -> np.ndarray:
    """Candidates within ``distance`` (re-centred) of a better-correlating kept candidate."""
    duplicate = np.zeros(len(particles), dtype=bool)
    chosen = particles[candidates]
    for _, rows in chosen.groupby("micrograph", sort=False):
        rows = rows.sort_values("correlation", ascending=False, kind="stable")
        centres = rows[["recentred_x", "recentred_y"]].to_numpy(float)
        tree = cKDTree(centres)
        dropped = np.zeros(len(rows), dtype=bool)
        for i in range(len(rows)):
            if dropped[i]:
                continue
            for j in tree.query_ball_point(centres[i], distance):
                if j > i:
                    dropped[j] = True
        duplicate[particles.index.get_indexer(rows.index[dropped])] = True
    return duplicate


def parse_classes(text: str, n_classes: int) -> list[int]:
    """``"1,4,7"`` or ``"1-3,7"`` -> ``[1, 2, 3, 7]``, checked against ``1..n_classes``.

    Parameters
    ----------
    text : str
        Comma-separated class numbers or ranges, 1-based.
    n_classes : int
        How many classes the classification has.

    Returns
    -------
    list of int

    Raises
    ------
    SettingsError
        On a malformed list or a number outside ``1..n_classes``.
    """
    chosen: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            if "-" in item:
                first, last = (int(v) for v in item.split("-", 1))
                chosen.update(range(first, last + 1))
            else:
                chosen.add(int(item))
        except ValueError as exc:
            raise SettingsError(f"--classes: '{item}' is not a class number or range") from exc
    if not chosen:
        raise SettingsError("--classes: no class numbers given")
    bad = sorted(c for c in chosen if not 1 <= c <= n_classes)
    if bad:
        raise SettingsError(f"--classes: class {bad[0]} does not exist (classes 1-{n_classes})")
    return sorted(chosen)
