"""Particle sizes in physical units: Ångström diameters converted per micrograph.

A diameter in Å becomes micrograph pixels with each micrograph's own pixel size, taken (first
found) from ``--angpix``, from the optics group of an input RELION micrographs STAR, or from
the micrograph's MRC header. A micrograph with none of them cannot be picked at an Å size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryosegnet.errors import CryoSegNetError

# Accepted unit suffixes of --diameter: Ångström (ASCII A, Å as a letter or the Ångström sign,
# case-insensitive "a"/"angstrom") or pixels (px, or no suffix).
ANGSTROM_UNITS = ("a", "å", "\u212b", "angstrom", "ang")
PIXEL_UNITS = ("", "px", "pix", "pixel", "pixels")
_NUMBER_AND_UNIT = re.compile(
    r"^\s*([-+]?(?:(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|nan|inf(?:inity)?))\s*([^\s0-9.]*)\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Diameter:
    """A diameter as given: ``value`` in ``unit`` (``"px"`` or ``"A"``)."""

    value: float
    unit: str = "px"

    @property
    def angstrom(self) -> bool:
        return self.unit == "A"

    def __str__(self) -> str:
        return f"{self.value:g} {'Å' if self.angstrom else 'px'}"


def parse_diameter(text: str | float) -> Diameter:
    """``"120A"``, ``"120 Å"`` -> 120 Å; ``"45"``, ``"45px"`` -> 45 px.

    Raises
    ------
    CryoSegNetError
        On anything else (an unknown unit, no number).
    """
    if isinstance(text, int | float):
        return Diameter(float(text), "px")
    match = _NUMBER_AND_UNIT.match(str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in ANGSTROM_UNITS + PIXEL_UNITS:
        raise CryoSegNetError(
            f"--diameter {text}: give a number of pixels (180) or Ångström (120A, 120Å)"
        )
    try:
        value = float(match.group(1))
    except ValueError as exc:
        raise CryoSegNetError(f"--diameter {text}: not a number") from exc
    return Diameter(value, "A" if unit in ANGSTROM_UNITS else "px")


@dataclass(frozen=True)
class SizeRange:
    """A particle size known only roughly: ``low`` to ``high`` in ``unit`` (``"px"``/``"A"``),
    as RELION's LoG picker and CryoSPARC's blob picker take it. The picker reads the size off
    the micrographs within the range, and takes its geometric middle where they show none."""

    low: float
    high: float
    unit: str = "px"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and 0 < self.low < self.high):
            raise CryoSegNetError(
                f"--diameter {self}: give a range from a smaller to a larger positive size"
            )

    @property
    def angstrom(self) -> bool:
        return self.unit == "A"

    @property
    def middle(self) -> float:
        """The geometric middle of the range, in its unit."""
        return math.sqrt(self.low * self.high)

    def in_pixels(self, pixel_size: float | None) -> tuple[float, float]:
        """(low, high) in micrograph pixels; an Å range needs the micrograph's pixel size."""
        if not self.angstrom:
            return self.low, self.high
        if not pixel_size:
            raise CryoSegNetError(
                f"--diameter {self}: a range in Å needs the pixel size, and none is known (no "
                "pixel size in the header or an input STAR): give --angpix"
            )
        return self.low / pixel_size, self.high / pixel_size

    def __str__(self) -> str:
        return f"{self.low:g}-{self.high:g} {'Å' if self.angstrom else 'px'}"


_RANGE = re.compile(r"^\s*(\d+\.?\d*|\.\d+)\s*-\s*(\d+\.?\d*|\.\d+)\s*([^\s0-9.]*)\s*$")


def parse_size(text: str | float) -> Diameter | SizeRange:
    """A diameter (:func:`parse_diameter`) or a range: ``"100-160A"``, ``"40-60"`` (px).

    Raises
    ------
    CryoSegNetError
        On anything else, or a range whose ends are not increasing positive sizes.
    """
    match = _RANGE.match(str(text)) if isinstance(text, str) else None
    if match is None:
        return parse_diameter(text)
    unit = match.group(3).lower()
    if unit not in ANGSTROM_UNITS + PIXEL_UNITS:
        raise CryoSegNetError(
            f"--diameter {text}: give a range in pixels (40-60) or Ångström (100-160A)"
        )
    unit = "A" if unit in ANGSTROM_UNITS else "px"
    return SizeRange(float(match.group(1)), float(match.group(2)), unit)


@dataclass(frozen=True)
class PixelSizes:
    """Where a micrograph's pixel size (Å/px) comes from, in order of precedence.

    Attributes
    ----------
    given : float or None
        ``--angpix``: every micrograph.
    by_micrograph : mapping of str to float
        Per micrograph path (``str(path)`` as picked), from an input RELION STAR's optics.
    """

    given: float | None = None
    by_micrograph: Mapping[str, float] = field(default_factory=dict)

    def explicit(self, micrograph) -> float | None:
        """The pixel size known without reading the file (``--angpix``, the STAR), or None."""
        if self.given:
            return float(self.given)
        return self.by_micrograph.get(str(micrograph))

    def resolve(self, micrograph, header: float | None) -> float | None:
        """The pixel size to use: explicit, else the file header's (None if neither)."""
        explicit = self.explicit(micrograph)
        if explicit:
            return explicit
        return float(header) if header and math.isfinite(header) and header > 0 else None

    @property
    def uniform(self) -> float | None:
        """The one pixel size known up front for every micrograph listed, else None."""
        if self.given:
            return float(self.given)
        sizes = set(self.by_micrograph.values())
        return sizes.pop() if len(sizes) == 1 else None


def angstrom_to_pixels(angstrom: float, pixel_size: float) -> float:
    """``angstrom`` Å in pixels of ``pixel_size`` Å/px."""
    return float(angstrom) / float(pixel_size)


def describe_size(pixels: float, pixel_size: float | None) -> str:
    """``"45.3 px (120 Å)"``, or ``"45.3 px"`` when the pixel size is unknown."""
    if pixel_size:
        return f"{pixels:.1f} px ({pixels * pixel_size:.0f} Å)"
    return f"{pixels:.1f} px"
