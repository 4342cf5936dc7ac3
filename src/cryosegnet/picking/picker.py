"""The picker: micrograph in, particle table out — the whole CryoSegNet pipeline behind one call.

    picker = Picker()                       # shipped U-Net, built-in instance stage
    picks = picker.pick("mic_001.mrc")      # DataFrame: x, y, score, diameter

The same object serves the CLI, a notebook or a cluster script; it holds the loaded models so
a batch pays their start-up cost once.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryosegnet.detection.size import SizeEstimate, estimate_size
from cryosegnet.errors import CheckpointError, CryoSegNetError, SettingsError
from cryosegnet.io.micrographs import Micrograph, read_micrograph
from cryosegnet.masks.base import InstanceMaskGenerator
from cryosegnet.model.checkpoint import default_model_path, load_model
from cryosegnet.model.device import resolve_device  # re-exported: callers import it here
from cryosegnet.picking.config import (
    DEFAULT_THRESHOLDS,
    STAGES,
    PickerConfig,
    check_pickable_size,
    inapplicable,
)
from cryosegnet.postprocessing.algorithm1 import PostprocessSettings
from cryosegnet.preprocessing.denoise import DenoiseSettings, denoise

log = logging.getLogger("cryosegnet")

# Every default lives in picking/config.py; these names stay importable from here.
DEFAULT_SAM_THRESHOLD = DEFAULT_THRESHOLDS["sam"]
DEFAULT_PEAK_THRESHOLD = DEFAULT_THRESHOLDS["peaks"]
DEFAULT_LOG_THRESHOLD = DEFAULT_THRESHOLDS["log"]


@dataclass
class PickResult:
    """Everything the pipeline learnt about one micrograph (picks in original pixels)."""

    picks: pd.DataFrame
    diameter: float | None
    working_shape: tuple[int, int]
    original_shape: tuple[int, int]
    stage: str
    counts: dict[str, int] = field(default_factory=dict)
    # Dark-blob excess over bright blobs in standard errors (postprocessing/empty_micrographs),
    # computed with ``skip_empty``; ``empty``: the micrograph failed it and keeps no pick.
    evidence: float | None = None
    empty: bool = False
    # Where the particle size came from: "given" (--diameter), "model" (a fine-tuned model's
    # labels), "micrograph" (read off its own pixels, detection/size.py), "batch" (the median
    # of that over a sample of the batch, picking/particle_size.py), "map" (the U-Net
    # map's blobs, when the micrograph's estimate was unsure) or "stage" (a stage object
    # that sizes its own masks).
    diameter_source: str = "given"
    size_sure: bool = True
    # Contamination, carbon and thick ice with their margin (postprocessing/bad_regions), at a
    # few pixels per particle over the whole micrograph (``enlarge_mask`` brings it to any
    # shape); None when not computed (``mask_bad_regions`` off, no image or no diameter).
    bad_regions: np.ndarray | None = None


class Picker:
    """Denoise -> attention U-Net -> instance masks (SAM or built-in) -> Algorithm 1.

    Parameters
    ----------
    model : path or None
        U-Net checkpoint; None loads the model shipped with cryosegnet.
    device : str or None
        ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1`` ...
    config : PickerConfig or None
        Every setting that changes picks, with its default (:mod:`cryosegnet.picking.config`).
    sam_checkpoint : path or None
        SAM weights for the ``sam``/``auto`` stages (else found in the SAM cache).
    runtime : str or None
        CPU inference engine: ``auto``/``onnx``/``torch`` (``$CRYOSEGNET_RUNTIME``).
    diameter_per_micrograph : bool
        The caller gives each micrograph its size with the call (:meth:`told_size`, e.g. an Å
        diameter converted with its pixel size, picking/batch.py), so none is needed here.
    **settings
        Any :class:`PickerConfig` field, overriding ``config`` (``stage="peaks"``,
        ``threshold=0.2``, ``diameter=180``); ``sam_options`` (a dict of
        :class:`~cryosegnet.masks.sam.SamSettings` fields) overrides SAM's options.

    Raises
    ------
    SettingsError
        For settings that cannot work together (the LoG stage without any particle size).
    CheckpointError
        When the U-Net or a required SAM checkpoint cannot be loaded.

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
        config: PickerConfig | None = None,
        *,
        sam_checkpoint: str | os.PathLike | None = None,
        runtime: str | None = None,
        diameter_per_micrograph: bool = False,
        **settings,
    ) -> None:
        device_ = resolve_device(device)
        model_path = Path(model) if model else default_model_path()
        unet, denoise_settings, checkpoint = load_model(model_path, device_)
        config = _config_with(config, settings)
        stage = self._build_mask_stage(
            config, sam_checkpoint, device_, fine_tuned=labelled_diameter(checkpoint) is not None
        )
        if sam_checkpoint and stage[1] != "sam":
            raise SettingsError(f"--sam-checkpoint: the instance stage is {stage[1]}, not sam")
        self._assemble(
            unet,
            denoise_settings,
            stage,
            config,
            device_,
            checkpoint=checkpoint,
            model_path=model_path,
            runtime=runtime,
            diameter_per_micrograph=diameter_per_micrograph,
        )

    @classmethod
    def from_parts(
        cls,
        unet: torch.nn.Module,
        denoise_settings: DenoiseSettings,
        stage: InstanceMaskGenerator | str = "peaks",
        config: PickerConfig | None = None,
        device: str | None = "cpu",
        checkpoint: dict | None = None,
        *,
        model_path: str | os.PathLike | None = None,
        runtime: str = "torch",
    ) -> Picker:
        """A picker from a network and a stage already in memory (tests, benches, notebooks).

        Parameters
        ----------
        unet : torch.nn.Module
            The U-Net (run with PyTorch; the ONNX Runtime path needs a checkpoint file).
        denoise_settings : DenoiseSettings
            How micrographs are denoised for this network.
        stage : InstanceMaskGenerator or str
            An instance stage object (any :class:`InstanceMaskGenerator`, e.g. the watershed
            baseline of the benches), or a stage name built as :class:`Picker` would.
        config : PickerConfig or None
            Settings; ``config.stage`` is replaced by the given stage's name, and a stage
            object other than the named stages needs ``config.threshold``.
        device : str or None
            Where the U-Net runs.
        checkpoint : dict or None
            The checkpoint record (its ``metadata`` gives a fine-tuned model's particle size).
        model_path : path or None
            The checkpoint file ``unet`` was loaded from: the ONNX Runtime path exports it
            from there (``runtime``); None runs the network with PyTorch.
        runtime : str
            CPU inference engine with ``model_path``: ``torch``, ``onnx`` or ``auto``.

        Returns
        -------
        Picker
        """
        picker = cls.__new__(cls)
        device_ = resolve_device(device)
        config = config or PickerConfig()
        if isinstance(stage, str):
            config = config.with_changes(stage=stage)
            fine_tuned = labelled_diameter(checkpoint or {}) is not None
            generator = picker._build_mask_stage(config, None, device_, fine_tuned=fine_tuned)
        else:
            generator = (stage, str(getattr(stage, "name", type(stage).__name__)))
        picker._assemble(
            unet.to(device_).eval(),
            denoise_settings,
            generator,
            config,
            device_,
            checkpoint=checkpoint or {},
            model_path=Path(model_path) if model_path else None,
            runtime=runtime if model_path else "torch",
        )
        return picker

    def _assemble(
        self,
        unet: torch.nn.Module,
        denoise_settings: DenoiseSettings,
        stage: tuple[InstanceMaskGenerator, str],
        config: PickerConfig,
        device: torch.device,
        *,
        checkpoint: dict,
        model_path: Path | None,
        runtime: str | None,
        diameter_per_micrograph: bool = False,
    ) -> None:
        self.device = device
        self.unet, self.checkpoint, self.model_path = unet, checkpoint, model_path
        # CPU inference engine (model/onnx_runtime.py): auto/onnx/torch, made on first use.
        self.runtime = runtime
        self._cpu_unet: object = _NOT_MADE
        self._cpu_unet_of: object = self.unet  # the network it stands for: the loaded one
        # A labelled model's particle size, in micrograph pixels (and Å when recorded);
        # checkpoints from before that recorded it in working pixels only.
        self.model_diameter = labelled_diameter(checkpoint)
        self.model_diameter_angstrom = labelled_diameter(checkpoint, "diameter_angstrom_median")
        self.legacy_working_diameter = (
            labelled_diameter(checkpoint, LEGACY_DIAMETER_KEY)
            if self.model_diameter is None
            else None
        )
        if config.denoise_order:
            denoise_settings = DenoiseSettings.from_dict(
                {**denoise_settings.to_dict(), "order": config.denoise_order}
            )
        self.denoise_settings = denoise_settings
        self.mask_generator, self.stage = stage
        known = self.stage in STAGES  # else a stage object given to from_parts
        useless = inapplicable(config, self.stage) if known else []
        if useless:
            raise SettingsError(
                f"{', '.join(useless)}: option(s) of the SAM stage, but the instance stage is "
                f"{self.stage} (give --stage sam with a SAM checkpoint, or drop them)"
            )
        if not known and config.threshold is None:
            raise ValueError(f"stage {self.stage!r} has no default threshold: give one")
        # Every setting is held once, here; threshold, border_fraction and
        # postprocess_settings read it (a built picker is never changed).
        self.config = config.with_changes(stage=self.stage) if known else config
        has_size = (
            config.diameter
            or config.diameter_range
            or diameter_per_micrograph
            or self.model_diameter
            or self.legacy_working_diameter
        )
        recipe = (checkpoint.get("metadata") or {}).get("recipe") or {}
        target_fraction = float(recipe.get("target_fraction", 1.0))
        if target_fraction < 1.0 and not has_size:
            # Its map marks particle centres only, so a size read off the map is too small.
            raise SettingsError(
                f"this model was trained on centre targets ({target_fraction:g} x the "
                "particle diameter) and records no particle size: give --diameter"
            )
        if self.stage == "log" and not has_size:
            raise SettingsError(
                "the LoG stage cannot estimate the particle size: give --diameter "
                "(micrograph pixels, or Å as 120A), or a model fine-tuned on labelled micrographs"
            )

    @property
    def threshold(self) -> float:
        """The figure of merit a pick must reach: the config's, else the stage's default."""
        return self.config.threshold_for(self.stage)

    @property
    def border_fraction(self) -> float:
        """Picks closer than this fraction of their diameter to the edge are dropped."""
        return float(self.config.border_fraction)

    @property
    def postprocess_settings(self) -> PostprocessSettings:
        """Algorithm 1's settings, from the config.

        A diameter for one call goes with the call (:meth:`told_size`).
        """
        return PostprocessSettings(
            score_threshold=self.threshold,
            diameter_override=self.config.diameter,
            tolerance_factor=self.config.size_tolerance,
        )

    @staticmethod
    def _build_mask_stage(
        config: PickerConfig,
        sam_checkpoint: str | os.PathLike | None,
        device: torch.device,
        fine_tuned: bool = False,
    ) -> tuple[InstanceMaskGenerator, str]:
        """The instance stage ``config.stage`` names: (generator, its canonical name).

        ``auto`` without a SAM checkpoint is the hybrid stage for a general model, whose map
        alone does not rank real particles well, and the peak finder for a model fine-tuned on
        labelled micrographs (``fine_tuned``: its checkpoint records the labelled size), whose
        map has learnt the user's particles.
        """
        from cryosegnet.masks.registry import STAGE_REGISTRY
        from cryosegnet.masks.sam import SamMaskGenerator, find_sam_checkpoint

        stage = config.stage
        spec = STAGE_REGISTRY.get(stage)
        if spec is not None and spec.factory is not None:  # a stage built from its defaults
            return spec.build(), stage
        checkpoint = find_sam_checkpoint(config.sam_model_type, sam_checkpoint)
        if checkpoint is None and (stage == "sam" or sam_checkpoint):
            where = sam_checkpoint or f"the SAM cache for {config.sam_model_type}"
            raise CheckpointError(where, "SAM checkpoint not found (see README: SAM weights)")
        if checkpoint is not None:
            generator = SamMaskGenerator(
                checkpoint,
                model_type=config.sam_model_type,
                device=str(device),
                settings=config.sam,
            )
            return generator, "sam"
        fallback = "peaks" if fine_tuned else "hybrid"  # "auto" without a SAM checkpoint
        return STAGE_REGISTRY[fallback].build(), fallback

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

                # Only the checkpoint's own network is exported (it is cached by the checkpoint's
                # file); a replaced one, or one without a file (from_parts), runs as is.
                own = self._cpu_unet is _NOT_MADE and self._cpu_unet_of is self.unet
                self._cpu_unet = (
                    cpu_runner(self.unet, self.model_path, self.runtime)  # type: ignore[arg-type]
                    if own and self.model_path is not None
                    else None
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

    def instances(
        self,
        probability: np.ndarray,
        original_shape: tuple[int, int],
        denoised: np.ndarray | None = None,
        size: SizeEstimate | None = None,
    ) -> PickResult:
        """Instance masks and Algorithm 1 for one probability map.

        ``denoised``: the image it was computed from, which the hybrid stage reads too (the
        LoG stage's "map" is the denoised image itself). ``size``: the micrograph's own size
        estimate, from :meth:`estimate_size` on the micrograph as read, else made from
        ``denoised``.
        """
        from cryosegnet.postprocessing.algorithm1 import postprocess
        from cryosegnet.postprocessing.bad_regions import drop_bad_region_picks
        from cryosegnet.postprocessing.centring import centre_picks

        diameter, source, sure = self._working_diameter(probability, original_shape, denoised, size)
        scale = probability.shape[1] / original_shape[1]  # working px per micrograph px
        size_range = self._blob_range(size, scale)
        extra: dict = {} if size_range is None else {"size_range": size_range}
        if getattr(self.mask_generator, "needs_image", False):
            if denoised is None:
                raise ValueError(f"the {self.stage} stage needs the denoised image: pass denoised")
            extra["image"] = denoised
        masks = self.mask_generator.generate(probability, diameter, **extra)
        settings = self.postprocess_settings
        if size_range is not None:  # each pick keeps the size of its own blob
            settings = dataclasses.replace(settings, sizes_from_masks=True)
        if size is not None and size.scope == "given":  # a copy for this call: no mutation
            settings = dataclasses.replace(settings, diameter_override=size.diameter / scale)
        result = postprocess(masks, probability.shape, original_shape, settings)
        picks = result.picks
        # The micrograph's one size (centring, bad regions, the log): with a range, its typical
        # size, read off it as a whole; a single blob's best scale is a rougher guess.
        micrograph_diameter = result.diameter if size_range is None else diameter / scale
        counts = {
            "candidates": result.n_candidates,
            "after_score": result.n_after_score,
            "after_size": result.n_after_size,
        }
        if self.config.centre_picks and denoised is not None:
            # Before the border and bad-region steps: they judge where the picks end up.
            picks = centre_picks(picks, denoised, micrograph_diameter, original_shape)
            counts["after_centring"] = len(picks)
        picks = drop_border_picks(picks, original_shape, self.border_fraction)
        counts["after_border"] = len(picks)
        bad_regions = None
        if self.config.mask_bad_regions and denoised is not None:
            picks, bad_regions = drop_bad_region_picks(
                picks, denoised, micrograph_diameter, original_shape
            )
            counts["after_bad_regions"] = len(picks)
        evidence, empty = None, False
        if self.config.skip_empty:
            evidence, empty = self._empty_test(probability, diameter, denoised)
            if empty:
                picks = picks.iloc[0:0]
            counts["after_empty"] = len(picks)
        return PickResult(
            picks=picks,
            diameter=micrograph_diameter,
            working_shape=tuple(probability.shape),
            original_shape=(int(original_shape[0]), int(original_shape[1])),
            stage=self.stage,
            counts=counts,
            evidence=evidence,
            empty=empty,
            diameter_source=source,
            size_sure=sure,
            bad_regions=bad_regions,
        )

    def _working_diameter(
        self,
        probability: np.ndarray,
        original_shape: tuple[int, int],
        denoised: np.ndarray | None,
        size: SizeEstimate | None,
    ) -> tuple[float | None, str, bool]:
        """(particle diameter in working px, where it came from, whether it is sure).

        The one place a pick's size is decided: the size given (``--diameter``), else the one a
        fine-tuned model learnt, else the micrograph's own estimate when it is sure, else the
        U-Net map's. Every stage then picks with it the same way, whatever its source.
        """
        from cryosegnet.masks.peaks import estimate_diameter

        scale = probability.shape[1] / original_shape[1]  # working px per micrograph px
        if self.postprocess_settings.diameter_override:
            return self.postprocess_settings.diameter_override * scale, "given", True
        if size is not None and size.scope == "given":  # given for this call (told_size)
            return size.diameter, "given", True
        if self.config.diameter_range is None:  # a range given overrides a learnt size
            if self.model_diameter:
                return self.model_diameter * scale, "model", True
            if self.legacy_working_diameter:
                return self.legacy_working_diameter, "model", True
        if self._sizes_itself():  # a stage object of the benches, or SAM: masks carry sizes
            return None, "stage", False
        if size is None and denoised is not None:
            size = self._estimate_in_range(denoised, scale, None)
        if size is not None and size.sure:
            return size.diameter, size.scope, True
        return estimate_diameter(probability), "map", False

    def estimate_size(self, image: np.ndarray, pixel_size: float | None = None) -> SizeEstimate:
        """The particle size read off a micrograph as read (working px; detection/size.py).

        The raw micrograph, shrunk to the working size, keeps the particles' own contrast;
        the denoised image's local contrast equalisation blurs the scale the estimate reads.
        With a size range (``config.diameter_range``; ``pixel_size`` converts one in Å) only
        the range is searched, and its geometric middle is taken where the micrograph shows
        no clear scale in it.
        """
        from cryosegnet.preprocessing.denoise import resize, working_shape

        image = np.asarray(image, dtype=np.float32)
        small = resize(image, working_shape(image.shape, self.denoise_settings.working_size))
        return self._estimate_in_range(small, small.shape[1] / image.shape[1], pixel_size)

    def _estimate_in_range(
        self, working: np.ndarray, scale: float, pixel_size: float | None
    ) -> SizeEstimate:
        """:func:`estimate_size` of a working-size image within the given range, if any.

        ``scale``: working px per micrograph px.
        """
        size_range = self.config.diameter_range
        if size_range is None:
            return estimate_size(working, self.config.size_estimate)
        low, high = size_range.in_pixels(pixel_size)
        bounds = (low * scale, high * scale)
        estimate = estimate_size(working, self.config.size_estimate, bounds)
        if estimate.sure:
            return dataclasses.replace(estimate, bounds=bounds)
        middle = math.sqrt(bounds[0] * bounds[1])
        return SizeEstimate(middle, True, float("nan"), scope="range", bounds=bounds)

    def sizes_per_blob(self) -> bool:
        """Whether a size range is searched blob by blob.

        It is when a range is given and the stage can (the blob stages, ``sizes_per_blob``);
        other stages pick at one size read off within it.
        """
        has_range = self.config.diameter_range is not None
        return has_range and bool(getattr(self.mask_generator, "sizes_per_blob", False))

    def _blob_range(self, size: SizeEstimate | None, scale: float) -> tuple[float, float] | None:
        """The size range in working px for a stage that sizes each blob, else None.

        The micrograph's size estimate carries it (an Å range converted with the micrograph's
        pixel size, :meth:`size_of`); without one, a range in pixels needs no pixel size.
        """
        if not self.sizes_per_blob():
            return None
        if size is not None and size.bounds is not None:
            return size.bounds
        low, high = self.config.diameter_range.in_pixels(None)  # type: ignore[union-attr]
        return low * scale, high * scale

    def _empty_test(
        self, probability: np.ndarray, diameter: float | None, denoised: np.ndarray | None
    ) -> tuple[float, bool]:
        """(evidence, empty) of one micrograph, at the LoG scale the hybrid stage would use."""
        from cryosegnet.masks.hybrid import HybridSettings
        from cryosegnet.masks.peaks import estimate_diameter
        from cryosegnet.postprocessing.empty_micrographs import looks_empty, particle_evidence

        if denoised is None:
            raise ValueError("the empty-micrograph test needs the denoised image: pass denoised")
        size = diameter or getattr(self.mask_generator, "last_diameter", None)
        if not (size and np.isfinite(size) and size > 0):
            size = estimate_diameter(probability)
        evidence = particle_evidence(denoised, HybridSettings().log_diameter(size))
        return evidence, looks_empty(evidence)

    # ------------------------------------------------------------------ public API
    # pick -> the picks table; pick_result -> everything learnt about one micrograph;
    # pick_results -> the same for several (one U-Net batch per working shape); pick_denoised
    # -> the same from images already denoised (batch pipelines that read and denoise ahead).
    # preprocess, probability_maps and instances are the pipeline's steps.

    def pick(self, micrograph: np.ndarray | Micrograph | str | os.PathLike) -> pd.DataFrame:
        """Pick one micrograph (array, :class:`Micrograph` or path) -> x, y, score, diameter."""
        return self.pick_result(micrograph).picks

    def pick_result(self, micrograph: np.ndarray | Micrograph | str | os.PathLike) -> PickResult:
        """Pick one micrograph -> :class:`PickResult` (picks, diameter, shapes, stage counts)."""
        return self.pick_results([micrograph])[0]

    def pick_detailed(self, micrograph: np.ndarray | Micrograph | str | os.PathLike) -> PickResult:
        """Deprecated name of :meth:`pick_result`, kept for one release."""
        import warnings

        warnings.warn(
            "Picker.pick_detailed is deprecated: use Picker.pick_result",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.pick_result(micrograph)

    def pick_results(
        self, micrographs: list[np.ndarray | Micrograph | str | os.PathLike]
    ) -> list[PickResult]:
        """Pick several micrographs -> one :class:`PickResult` each, in order.

        Those with the same working shape share one U-Net batch.
        """
        read = [_as_micrograph(micrograph) for micrograph in micrographs]
        images = [data for data, _ in read]
        for i, (micrograph, image) in enumerate(zip(micrographs, images, strict=True)):
            # The rule the command line applies: an image too small gives nonsense picks.
            check_pickable_size(_name_of(micrograph, i), image.shape, self)
        denoised = [self.preprocess(image) for image in images]
        sizes = [self.size_of(data, pixel_size) for data, pixel_size in read]
        return self.pick_denoised(denoised, [image.shape for image in images], sizes)

    def told_size(self, diameter: float, shape: tuple[int, int]) -> SizeEstimate:
        """A size given for one micrograph of ``shape``, to pass to :meth:`pick_denoised`.

        ``diameter`` is in its pixels (e.g. an Å diameter converted with its own pixel size);
        the picker itself is not changed, so one picker serves every micrograph at once.
        """
        from cryosegnet.preprocessing.denoise import working_shape

        # The scale instances() uses: the working image's width over the micrograph's.
        scale = working_shape(shape, self.denoise_settings.working_size)[1] / shape[1]
        return SizeEstimate(float(diameter) * scale, True, float("nan"), scope="given")

    def size_of(self, image: np.ndarray, pixel_size: float | None = None) -> SizeEstimate | None:
        """:meth:`estimate_size` where the picks need it, else None.

        Needed when no size is given, nor learnt unless a range is given; ``pixel_size``
        (Å/px) converts a range in Å.
        """
        if self.postprocess_settings.diameter_override:
            return None
        learnt = self.model_diameter or self.legacy_working_diameter
        if (learnt and self.config.diameter_range is None) or self._sizes_itself():
            return None
        return self.estimate_size(image, pixel_size)

    def _sizes_itself(self) -> bool:
        """The stage's masks carry their own sizes (SAM, or a stage object of the benches)."""
        from cryosegnet.masks.registry import STAGE_REGISTRY

        spec = STAGE_REGISTRY.get(self.stage)
        return spec is None or spec.sizes_itself

    def pick_denoised(
        self,
        denoised: list[np.ndarray],
        original_shapes: list[tuple[int, int]],
        sizes: list[SizeEstimate | None] | None = None,
    ) -> list[PickResult]:
        """Pick images already denoised by :meth:`preprocess` -> one :class:`PickResult` each.

        ``original_shapes``: each micrograph's shape as read; ``sizes``: their
        :meth:`size_of`, else estimated from the denoised images.
        """
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
                if not np.isfinite(probability).all():  # peaks of NaN are confident nonsense
                    raise CryoSegNetError(
                        "the U-Net's probability map is not finite (NaN or inf): the model "
                        "is broken; pick with another model"
                    )
                size = sizes[i] if sizes is not None else None
                results[i] = self.instances(probability, original_shapes[i], denoised[i], size)
        return results  # type: ignore[return-value]


_NOT_MADE = object()  # Picker._cpu_unet before its first use

# Training sources that carry one protein's size: labels, or the pseudo-labels of a model
# adapted to one dataset (training/adapt.py). Decoys (micrographs with no particle) may sit
# beside them: they add no size of their own.
ONE_PROTEIN_SOURCES = frozenset({"labelled", "pseudo"})

# Checkpoints written before the diameter was recorded in micrograph pixels.
LEGACY_DIAMETER_KEY = "diameter_working_px_median"


def _config_with(config: PickerConfig | None, settings: dict) -> PickerConfig:
    """``config`` (default: all defaults) with keyword overrides.

    ``sam_options`` is a dict of SAM settings. ``TypeError`` names an unknown keyword.
    """
    import dataclasses

    config = config or PickerConfig()
    settings = dict(settings)
    sam_options = settings.pop("sam_options", None) or {}
    known = {f.name for f in dataclasses.fields(PickerConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"Picker() got unknown setting(s) {', '.join(unknown)}")
    if sam_options:
        settings["sam"] = dataclasses.replace(settings.get("sam", config.sam), **sam_options)
    return config.with_changes(**settings) if settings else config


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
    sources = set(train.get("sources") or [])
    one_protein = bool(sources & ONE_PROTEIN_SOURCES) and sources <= ONE_PROTEIN_SOURCES | {"decoy"}
    if one_protein and diameter and np.isfinite(diameter):
        return float(diameter)
    return None


def learnt_from_labels(checkpoint: dict | None) -> bool:
    """True for a model whose training read the user's labelled micrographs only.

    ``cryosegnet finetune`` (or ``train``) on labels records the source ``labelled``; the
    shipped model learnt from simulations, and the refinement loop and self-training record
    ``pseudo``. A labelled model's map knows what the labels taught it, which the refinement
    loop's radial filter adds to its own response
    (:attr:`~cryosegnet.training.refine_loop.RefineSettings.labelled_map_weight`).

    Parameters
    ----------
    checkpoint : dict or None
        The checkpoint as read.

    Returns
    -------
    bool
    """
    train = (((checkpoint or {}).get("metadata") or {}).get("data") or {}).get("train") or {}
    sources = set(train.get("sources") or [])
    return "labelled" in sources and sources <= {"labelled", "decoy"}


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


def _name_of(micrograph: np.ndarray | Micrograph | str | os.PathLike, index: int) -> str:
    """What an error names: the micrograph's path, else its place in the list."""
    if isinstance(micrograph, Micrograph):
        return str(micrograph.path)
    if isinstance(micrograph, np.ndarray):
        return f"micrograph {index} (array)"
    return str(micrograph)


def _as_micrograph(
    micrograph: np.ndarray | Micrograph | str | os.PathLike,
) -> tuple[np.ndarray, float | None]:
    """(image, its pixel size in Å/px when known) of a micrograph given any way."""
    if isinstance(micrograph, np.ndarray):
        return micrograph.astype(np.float32, copy=False), None
    if not isinstance(micrograph, Micrograph):
        micrograph = read_micrograph(micrograph)
    return micrograph.data, micrograph.pixel_size
