"""One training run as one value.

:class:`TrainJob` is ``cryosegnet train`` and :class:`FinetuneJob` ``cryosegnet finetune``.

The two differ in where they start (a fresh network, or ``--init``; a trained model) and in
what their checkpoints record (a fine-tuned model records its parent); each job says so
itself (``starting_point``, ``fit``). What they share, gathering and denoising the data and
training, is :func:`prepare` and :func:`fit`. Both are frozen: built once from the options,
never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

from cryosegnet.model.unet import AttentionUNet
from cryosegnet.preprocessing.denoise import DenoiseSettings
from cryosegnet.training.dataset import TrainingSample
from cryosegnet.training.trainer import TrainConfig, TrainResult


@dataclass(frozen=True)
class DataSources:
    """What a run trains and validates on.

    See :func:`~cryosegnet.training.data.assemble_training_data`.

    Parameters
    ----------
    images, labels : tuple of str or None
        Labelled micrographs and their coordinate files, paired by name.
    diameter : float or None
        Particle diameter (micrograph px) for labels without one.
    val_images, val_labels : tuple of str or None
        An explicit validation set (default: hold out ``TrainConfig.val_fraction``).
    simulated : int
        Simulated micrographs added to the training data.
    sim_difficulties : tuple of str
        Simulator difficulties; ``simulated`` is split evenly over them.
    sim_size : int or None
        Simulated micrograph size (default: the working size).
    sim_options : mapping
        Further :class:`~cryosegnet.simulation.SimulationConfig` fields.
    sim_val : int or None
        Simulated validation micrographs.
    cache : Path or None
        Denoised-image cache (default: ``<output>/cache``).
    """

    images: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    diameter: float | None = None
    val_images: tuple[str, ...] | None = None
    val_labels: tuple[str, ...] | None = None
    simulated: int = 0
    sim_difficulties: tuple[str, ...] = ("easy", "medium", "hard")
    sim_size: int | None = None
    sim_options: Mapping = field(default_factory=dict)
    sim_val: int | None = None
    cache: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sim_options", MappingProxyType(dict(self.sim_options)))


@dataclass(frozen=True)
class PreparedRun:
    """A job's starting model and data, ready to fit (:func:`prepare`).

    ``parent`` is what a fine-tuned model's checkpoints keep of the checkpoint it started
    from (:func:`~cryosegnet.training.finetune.parent_record`; None for ``train``), taken
    when that checkpoint was read, so a run reads it once.
    """

    model: AttentionUNet | None
    settings: DenoiseSettings
    config: TrainConfig
    train: list[TrainingSample]
    validation: list[TrainingSample]
    record: dict
    parent: dict | None = None


@dataclass(frozen=True)
class TrainJob:
    """``cryosegnet train``: fit a fresh network (or one from ``init``) on ``data``.

    Parameters
    ----------
    output : Path
        Run folder (``best.pt``, ``last.pt``, ``history.json``).
    data : DataSources
        Training and validation data.
    config : TrainConfig
        The recipe.
    denoise : DenoiseSettings or None
        How micrographs are denoised for a fresh network (None with ``init``: its own).
    init : str or None
        Checkpoint whose weights and denoising settings start the run.
    resume : str or None
        ``last.pt`` of the run to continue.
    """

    kind: ClassVar[str] = "train"

    output: Path
    data: DataSources
    config: TrainConfig
    denoise: DenoiseSettings | None = None
    init: str | None = None
    resume: str | None = None

    def starting_point(self) -> tuple[AttentionUNet | None, DenoiseSettings, dict | None]:
        """The network to start from (None: a fresh one) and the denoising settings.

        The third item, the parent record, is None: a trained model records none.
        """
        if self.init:
            model, settings, _ = _from_checkpoint(self.init)
            return model, settings, None
        return None, self.denoise or DenoiseSettings(), None

    def fit(
        self, prepared: PreparedRun, metadata: dict, log_fn: Callable[[str], None]
    ) -> TrainResult:
        """Train and write the run's checkpoints."""
        return fit(self, prepared, metadata, log_fn)


@dataclass(frozen=True)
class FinetuneJob:
    """``cryosegnet finetune``: continue training ``model`` on a few labelled micrographs.

    Parameters
    ----------
    output, data, config, resume
        As :class:`TrainJob`'s (``config`` with the fine-tuning defaults).
    model : str or None
        Checkpoint to start from (None: the shipped model).

    Raises
    ------
    ValueError
        Without labelled micrographs (fine-tuning takes no simulated data).
    """

    kind: ClassVar[str] = "finetune"

    output: Path
    data: DataSources
    config: TrainConfig
    model: str | None = None
    resume: str | None = None

    def __post_init__(self) -> None:
        if not (self.data.images or self.data.labels):
            raise ValueError(
                "no training data: fine-tuning needs labelled micrographs, give --images and "
                "--labels"
            )

    def starting_point(self) -> tuple[AttentionUNet | None, DenoiseSettings, dict | None]:
        """The model to fine-tune, its denoising settings and its parent record.

        The parent record is what the fine-tuned checkpoints keep of it
        (:func:`~cryosegnet.training.finetune.parent_record`).
        """
        return _from_checkpoint(self.model)

    def fit(
        self, prepared: PreparedRun, metadata: dict, log_fn: Callable[[str], None]
    ) -> TrainResult:
        """Fine-tune and write the run's checkpoints.

        They record the checkpoint it started from (``prepared.parent``, kept when
        :func:`prepare` read it; :func:`~cryosegnet.training.finetune.finetune_record`).
        """
        from cryosegnet.training.finetune import finetune_record

        assert prepared.parent is not None  # starting_point gave it
        return fit(self, prepared, finetune_record(metadata, prepared.parent), log_fn)


def _from_checkpoint(checkpoint: str | None) -> tuple[AttentionUNet, DenoiseSettings, dict]:
    """A checkpoint's network, denoising settings and parent record (None: the shipped model).

    The parent record is what a model fine-tuned from it keeps
    (:func:`~cryosegnet.training.finetune.parent_record`).
    """
    from cryosegnet.training.finetune import load_starting_model, parent_record

    model, settings, payload, path = load_starting_model(checkpoint)
    return model, settings, parent_record(payload, path)


def fit(
    job: TrainJob | FinetuneJob,
    prepared: PreparedRun,
    metadata: dict,
    log_fn: Callable[[str], None],
) -> TrainResult:
    """Train ``prepared`` (:func:`prepare`) into the job's output: how every job fits.

    Resumes from the job's ``resume`` where it names one; ``metadata`` goes into the
    checkpoints, ``log_fn`` gets one line per epoch.
    """
    from cryosegnet.training.trainer import Trainer

    return Trainer(
        prepared.config,
        prepared.train,
        prepared.validation,
        job.output,
        prepared.settings,
        model=prepared.model,
        metadata=metadata,
        log_fn=log_fn,
    ).fit(job.resume)


def prepare(job: TrainJob | FinetuneJob, note: Callable[[str], None]) -> PreparedRun:
    """Load the job's starting model, gather and denoise its data, make its output folder.

    ``note``: what to tell the user on the way.

    Raises
    ------
    ValueError
        No training data, or none left after the validation split.
    """
    from cryosegnet.training.data import assemble_training_data, simulation_configs

    job.output.mkdir(parents=True, exist_ok=True)
    model, settings, parent = job.starting_point()
    data, config = job.data, job.config
    sim_configs = []
    if data.simulated:
        sim_configs = simulation_configs(
            list(data.sim_difficulties),
            data.sim_size or settings.working_size,
            dict(data.sim_options),
        )
    assembled = assemble_training_data(
        settings,
        images=_as_list(data.images),
        labels=_as_list(data.labels),
        diameter=data.diameter,
        val_images=_as_list(data.val_images),
        val_labels=_as_list(data.val_labels),
        val_fraction=config.val_fraction,
        seed=config.seed,
        simulated=data.simulated,
        sim_configs=sim_configs,
        sim_val=data.sim_val,
        cache=data.cache or job.output / "cache",
        progress=config.progress,
        workers=config.workers,
        note=note,
    )
    if model is not None:  # record what is trained: the starting model's architecture
        from cryosegnet.model.unet import architecture_name

        config = replace(config, arch=architecture_name(model.config))
    return PreparedRun(
        model, settings, config, assembled.train, assembled.validation, assembled.record, parent
    )


def _as_list(items: tuple[str, ...] | None) -> list[str] | None:
    """As the command line gives them (the run's record lists them)."""
    return list(items) if items is not None else None
