"""The picker's settings: every default of :class:`~cryosegnet.picking.picker.Picker` and of
``cryosegnet pick``, defined once.

The command line reads its defaults and help from here, the docs quote them from here, and each
result's manifest records the settings that made it, so a default changed here changes
everywhere. The stage-specific settings keep their own dataclasses next to their stage
(:class:`~cryosegnet.masks.sam.SamSettings`, :class:`~cryosegnet.masks.peaks.PeakSettings`);
:class:`PickerConfig` holds what the pipeline around the stage needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

from cryosegnet.detection.size import SizeEstimateSettings
from cryosegnet.errors import MicrographError, SettingsError
from cryosegnet.masks.registry import STAGE_REGISTRY
from cryosegnet.masks.sam import SamSettings
from cryosegnet.picking.units import SizeRange
from cryosegnet.postprocessing.algorithm1 import PostprocessSettings
from cryosegnet.preprocessing.denoise import working_shape

# Instance stages (masks/registry.py). "auto": SAM when a checkpoint is found, else the hybrid
# stage (the peak finder for a model fine-tuned on labelled micrographs).
STAGES = ("auto", *STAGE_REGISTRY)
# Names accepted for one release after a rename: the peak finder was called "builtin".
STAGE_ALIASES = {"builtin": "peaks"}

# Default score thresholds, by stage (each stage's own scale; masks/registry.py says why).
DEFAULT_THRESHOLDS = {name: spec.default_threshold for name, spec in STAGE_REGISTRY.items()}

# Settings that only the SAM stage uses: given with another stage they would do nothing.
SAM_ONLY = ("size_tolerance", "sam_model_type", "sam")

# Physical ranges of sizes. Outside them the picks are nonsense, not particles: a 1-px
# "particle" is every noise speck (--diameter 1 gave over 100 000 picks), and one wider than
# half the micrograph cannot be picked more than once or twice.
MIN_DIAMETER_PX = 4.0  # micrograph pixels
MAX_DIAMETER_FRACTION = 0.5  # of the micrograph's short side (checked per micrograph)
DIAMETER_ANGSTROM_RANGE = (20.0, 2000.0)  # a small protein to a large virus
PIXEL_SIZE_RANGE = (0.1, 20.0)  # Å/px: super-resolution to heavily binned

# Smallest short side (micrograph pixels as read) that pick accepts. A micrograph is enlarged
# to the U-Net's working size (1024 px on the long side for the shipped model), so one under
# 128 px is blown up more than 8x: its "particles" are interpolation blur a few original pixels
# wide (a 64x64 image gave hundreds of 1.5-px picks). Real micrographs are thousands of pixels.
MIN_PICK_SIDE = 128
# Smallest short side of the working image (after scaling the long side to the model's working
# size): the U-Net halves the image five times (2**5 = 32), and below that its deepest level
# has no pixel left and the reflect padding cannot run.
MIN_WORKING_SIDE = 32


def check_range(
    name: str, value: float | None, low: float | None, high: float | None, unit: str = ""
) -> None:
    """Refuse ``value`` (None: not given) outside ``[low, high]``, in one line with the range.

    Parameters
    ----------
    name : str
        What the value is (an option: ``--angpix``).
    value : float or None
        The value; None passes.
    low, high : float or None
        The range's ends (None: open).
    unit : str, optional
        The unit the range is in (``px``, ``Å``, ``Å/px``).

    Raises
    ------
    SettingsError
        (a ``ValueError``) for a value that is not finite or lies outside the range.
    """
    if value is None:
        return
    value = float(value)
    unit = f" {unit}" if unit else ""
    if low is not None and high is not None:
        what = f"the range {low:g}-{high:g}{unit}"
    elif low is not None:
        what = f"the range >= {low:g}{unit}"
    else:
        what = f"the range <= {high:g}{unit}"
    inside = math.isfinite(value) and (low is None or value >= low)
    inside = inside and (high is None or value <= high)
    if not inside:
        raise SettingsError(f"{name} {value:g}{unit} is outside {what} that picking accepts")


def canonical_stage(stage: str) -> str:
    """The stage's current name (an alias is mapped); ``ValueError`` for an unknown stage."""
    name = STAGE_ALIASES.get(str(stage), str(stage))
    if name not in STAGES:
        raise ValueError(f"unknown instance stage '{stage}' (use {', '.join(STAGES)})")
    return name


@dataclass(frozen=True)
class PickerConfig:
    """What the picker does around its U-Net, with every default.

    Parameters
    ----------
    stage : str
        Instance stage, one of :data:`STAGES` (``builtin`` is accepted for ``peaks``).
    threshold : float or None
        Minimum figure of merit of a pick (``score >= threshold``); None takes the stage's
        default from :data:`DEFAULT_THRESHOLDS`.
    diameter : float or None
        Particle diameter in micrograph pixels; None takes a fine-tuned model's labelled size,
        else the stage estimates it per micrograph.
    size_tolerance : float
        Algorithm 1's size window for SAM's masks: keep masks within ``factor`` x the modal box
        diagonal of the modal size (the default and why it is not the paper's printed 0.1:
        :class:`~cryosegnet.postprocessing.algorithm1.PostprocessSettings`).
    border_fraction : float
        Picks closer than this fraction of the diameter to the edge are dropped: particles cut
        by the edge, which experts do not pick and RELION's extraction discards.
    denoise_order : str or None
        ``fast`` (shrink, then filter) or ``paper`` (filter at full size); None: the model's.
    sam_model_type : str
        SAM architecture of the checkpoint: ``vit_h`` (the paper's), ``vit_l`` or ``vit_b``.
    sam : SamSettings
        SAM's automatic-mask options (the paper's, which are SAM's own defaults).
    skip_empty : bool
        Keep no pick on a micrograph whose dark blobs do not outnumber its bright ones
        (:mod:`~cryosegnet.postprocessing.empty_micrographs`): empty holes and bare ice. Off by
        default: crowded fields of very weak particles fail the test too.
    size_estimate : SizeEstimateSettings
        How the particle size is read off each micrograph when it is neither given nor learnt
        (:mod:`~cryosegnet.detection.size`): the scale of greatest dark skew, trusted only with
        a clear peak; else the U-Net map's estimate is used and the run says it is unsure.
    diameter_range : SizeRange or None
        A rough particle size (``--diameter 100-160A``): the size is read off the micrographs
        within it, else its geometric middle is used. Not with ``diameter``.
    mask_bad_regions : bool
        Drop picks on contamination, carbon and thick ice and on the rim of such regions
        (:mod:`~cryosegnet.postprocessing.bad_regions`), a dark-blob picker's worst false
        positives. On by default; ``cryosegnet pick --keep-bad-regions`` keeps them.
    centre_picks : bool
        Move each pick to the centre of the particle it sits on, where a disk of the particle's
        size is darkest against its surround (:mod:`~cryosegnet.postprocessing.centring`): a
        dark-blob pick on a hollow particle lies on its shell. Off by default (it needs the
        particle's outer size, and it moves filled particles' centred picks when the size is
        larger than their dark core); ``cryosegnet pick --centre-picks`` turns it on.

    Raises
    ------
    ValueError
        For an unknown stage, a non-finite number or a value out of range.

    Examples
    --------
    >>> config = PickerConfig(stage="builtin", diameter=120)
    >>> config.stage, config.threshold_for("peaks")
    ('peaks', 0.05)
    """

    stage: str = "auto"
    threshold: float | None = None
    diameter: float | None = None
    size_tolerance: float = PostprocessSettings.tolerance_factor
    border_fraction: float = 0.25
    denoise_order: str | None = None
    sam_model_type: str = "vit_h"
    sam: SamSettings = field(default_factory=SamSettings)
    skip_empty: bool = False
    size_estimate: SizeEstimateSettings = field(default_factory=SizeEstimateSettings)
    mask_bad_regions: bool = True
    centre_picks: bool = False
    diameter_range: SizeRange | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage", canonical_stage(self.stage))
        for name in ("threshold", "diameter", "size_tolerance", "border_fraction"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(float(value)):
                raise ValueError(f"{name} must be a finite number, got {value}")
        check_range("diameter", self.diameter, MIN_DIAMETER_PX, None, "px")
        if self.diameter is not None and self.diameter_range is not None:
            raise SettingsError("give a diameter or a diameter range, not both")
        if self.diameter_range is not None:
            size_range = self.diameter_range
            for end in (size_range.low, size_range.high):
                if size_range.angstrom:
                    check_range("diameter range", end, *DIAMETER_ANGSTROM_RANGE, "Å")
                else:
                    check_range("diameter range", end, MIN_DIAMETER_PX, None, "px")
        if not self.size_tolerance > 0:
            raise ValueError(f"size_tolerance must be positive, got {self.size_tolerance}")
        if not 0 <= self.border_fraction < 1:
            raise ValueError(f"border_fraction must be within [0, 1), got {self.border_fraction}")
        if self.denoise_order not in (None, "fast", "paper"):
            raise ValueError(f"denoise_order must be fast or paper, not {self.denoise_order!r}")

    def threshold_for(self, stage: str) -> float:
        """The score threshold a run of ``stage`` uses: the given one, else the stage's."""
        if self.threshold is not None:
            return float(self.threshold)
        return DEFAULT_THRESHOLDS[canonical_stage(stage)]

    def changed(self) -> dict:
        """The settings that differ from the defaults (for logs and for option checks)."""
        default = PickerConfig()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }

    def with_changes(self, **changes) -> PickerConfig:
        """A copy with ``changes`` applied (validated like a new config)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


def inapplicable(config: PickerConfig, stage: str) -> list[str]:
    """Settings of ``config`` that differ from the defaults but cannot act with ``stage``,
    named as ``cryosegnet pick`` options (``--size-tolerance``, ``--points-per-side``)."""
    if canonical_stage(stage) == "sam":
        return []
    changed = config.changed()
    names = [name for name in SAM_ONLY if name in changed and name != "sam"]
    if "sam" in changed:
        default = SamSettings()
        names += [
            f.name
            for f in fields(SamSettings)
            if getattr(config.sam, f.name) != getattr(default, f.name)
        ]
    return ["--" + name.replace("_", "-") for name in names]


def check_pickable_size(name, shape: tuple[int, ...], picker=None) -> None:
    """Refuse a micrograph too small to pick (see MIN_PICK_SIDE and MIN_WORKING_SIDE)."""
    height, width = int(shape[0]), int(shape[1])
    if min(height, width) < MIN_PICK_SIDE:
        raise MicrographError(
            name,
            f"is only {width}x{height} px; picking needs at least {MIN_PICK_SIDE} px on the "
            "short side (a smaller image holds too few pixels per particle to pick)",
        )
    settings = getattr(picker, "denoise_settings", None)
    working_size = getattr(settings, "working_size", None)
    if working_size:
        working = min(working_shape((height, width), int(working_size)))
        if working < MIN_WORKING_SIDE:
            raise MicrographError(
                name,
                f"is {width}x{height} px, only {working} px on the short side at the model's "
                f"working size ({working_size} px on the long side); picking needs at least "
                f"{MIN_WORKING_SIDE} px there",
            )
