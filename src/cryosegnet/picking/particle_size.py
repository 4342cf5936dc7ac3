"""One particle size for a batch: the median of the sizes read off a sample of its micrographs.

A session's micrographs hold one protein, so its size is one number. Read off each micrograph
alone, it wobbles with that micrograph's ice and crowding; the median over a handful spread
through the batch does not, and a micrograph whose own estimate is unsure then still gets the
protein's size rather than the U-Net map's guess.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryosegnet.detection.size import SizeEstimate
from cryosegnet.preprocessing.denoise import working_scale

log = logging.getLogger("cryosegnet")


@dataclass(frozen=True)
class BatchParticleSize:
    """The batch's particle diameter in micrograph pixels, and how it was reached."""

    diameter: float
    n_sure: int
    n_sampled: int
    low: float  # smallest and largest sure estimate, micrograph px
    high: float

    def estimate_for(self, shape: tuple[int, int], working_size: int) -> SizeEstimate:
        """The batch size as a sure estimate for a micrograph of ``shape`` (working px)."""
        return SizeEstimate(
            self.diameter * working_scale(shape, working_size), True, float("nan"), scope="batch"
        )

    def describe(self) -> str:
        """One line for the log."""
        return (
            f"particle size: {self.diameter:.1f} px, the median of {self.n_sure} sure "
            f"estimates on {self.n_sampled} micrographs (range {self.low:.0f}-{self.high:.0f} "
            "px); --size-per-micrograph estimates each on its own"
        )


def batch_particle_size(
    picker, paths: list[Path], read, pixel_size_of=None
) -> tuple[BatchParticleSize | None, dict[Path, tuple]]:
    """The batch's particle size, or None where each micrograph must be sized on its own.

    Parameters
    ----------
    picker : Picker
        Decides whether a size is needed at all (:meth:`Picker.size_of` gives None when it is
        given or learnt; :meth:`Picker.sizes_per_blob` when a range is searched blob by blob)
        and how many micrographs to sample (``config.size_estimate``).
    paths : list of Path
        The batch's micrographs; up to ``batch_sample`` of them, evenly spread, are read.
    read : callable
        ``read(path) -> image``: the batch's own reader; a micrograph it cannot read is left
        out of the sample (the batch reports it when it comes to pick it).
    pixel_size_of : callable or None
        ``pixel_size_of(path) -> Å/px or None`` once ``read`` has read it, for a size range in Å.

    Returns
    -------
    BatchParticleSize or None
        None with ``per_micrograph``, when no size is needed or each blob is sized within a
        range, or when fewer than
        ``min_sure_fraction`` of the sample have a sure estimate.
    dict
        The sampled micrographs already read and denoised: path -> (denoised image, shape as
        read, its own size estimate), so the batch does not read them twice.
    """
    config = getattr(picker, "config", None)  # stand-in pickers (tests) have none
    prepared: dict[Path, tuple] = {}
    if config is None or config.size_estimate.per_micrograph or not paths:
        return None, prepared
    if picker.sizes_per_blob():  # each blob is sized within the range on its own micrograph
        return None, prepared
    settings = config.size_estimate
    count = min(len(paths), settings.batch_sample)
    chosen = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, count).round()]
    sure: list[float] = []
    sampled = 0
    for path in dict.fromkeys(chosen):
        try:
            image = read(path)
        except Exception:  # noqa: BLE001 - reported when the batch picks it
            continue
        pixel_size = pixel_size_of(path) if pixel_size_of is not None else None
        estimate = picker.size_of(image, pixel_size)
        if estimate is None:
            return None, prepared
        prepared[path] = (picker.preprocess(image), image.shape, estimate)
        sampled += 1
        if estimate.sure and estimate.scope != "range":  # read off it, not a range's middle
            scale = working_scale(image.shape, picker.denoise_settings.working_size)
            sure.append(estimate.diameter / scale)
    if not sampled or len(sure) < settings.min_sure_fraction * sampled:
        if sampled and config.diameter_range is not None:
            log.info(
                "particle size: a clear scale within %s on %d of %d sampled micrographs only, "
                "so each micrograph is sized on its own, at the range's middle where it shows "
                "none",
                config.diameter_range,
                len(sure),
                sampled,
            )
        elif sampled:
            log.info(
                "particle size: sure on %d of %d sampled micrographs only, so each micrograph "
                "is sized on its own (give --diameter, or a rough range such as 100-160A)",
                len(sure),
                sampled,
            )
        return None, prepared
    result = BatchParticleSize(
        float(np.median(sure)), len(sure), sampled, float(min(sure)), float(max(sure))
    )
    log.info("%s", result.describe())
    return result, prepared
