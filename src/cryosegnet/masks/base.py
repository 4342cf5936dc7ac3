"""The interface shared by the instance-mask stages (SAM and the built-in peak/watershed).

Both turn the U-Net's particle probability map into individual particles, so the
post-processing and the picker never need to know which stage ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class InstanceMask:
    """One candidate particle in working-resolution pixels.

    ``bbox`` is (x, y, width, height) with x = first column, y = first row and width/height
    counting pixels, so the box centre is x + (width - 1) / 2. (SAM reports x_max - x_min as the
    width; its converter adds one.) ``score`` is SAM's predicted IoU, or the built-in stage's own
    confidence in [0, 1].
    """

    bbox: tuple[float, float, float, float]
    score: float
    area: int
    centroid: tuple[float, float] | None = None  # (x, y) in working pixels, if known


class InstanceMaskGenerator(Protocol):
    """Anything that splits a probability map into particle instances."""

    name: str

    def generate(
        self, probability: np.ndarray, diameter: float | None = None
    ) -> list[InstanceMask]:
        """``probability`` is float32 in [0, 1], shape (H, W) at working resolution.

        ``diameter`` is the particle diameter in working pixels when the user gave one; stages
        that need a particle size use it instead of estimating one, others ignore it.

        Two optional class attributes tell the picker what else a stage reads:
        ``needs_unet = False`` (the LoG stage) is handed the denoised image instead of the map
        and the U-Net does not run; ``needs_image = True`` (the hybrid stage) is handed the
        denoised image too, as ``generate(probability, diameter, image=denoised)``;
        ``sizes_per_blob = True`` (the blob stages) takes a size range as well,
        ``generate(..., size_range=(low, high))`` in working px, and sizes each blob within it
        (``diameter`` is then the micrograph's typical size, for what works at one scale).
        """
        ...

    def describe(self) -> str:
        """One line for the log: the stage and its settings."""
        ...


def particle_boxes(
    x: np.ndarray, y: np.ndarray, scores: np.ndarray, diameter: float | np.ndarray
) -> list[InstanceMask]:
    """One ``diameter``-px box per centre (working px): the instances of the stages that find
    particle centres rather than outlines (peaks, LoG, hybrid). ``diameter``: one for all, or
    one per centre (blobs sized one by one within a range)."""
    sizes = np.broadcast_to(np.asarray(diameter, dtype=float), (len(scores),))
    masks = []
    for cx, cy, score, size in zip(x, y, scores, sizes):
        d = float(size)
        half = (d - 1) / 2
        masks.append(
            InstanceMask(
                bbox=(float(cx) - half, float(cy) - half, d, d),
                score=float(score),
                area=int(round(np.pi * d * d / 4)),
                centroid=(float(cx), float(cy)),
            )
        )
    return masks
