"""Write simulated micrographs and their ground truth to disk.

Per micrograph ``<stem>``: ``<stem>.mrc`` (float32, voxel size = pixel size),
``<stem>.csv`` (CryoPPP ``X-Coordinate,Y-Coordinate,Diameter``, pickable particles only, as an
expert would have labelled), ``<stem>.star`` (RELION coordinates, pickable only),
``truth/<stem>_mask.png`` (uint8 0/255 disk mask, the training target),
``truth/<stem>_footprint.png`` (true projected footprint of all particles) and
``truth/<stem>_all.csv`` (every particle with its pickable flag and the reason).
Every file is written atomically, and the ``.mrc`` last, so an
interrupted run can be resumed: a micrograph whose files all exist is complete.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import cv2
import mrcfile
import numpy as np
import pandas as pd
import starfile

from cryosegnet.errors import first_line
from cryosegnet.io.atomic import atomic_path, atomic_write
from cryosegnet.simulation.micrograph import (
    SimulatedMicrograph,
    SimulationConfig,
    micrograph_seed,
    simulate_micrograph,
)

SUFFIXES = (".csv", ".star", "_mask.png", "_footprint.png", "_all.csv", ".mrc")
CRYOPPP_HEADER = ["X-Coordinate", "Y-Coordinate", "Diameter"]


# Extra ground truth lives in a subfolder, so that `cryosegnet pick DIR` and
# `cryosegnet evaluate PICKS DIR` see only micrographs and their labels.
TRUTH_DIR = "truth"
TRUTH_SUFFIXES = ("_mask.png", "_footprint.png", "_all.csv")


def output_paths(out_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """Where the files of micrograph ``stem`` go, keyed by suffix."""
    out = Path(out_dir)
    return {
        suffix: (out / TRUTH_DIR if suffix in TRUTH_SUFFIXES else out) / f"{stem}{suffix}"
        for suffix in SUFFIXES
    }


def write_micrograph(out_dir: str | os.PathLike, stem: str, sim: SimulatedMicrograph) -> dict:
    """Write one simulated micrograph and its ground truth; returns the paths written."""
    paths = output_paths(out_dir, stem)
    paths["_mask.png"].parent.mkdir(parents=True, exist_ok=True)
    picks = sim.picks
    cryoppp = pd.DataFrame(
        {
            "X-Coordinate": picks["x"].round().astype(int),
            "Y-Coordinate": picks["y"].round().astype(int),
            "Diameter": picks["diameter"].round().astype(int),
        },
        columns=CRYOPPP_HEADER,
    )
    with atomic_write(paths[".csv"], newline="") as handle:
        cryoppp.to_csv(handle, index=False)
    star = pd.DataFrame(
        {
            "rlnCoordinateX": picks["x"].astype(float),
            "rlnCoordinateY": picks["y"].astype(float),
        }
    )
    with atomic_path(paths[".star"]) as tmp:
        starfile.write({"": star}, tmp)  # always replaces tmp; it takes no overwrite flag
    for key, mask in (("_mask.png", sim.disk_mask), ("_footprint.png", sim.footprint_mask)):
        with atomic_path(paths[key]) as tmp:
            if not cv2.imwrite(str(tmp), mask.astype(np.uint8) * 255):
                raise OSError(f"could not write {paths[key]}")
    with atomic_write(paths["_all.csv"], newline="") as handle:
        sim.particles.to_csv(handle, index=False, float_format="%.2f")
    with atomic_path(paths[".mrc"]) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(sim.image, dtype=np.float32))
            mrc.voxel_size = sim.pixel_size
    return paths


def is_complete(out_dir: str | os.PathLike, stem: str) -> bool:
    """True when every file of ``stem`` exists (files are atomic, so existing = complete)."""
    return all(p.exists() for p in output_paths(out_dir, stem).values())


def _summary_row(stem: str, index: int, sim: SimulatedMicrograph) -> dict:
    info = sim.info
    ctf = info["ctf"]
    return dict(
        stem=stem,
        index=index,
        snr=round(info["snr"], 5),
        defocus_u=round(ctf["defocus_u"], 4),
        defocus_v=round(ctf["defocus_v"], 4),
        astig_angle=round(ctf["astig_angle"], 2),
        voltage=ctf["voltage"],
        amplitude_contrast=round(ctf["amplitude_contrast"], 4),
        bfactor=round(ctf["bfactor"], 1),
        dose_e_per_a2=round(info["dose_e_per_a2"], 2),
        pixel_size=info["pixel_size"],
        species=";".join(s["name"] for s in info["species"]),
        diameter_px=";".join(f"{s['diameter_px']:.1f}" for s in info["species"]),
        n_particles=info["n_particles"],
        n_pickable=info["n_pickable"],
        carbon=info["carbon"],
    )


def check_maps(config: SimulationConfig) -> None:
    """Read every user density once; raise ``ValueError`` naming the file that cannot be used."""
    from cryosegnet.simulation.densities import load_density

    for path in config.maps:
        if not Path(path).is_file():
            raise ValueError(f"--map {path}: no such file")
        try:
            load_density(path, voxel_size=config.map_voxel_size)
        except Exception as exc:
            detail = first_line(exc) or type(exc).__name__
            if str(path) not in detail:
                detail = f"{path}: {detail}"
            raise ValueError(f"--map {detail}") from exc


def write_dataset(
    out_dir: str | os.PathLike,
    config: SimulationConfig,
    n: int,
    seed: int = 0,
    start: int = 0,
    prefix: str = "sim",
    resume: bool = True,
    progress: bool = False,
    command: str | None = None,
    log_lines: bool = False,
) -> pd.DataFrame:
    """Simulate ``n`` micrographs into ``out_dir``; micrograph i uses seed (``seed``, i).

    Writes ``simulation.json`` (config, seed, command) first and ``micrographs.csv`` (one row of
    imaging parameters per micrograph) last. With ``resume``, micrographs already complete on
    disk are skipped, so an interrupted run picks up where it stopped and gives the same files.
    Returns the summary table.
    """
    check_maps(config)  # before anything is written: a bad --map leaves no stray files
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(
        seed=int(seed),
        start=int(start),
        n=int(n),
        prefix=prefix,
        config=config.to_dict(),
        command=command,
    )
    with atomic_write(out / "simulation.json") as handle:
        json.dump(meta, handle, indent=2, default=str)
    indices: Iterable[int] = range(start, start + n)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="simulate", unit="mic")
    rows = []
    for i in indices:
        stem = f"{prefix}_{i:05d}"
        if resume and is_complete(out, stem):
            continue
        sim = simulate_micrograph(config, np.random.default_rng(micrograph_seed(seed, i)))
        write_micrograph(out, stem, sim)
        rows.append(_summary_row(stem, i, sim))
        if log_lines:  # a batch log gets one line per micrograph instead of a progress bar
            print(
                f"[{i - start + 1}/{n}] {stem}: {rows[-1]['n_pickable']} pickable particles",
                file=sys.stderr,
                flush=True,
            )
    summary = pd.DataFrame(rows)
    summary_path = out / "micrographs.csv"
    if summary_path.exists() and resume:
        old = pd.read_csv(summary_path)
        fresh = set(summary["stem"]) if len(summary) else set()
        summary = pd.concat([old[~old["stem"].isin(fresh)], summary])
        summary = summary.sort_values("index").reset_index(drop=True)
    with atomic_write(summary_path, newline="") as handle:
        summary.to_csv(handle, index=False)
    return summary
