"""Self-describing checkpoints: weights plus the architecture and preprocessing they need.

A checkpoint is a plain dict saved with ``torch.save`` and loaded with ``weights_only=True``
(no pickled code runs), so a user can inspect or share it safely.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from cryosegnet.errors import CheckpointError
from cryosegnet.io.atomic import atomic_path
from cryosegnet.model.unet import AttentionUNet, UNetConfig
from cryosegnet.preprocessing.denoise import DenoiseSettings

FORMAT = "cryosegnet-unet"
FORMAT_VERSION = 1
DEFAULT_MODEL_NAME = "default.pt"


def default_model_path() -> Path:
    """The U-Net shipped inside the package (used when no ``--model`` is given)."""
    return Path(str(resources.files("cryosegnet") / "weights" / DEFAULT_MODEL_NAME))


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a checkpoint file (hex): which weights a record refers to.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint.

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    path: str | os.PathLike,
    model: AttentionUNet,
    denoise: DenoiseSettings,
    metadata: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write atomically; ``metadata`` is a free-form record (training data, recipe, metrics)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": model.config.to_dict(),
        "denoise": denoise.to_dict(),
        "metadata": metadata or {},
        "state_dict": state,
    }
    if extra:
        payload.update(extra)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate the checkpoint dict; one-line :class:`CheckpointError` on failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "U-Net checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            path, "not a readable PyTorch checkpoint (corrupt or another file type)"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(path, "not a cryosegnet U-Net checkpoint (no architecture record)")
    return payload


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[AttentionUNet, DenoiseSettings, dict]:
    """Rebuild the U-Net a checkpoint describes; returns (model in eval mode, denoise, payload)."""
    payload = read_checkpoint(path)
    architecture, state = payload.get("architecture"), payload.get("state_dict")
    denoise = payload.get("denoise") or {}
    if not isinstance(architecture, dict) or not isinstance(state, dict):
        raise CheckpointError(path, "incomplete checkpoint (no architecture record or no weights)")
    if not isinstance(denoise, dict):
        raise CheckpointError(path, "invalid checkpoint (preprocessing record is not a table)")
    try:
        config = UNetConfig.from_dict(architecture)
        # Built on the meta device: no memory is spent on an architecture the weights then
        # contradict (a corrupt record could ask for terabytes), nor on a random init.
        with torch.device("meta"):
            model = AttentionUNet(config)
    except Exception as exc:
        raise CheckpointError(path, f"invalid architecture record {architecture}") from exc
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(
            path, "weights do not match the architecture the checkpoint declares"
        ) from exc
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise CheckpointError(path, "weights do not match the architecture the checkpoint declares")
    broken = [
        name
        for name, tensor in state.items()
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not tensor.isfinite().all()
    ]
    if broken:  # a diverged training run: such a network maps every micrograph to nonsense
        raise CheckpointError(
            path,
            f"weights are not finite (NaN or inf in {len(broken)} tensor(s), first {broken[0]}): "
            "the training that wrote it diverged; use an earlier checkpoint",
        )
    model.float().to(device).eval()
    return model, DenoiseSettings.from_dict(denoise), payload


def export_model(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    note: str | None = None,
    keep_history: bool = False,
) -> dict[str, Any]:
    """Write a checkpoint for picking only: weights and their description, no training state.

    A run's ``last.pt`` carries the optimizer, scheduler and RNG state for ``--resume``
    (about twice the weights' size, and nothing ``pick`` needs). The exported file keeps the
    architecture, denoising settings, weights and the training record (``metadata``), minus the
    per-epoch ``history`` unless ``keep_history``; ``note`` is stored as
    ``metadata["shipped_as"]`` (why this checkpoint was chosen). The source is validated by
    rebuilding its model first, so a corrupt file is never exported. Returns the payload
    written.
    """
    load_model(source)  # raises CheckpointError on anything pick could not load
    payload = read_checkpoint(source)
    exported = {k: v for k, v in payload.items() if k != "training"}
    metadata = dict(exported.get("metadata") or {})
    if not keep_history:
        metadata.pop("history", None)
    if note:
        metadata["shipped_as"] = note
    exported["metadata"] = metadata
    with atomic_path(destination) as tmp:
        torch.save(exported, tmp)
    return exported
