"""The picker: micrograph in, particle table out — the whole CryoSegNet pipeline behind one call.

    picker = Picker()                       # shipped U-Net, built-in instance stage
    picks = picker.pick("mic_001.mrc")      # DataFrame: x, y, score, diameter

The same object serves the CLI, a notebook or a cluster script; it holds the loaded models so
a batch pays their start-up cost once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryosegnet.io.micrographs import Micrograph, read_micrograph
from cryosegnet.masks.base import InstanceMaskGenerator
from cryosegnet.model.checkpoint import default_model_path, load_model
from cryosegnet.preprocessing.denoise import DenoiseSettings, denoise

log = logging.getLogger("cryosegnet")

# Score thresholds: SAM's predicted IoU filter is the paper's 0.94 (Algorithm 1, step 1);
# the built-in peak stage scores with the band-passed U-Net map and the watershed with its
# region-mean probability; both were tuned on held-out simulated micrographs
# (bench/tune_threshold.py, seeds 8000+; see BENCHMARKS.md).
DEFAULT_SAM_THRESHOLD = 0.94
DEFAULT_BUILTIN_THRESHOLD = 0.05
DEFAULT_WATERSHED_THRESHOLD = 0.2
DEFAULT_MASK_THRESHOLD = 0.2
# The LoG stage scores in noise standard deviations (masks/log_blobs.py); chosen on held-out
# simulated micrographs (bench/tune_log_threshold.py: best F1 at 1.39, flat over 1.0-1.5).
DEFAULT_LOG_THRESHOLD = 1.5
# Algorithm 1's size window (eq. 2-4) with th = factor * modal-box diagonal. The paper prints
# 0.1, but the authors' code compared working-pixel box sizes with a th computed in original
# pixels, which on their 4k micrographs made the window ~4x wider; 0.4 reproduces the window
# they actually used (0.1 drops a particle whose mask is 2 px short of the mode).
DEFAULT_SIZE_TOLERANCE = 0.4
# Picks whose centre lies closer than this fraction of the diameter to the micrograph edge are
# dropped: they are particles cut by the edge, which experts do not pick and RELION's
# extraction discards, or artefacts of the image border.
DEFAULT_BORDER_FRACTION = 0.25
# Instance stages: SAM when a checkpoint is found (auto) or required (sam); "builtin" is the
# peak finder (masks/peaks.py), "watershed" the threshold + watershed segmentation, "log" the
# training-free dark-blob detector on the denoised image (masks/log_blobs.py; no U-Net).
STAGES = ("auto", "sam", "builtin", "watershed", "log")
DEFAULT_THRESHOLDS = {
    "sam": DEFAULT_SAM_THRESHOLD,
    "builtin": DEFAULT_BUILTIN_THRESHOLD,
    "watershed": DEFAULT_WATERSHED_THRESHOLD,
    "log": DEFAULT_LOG_THRESHOLD,
}


def resolve_device(device: str | None) -> torch.device:
    """``auto``/None picks CUDA when present, else CPU."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class PickResult:
    """Everything the pipeline learnt about one micrograph (picks in original pixels)."""

    picks: pd.DataFrame
    diameter: float | None
    working_shape: tuple[int, int]
    original_shape: tuple[int, int]
    stage: str
    counts: dict[str, int] = field(default_factory=dict)


class Picker:
    """Denoise -> attention U-Net -> instance masks (SAM or built-in) -> Algorithm 1.

    Parameters mirror ``cryosegnet pick``. ``threshold`` is the minimum figure of merit a pick
    must have; a very low value keeps every candidate so picks can be re-thresholded later.

    Examples
    --------
    >>> import numpy as np
    >>> from cryosegnet import Picker
    >>> from cryosegnet.simulation import SimulationConfig, simulate_micrograph
    >>> sim = simulate_micrograph(SimulationConfig(size=256, difficulty="easy"), rng=1)
    >>> picker = Picker(device="cpu", stage="log", diameter=20.0)
    >>> picks = picker.pick(sim.image)          # a micrograph array, a Micrograph or a path
    >>> list(picks.columns)
    ['x', 'y', 'score', 'diameter']
    >>> bool((picks["score"] >= picker.threshold).all())
    True
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        device: str | None = "auto",
        stage: str = "auto",
        sam_checkpoint: str | os.PathLike | None = None,
        sam_model_type: str = "vit_h",
        sam_options: dict | None = None,
        threshold: float | None = None,
        diameter: float | None = None,
        denoise_order: str | None = None,
        mask_threshold: float = DEFAULT_MASK_THRESHOLD,
        size_tolerance: float = DEFAULT_SIZE_TOLERANCE,
        border_fraction: float = DEFAULT_BORDER_FRACTION,
        runtime: str | None = None,
        diameter_per_micrograph: bool = False,
    ) -> None:
        from cryosegnet.postprocessing.algorithm1 import PostprocessSettings

        self.device = resolve_device(device)
        self.border_fraction = float(border_fraction)
        self.model_path = Path(model) if model else default_model_path()
        self.unet, settings, self.checkpoint = load_model(self.model_path, self.device)
        # CPU inference engine (model/onnx_runtime.py): auto/onnx/torch, made on first use.
        self.runtime = runtime
        self._cpu_unet: object = _NOT_MADE
        self._cpu_unet_of: object = self.unet  # the network it stands for: the loaded one
        # A labelled model's particle size, in micrograph pixels (and Å when recorded);
        # checkpoints from before that recorded it in working pixels only.
        self.model_diameter = labelled_diameter(self.checkpoint)
        self.model_diameter_angstrom = labelled_diameter(
            self.checkpoint, "diameter_angstrom_median"
        )
        self.legacy_working_diameter = (
            labelled_diameter(self.checkpoint, LEGACY_DIAMETER_KEY)
            if self.model_diameter is None
            else None
        )
        if denoise_order:
            settings = DenoiseSettings.from_dict({**settings.to_dict(), "order": denoise_order})
        self.denoise_settings = settings
        self.mask_generator, self.stage = self._build_mask_stage(
            stage, sam_checkpoint, sam_model_type, sam_options or {}, mask_threshold
        )
        if threshold is None:
            threshold = DEFAULT_THRESHOLDS[self.stage]
        self.threshold = float(threshold)
        self.postprocess_settings = PostprocessSettings(
            score_threshold=self.threshold,
            diameter_override=diameter,
            tolerance_factor=size_tolerance,
        )
        # diameter_per_micrograph: the caller sets postprocess_settings.diameter_override for
        # each micrograph (an Å diameter converted with its pixel size, picking/batch.py).
        has_size = (
            diameter
            or diameter_per_micrograph
            or self.model_diameter
            or self.legacy_working_diameter
        )
        if self.stage == "log" and not has_size:
            from cryosegnet.errors import SettingsError

            raise SettingsError(
                "the LoG stage cannot estimate the particle size: give --diameter "
                "(micrograph pixels, or Å as 120A), or a model fine-tuned on labelled micrographs"
            )

    def _build_mask_stage(
        self,
        stage: str,
        sam_checkpoint: str | os.PathLike | None,
        sam_model_type: str,
        sam_options: dict,
        mask_threshold: float,
    ) -> tuple[InstanceMaskGenerator, str]:
        from cryosegnet.masks.peaks import PeakMaskGenerator
        from cryosegnet.masks.sam import SamMaskGenerator, find_sam_checkpoint
        from cryosegnet.masks.watershed import WatershedMaskGenerator

        if stage not in STAGES:
            raise ValueError(f"unknown instance stage '{stage}' (use {', '.join(STAGES)})")
        if stage == "watershed":
            return WatershedMaskGenerator(threshold=mask_threshold), "watershed"
        if stage == "log":
            from cryosegnet.masks.log_blobs import LogBlobGenerator

            return LogBlobGenerator(), "log"
        checkpoint = None
        if stage in ("auto", "sam"):
            checkpoint = find_sam_checkpoint(sam_model_type, sam_checkpoint)
            if checkpoint is None and (stage == "sam" or sam_checkpoint):
                from cryosegnet.errors import CheckpointError

                where = sam_checkpoint or f"the SAM cache for {sam_model_type}"
                raise CheckpointError(where, "SAM checkpoint not found (see README: SAM weights)")
        if checkpoint is not None:
            generator = SamMaskGenerator(
                checkpoint, model_type=sam_model_type, device=str(self.device), **sam_options
            )
            return generator, "sam"
        return PeakMaskGenerator(), "builtin"

    # ------------------------------------------------------------------ pipeline steps

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """Denoised uint8 image at the U-Net's working resolution."""
        return denoise(image, self.denoise_settings)

    @torch.inference_mode()
    def probability_maps(self, denoised: list[np.ndarray]) -> list[np.ndarray]:
        """Run the U-Net on same-shaped denoised images in one batch; float32 maps in [0, 1]."""
        if self.device.type == "cpu":
            if self._cpu_unet is _NOT_MADE or self._cpu_unet_of is not self.unet:
                from cryosegnet.model.onnx_runtime import cpu_runner

                # Only the checkpoint's own network is exported; a replaced one runs as is.
                own = self._cpu_unet is _NOT_MADE and self._cpu_unet_of is self.unet
                self._cpu_unet = (
                    cpu_runner(self.unet, self.model_path, self.runtime) if own else None
                )
                self._cpu_unet_of = self.unet
            if self._cpu_unet is not None:  # ONNX Runtime: same maps to ~1e-6, faster
                stack = np.stack(denoised).astype(np.float32)[:, None] / np.float32(255.0)
                logits = torch.from_numpy(self._cpu_unet(stack))  # type: ignore[operator]
                return list(torch.sigmoid(logits).squeeze(1).numpy().astype(np.float32))
        batch = torch.from_numpy(np.stack(denoised)).to(self.device)
        batch = batch.float().div_(255.0).unsqueeze(1)
        use_amp = self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=use_amp):
            logits = self.unet(batch)
        probs = torch.sigmoid(logits.float()).squeeze(1).cpu().numpy()
        return list(probs.astype(np.float32))

    def instances(self, probability: np.ndarray, original_shape: tuple[int, int]) -> PickResult:
        """Instance masks and Algorithm 1 for one probability map."""
        from cryosegnet.postprocessing.algorithm1 import postprocess

        scale = probability.shape[1] / original_shape[1]  # working px per micrograph px
        diameter = self.legacy_working_diameter
        if self.model_diameter:
            diameter = self.model_diameter * scale
        if self.postprocess_settings.diameter_override:
            diameter = self.postprocess_settings.diameter_override * scale
        masks = self.mask_generator.generate(probability, diameter)
        result = postprocess(masks, probability.shape, original_shape, self.postprocess_settings)
        picks = drop_border_picks(result.picks, original_shape, self.border_fraction)
        counts = {
            "candidates": result.n_candidates,
            "after_score": result.n_after_score,
            "after_size": result.n_after_size,
            "after_border": len(picks),
        }
        return PickResult(
            picks=picks,
            diameter=result.diameter,
            working_shape=tuple(probability.shape),
            original_shape=(int(original_shape[0]), int(original_shape[1])),
            stage=self.stage,
            counts=counts,
        )

    # ------------------------------------------------------------------ public API

    def pick(self, micrograph: np.ndarray | Micrograph | str | os.PathLike) -> pd.DataFrame:
        """Pick one micrograph (array, :class:`Micrograph` or path) -> x, y, score, diameter."""
        return self.pick_detailed(micrograph).picks

    def pick_detailed(self, micrograph: np.ndarray | Micrograph | str | os.PathLike) -> PickResult:
        image = _as_array(micrograph)
        return self.pick_many_arrays([image])[0]

    def pick_many_arrays(self, images: list[np.ndarray]) -> list[PickResult]:
        """Pick several images; those with the same working shape share one U-Net batch."""
        denoised = [self.preprocess(image) for image in images]
        return self.pick_denoised(denoised, [image.shape for image in images])

    def pick_denoised(
        self, denoised: list[np.ndarray], original_shapes: list[tuple[int, int]]
    ) -> list[PickResult]:
        results: list[PickResult | None] = [None] * len(denoised)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(denoised):
            by_shape.setdefault(image.shape, []).append(index)
        for indices in by_shape.values():
            if getattr(self.mask_generator, "needs_unet", True):
                maps = self.probability_maps([denoised[i] for i in indices])
            else:  # the stage reads the denoised image itself (LoG): no U-Net pass
                maps = [denoised[i].astype(np.float32) for i in indices]
            for i, probability in zip(indices, maps):
                results[i] = self.instances(probability, original_shapes[i])
        return results  # type: ignore[return-value]


_NOT_MADE = object()  # Picker._cpu_unet before its first use

# Checkpoints written before the diameter was recorded in micrograph pixels.
LEGACY_DIAMETER_KEY = "diameter_working_px_median"


def labelled_diameter(checkpoint: dict, key: str = "diameter_px_median") -> float | None:
    """Particle diameter a model learnt from labelled micrographs only, else None.

    A model fine-tuned (or trained) on labelled micrographs of one protein knows its size from
    the labels; picking with it should not guess the size again. Models that saw simulated
    particles of many sizes (the shipped one) carry no single diameter. ``key`` is the
    training record's field: ``diameter_px_median`` (pixels of the training micrographs as
    read; the picker converts it to each micrograph's working pixels),
    ``diameter_angstrom_median`` (when the pixel size was known) or, for old checkpoints,
    ``LEGACY_DIAMETER_KEY`` (working pixels).
    """
    train = ((checkpoint.get("metadata") or {}).get("data") or {}).get("train") or {}
    diameter = train.get(key)
    if train.get("sources") == ["labelled"] and diameter and np.isfinite(diameter):
        return float(diameter)
    return None


def drop_border_picks(picks: pd.DataFrame, shape: tuple[int, int], fraction: float) -> pd.DataFrame:
    """Remove picks within ``fraction`` x diameter of the edge (no-op without a diameter)."""
    if fraction <= 0 or picks.empty:
        return picks
    margin = fraction * picks["diameter"].to_numpy(float)
    margin = np.nan_to_num(margin, nan=0.0)
    x, y = picks["x"].to_numpy(float), picks["y"].to_numpy(float)
    inside = (x >= margin) & (y >= margin)
    inside &= (x <= shape[1] - 1 - margin) & (y <= shape[0] - 1 - margin)
    return picks[inside].reset_index(drop=True)


def _as_array(micrograph: np.ndarray | Micrograph | str | os.PathLike) -> np.ndarray:
    if isinstance(micrograph, Micrograph):
        return micrograph.data
    if isinstance(micrograph, np.ndarray):
        return micrograph.astype(np.float32, copy=False)
    return read_micrograph(micrograph).data
