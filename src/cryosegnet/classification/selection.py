"""Choose classes: automatically from their quality, or as the user lists them."""

from __future__ import annotations

import pandas as pd

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
