"""``cryosegnet threshold``: re-threshold a picks folder without picking again.

``cryosegnet pick --threshold 0`` keeps every candidate; the report's slider shows where to
cut; this writes the cut. The output mirrors the input's layout (flat or RELION's
``<folder>/<stem>_autopick.star``), with fresh ``autopick.star`` and ``particles.star`` at the
top, written by the same writers ``pick`` uses.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cryosegnet.errors import CryoSegNetError
from cryosegnet.inspection.picksets import find_pick_files, read_picks
from cryosegnet.io.coordinates import (
    combined_star_text,
    index_star_text,
    write_coordinate_star,
    write_star_texts,
)
from cryosegnet.io.layout import COMBINED_STAR, INDEX_STAR


@dataclass
class ThresholdSummary:
    """What :func:`threshold_picks` wrote.

    Attributes
    ----------
    min_score : float
        The threshold: picks with figure of merit >= it were kept.
    kept : dict of str to int
        Picks kept per micrograph (by micrograph name).
    total : dict of str to int
        Picks read per micrograph.
    files : list of pathlib.Path
        Every file written, index files last.
    """

    min_score: float
    kept: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def text(self) -> str:
        n_kept, n_total = sum(self.kept.values()), sum(self.total.values())
        empty = sum(1 for n in self.kept.values() if n == 0)
        line = (
            f"kept {n_kept} of {n_total} picks (score >= {self.min_score:g}) on "
            f"{len(self.kept)} micrographs"
        )
        return line + (f"; {empty} micrograph(s) now have none" if empty else "")


def threshold_picks(
    picks_dir: str | os.PathLike,
    output: str | os.PathLike,
    min_score: float,
) -> ThresholdSummary:
    """Write the picks of ``picks_dir`` with figure of merit >= ``min_score`` to ``output``.

    Every per-micrograph STAR file below ``picks_dir`` (``<stem>.star`` or
    ``<stem>_autopick.star``, any folder depth) gets a counterpart at the same relative path
    below ``output``, also when no pick survives (an empty file tells RELION the micrograph
    was picked). ``output`` also gets ``autopick.star`` (micrograph -> coordinate file, the
    micrograph names taken from ``picks_dir/autopick.star`` when present) and
    ``particles.star`` (every kept particle). Picks without a score (NaN) are dropped.

    Parameters
    ----------
    picks_dir : str or os.PathLike
        A ``cryosegnet pick`` output folder (or any folder of RELION coordinate STAR files).
    output : str or os.PathLike
        Folder to write; created if needed; must not be ``picks_dir`` or inside it.
    min_score : float
        Keep picks with ``score >= min_score``.

    Returns
    -------
    ThresholdSummary

    Raises
    ------
    CryoSegNetError
        If ``picks_dir`` holds no per-micrograph STAR file, ``output`` would overwrite or sit
        inside it, or ``min_score`` is not a number.
    """
    min_score = float(min_score)
    if math.isnan(min_score):
        raise CryoSegNetError("--min-score must be a number")
    source, target = Path(picks_dir), Path(output)
    if target.resolve() == source.resolve() or source.resolve() in target.resolve().parents:
        raise CryoSegNetError(
            f"{target}: the output folder must not be the picks folder {source} or inside it"
        )
    pick_files = find_pick_files(source)
    summary = ThresholdSummary(min_score=min_score)
    kept_by_micrograph: dict[str, pd.DataFrame] = {}
    entries: list[tuple[str, str]] = []
    for pick_file in pick_files:
        picks = read_picks(pick_file)
        kept = picks[picks["score"] >= min_score].reset_index(drop=True)
        destination = target / pick_file.relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        write_coordinate_star(destination, kept)
        summary.files.append(destination)
        summary.kept[pick_file.micrograph] = len(kept)
        summary.total[pick_file.micrograph] = len(picks)
        kept_by_micrograph[pick_file.micrograph] = kept
        entries.append((pick_file.micrograph, str(destination)))
    write_star_texts(  # both or neither: the pair never disagrees
        {
            target / INDEX_STAR: index_star_text(entries),
            target / COMBINED_STAR: combined_star_text(kept_by_micrograph),
        }
    )
    summary.files += [target / INDEX_STAR, target / COMBINED_STAR]
    return summary
