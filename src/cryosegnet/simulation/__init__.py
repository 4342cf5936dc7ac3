"""Synthetic cryo-EM micrographs with ground truth (``cryosegnet simulate``).

The picker's default model is trained on this simulator's output, so it aims at realism:
pseudo-atomic particles projected at random orientations, a CTF, shot noise at a set particle
SNR, and the context that makes real micrographs hard (ice, carbon, contamination, aggregates).
See docs/simulation.md.
"""

from cryosegnet.simulation.micrograph import (
    SIMULATOR_VERSION,
    SimulatedMicrograph,
    SimulationConfig,
    micrograph_seed,
    simulate_micrograph,
    stream,
)
from cryosegnet.simulation.writer import write_dataset

__all__ = [
    "SIMULATOR_VERSION",
    "SimulatedMicrograph",
    "SimulationConfig",
    "micrograph_seed",
    "simulate_micrograph",
    "stream",
    "write_dataset",
]
