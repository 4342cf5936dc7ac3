"""Simulated micrographs with picks in cryosegnet pick's layouts, for the inspection tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryosegnet.io.coordinates import read_coordinates, write_coordinate_star, write_index_star
from cryosegnet.simulation import SimulationConfig, write_dataset


def simulated_session(root: Path, n: int = 3, layout: str = "relion", empty: int | None = None):
    """``root/Movies/*.mrc`` (simulated, 256 px) and ``root/picks`` with scored picks.

    ``layout`` "relion": ``picks/Movies/<stem>_autopick.star``; "flat": ``picks/<stem>.star``.
    Scores run evenly from 0 to 1 on each micrograph. Micrograph number ``empty`` gets no picks.
    Returns (micrograph paths, picks folder, {stem: picks table}).
    """
    movies = root / "Movies"
    write_dataset(movies, SimulationConfig(size=256), n=n, seed=3)
    micrographs = sorted(movies.glob("*.mrc"))
    picks_dir = root / "picks"
    tables, entries = {}, []
    for i, mic in enumerate(micrographs):
        truth = read_coordinates(mic.with_suffix(".csv"))
        truth = truth.iloc[:40].reset_index(drop=True)
        truth["score"] = np.linspace(0, 1, len(truth))
        if i == empty:
            truth = truth.iloc[:0]
        if layout == "relion":
            star = picks_dir / "Movies" / f"{mic.stem}_autopick.star"
        else:
            star = picks_dir / f"{mic.stem}.star"
        star.parent.mkdir(parents=True, exist_ok=True)
        write_coordinate_star(star, truth)
        tables[mic.stem] = truth
        entries.append((f"Movies/{mic.name}", str(star)))
    write_index_star(picks_dir / "autopick.star", entries)
    return micrographs, picks_dir, tables
