"""Every instance stage the picker can run, in one table: its factory, default threshold and
whether it sizes its own masks (what it reads, the map or the denoised image, its class says:
``needs_unet``, ``needs_image``). ``--stage``, its help, the default thresholds and the
picker all read this table, so a new stage is one new module plus one line here.

SAM is listed for its threshold and help; it is built from a checkpoint by the picker
(:meth:`~cryosegnet.picking.picker.Picker`), not by a factory without arguments.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from cryosegnet.masks.base import InstanceMaskGenerator
from cryosegnet.postprocessing.algorithm1 import PostprocessSettings


@dataclass(frozen=True)
class StageSpec:
    """One instance stage.

    Attributes
    ----------
    factory : str or None
        ``"module:Class"`` of the stage, built with its defaults and imported only when used
        (None: built elsewhere, from a checkpoint).
    default_threshold : float
        Minimum figure of merit of a pick, on the stage's own score scale.
    sizes_itself : bool
        The stage's masks carry their own sizes (SAM), so no particle size is read off the
        micrograph for it.
    help : str
        One clause for ``--stage``'s help.
    """

    factory: str | None
    default_threshold: float
    sizes_itself: bool
    help: str

    def build(self) -> InstanceMaskGenerator:
        """The stage with its defaults."""
        if self.factory is None:
            raise ValueError("this stage is built from a checkpoint, not from its defaults")
        module, name = self.factory.split(":")
        return getattr(importlib.import_module(module), name)()


# Default thresholds. SAM: the paper's predicted-IoU filter (Algorithm 1, step 1). Hybrid:
# noise standard deviations plus the weighted U-Net contrast, best F1 at 1.52 on the
# apoferritin train split (bench/studies/hybrid_stage.py). Peaks: the band-passed U-Net map,
# chosen on 24 held-out simulated micrographs (bench/studies/tune_threshold.py). LoG: noise
# standard deviations (bench/studies/tune_log_threshold.py: best F1 at 1.39, flat over
# 1.0-1.5).
STAGE_REGISTRY: dict[str, StageSpec] = {
    "sam": StageSpec(
        None,
        PostprocessSettings.score_threshold,
        True,
        "'sam': Segment Anything's automatic masks on the U-Net map (needs a SAM checkpoint)",
    ),
    "hybrid": StageSpec(
        "cryosegnet.masks.hybrid:HybridBlobGenerator",
        1.5,
        False,
        "'hybrid': dark blobs of the denoised image scored with the U-Net map (needs no "
        "download; scores in noise standard deviations)",
    ),
    "peaks": StageSpec(
        "cryosegnet.masks.peaks:PeakMaskGenerator",
        0.05,
        False,
        "'peaks': the peak finder on the U-Net map ('builtin' is its former name)",
    ),
    "log": StageSpec(
        "cryosegnet.masks.log_blobs:LogBlobGenerator",
        1.5,
        False,
        "'log': the training-free dark-blob detector on the denoised image (no U-Net; needs "
        "--diameter or a range; scores in noise standard deviations)",
    ),
}
