"""Simulated fields the radial filter fits: round particles on clean ice."""

from __future__ import annotations

from cryosegnet.simulation import SimulationConfig


def round_particles(diameter: float) -> SimulationConfig:
    """Easy 384-px fields of globular particles of ``diameter`` px, no junk."""
    return SimulationConfig(
        size=384,
        difficulty="easy",
        diameter_px=diameter,
        density="medium",
        shapes=("globular",),
        aggregates=0,
        carbon=False,
        contamination=0,
    )
