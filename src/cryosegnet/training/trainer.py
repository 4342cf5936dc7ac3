"""The training loop: Adam on BCE + Dice (paper: lr 1e-4), per-epoch validation, checkpoints.

Each epoch draws random augmented crops whose randomness depends only on (seed, epoch, index),
so a run is reproducible and a resumed run continues exactly where it stopped. ``last.pt``
(written every epoch) carries the optimizer state for ``--resume``; ``best.pt`` is the epoch
with the best validation best-F1. Both are ordinary self-describing checkpoints that ``pick``
accepts.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cryosegnet.errors import SettingsError
from cryosegnet.io.atomic import atomic_path, atomic_write
from cryosegnet.io.jsonsafe import json_safe
from cryosegnet.model.checkpoint import read_checkpoint, save_checkpoint
from cryosegnet.model.device import resolve_device
from cryosegnet.model.unet import AttentionUNet, UNetConfig, config_from_name
from cryosegnet.picking.picker import DEFAULT_PEAK_THRESHOLD
from cryosegnet.preprocessing.denoise import DenoiseSettings
from cryosegnet.training.augment import AugmentSettings, random_crop
from cryosegnet.training.dataset import TrainingSample
from cryosegnet.training.losses import bce_dice_loss
from cryosegnet.training.validation import validate

log = logging.getLogger("cryosegnet")


@dataclass
class TrainConfig:
    """The training recipe; stored in every checkpoint so a run can be repeated."""

    arch: str = "small"
    epochs: int = 50
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" (paper) or "cosine"
    crop: int = 384
    steps_per_epoch: int | None = None  # None: about one pass over every training pixel
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16)
    workers: int = 0
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    # Target disks as a fraction of the particle diameter: 1 is the paper's whole-particle
    # mask; smaller disks mark only the centres, so touching particles stay apart in the map
    # and its peaks sit on the centres (a fine-tuned model knows the diameter from its labels).
    target_fraction: float = 1.0
    freeze_encoder: bool = False
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    # Peak-score threshold of the validation F1: the picker's default, so the log shows
    # the F1 that `cryosegnet pick` would get (best F1 is threshold-free).
    val_threshold: float = DEFAULT_PEAK_THRESHOLD
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.target_fraction <= 1.0:
            raise SettingsError(
                f"--target-fraction must be in (0, 1], got {self.target_fraction:g}"
            )

    def to_dict(self) -> dict:
        """The settings as plain JSON values (stored in every checkpoint)."""
        values = asdict(self)
        values["augment"] = self.augment.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The settings :meth:`to_dict` wrote; keys of other versions are ignored."""
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if isinstance(known.get("augment"), dict):
            aug: dict[str, Any] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in known["augment"].items()
            }
            known["augment"] = AugmentSettings(**aug)
        return cls(**known)


@dataclass
class TrainResult:
    """Where the checkpoints went and how the epochs went."""

    out_dir: Path
    last_path: Path
    best_path: Path
    history: list[dict]
    best: dict


class CropDataset(Dataset):
    """``length`` random crops per epoch; item i of epoch e is fixed by (seed, e, i)."""

    def __init__(
        self,
        samples: list[TrainingSample],
        crop: int,
        length: int,
        seed: int,
        augment: AugmentSettings,
    ) -> None:
        if not samples:
            raise ValueError("no training micrographs")
        self.samples = samples
        self.crop = crop
        self.length = length
        self.seed = seed
        self.augment = augment
        self.epoch = 0
        # Draw micrographs in proportion to their area, so every pixel is equally likely.
        areas = np.array([s.image.size for s in samples], dtype=np.float64)
        self.weights = areas / areas.sum()

    def set_epoch(self, epoch: int) -> None:
        """Seed the crops of ``epoch``, so each epoch draws other crops, reproducibly."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        sample = self.samples[int(rng.choice(len(self.samples), p=self.weights))]
        image, target = random_crop(sample.image, sample.target, self.crop, rng, self.augment)
        return torch.from_numpy(image)[None], torch.from_numpy(target)[None]


MIN_STEPS_PER_EPOCH = 25


def with_target_fraction(samples: list[TrainingSample], fraction: float) -> list[TrainingSample]:
    """``samples`` whose targets are disks of ``fraction`` x the diameter.

    Copies where the fraction differs, so the caller's samples and their cached targets are
    left alone.
    """
    return [
        s if s.target_fraction == fraction else replace(s, target_fraction=fraction, _target=None)
        for s in samples
    ]


def default_steps(samples: list[TrainingSample], crop: int, batch_size: int) -> int:
    """Enough crops to cover every training pixel about once, and at least 25 steps.

    The floor matters for fine-tuning: one labelled 1k micrograph is only ~2 batches of
    crops, and 20 epochs of 2 steps leave the model where it started.
    """
    pixels = sum(s.image.size for s in samples)
    return max(MIN_STEPS_PER_EPOCH, math.ceil(pixels / (crop * crop) / batch_size))


def freeze_encoder(model: AttentionUNet) -> None:
    """Stop gradients through the encoder blocks (fine-tuning keeps the general features)."""
    for parameter in model.encoders.parameters():
        parameter.requires_grad_(False)


def _set_train_mode(model: AttentionUNet, frozen_encoder: bool) -> None:
    model.train()
    if frozen_encoder:
        model.encoders.eval()  # frozen batch-norm statistics stay as trained


def data_summary(samples: list[TrainingSample]) -> dict:
    """What a checkpoint records about its data.

    The particle diameter is in pixels of the micrographs as read (not working pixels, which
    depend on each micrograph's size), and in Å when every micrograph's header gave a pixel
    size.
    """
    d = np.concatenate([s.diameter / s.scale for s in samples]) if samples else np.zeros(0)
    d = d[np.isfinite(d)]
    sizes = [s.pixel_size for s in samples if s.pixel_size is not None and s.pixel_size > 0]
    known = bool(samples) and len(sizes) == len(samples)
    d_angstrom = (
        np.concatenate([s.diameter / s.scale * (s.pixel_size or np.nan) for s in samples])
        if known
        else None
    )
    return {
        "n_micrographs": len(samples),
        "n_particles": int(sum(len(s.x) for s in samples)),
        "sources": sorted({s.source for s in samples}),
        "names": [s.name for s in samples][:200],
        "diameter_px_median": float(np.median(d)) if len(d) else None,
        "pixel_size_median": float(np.median(sizes)) if known else None,
        "diameter_angstrom_median": (
            float(np.nanmedian(d_angstrom)) if d_angstrom is not None and len(d) else None
        ),
    }


class Trainer:
    """Holds model, optimizer and data for one run; :meth:`fit` runs (or resumes) it.

    ``Trainer(config, train_samples, val_samples, out_dir, denoise).fit()`` trains a U-Net.

    Parameters
    ----------
    config : TrainConfig
        The recipe: epochs, steps, batch, crop, learning rate and schedule, augmentation.
    train_samples : list of TrainingSample
        Denoised micrographs with their target masks.
    val_samples : list of TrainingSample
        Micrographs for the per-epoch validation that picks ``best.pt``.
    out_dir : str or os.PathLike
        Where ``best.pt``, ``last.pt`` and ``history.json`` go.
    denoise : DenoiseSettings
        The denoising the samples were made with (stored in the checkpoints).
    model : AttentionUNet, optional
        The network to start from (default: a fresh one of ``config.arch``).
    metadata : dict, optional
        Stored in the checkpoints (the command, the data).
    log_fn : callable, optional
        Gets one line per epoch (default: the log).
    """

    def __init__(
        self,
        config: TrainConfig,
        train_samples: list[TrainingSample],
        val_samples: list[TrainingSample],
        out_dir: str | os.PathLike,
        denoise: DenoiseSettings,
        model: AttentionUNet | None = None,
        metadata: dict | None = None,
        log_fn: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.train_samples = with_target_fraction(train_samples, config.target_fraction)
        self.val_samples = with_target_fraction(val_samples, config.target_fraction)
        self.out_dir = Path(out_dir)
        self.denoise = denoise
        self.metadata = dict(metadata or {})
        self.log = log_fn or log.info
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        self.model = model if model is not None else AttentionUNet(_arch_config(config.arch))
        self.model.to(self.device)
        if config.freeze_encoder:
            freeze_encoder(self.model)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.steps = config.steps_per_epoch or default_steps(
            train_samples, config.crop, config.batch_size
        )
        self.scheduler = None
        if config.schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=max(1, config.epochs * self.steps)
            )
        elif config.schedule != "constant":
            raise ValueError(f"unknown schedule '{config.schedule}' (use constant or cosine)")
        self.amp = bool(config.amp and self.device.type == "cuda")
        self.amp_dtype = (
            torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported() else torch.float16
        )
        use_scaler = self.amp and self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.dataset = CropDataset(
            self.train_samples,
            config.crop,
            self.steps * config.batch_size,
            config.seed,
            config.augment,
        )
        self.history: list[dict] = []
        self.best: dict = {}
        self.start_epoch = 0

    # ------------------------------------------------------------------ checkpoints

    @property
    def last_path(self) -> Path:
        """The checkpoint of the latest epoch (``--resume`` takes it)."""
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        """The checkpoint of the epoch with the best validation F1."""
        return self.out_dir / "best.pt"

    def _metadata(self, metrics: dict, epoch: int) -> dict:
        return {
            **self.metadata,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "epoch": epoch,
            "recipe": self.config.to_dict(),
            "data": {
                **self.metadata.get("data", {}),
                "train": data_summary(self.train_samples),
                "validation": data_summary(self.val_samples),
            },
            "metrics": metrics,
            "history": self.history,
        }

    def _training_state(self, epoch: int) -> dict:
        return {
            "training": {
                "epoch": epoch,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "history": self.history,
                "best": self.best,
                "config": self.config.to_dict(),
                "torch_rng": torch.get_rng_state(),
            }
        }

    def resume(self, path: str | os.PathLike) -> None:
        """Load weights, optimizer and progress from a ``last.pt`` of an earlier run."""
        payload = read_checkpoint(path)
        state = payload.get("training")
        if not state:
            raise ValueError(f"{path}: no training state to resume (use last.pt of a run)")
        self.model.load_state_dict(payload["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if state.get("torch_rng") is not None:
            torch.set_rng_state(state["torch_rng"])
        self.history = list(state.get("history", []))
        self.best = dict(state.get("best", {}))
        self.start_epoch = int(state["epoch"])

    # ------------------------------------------------------------------ loop

    def _loader(self) -> DataLoader:
        return DataLoader(
            self.dataset,
            batch_size=self.config.batch_size,
            shuffle=False,  # items are already random and seeded
            num_workers=self.config.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=False,
            persistent_workers=False,
        )

    def train_epoch(self, epoch: int) -> float:
        """Train one epoch; its mean loss."""
        from tqdm import tqdm

        self.dataset.set_epoch(epoch)
        _set_train_mode(self.model, self.config.freeze_encoder)
        losses = []
        bar = tqdm(
            self._loader(),
            total=self.steps,
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
            unit="step",
            disable=not self.config.progress,
            leave=False,
        )
        for images, targets in bar:
            images = images.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                logits = self.model(images)
            loss = bce_dice_loss(logits, targets, self.config.bce_weight, self.config.dice_weight)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {float(loss)} at epoch {epoch + 1}")
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scheduler is not None:
                self.scheduler.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        return float(np.mean(losses))

    def _is_better(self, metrics: dict) -> bool:
        """Validation best F1 decides.

        Validation loss breaks ties; without validation, the training loss decides.
        """
        if not self.best:
            return True
        if "val_best_f1" in metrics:
            key = (metrics["val_best_f1"], -metrics["val_loss"])
            best = (self.best.get("val_best_f1", -1.0), -self.best.get("val_loss", math.inf))
            return key > best
        return metrics["train_loss"] < self.best.get("train_loss", math.inf)

    def fit(self, resume: str | os.PathLike | None = None) -> TrainResult:
        """Run the remaining epochs; last.pt every epoch, best.pt whenever validation improves.

        Parameters
        ----------
        resume : str or os.PathLike, optional
            A ``last.pt`` to continue from, optimizer and schedule included.

        Returns
        -------
        TrainResult
            The checkpoints written, the history and the best epoch.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume is not None:
            self.resume(resume)
            self.log(f"resumed from {resume} after epoch {self.start_epoch}")
        if not self.val_samples:
            self.log("no validation micrographs: best.pt follows the training loss")
        if self.start_epoch >= self.config.epochs:
            self.log(f"nothing to do: {self.start_epoch} of {self.config.epochs} epochs done")
        for epoch in range(self.start_epoch, self.config.epochs):
            started = time.perf_counter()
            train_loss = self.train_epoch(epoch)
            metrics = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "lr": self.optimizer.param_groups[0]["lr"],
            }
            if self.val_samples:
                metrics.update(
                    validate(
                        self.model,
                        self.val_samples,
                        self.device,
                        self.amp,
                        self.config.val_threshold,
                    )
                )
            metrics["seconds"] = round(time.perf_counter() - started, 2)
            self.history.append(metrics)
            improved = self._is_better(metrics)
            if improved:
                self.best = dict(metrics)
            meta = self._metadata(metrics, epoch + 1)
            if improved:
                save_checkpoint(self.best_path, self.model, self.denoise, meta)
            state = self._training_state(epoch + 1)
            save_checkpoint(self.last_path, self.model, self.denoise, meta, extra=state)
            self._write_history()
            self.log(_epoch_line(metrics, self.config.epochs, improved))
        if not self.best_path.exists() and self.last_path.exists():
            payload = read_checkpoint(self.last_path)
            payload.pop("training", None)
            with atomic_path(self.best_path) as tmp:
                torch.save(payload, tmp)
        return TrainResult(self.out_dir, self.last_path, self.best_path, self.history, self.best)

    def _write_history(self) -> None:
        with atomic_write(self.out_dir / "history.json") as handle:
            json.dump(json_safe(self.history), handle, indent=1)
            handle.write("\n")


def _arch_config(arch: str | UNetConfig) -> UNetConfig:
    if isinstance(arch, UNetConfig):
        return arch
    return config_from_name(arch)  # a preset, or "width4" / "width4-depth3"


def _epoch_line(m: dict, epochs: int, improved: bool) -> str:
    text = f"epoch {m['epoch']}/{epochs}  loss {m['train_loss']:.4f}"
    if "val_loss" in m:
        at = f"@{m['val_threshold']:g}" if "val_threshold" in m else ""
        text += (
            f"  val loss {m['val_loss']:.4f}  F1{at} {m['val_f1']:.3f}"
            f"  best F1 {m['val_best_f1']:.3f}  AUPRC {_f(m['val_auprc'])}"
            f"  Dice {m['val_dice']:.3f}"
        )
    text += f"  ({m['seconds']:.0f} s){'  *' if improved else ''}"
    return text


def _f(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"


def train(*args: Any, resume: str | os.PathLike | None = None, **kwargs: Any) -> TrainResult:
    """Train (or resume) a U-Net in one call: ``Trainer(*args, **kwargs).fit(resume)``.

    The notebook's entry point; :class:`Trainer` documents the arguments once, so they are
    not repeated here.

    Parameters
    ----------
    *args, **kwargs
        :class:`Trainer`'s arguments: ``config``, ``train_samples``, ``val_samples``,
        ``out_dir``, ``denoise`` and optionally ``model``, ``metadata``, ``log_fn``.
    resume : str or os.PathLike, optional
        As :meth:`Trainer.fit`'s: a ``last.pt`` to continue from.

    Returns
    -------
    TrainResult
        What :meth:`Trainer.fit` returns.
    """
    return Trainer(*args, **kwargs).fit(resume)
