"""Built-in instance stage: dark blobs of the denoised micrograph, scored with the U-Net's help.

On real micrographs the two built-in signals fail in different ways. Peaks of the U-Net map
(masks/peaks.py) sit off-centre and in the gaps between crowded particles, because a network
trained on simulations paints its map between dark objects as readily as on them. Dark blobs
of the denoised image (masks/log_blobs.py, the detector RELION's ``--LoG`` uses) sit on the
particles, but their response ranks a particle and a noise blob of the same darkness alike.
This stage takes its candidates from the second and adds the first to the score:

    score = LoG response in noise units + ``unet_weight`` x U-Net band-passed map at the blob

so a pick must be dark at the particle scale, and is ranked higher where the network also sees
a particle. The LoG part keeps the score in units that mean the same on every micrograph (the
response's robust spread), so one default threshold serves every micrograph.

The particle's visible dark core is smaller than the box an expert draws round it, so the
LoG scale is ``log_scale`` x the particle diameter, whichever way the diameter was found
(``--diameter``, a fine-tuned model, or the picker's estimate from the micrograph): one code
path, so an estimate that equals the true size picks exactly as the told size does. The picks
carry the particle diameter, not the LoG scale.

Given a size range (``--diameter 100-160A``), the blobs are found over the LoG scale space
spanning it (:func:`~cryosegnet.masks.log_blobs.dark_blobs_over_scales`) and each pick carries
the particle diameter of its own best scale; the U-Net term is read at the micrograph's typical
size. One scale is the special case of that search, so a told size runs the same code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from cryosegnet.masks.base import InstanceMask, particle_boxes
from cryosegnet.masks.log_blobs import ScaleSpace, dark_blobs_over_scales
from cryosegnet.masks.peaks import PeakSettings, estimate_diameter
from cryosegnet.preprocessing.filters import gaussian_filter, on_shrunk_copy


@dataclass(frozen=True)
class HybridSettings:
    """Parameters of the hybrid stage (fractions of the particle diameter; score weight)."""

    # LoG diameter / particle diameter: a particle's dark core is smaller than its box
    # (chosen on the apoferritin train split and simulated fields, bench/studies/hybrid_stage.py).
    log_scale: float = 0.7
    unet_weight: float = 5.0  # score = LoG noise units + weight x U-Net band-passed map
    suppression_fraction: float = PeakSettings.suppression_fraction
    scale_space: ScaleSpace = field(default_factory=ScaleSpace)  # a size range, blob by blob

    def __post_init__(self) -> None:
        for name in ("log_scale", "suppression_fraction"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if not (np.isfinite(self.unet_weight) and self.unet_weight >= 0):
            raise ValueError(f"unet_weight must be >= 0, got {self.unet_weight}")

    def log_diameter(self, diameter: float) -> float:
        """The LoG diameter for particles of ``diameter`` px."""
        return float(diameter) * self.log_scale

    def to_dict(self) -> dict:
        return asdict(self)


class HybridBlobGenerator:
    """Dark blobs of the denoised image, scored by their darkness plus the U-Net's evidence."""

    name = "hybrid"
    needs_unet = True
    needs_image = True  # the picker passes the denoised image beside the U-Net map
    sizes_per_blob = True  # a size range is searched blob by blob

    def __init__(self, settings: HybridSettings | None = None) -> None:
        self.settings = settings or HybridSettings()
        self.last_diameter: float | None = None  # particle diameter on the last map (working px)

    def describe(self) -> str:
        """One line for the log: which stage ran, with what."""
        return "built-in hybrid stage: dark blobs of the denoised image, scored with the U-Net map"

    def generate(
        self,
        probability: np.ndarray,
        diameter: float | None = None,
        *,
        image: np.ndarray | None = None,
        size_range: tuple[float, float] | None = None,
    ) -> list[InstanceMask]:
        """Candidates for one micrograph, in working pixels.

        Parameters
        ----------
        probability : ndarray
            The U-Net map, float in [0, 1], (H, W).
        diameter : float or None
            Particle diameter in working px (the picker gives it, told or estimated); None
            falls back to the map's estimate
            (:func:`~cryosegnet.masks.peaks.estimate_diameter`). With ``size_range``, the
            micrograph's typical size, at which the U-Net term is read.
        image : ndarray
            The denoised micrograph the map was computed from (same shape; dark particles).
        size_range : tuple of float or None
            (smallest, largest) particle diameter in working px: each blob is sized within
            it (:class:`~cryosegnet.masks.log_blobs.ScaleSpace`); None: every blob has
            ``diameter``.

        Returns
        -------
        list of InstanceMask
            One particle-sized box per blob, scored as the module docstring says.

        Raises
        ------
        ValueError
            Without the denoised image, or when the two inputs differ in shape.
        """
        if image is None:
            raise ValueError("the hybrid stage needs the denoised image beside the U-Net map")
        prob = np.nan_to_num(np.asarray(probability, dtype=np.float32), nan=0.0)
        img = np.nan_to_num(np.asarray(image, dtype=np.float32))
        if prob.ndim != 2 or img.shape != prob.shape:
            raise ValueError(
                f"the denoised image {img.shape} and the U-Net map {prob.shape} must be the "
                "same 2-D shape"
            )
        s = self.settings
        told = bool(diameter and np.isfinite(diameter) and diameter > 0)
        d = float(diameter) if told else estimate_diameter(prob)  # type: ignore[arg-type]
        self.last_diameter = None
        if not (np.isfinite(d) and d > 0):
            return []
        self.last_diameter = d
        sizes = np.array([d]) if size_range is None else s.scale_space.diameters(*size_range)
        x, y, darkness, log_sizes = dark_blobs_over_scales(
            img, [s.log_diameter(size) for size in sizes], sizes * s.suppression_fraction
        )
        band = self._band(prob, d)
        rows = np.clip(y, 0, prob.shape[0] - 1)
        cols = np.clip(x, 0, prob.shape[1] - 1)
        scores = darkness + s.unet_weight * band[rows, cols]
        blob_sizes = d if size_range is None else log_sizes / s.log_scale
        return particle_boxes(x, y, scores, blob_sizes)

    @staticmethod
    def _band(probability: np.ndarray, diameter: float) -> np.ndarray:
        """The peak finder's band-pass of the map (core minus local background,
        :func:`~cryosegnet.masks.peaks.band_pass`), its wide background Gaussian computed on a
        shrunk copy: here it only weighs the score, and that is 4x cheaper on a 4k map."""
        peak = PeakSettings()
        core = gaussian_filter(probability, max(diameter * peak.smooth_fraction, 1.0))
        wide = diameter * peak.background_fraction
        background = on_shrunk_copy(probability, wide, gaussian_filter)
        return core - background
