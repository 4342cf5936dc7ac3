"""``cryosegnet classify`` and ``cryosegnet select`` as library calls."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cryosegnet.classification.classify2d import ClassificationResult, classify_particles
from cryosegnet.classification.extract import extract_particles
from cryosegnet.classification.outputs import (
    AVERAGES_MRCS,
    AVERAGES_PNG,
    CLASSES_CSV,
    PARTICLES_CSV,
    RECORD_JSON,
    SELECTION_JSON,
    particle_table,
    read_classification,
    write_averages_mrcs,
    write_averages_png,
    write_json,
    write_pick_folder,
)
from cryosegnet.classification.quality import (
    class_quality,
    decoy_threshold,
    evidence_threshold,
    judged_scores,
)
from cryosegnet.classification.selection import auto_select, keep_particles, redo_selection
from cryosegnet.classification.settings import ClassifySettings, SelectionSettings
from cryosegnet.errors import CryoSegNetError, SettingsError
from cryosegnet.io.atomic import atomic_write

#: Where ``select`` (and ``classify --auto``) write inside a classification folder by default.
SELECTED_FOLDER = "selected"


@dataclass
class ClassifySummary:
    """What :func:`classify_picks` did.

    Attributes
    ----------
    output : pathlib.Path
        The classification folder.
    n_particles : int
        Particles classified.
    sizes : list of int
        Members per class.
    selected : list of int or None
        Classes ``--auto`` kept (None without ``--auto``).
    n_selected : int
        Particles in the selected classes.
    seconds : float
        Wall time of the classification itself.
    failures : dict of str to str
        Micrographs that could not be used.
    notes : list of str
        Picks left out, and why.
    """

    output: Path
    n_particles: int
    sizes: list[int]
    selected: list[int] | None
    n_selected: int
    seconds: float
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        """What the run did, in the lines ``cryosegnet classify`` prints."""
        line = (
            f"classified {self.n_particles} particles into {len(self.sizes)} classes in "
            f"{self.seconds:.0f} s; class sizes {min(self.sizes)}-{max(self.sizes)}"
        )
        if self.selected is not None:
            line += (
                f"\nauto-selected classes {_listed(self.selected)}: {self.n_selected} of "
                f"{self.n_particles} particles kept"
            )
        return line


def _listed(classes: list[int]) -> str:
    return ",".join(str(c) for c in classes) if classes else "(none)"


def classify_picks(
    picks_dir: str | os.PathLike,
    micrographs: list[str] | None,
    output: str | os.PathLike,
    settings: ClassifySettings,
    diameter: float | None = None,
    recentre: bool = False,
    auto: bool = False,
    selection: SelectionSettings | None = None,
    progress: bool | None = None,
) -> ClassifySummary:
    """Box the picks of ``picks_dir``, classify them in 2D and write ``output``.

    Parameters
    ----------
    picks_dir : str or os.PathLike
        A ``cryosegnet pick`` output folder.
    micrographs : list of str or None
        Micrograph files, folders or globs (paired by stem); None: the names in the picks'
        ``autopick.star``.
    output : str or os.PathLike
        Classification folder to write (created; must not be ``picks_dir`` or inside it).
    settings : ClassifySettings
        Boxing and classification settings.
    diameter : float, optional
        Particle diameter in micrograph pixels (default: from the picks).
    recentre : bool
        Write coordinates moved by each particle's alignment shift (the particle's centre as
        its class average places it) instead of the picks'.
    auto : bool
        Also select the good classes (:func:`auto_select`) into ``output/selected``.
    selection : SelectionSettings, optional
        Thresholds for ``auto`` (default: :class:`SelectionSettings()`).
    progress : bool, optional
        Progress bar (default: only on a terminal).

    Returns
    -------
    ClassifySummary

    Raises
    ------
    CryoSegNetError
        No picks files, no diameter, too few picks for the classes, unusable micrographs, or
        an output folder inside the picks folder.
    """
    source, target = Path(picks_dir), Path(output)
    if target.resolve() == source.resolve() or source.resolve() in target.resolve().parents:
        raise CryoSegNetError(
            f"{target}: the output folder must not be the picks folder {source} or inside it"
        )
    selection = selection or SelectionSettings()
    stack = extract_particles(source, micrographs, settings, diameter=diameter)
    n = len(stack.images)
    if n < 2 * settings.n_classes:
        raise CryoSegNetError(
            f"{source}: {n} usable pick(s) are too few for {settings.n_classes} classes "
            f"(at least {2 * settings.n_classes} needed; use fewer classes)"
        )
    start = time.monotonic()
    result = classify_particles(stack.images, settings, progress=progress)
    seconds = time.monotonic() - start
    threshold = decoy_threshold(result, selection.decoy_quantile)
    judged, decoys = judged_scores(result)
    above = judged > threshold
    quality = class_quality(result, above)
    chosen = auto_select(quality, selection)
    quality["auto_selected"] = quality["class"].isin(chosen)
    particles = _tested_particles(stack.table, result, above, selection)
    particles["auto_kept"] = keep_particles(particles, chosen, selection, stack.diameter_px)

    target.mkdir(parents=True, exist_ok=True)
    pixel = stack.diameter_px * settings.box_factor / settings.working_box
    write_averages_mrcs(target / AVERAGES_MRCS, result.averages, pixel)
    write_averages_png(target / AVERAGES_PNG, result.averages, quality, chosen if auto else [])
    with atomic_write(target / CLASSES_CSV, newline="") as handle:
        quality.to_csv(handle, index=False, float_format="%.5g")
    with atomic_write(target / PARTICLES_CSV, newline="") as handle:
        particles.to_csv(handle, index=False, float_format="%.6g")
    record = {
        "picks": str(source),
        "micrographs": stack.micrographs,
        "diameter_px": stack.diameter_px,
        "box_px": stack.diameter_px * settings.box_factor,
        "working_pixel_px": pixel,
        "recentre": recentre,
        "settings": asdict(settings),
        "selection_settings": asdict(selection),
        "auto_selected": chosen,
        "decoy_threshold": threshold,
        "decoy_scores": [round(float(v), 5) for v in decoys],
        "decoy_evidence": [round(float(v), 5) for v in result.decoy_evidence],
        "decoy_evidence_threshold": evidence_threshold(result, selection.decoy_quantile),
        "low_snr": result.low_snr,
        "decoy_score_column": "evidence" if result.low_snr else "correlation",
        "changed_per_iteration": result.changed,
        "seconds": seconds,
        "failures": stack.failures,
        "notes": stack.notes,
    }
    manifest = {"classification": str(target), "recentred": recentre}
    write_pick_folder(target, particles, stack.micrographs, recentre, manifest)
    write_json(target / RECORD_JSON, record)
    n_selected = select_classes(target, auto=True).n_kept if auto else 0
    return ClassifySummary(
        output=target,
        n_particles=n,
        sizes=[int(s) for s in result.sizes],
        selected=chosen if auto else None,
        n_selected=n_selected,
        seconds=seconds,
        failures=stack.failures,
        notes=stack.notes,
    )


def _tested_particles(
    table: pd.DataFrame,
    result: ClassificationResult,
    above: np.ndarray,
    selection: SelectionSettings,
) -> pd.DataFrame:
    """``particles.csv`` before the choice.

    Each pick's class and pose (:func:`particle_table`), whether it beats the decoys
    (``above``) and in evidence, and its residual measure.
    """
    particles = particle_table(table, result)
    particles["above_decoys"] = above
    floor = evidence_threshold(result, selection.decoy_quantile)
    particles["evidence_above_decoys"] = result.evidence > floor if np.isfinite(floor) else True
    particles["residual_lowpass"] = result.residual_lowpass
    return particles


@dataclass
class SelectSummary:
    """What :func:`select_classes` wrote.

    Attributes
    ----------
    output : pathlib.Path
        Folder of the selected picks.
    classes : list of int
        Classes kept (1-based).
    mode : str
        ``auto`` or ``manual``.
    n_kept, n_total : int
        Particles kept, of all classified.
    """

    output: Path
    classes: list[int]
    mode: str
    n_kept: int
    n_total: int

    def text(self) -> str:
        """What the selection kept, in the line ``cryosegnet select`` prints."""
        return (
            f"kept classes {_listed(self.classes)} ({self.mode}): {self.n_kept} of "
            f"{self.n_total} particles -> {self.output}"
        )


def select_classes(
    classification: str | os.PathLike,
    classes: list[int] | None = None,
    auto: bool = False,
    output: str | os.PathLike | None = None,
    recentre: bool | None = None,
    selection: SelectionSettings | None = None,
    above_decoys_only: bool = False,
) -> SelectSummary:
    """Write the picks of chosen classes in ``cryosegnet pick``'s layout, and record why.

    Parameters
    ----------
    classification : str or os.PathLike
        A folder written by :func:`classify_picks`.
    classes : list of int, optional
        Class numbers to keep (1-based); exclusive with ``auto``.
    auto : bool
        Keep the classes :func:`auto_select` passes.
    output : str or os.PathLike, optional
        Folder to write (default: ``classification/selected``).
    recentre : bool, optional
        Write re-centred coordinates (default: as the classification did).
    selection : SelectionSettings, optional
        Thresholds for ``auto`` (default: the ones the classification recorded).
    above_decoys_only : bool
        With ``classes``: keep only their members above the decoys (``auto`` always does).

    Returns
    -------
    SelectSummary

    Raises
    ------
    CryoSegNetError
        If the folder is no classification, or neither or both of ``classes`` and ``auto``.
    """
    if (classes is None) == (not auto):
        raise SettingsError("give either class numbers or auto selection (not both, not none)")
    folder = Path(classification)
    record, quality, particles = read_classification(folder)
    if auto:
        if selection is None:
            recorded = record.get("selection_settings") or {}
            recorded = {
                key: tuple(value) if isinstance(value, list) else value
                for key, value in recorded.items()
            }
            selection = SelectionSettings(**recorded)
        chosen, quality, particles = redo_selection(record, quality, particles, selection)
    else:
        assert classes is not None
        n_classes = len(quality)
        bad = [c for c in classes if not 1 <= c <= n_classes]
        if bad:
            raise SettingsError(f"class {bad[0]} does not exist (classes 1-{n_classes})")
        chosen = sorted(set(classes))
    recentre = bool(record.get("recentre", False)) if recentre is None else recentre
    target = Path(output) if output is not None else folder / SELECTED_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    if auto:
        keep = particles["auto_kept"].astype(bool)
    else:
        keep = particles["class"].isin(chosen)
        if above_decoys_only:
            keep &= particles["above_decoys"].astype(bool)
    kept = particles[keep]
    micrographs = [tuple(m) for m in record["micrographs"]]
    manifest = {"classification": str(folder), "classes": chosen, "recentred": recentre}
    write_pick_folder(target, kept, micrographs, recentre, manifest)  # type: ignore[arg-type]
    mode = "auto" if auto else "manual"
    write_json(
        target / SELECTION_JSON,
        {
            "classification": str(folder),
            "mode": mode,
            "classes": chosen,
            "selection_settings": asdict(selection) if auto and selection else None,
            "recentre": recentre,
            "above_decoys_only": bool(auto or above_decoys_only),
            "residual_and_duplicate_tests": auto,
            "n_kept": int(len(kept)),
            "n_total": int(len(particles)),
        },
    )
    return SelectSummary(
        output=target, classes=chosen, mode=mode, n_kept=int(len(kept)), n_total=len(particles)
    )
