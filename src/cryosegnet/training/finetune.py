"""Fine-tuning: adapt a trained U-Net to one protein with a handful of labelled micrographs.

The paper fine-tunes on 20 labelled micrographs per dataset (Supplementary Tables S2, S5).
With so little data the defaults differ from training from scratch: 40 epochs of small
256-px crops (each epoch at least 25 steps, so a single micrograph still trains), a learning
rate of 5e-4 with a cosine decay (half the shipped model's 1e-3), and more of the data kept
for training. The paper's constant 1e-4 for 20 epochs was the default before: on the
validation micrographs of the apoferritin ``train`` split it reached best F1 0.66 / AUPRC
0.57 against 0.69 / 0.65 for this recipe (BENCHMARKS.md, few labels). ``freeze_encoder``
goes further and trains only the decoder, attention gates and head.

The targets are disks of 0.6 x the labelled diameter, not the whole particle: a fine-tuned
model knows its protein's size from the labels, so its map only has to say where the centres
are, and smaller disks keep touching particles apart. On validation micrographs of the
apoferritin ``train`` split this raised best F1 and AUPRC over whole-particle disks, and over
0.4 and 0.25 (BENCHMARKS.md, few labels).

The denoising settings always come from the starting checkpoint: the network only
understands images prepared the way it was trained on.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from cryosegnet.errors import CheckpointError
from cryosegnet.model.checkpoint import default_model_path, load_model
from cryosegnet.model.unet import AttentionUNet, architecture_name
from cryosegnet.preprocessing.denoise import DenoiseSettings
from cryosegnet.training.dataset import TrainingSample
from cryosegnet.training.trainer import TrainConfig, Trainer, TrainResult

FINETUNE_DEFAULTS = {
    "epochs": 40,
    "lr": 5e-4,
    "schedule": "cosine",
    "crop": 256,
    "batch_size": 4,
    "val_fraction": 0.2,
    "target_fraction": 0.6,
}


def finetune_config(**overrides) -> TrainConfig:
    """A :class:`TrainConfig` with the fine-tuning defaults, then ``overrides``."""
    return TrainConfig(**{**FINETUNE_DEFAULTS, **overrides})


class _RoundRecipe(Protocol):
    """A self-training loop's fine-tuning recipe (read-only: its settings are frozen)."""

    @property
    def epochs(self) -> int: ...

    @property
    def steps_per_epoch(self) -> int: ...

    @property
    def lr(self) -> float: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def crop(self) -> int: ...


def round_config(
    recipe: _RoundRecipe, seed: int, device: str, progress: bool, **overrides
) -> TrainConfig:
    """The :class:`TrainConfig` of one round of a self-training loop (adapt, refine).

    ``recipe``'s epochs, steps, learning rate, batch and crop on the fine-tuning defaults, and
    no validation hold-out: the loop has no labels to validate on.

    Parameters
    ----------
    recipe : AdaptSettings or RefineSettings
        The loop's settings.
    seed : int
        This round's random seed.
    device : str
        Where to train.
    progress : bool
        Progress bars.
    **overrides
        Further :class:`TrainConfig` fields.

    Returns
    -------
    TrainConfig
    """
    return finetune_config(
        epochs=recipe.epochs,
        steps_per_epoch=recipe.steps_per_epoch,
        lr=recipe.lr,
        batch_size=recipe.batch_size,
        crop=recipe.crop,
        val_fraction=0.0,
        seed=seed,
        device=device,
        progress=progress,
        **overrides,
    )


def load_starting_model(
    checkpoint: str | os.PathLike | None = None,
) -> tuple[AttentionUNet, DenoiseSettings, dict, Path]:
    """The model to start from: ``checkpoint``, else the shipped default."""
    path = Path(checkpoint) if checkpoint else default_model_path()
    if checkpoint is None and not path.is_file():
        raise CheckpointError(
            path, "no default model is shipped in this install; give --model CHECKPOINT"
        )
    model, denoise, payload = load_model(path)
    return model, denoise, payload, path


def finetune(
    train_samples: list[TrainingSample],
    val_samples: list[TrainingSample],
    out_dir: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    config: TrainConfig | None = None,
    metadata: dict | None = None,
    resume: str | os.PathLike | None = None,
    log_fn=None,
) -> TrainResult:
    """Continue training ``checkpoint`` (default: the shipped model) on the given samples.

    The samples must have been denoised with the checkpoint's settings (see
    :func:`load_starting_model`); the architecture is the checkpoint's.

    Parameters
    ----------
    train_samples : list of TrainingSample
        The user's labelled micrographs, denoised with the checkpoint's settings.
    val_samples : list of TrainingSample
        Micrographs for the per-epoch validation.
    out_dir : str or os.PathLike
        Where ``best.pt``, ``last.pt`` and ``history.json`` go.
    checkpoint : str or os.PathLike, optional
        The model to continue from (default: the shipped one).
    config : TrainConfig, optional
        The recipe (default: :func:`finetune_config`, the fine-tuning defaults).
    metadata : dict, optional
        Stored in the checkpoints.
    resume : str or os.PathLike, optional
        A ``last.pt`` of an interrupted fine-tuning to continue.
    log_fn : callable, optional
        Gets one line per epoch.

    Returns
    -------
    TrainResult
        The checkpoints written, the history and the best epoch.
    """
    model, denoise, payload, path = load_starting_model(checkpoint)
    config = config or finetune_config()
    # Record what is trained: the starting model's architecture, depth included.
    config = replace(config, arch=architecture_name(model.config))
    meta = finetune_record(metadata, parent_record(payload, path))
    return Trainer(config, train_samples, val_samples, out_dir, denoise, model, meta, log_fn).fit(
        resume
    )


def finetune_record(metadata: dict | None, parent: dict) -> dict:
    """What a fine-tuned model's checkpoints record.

    ``metadata``, and the checkpoint it started from (``parent``, :func:`parent_record`).
    """
    return {**(metadata or {}), "kind": "finetune", "parent": parent}


def parent_record(payload: dict, path: Path) -> dict:
    """What a fine-tuned model's checkpoints keep of the checkpoint it started from.

    ``payload``, read from ``path``: its recipe, metrics and data, less the micrograph names.
    """
    parent = payload.get("metadata", {})
    return {
        "path": str(path),
        "recipe": parent.get("recipe"),
        "metrics": parent.get("metrics"),
        "data": {k: v for k, v in (parent.get("data") or {}).items() if k != "names"},
    }
