"""SAM instance stage: Meta's automatic mask generator run on the U-Net map (paper, Methods 2.2).

SAM is not applied to the micrograph (it finds few particles there) but to the U-Net's
probability map, min-max scaled to 8 bits and replicated to RGB, where particles are clean blobs.

Checkpoints are Meta's published files, found (``find_sam_checkpoint``) from, in order: an
explicit path (``--sam-checkpoint``), the ``CRYOSEGNET_SAM_CHECKPOINT`` environment variable, or
the cache directory ``$XDG_CACHE_HOME/cryosegnet/sam/`` (default ``~/.cache/cryosegnet/sam/``)
holding the file under Meta's name (``sam_vit_h_4b8939.pth`` etc.). A path that is a directory
is searched for Meta's file name. Missing, corrupt or wrong-type files raise a one-line
:class:`CheckpointError` before any large model is built.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cryosegnet.errors import CheckpointError
from cryosegnet.masks.base import InstanceMask

ENV_VAR = "CRYOSEGNET_SAM_CHECKPOINT"
MODEL_TYPES = ("vit_h", "vit_l", "vit_b")
CHECKPOINT_NAMES = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
}
# image-encoder width and number of transformer blocks of each published SAM
ENCODER_SHAPES = {"vit_h": (1280, 32), "vit_l": (1024, 24), "vit_b": (768, 12)}


@dataclass(frozen=True)
class SamSettings:
    """``SamAutomaticMaskGenerator`` options; defaults are the paper's (= SAM's own)."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def sam_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cryosegnet/sam`` (``~/.cache/cryosegnet/sam`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cryosegnet" / "sam"


def _check_model_type(model_type: str) -> str:
    if model_type not in MODEL_TYPES:
        choices = ", ".join(MODEL_TYPES)
        raise ValueError(f"unknown SAM model type '{model_type}' (use one of {choices})")
    return model_type


def find_sam_checkpoint(
    model_type: str = "vit_h", explicit: str | os.PathLike | None = None
) -> Path | None:
    """Where the SAM checkpoint for ``model_type`` is configured, or ``None`` if nowhere.

    An explicit path or the environment variable counts as configured even if the file is
    missing (the loader then reports it); the cache directory only counts if the file exists.
    A configured directory is searched for Meta's file name for ``model_type``.
    """
    name = CHECKPOINT_NAMES[_check_model_type(model_type)]
    configured = explicit if explicit not in (None, "") else os.environ.get(ENV_VAR) or None
    if configured is not None:
        path = Path(configured).expanduser()
        return path / name if path.is_dir() else path
    cached = sam_cache_dir() / name
    return cached if cached.is_file() else None


def _encoder_shape(state: dict[str, Any]) -> tuple[int, int] | None:
    """(width, number of blocks) of the image encoder a SAM state dict holds."""
    pos = state.get("image_encoder.pos_embed")
    if not isinstance(pos, torch.Tensor) or pos.ndim != 4:
        return None
    blocks = {
        int(m.group(1))
        for key in state
        if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", key)) is not None
    }
    return int(pos.shape[-1]), len(blocks)


def read_sam_state_dict(
    path: str | os.PathLike, model_type: str, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Load a SAM checkpoint safely and check it is the declared ``model_type``."""
    _check_model_type(model_type)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        # otherwise torch.load fails and the file would be blamed as corrupt
        raise ValueError("device 'cuda' requested but CUDA is not available (use --device cpu)")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            path,
            f"SAM checkpoint not found (download {CHECKPOINT_NAMES[model_type]} from Meta's "
            f"segment-anything release, or run without SAM to use the built-in stage)",
        )
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except PermissionError as exc:
        raise CheckpointError(path, "SAM checkpoint is not readable (permission denied)") from exc
    except Exception as exc:
        raise CheckpointError(
            path, "not a readable PyTorch checkpoint (corrupt, truncated or another file type)"
        ) from exc
    if isinstance(state, dict):  # fine-tuning scripts often wrap the weights
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict) and "image_encoder.pos_embed" not in state:
                state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(path, "not a SAM checkpoint (no state dict inside)")
    shape = _encoder_shape(state)
    if shape is None:
        raise CheckpointError(path, "not a SAM checkpoint (no image_encoder.pos_embed weights)")
    expected = ENCODER_SHAPES[model_type]
    if shape != expected:
        found = next((t for t, s in ENCODER_SHAPES.items() if s == shape), None)
        what = (
            f"a SAM {found} checkpoint"
            if found
            else f"an image encoder of width {shape[0]} with {shape[1]} blocks (no SAM type)"
        )
        hint = f"; use --sam-model-type {found}" if found else ""
        raise CheckpointError(
            path,
            f"found {what} but --sam-model-type is {model_type} "
            f"(expects width {expected[0]} with {expected[1]} blocks){hint}",
        )
    return state


def load_sam(
    path: str | os.PathLike, model_type: str = "vit_h", device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Build ``sam_model_registry[model_type]`` (no checkpoint) and load the checked weights.

    The model is built on the ``meta`` device and the loaded tensors are assigned into it, so
    ViT-H costs one copy of its 2.5 GB of weights instead of two, and no time is spent on a
    random initialisation that would be overwritten.
    """
    from segment_anything import sam_model_registry

    state = read_sam_state_dict(path, model_type, device)
    with torch.device("meta"):
        model = sam_model_registry[model_type]()
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        missing = sum(1 for k in model.state_dict() if k not in state)
        raise CheckpointError(
            path,
            f"weights do not fit SAM {model_type} ({missing} missing tensors or mismatched shapes)",
        ) from exc
    unset = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if unset:  # a tensor the checkpoint format does not carry: never run on garbage
        raise CheckpointError(path, f"SAM {model_type} checkpoint leaves {unset[0]} unset")
    return model.to(device).eval()


def probability_to_rgb(probability: np.ndarray) -> np.ndarray:
    """Min-max scale a map to uint8 and replicate it to 3 channels (what SAM expects)."""
    prob = np.nan_to_num(np.asarray(probability, dtype=np.float32), nan=0.0)
    lo, hi = float(prob.min()), float(prob.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    gray = np.round((prob - lo) * scale).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def records_to_masks(records: list[dict[str, Any]]) -> list[InstanceMask]:
    """Convert SAM records to :class:`InstanceMask` (score = predicted IoU).

    SAM's XYWH box has ``w = x_max - x_min`` (inclusive pixel indices); we add 1 so widths
    count pixels like the watershed stage's, and the centre is ``x + (w - 1) / 2``.
    """
    masks = []
    for rec in records:
        x, y, w, h = (float(v) for v in rec["bbox"])
        if rec.get("area", 1) <= 0:  # empty mask, SAM reports a (0, 0, 0, 0) box
            continue
        masks.append(
            InstanceMask(
                bbox=(x, y, w + 1.0, h + 1.0),
                score=float(rec["predicted_iou"]),
                area=int(rec["area"]),
                centroid=None,
            )
        )
    return masks


class SamMaskGenerator:
    """SAM's automatic mask generator behind the :class:`InstanceMaskGenerator` interface."""

    name = "sam"

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        model_type: str = "vit_h",
        device: str | torch.device = "cpu",
        *,
        model: torch.nn.Module | None = None,
        settings: SamSettings | None = None,
        **options: Any,
    ) -> None:
        """``settings`` (default :class:`SamSettings`, the paper's) with any field overridden
        by ``options`` (``points_per_side=16``); an unknown option is a ``TypeError``."""
        from segment_anything import SamAutomaticMaskGenerator

        self.model_type = _check_model_type(model_type)
        self.settings = replace(settings or SamSettings(), **options)
        if model is None:
            path = find_sam_checkpoint(model_type, checkpoint)
            if path is None:
                raise CheckpointError(
                    sam_cache_dir() / CHECKPOINT_NAMES[model_type],
                    f"no SAM checkpoint configured (pass --sam-checkpoint, set {ENV_VAR}, "
                    "or place Meta's file here)",
                )
            model = load_sam(path, model_type, device)
            self.checkpoint: Path | None = path
        else:
            self.checkpoint = Path(checkpoint) if checkpoint else None
            model = model.to(device).eval()
        self.model = model
        # uncompressed RLE: we only need boxes, and hundreds of full-size boolean masks would
        # cost hundreds of MB
        self._generator = SamAutomaticMaskGenerator(
            model, output_mode="uncompressed_rle", **self.settings.to_dict()
        )

    @classmethod
    def from_model(
        cls, model: torch.nn.Module, device: str | torch.device = "cpu", **options: Any
    ) -> SamMaskGenerator:
        """Wrap an already-built ``segment_anything.modeling.Sam`` (tests, notebooks)."""
        return cls(model=model, device=device, **options)

    def describe(self) -> str:
        """One line for the log: which stage ran, with what."""
        source = str(self.checkpoint) if self.checkpoint else "in-memory model"
        return f"SAM {self.model_type} ({source})"

    def generate(
        self, probability: np.ndarray, diameter: float | None = None
    ) -> list[InstanceMask]:
        prob = np.asarray(probability)
        if prob.ndim != 2:
            raise ValueError(f"probability map must be 2-D, got shape {prob.shape}")
        finite = np.nan_to_num(prob.astype(np.float32), nan=0.0)
        if float(finite.max()) <= float(finite.min()):
            return []  # flat map: nothing to segment, and SAM would return noise
        with torch.inference_mode():
            records = self._generator.generate(probability_to_rgb(finite))
        return records_to_masks(records)
