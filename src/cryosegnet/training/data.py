"""Assembling a training run's data: labelled pairs, simulated micrographs, the validation split.

``cryosegnet train`` and ``cryosegnet finetune`` both call :func:`assemble_training_data`; a
script or notebook can call it too and hand the result to :func:`~cryosegnet.training.trainer.
train`. Everything is denoised once with the given settings (and cached), and the returned
``record`` is what the checkpoint stores under ``metadata["data"]`` so a run can be traced back
to its inputs.

Validation: an explicit set (``val_images``/``val_labels``, or ``sim_val`` simulated
micrographs drawn with another seed) replaces the hold-out for its source; otherwise
``val_fraction`` of each source's micrographs is held out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryosegnet.preprocessing.denoise import DenoiseSettings
from cryosegnet.training.dataset import (
    TrainingSample,
    load_labelled,
    simulated_samples,
    split_samples,
)

# Added to the run's seed for the simulated validation set: never one of the training images.
SIM_VAL_SEED_OFFSET = 1_000_003


@dataclass
class TrainingData:
    """The micrographs a run trains and validates on, and the record of where they came from."""

    train: list[TrainingSample]
    validation: list[TrainingSample]
    record: dict = field(default_factory=dict)


def load_labelled_pairs(
    images: Sequence[str] | None,
    labels: Sequence[str] | None,
    diameter: float | None = None,
    what: str = "training",
    note: Callable[[str], None] = lambda message: None,
) -> list[tuple[Path, pd.DataFrame]]:
    """Micrographs (files, folders, globs) paired by name with their coordinate files.

    Raises ``ValueError`` (one line) when either side is missing or nothing pairs; unpaired
    files on either side are reported through ``note``.
    """
    from cryosegnet.evaluation.pairing import load_coordinate_sets, pair_micrographs
    from cryosegnet.io.micrographs import find_micrographs

    if not images or not labels:
        raise ValueError(
            f"{what}: give both --images and --labels"
            if what == "training"
            else "give both --val-images and --val-labels"
        )
    paths = find_micrographs(list(images))
    if not paths:
        raise ValueError(f"no micrographs found in {' '.join(images)}")
    notes: list[str] = []
    sets = load_coordinate_sets(list(labels), diameter=diameter, notes=notes)
    for message in notes:
        note(message)
    pairs, images_only, labels_only = pair_micrographs(paths, sets)
    if not pairs:
        raise ValueError(
            f"no micrograph pairs with a coordinate file by name "
            f"({len(paths)} micrographs, {len(sets)} coordinate sets)"
        )
    if images_only:
        note(
            f"{len(images_only)} micrograph(s) without labels are not used for {what}, "
            f"e.g. {images_only[0]}"
        )
    if labels_only:
        note(f"{len(labels_only)} coordinate set(s) without a micrograph, e.g. {labels_only[0]}")
    return pairs


def simulation_configs(difficulties: Sequence[str], size: int, options: dict | None = None) -> list:
    """One :class:`~cryosegnet.simulation.SimulationConfig` per difficulty, with ``options``.

    ``options``: any SimulationConfig field (lists become tuples). ``ValueError`` for an unknown
    field.
    """
    from cryosegnet.simulation import SimulationConfig

    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in (options or {}).items()
    }
    try:
        return [SimulationConfig(size=size, difficulty=d, **fields) for d in difficulties]
    except TypeError as exc:
        raise ValueError(f"bad --sim-option: {exc}") from None


def simulated_data(
    n: int,
    configs: Sequence,
    settings: DenoiseSettings,
    seed: int,
    cache: str | os.PathLike | None = None,
    progress: bool = False,
    workers: int = 1,
) -> tuple[list[TrainingSample], list[dict]]:
    """``n`` simulated samples split evenly over ``configs``; (samples, config records)."""
    samples: list[TrainingSample] = []
    records: list[dict] = []
    start = 0
    for k, config in enumerate(configs):
        count = n // len(configs) + (1 if k < n % len(configs) else 0)
        if count == 0:
            continue
        samples += simulated_samples(
            count,
            config,
            settings,
            seed=seed,
            cache_dir=cache,
            progress=progress,
            start=start,
            workers=workers,
        )
        records.append(
            {"config": config.to_dict(), "seed": seed, "indices": [start, start + count]}
        )
        start += count
    return samples, records


def assemble_training_data(
    settings: DenoiseSettings,
    images: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    diameter: float | None = None,
    val_images: Sequence[str] | None = None,
    val_labels: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    simulated: int = 0,
    sim_configs: Sequence = (),
    sim_val: int | None = None,
    cache: str | os.PathLike | None = None,
    progress: bool = False,
    workers: int = 1,
    note: Callable[[str], None] = lambda message: None,
) -> TrainingData:
    """Load, denoise (``settings``) and split everything a run trains and validates on.

    ``images``/``labels``: labelled micrographs paired by name (``diameter`` in micrograph
    pixels fills in labels without one); ``simulated`` micrographs from ``sim_configs``
    (split evenly); explicit validation sets as described in the module docstring.
    ``ValueError`` when there is no training data at all or none is left after the split.
    """
    if not images and not labels and not simulated:
        raise ValueError("no training data: give --images and --labels, or --simulated N")
    record: dict = {"denoise": settings.to_dict()}
    labelled: list[TrainingSample] = []
    if images or labels:
        pairs = load_labelled_pairs(images, labels, diameter, "training", note)
        labelled = load_labelled(pairs, settings, diameter, cache, progress, workers)
        check_labels_inside(labelled, "training", note)
        record["labelled"] = {
            "images": images,
            "labels": labels,
            "micrographs": [str(p) for p, _ in pairs],
        }
    synthetic: list[TrainingSample] = []
    if simulated:
        synthetic, records = simulated_data(
            simulated, sim_configs, settings, seed, cache, progress, workers
        )
        record["simulated"] = records

    explicit_val: list[TrainingSample] = []
    if val_images or val_labels:
        val_pairs = load_labelled_pairs(val_images, val_labels, diameter, "validation", note)
        explicit_val = load_labelled(val_pairs, settings, diameter, cache, progress, workers)
        check_labels_inside(explicit_val, "validation", note)
        record["validation_labelled"] = [str(p) for p, _ in val_pairs]
    sim_validation: list[TrainingSample] = []
    if simulated and sim_val:
        sim_validation, records = simulated_data(
            sim_val, sim_configs, settings, seed + SIM_VAL_SEED_OFFSET, cache, progress, workers
        )
        record["validation_simulated"] = records
    # Hold out part of each source that has no explicit validation set of its own.
    train_l, val_l = split_samples(labelled, 0.0 if explicit_val else val_fraction, seed)
    train_s, val_s = split_samples(synthetic, 0.0 if sim_validation else val_fraction, seed)
    train_samples = train_l + train_s
    if not train_samples:
        raise ValueError("no training micrographs left after the validation split")
    return TrainingData(train_samples, val_l + val_s + explicit_val + sim_validation, record)


def check_labels_inside(
    samples: Sequence[TrainingSample],
    what: str = "training",
    note: Callable[[str], None] = lambda message: None,
) -> None:
    """Refuse labelled micrographs whose labels all lie outside the images; note some outside.

    Labels outside their micrograph teach nothing (the target is empty there): when none falls
    inside, the labels are for other micrographs, or in another pixel size or binning, and a
    run would train on empty targets and still write a model.

    Parameters
    ----------
    samples : sequence of TrainingSample
        Labelled micrographs (particles in working pixels).
    what : str, optional
        ``training`` or ``validation``, for the messages.
    note : callable, optional
        Receives the one-line note when some labels lie outside.

    Raises
    ------
    ValueError
        When labels were given but not one of them lies inside its micrograph.
    """
    total = inside_total = 0
    partly: list[str] = []
    for sample in samples:
        height, width = sample.image.shape[:2]
        x, y = np.asarray(sample.x, float), np.asarray(sample.y, float)
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        total += len(x)
        inside_total += int(inside.sum())
        if not inside.all():
            partly.append(sample.name)
    if total and not inside_total:
        raise ValueError(
            f"all {total} {what} labels lie outside their micrographs ({len(partly)} "
            f"micrograph(s): {', '.join(partly[:3])}{' ...' if len(partly) > 3 else ''}): are "
            "they for other micrographs, or in another pixel size or binning?"
        )
    if partly:
        note(
            f"{total - inside_total} of {total} {what} labels lie outside their micrograph and "
            f"teach nothing, in {len(partly)} micrograph(s): {', '.join(partly[:3])}"
            f"{' ...' if len(partly) > 3 else ''}"
        )
