"""Compose synthetic micrographs with ground truth.

Image formation (weak-phase approximation, everything at the working pixel size):

    phase      = a * P_particles + P_context            (projected potentials)
    I_clean    = T * (1 + ifft(CTF * MTF * fft(phase)))  T = exp(-thickness), amplitude loss
    counts     = Poisson(dose_per_pixel * I_clean)

Particle SNR is defined per micrograph, at the picker's working scale (the image binned by
the integer b that brings its long side closest to ``snr_reference_size``, 1024 by default;
b = 1 for images up to ~1.5k px), as

    SNR = mean over particle footprints of (dose * T * a * u)_b^2
          / (mean over footprints of counts_b / b^2)

where ``u = ifft(CTF * MTF * fft(P_particles))`` and ``_b`` denotes b×b block means: the power
of the noise-free particle signal (relative to the particle-free background) over the pixels
the particles cover, divided by the shot-noise variance of a binned pixel there. Measuring at a
fixed scale makes an SNR mean the same visibility whether a micrograph is written at 1024² or
4096². The particle scale ``a`` is solved for so the SNR hits the value drawn from
``SimulationConfig.snr``; ``SimulatedMicrograph.info["snr"]`` reports what was achieved.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
import pandas as pd
import scipy.fft
from scipy.spatial import cKDTree

from cryosegnet.geometry import disk_mask  # re-exported: tests and callers import it here
from cryosegnet.simulation.context import Context, make_context
from cryosegnet.simulation.ctf import CTFParams, ctf_2d, detector_mtf
from cryosegnet.simulation.densities import (
    PROCEDURAL_KINDS,
    Density,
    load_density,
    procedural_density,
)
from cryosegnet.simulation.projection import ProjectionBank, make_bank

# Bump when a given (config, seed) produces a different micrograph, so that caches keyed on
# SimulationConfig.to_dict() (e.g. the training set cache) are rebuilt.
SIMULATOR_VERSION = 2

REASONS = ("ok", "edge", "contamination", "carbon", "aggregate", "overlap")

# Fraction of the image area covered by particle disks.
DENSITY_LEVELS = {
    "sparse": (0.03, 0.08),
    "medium": (0.10, 0.20),
    "dense": (0.20, 0.32),
    "crowded": (0.32, 0.45),
}

# Difficulty presets: ranges each micrograph draws from. Tuned so "hard" matches the real
# EMPIAR-10146 apoferritin micrographs (per-pixel particle SNR ~0.01, nearly flat background).
PRESETS: dict[str, dict] = {
    "easy": dict(
        snr=(0.08, 0.2),
        defocus=(1.5, 3.5),
        astigmatism=0.1,
        bfactor=(20.0, 80.0),
        carbon_probability=0.2,
        contamination=(0, 1),
        aggregates=(0, 1),
        ice_gradient=(0.0, 0.01),
        overlap_probability=0.02,
        densities=("sparse", "medium"),
        carbon_texture=(0.05, 0.15),
        carbon_particle_rate=0.05,
    ),
    "medium": dict(
        snr=(0.02, 0.06),
        defocus=(0.8, 3.0),
        astigmatism=0.2,
        bfactor=(40.0, 120.0),
        carbon_probability=0.35,
        contamination=(0, 3),
        aggregates=(0, 2),
        ice_gradient=(0.0, 0.015),
        overlap_probability=0.05,
        densities=("sparse", "medium", "dense", "crowded"),
        carbon_texture=(0.05, 0.3),
        carbon_particle_rate=0.1,
    ),
    "hard": dict(
        snr=(0.008, 0.03),
        defocus=(0.5, 2.5),
        astigmatism=0.3,
        bfactor=(60.0, 200.0),
        carbon_probability=0.45,
        contamination=(0, 5),
        aggregates=(0, 4),
        ice_gradient=(0.0, 0.02),
        overlap_probability=0.08,
        densities=("medium", "dense", "crowded"),
        carbon_texture=(0.1, 0.4),
        carbon_particle_rate=0.15,
    ),
}


@dataclass
class SimulationConfig:
    """What to simulate. ``None`` fields take the value (or range) of the difficulty preset.

    Ranges are ``(low, high)`` tuples drawn uniformly per micrograph; a float fixes the value.
    """

    size: int | tuple[int, int] = 1024
    pixel_size: float | None = None  # Å/px of the written image; None: 4096 Å field of view
    difficulty: str = "medium"
    density: str | float | None = None  # sparse|medium|dense|crowded or a coverage fraction
    # Chance that a micrograph holds no particle at all (ice, carbon, contamination and
    # aggregates only): real sessions have empty holes, and a picker that never saw one
    # learns that every field has particles.
    empty_probability: float = 0.0
    # Chance that the ice is crystalline (a mosaic of dark and clear grains). Experts discard
    # such micrographs, so they carry no pickable particle: the field is left empty.
    crystalline_probability: float = 0.0
    diameter: tuple[float, float] | float = (50.0, 400.0)  # particle diameter, Å
    diameter_px: tuple[float, float] | float | None = None  # overrides ``diameter`` if set
    shapes: tuple[str, ...] = PROCEDURAL_KINDS
    maps: tuple[str, ...] = ()  # user MRC/PDB/mmCIF files
    map_probability: float | None = None  # chance a micrograph uses a user map (None: 1 if maps)
    map_voxel_size: float | None = None  # Å, for maps whose header lacks one
    species: int = 1  # particle types per micrograph
    snr: tuple[float, float] | float | None = None
    defocus: tuple[float, float] | float | None = None  # µm, underfocus positive
    astigmatism: float | None = None  # max |defocus_u - defocus_v|, µm
    voltage: tuple[float, ...] = (200.0, 300.0)  # kV, one picked at random
    cs: float = 2.7  # mm
    amplitude_contrast: tuple[float, float] | float = (0.07, 0.1)
    bfactor: tuple[float, float] | float | None = None  # Å^2
    dose: tuple[float, float] | float = (20.0, 60.0)  # e/Å^2
    mtf: bool = True
    detector_pixel_size: float = 1.0  # Å, sets the binning seen by the MTF
    ice_thickness: tuple[float, float] | float = (0.15, 0.45)  # inelastic mean free paths
    ice_gradient: tuple[float, float] | float | None = None
    carbon: bool | None = None  # None: preset probability; True: always; False: never
    carbon_fraction: tuple[float, float] = (0.1, 0.45)
    pick_on_carbon: bool = False  # particles on carbon are labelled pickable
    contamination: tuple[int, int] | int | None = None  # number of ice blobs
    aggregates: tuple[int, int] | int | None = None  # number of aggregate clumps
    overlap_probability: float | None = None
    min_separation: tuple[float, float] = (0.85, 1.1)  # centre distance / diameter, normal
    overlap_limit: float = 0.6  # closer than this (× diameter) makes both non-pickable
    edge_min_visible: float = 0.5  # fraction of the disk inside the image to be pickable
    snr_reference_size: int | None = 1024  # SNR is measured binned to this long side
    noise_correlation: float = 0.03  # max neighbour coupling c of the noise (0: white)
    n_views: int = 32
    keep_components: bool = False  # keep noise-free images in ``components`` (tests, docs)

    def __post_init__(self) -> None:
        if self.difficulty not in PRESETS:
            raise ValueError(
                f"difficulty must be one of {sorted(PRESETS)}, not {self.difficulty!r}"
            )
        if isinstance(self.density, str) and self.density not in DENSITY_LEVELS:
            raise ValueError(f"density must be one of {sorted(DENSITY_LEVELS)} or a fraction")
        bad = [s for s in self.shapes if s not in PROCEDURAL_KINDS]
        if bad:
            raise ValueError(f"unknown shapes {bad}; use {PROCEDURAL_KINDS}")
        self.maps = tuple(str(m) for m in self.maps)
        self.shapes = tuple(self.shapes)
        if min(self.shape) < 16:
            raise ValueError(f"size must be at least 16 px, not {self.size}")
        if self.pixel_size is not None and self.pixel_size <= 0:
            raise ValueError("pixel_size must be positive")
        if not 0.0 <= self.edge_min_visible <= 1.0:
            raise ValueError("edge_min_visible must be within [0, 1]")
        for name in (
            "empty_probability",
            "crystalline_probability",
            "map_probability",
            "overlap_probability",
        ):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:  # also refuses NaN
                raise ValueError(f"{name} must be within [0, 1] (a probability), got {value:g}")
        if self.n_views < 1 or self.species < 1:
            raise ValueError("n_views and species must be at least 1")
        for name in ("snr", "diameter", "diameter_px", "dose", "defocus"):
            value = getattr(self, name)
            if value is not None and np.any(np.asarray(value, dtype=float) <= 0):
                raise ValueError(f"{name} must be positive, got {value}")

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        if isinstance(self.size, int | np.integer):
            return int(self.size), int(self.size)
        h, w = self.size
        return int(h), int(w)

    @property
    def effective_pixel_size(self) -> float:
        """Å per pixel: ``pixel_size``, else what makes the field 4096 Å across."""
        return float(self.pixel_size) if self.pixel_size else 4096.0 / max(self.shape)

    def preset(self, key: str):
        """The configured value of ``key`` or, if None, the difficulty preset's."""
        value = getattr(self, key, None)
        return PRESETS[self.difficulty][key] if value is None else value

    def to_dict(self) -> dict:
        """Plain-data record of the configuration, tagged with ``SIMULATOR_VERSION``.

        The version tag makes caches keyed on this dict go stale when the simulator changes
        what a given (config, seed) produces.
        """
        return {**asdict(self), "simulator_version": SIMULATOR_VERSION}

    @classmethod
    def from_dict(cls, data: dict) -> SimulationConfig:
        """Inverse of :meth:`to_dict` (unknown keys such as the version tag are ignored)."""
        names = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names
        }
        return cls(**kwargs)


@dataclass
class SimulatedMicrograph:
    """One simulated micrograph with everything an evaluation or training step needs.

    ``particles``: columns x, y (pixels; x = column, y = row), diameter (pixels), pickable,
    reason (``ok`` or why an expert would skip it), species, on_carbon.
    ``disk_mask``: filled disks (diameter) at pickable particles, the paper's training target.
    ``footprint_mask``: where any particle's projected density is significant.
    """

    image: np.ndarray
    particles: pd.DataFrame
    disk_mask: np.ndarray
    footprint_mask: np.ndarray
    carbon_mask: np.ndarray
    contamination_mask: np.ndarray
    pixel_size: float
    info: dict = field(default_factory=dict)
    components: dict = field(default_factory=dict)

    @property
    def picks(self) -> pd.DataFrame:
        """Pickable particles only (what an expert would have labelled)."""
        return self.particles[self.particles["pickable"]].reset_index(drop=True)


# --------------------------------------------------------------------------- helpers


def _draw(rng: np.random.Generator, value, log: bool = False) -> float:
    if isinstance(value, tuple | list):
        lo, hi = float(value[0]), float(value[-1])
        if log and lo > 0:
            return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        return float(rng.uniform(lo, hi))
    return float(value)


def _draw_int(rng: np.random.Generator, value) -> int:
    if isinstance(value, tuple | list):
        return int(rng.integers(int(value[0]), int(value[-1]) + 1))
    return int(value)


def snr_binning(shape: tuple[int, int], reference_size: int | None) -> int:
    """Integer binning that brings the long side to about ``reference_size`` (1 if smaller)."""
    if not reference_size:
        return 1
    return max(1, int(round(max(shape) / reference_size)))


def _binned(image: np.ndarray, b: int) -> np.ndarray:
    """b×b block means (edges that do not fill a block are dropped)."""
    image = np.asarray(image, dtype=np.float32)
    if b == 1:
        return image
    h, w = (image.shape[0] // b) * b, (image.shape[1] // b) * b
    return image[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3))


def visible_fraction(shape: tuple[int, int], x: float, y: float, diameter: float) -> float:
    """Fraction of a disk's area inside the image (pixel-counted; 1 for interior particles)."""
    h, w = shape
    r = 0.5 * diameter
    if r <= x <= w - 1 - r and r <= y <= h - 1 - r:
        return 1.0
    n = 24
    g = (np.arange(n) + 0.5) / n * 2 - 1
    gx, gy = np.meshgrid(g * r + x, g * r + y)
    inside_disk = (gx - x) ** 2 + (gy - y) ** 2 <= r * r
    inside_img = (gx >= -0.5) & (gx <= w - 0.5) & (gy >= -0.5) & (gy <= h - 0.5)
    return float((inside_disk & inside_img).sum() / max(inside_disk.sum(), 1))


@lru_cache(maxsize=16)
def _load_user_density(path: str, voxel_size: float | None) -> Density:
    return load_density(path, voxel_size=voxel_size)


@lru_cache(maxsize=32)
def _user_bank(
    path: str, voxel_size: float | None, pixel_size: float, n_views: int, diameter: float | None
) -> ProjectionBank:
    """Projection bank of a user map, cached: its views depend only on the arguments."""
    dens = _load_user_density(path, voxel_size)
    if diameter is not None:
        dens = dens.scaled_to(diameter)
    seed = zlib.crc32(f"{os.path.abspath(path)}|{pixel_size:.6f}|{n_views}|{diameter}".encode())
    return make_bank(dens, pixel_size, n_views, np.random.default_rng(seed))


def _species_banks(
    config: SimulationConfig, rng: np.random.Generator, pixel_size: float
) -> list[ProjectionBank]:
    """Draw the particle types of one micrograph and project them."""
    banks = []
    map_p = config.map_probability
    if map_p is None:
        map_p = 1.0 if config.maps else 0.0
    for _ in range(max(1, config.species)):
        if config.diameter_px is not None:
            diam_a = _draw(rng, config.diameter_px, log=True) * pixel_size
        else:
            diam_a = _draw(rng, config.diameter, log=True)
        if config.maps and rng.random() < map_p:
            path = config.maps[int(rng.integers(len(config.maps)))]
            dens = _load_user_density(path, config.map_voxel_size)
            # Maps keep their physical size unless it is unknown (no voxel size in header).
            target = diam_a if dens.name.endswith("-unscaled") else None
            banks.append(
                _user_bank(
                    path, config.map_voxel_size, round(pixel_size, 6), config.n_views, target
                )
            )
        else:
            kind = str(rng.choice(config.shapes))
            spacing = max(0.8 * pixel_size, diam_a / 32.0, 2.0)
            dens = procedural_density(rng, diam_a, kind=kind, spacing=spacing, max_points=12000)
            banks.append(make_bank(dens, pixel_size, config.n_views, rng))
    return banks


def _place(
    rng: np.random.Generator,
    shape: tuple[int, int],
    n_target: int,
    radius: np.ndarray,
    min_sep: float,
    acceptance,
    max_tries: int,
    existing: list[tuple[float, float, float]],
) -> list[tuple[float, float, int]]:
    """Random sequential adsorption of particle centres (x, y, species index).

    ``radius[k]`` is species k's radius in px; centres may lie up to one radius outside the
    image so that particles are cut by the edge. ``acceptance(x, y)`` returns the probability
    of keeping a candidate there (0 = never). Accepted centres keep ``min_sep * (r_i + r_j)``
    apart (checked against the nearest neighbour, exact for one species). Candidates are drawn
    and tested in vectorised batches with k-d trees, so crowded micrographs with thousands of
    small particles stay fast.
    """
    h, w = shape
    xy = np.array([(e[0], e[1]) for e in existing], dtype=np.float64).reshape(-1, 2)
    rs = np.array([e[2] for e in existing], dtype=np.float64)
    start = len(xy)
    ks_all = np.zeros(0, dtype=int)
    tries = 0
    stalled = 0
    while len(ks_all) < n_target and tries < max_tries and stalled < 4:
        batch = int(np.clip(2 * (n_target - len(ks_all)), 64, 4096))
        tries += batch
        ks = rng.integers(len(radius), size=batch)
        rk = radius[ks]
        cand = np.stack(
            [np.round(rng.uniform(-rk, w - 1 + rk)), np.round(rng.uniform(-rk, h - 1 + rk))], axis=1
        )
        keep = rng.random(batch) < acceptance(cand[:, 0], cand[:, 1])
        if len(xy):
            dist, j = cKDTree(xy).query(cand, k=1)
            keep &= dist >= min_sep * (rk + rs[np.minimum(j, len(rs) - 1)])
        cand, ks, rk = cand[keep], ks[keep], rk[keep]
        if len(cand) > 1:
            # Resolve clashes inside the batch: earlier candidates win.
            alive = np.ones(len(cand), dtype=bool)
            pairs = cKDTree(cand).query_pairs(min_sep * 2 * radius.max(), output_type="ndarray")
            if len(pairs):
                pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
                d = np.linalg.norm(cand[pairs[:, 0]] - cand[pairs[:, 1]], axis=1)
                clash = d < min_sep * (rk[pairs[:, 0]] + rk[pairs[:, 1]])
                for a_, b_ in pairs[clash]:
                    if alive[a_]:
                        alive[b_] = False
            cand, ks, rk = cand[alive], ks[alive], rk[alive]
        room = n_target - len(ks_all)
        cand, ks, rk = cand[:room], ks[:room], rk[:room]
        stalled = stalled + 1 if len(cand) == 0 else 0
        xy = np.concatenate([xy, cand])
        rs = np.concatenate([rs, rk])
        ks_all = np.concatenate([ks_all, ks])
    new = xy[start:]
    return [(float(x), float(y), int(k)) for (x, y), k in zip(new, ks_all, strict=True)]


def _paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int, op: str = "add") -> None:
    """Add (or OR) ``patch`` centred at (x, y) into ``canvas``, clipped at the borders."""
    h, w = canvas.shape
    s = patch.shape[0]
    half = s // 2
    x0, y0 = x - half, y - half
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(w, x0 + s), min(h, y0 + s)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    sub = patch[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    if op == "or":
        canvas[cy0:cy1, cx0:cx1] |= sub
    else:
        canvas[cy0:cy1, cx0:cx1] += sub


# --------------------------------------------------------------------------- composer


def simulate_micrograph(
    config: SimulationConfig, rng: np.random.Generator | int | None = None
) -> SimulatedMicrograph:
    """Simulate one micrograph; all randomness comes from ``rng`` (or a seed).

    The steps, each its own function and drawing from ``rng`` in this order: imaging
    parameters (:func:`_imaging`), the context of ice, carbon and contamination
    (:func:`_context`), the particle table with why an expert would skip each particle
    (:func:`_particle_table`, :func:`_label_reasons`), the projected potentials through the CTF
    (:func:`_potentials`) and the exposure at the target SNR (:func:`_expose`).

    Parameters
    ----------
    config : SimulationConfig
        What to simulate: size, difficulty, particles, imaging and context.
    rng : numpy.random.Generator or int, optional
        The randomness (a seed makes the micrograph reproducible).

    Returns
    -------
    SimulatedMicrograph
        The image with its particle table (the labels), disk and footprint masks, carbon and
        contamination masks and pixel size.

    Examples
    --------
    >>> from cryosegnet.simulation import SimulationConfig, simulate_micrograph
    >>> sim = simulate_micrograph(SimulationConfig(size=128, difficulty="easy"), rng=0)
    >>> sim.image.shape, sim.image.dtype.name
    ((128, 128), 'float32')
    >>> {"x", "y", "diameter"} <= set(sim.picks.columns)  # pickable particles: the labels
    True
    >>> bool(sim.picks["pickable"].all())
    True
    """
    rng = np.random.default_rng(rng)
    shape = config.shape
    px = config.effective_pixel_size
    imaging = _imaging(config, rng, px)
    ctx, use_carbon, crystalline = _context(config, rng, shape, px)
    banks = _species_banks(config, rng, px)
    table, density, coverage, n_agg = _particle_table(config, rng, shape, ctx, crystalline, banks)
    table = _label_reasons(config, table, shape, ctx)
    part, foot, ctx_phase, transfer = _potentials(
        config, rng, shape, px, table, banks, n_agg, ctx, use_carbon, imaging
    )
    image, components, achieved = _expose(
        config, rng, shape, part, foot, ctx_phase, transfer, ctx, imaging
    )

    pickable = table["pickable"].to_numpy()
    disk = disk_mask(
        shape,
        table["x"].to_numpy()[pickable],
        table["y"].to_numpy()[pickable],
        table["diameter"].to_numpy()[pickable],
    )
    table = table[["x", "y", "diameter", "pickable", "reason", "species", "on_carbon", "group"]]
    info = dict(
        pixel_size=px,
        shape=shape,
        difficulty=config.difficulty,
        snr=achieved,
        snr_target=imaging.snr_target,
        dose_e_per_a2=imaging.dose,
        dose_per_pixel=imaging.dose_px,
        ctf=asdict(imaging.ctf),
        coverage=coverage,
        density=density,
        carbon=use_carbon,
        species=[
            dict(name=b.density.name, diameter_a=b.density.diameter, diameter_px=b.diameter_px)
            for b in banks
        ],
        n_particles=len(table),
        n_pickable=int(table["pickable"].sum()),
        **ctx.info,
    )
    return SimulatedMicrograph(
        image=image,
        particles=table.reset_index(drop=True),
        disk_mask=disk,
        footprint_mask=foot,
        carbon_mask=ctx.carbon,
        contamination_mask=ctx.contamination,
        pixel_size=px,
        info=info,
        components=components if config.keep_components else {},
    )


@dataclass(frozen=True)
class _Imaging:
    """The microscope's settings for one micrograph."""

    ctf: CTFParams
    snr_target: float
    dose: float  # e/Å^2
    dose_px: float  # e/px


def _imaging(config: SimulationConfig, rng: np.random.Generator, px: float) -> _Imaging:
    """Defocus, astigmatism, voltage, envelope, target SNR and dose."""
    du = _draw(rng, config.preset("defocus"))
    astig = _draw(rng, (0.0, config.preset("astigmatism")))
    ctf = CTFParams(
        defocus_u=du + astig / 2,
        defocus_v=max(0.05, du - astig / 2),
        astig_angle=float(rng.uniform(0, 180)),
        voltage=float(rng.choice(config.voltage)),
        cs=float(config.cs),
        amplitude_contrast=_draw(rng, config.amplitude_contrast),
        bfactor=_draw(rng, config.preset("bfactor")),
    )
    snr_target = _draw(rng, config.preset("snr"), log=True)
    dose = _draw(rng, config.dose)
    return _Imaging(ctf, snr_target, dose, dose * px * px)


def _context(
    config: SimulationConfig, rng: np.random.Generator, shape: tuple[int, int], px: float
) -> tuple[Context, bool, bool]:
    """Ice, carbon, contamination (and crystalline ice): (context, carbon?, crystalline?)."""
    preset = PRESETS[config.difficulty]
    use_carbon = (
        (rng.random() < preset["carbon_probability"])
        if config.carbon is None
        else bool(config.carbon)
    )
    ice_mean = _draw(rng, config.ice_thickness)
    # Drawn only when asked for, so configurations without crystalline ice keep their images.
    crystalline = bool(
        config.crystalline_probability > 0 and rng.random() < config.crystalline_probability
    )
    ctx = make_context(
        rng,
        shape,
        px,
        ice_mean=ice_mean,
        ice_gradient=_draw(rng, config.preset("ice_gradient")),
        carbon=use_carbon,
        carbon_fraction=config.carbon_fraction,
        carbon_thickness=float(rng.uniform(0.1, 0.4)),
        contamination=_draw_int(rng, config.preset("contamination")),
        crystalline=crystalline,
    )
    return ctx, use_carbon, crystalline


def _particle_table(
    config: SimulationConfig,
    rng: np.random.Generator,
    shape: tuple[int, int],
    ctx: Context,
    crystalline: bool,
    banks: list,
) -> tuple[pd.DataFrame, str | float, float, int]:
    """Where the particles are.

    Aggregates first, then singles in the hole (and sparsely on carbon), then deliberate
    overlaps. Returns (x, y, species, group, diameter table, density, coverage, number of
    aggregates).
    """
    h, w = shape
    preset = PRESETS[config.difficulty]
    radius = np.array([b.diameter_px / 2 for b in banks])
    density = config.density
    if density is None:
        density = str(rng.choice(preset["densities"]))
    coverage = _draw(rng, DENSITY_LEVELS[density]) if isinstance(density, str) else float(density)
    # Drawn only when asked for, so configurations without empty fields keep their images.
    if crystalline or (config.empty_probability > 0 and rng.random() < config.empty_probability):
        density, coverage = "empty", 0.0
    mean_area = float(np.mean(np.pi * radius**2))
    n_target = int(round(coverage * h * w / mean_area))
    carbon_rate = preset["carbon_particle_rate"]
    carbon_mask, cont_mask = ctx.carbon, ctx.contamination

    def in_hole(cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        ix = np.clip(cx, 0, w - 1).astype(int)
        iy = np.clip(cy, 0, h - 1).astype(int)
        # Particles under ice crystals are hidden: never placed there.
        return (~carbon_mask[iy, ix] & ~cont_mask[iy, ix]).astype(float)

    def on_carbon_only(cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        ix = np.clip(cx, 0, w - 1).astype(int)
        iy = np.clip(cy, 0, h - 1).astype(int)
        return (carbon_mask[iy, ix] & ~cont_mask[iy, ix]).astype(float)

    # Aggregates first: tight clumps that regular particles keep clear of.
    n_agg = _draw_int(rng, config.preset("aggregates"))
    rows = _aggregate_rows(rng, n_agg, radius, shape)
    existing = [(r_["x"], r_["y"], radius[r_["species"]]) for r_ in rows]
    min_sep = _draw(rng, config.min_separation)
    hole_fraction = max(1e-3, float(1.0 - carbon_mask.mean()))
    placed = _place(
        rng,
        shape,
        int(round(n_target * hole_fraction)),
        radius,
        min_sep,
        in_hole,
        max_tries=40 * n_target + 500,
        existing=existing,
    )
    if carbon_mask.any() and carbon_rate > 0:
        # Carbon holds particles too, but sparsely: a fraction of the density in the hole.
        n_carbon = rng.poisson(carbon_rate * len(placed) * carbon_mask.mean() / hole_fraction)
        existing = existing + [(x, y, radius[k]) for x, y, k in placed]
        placed += _place(
            rng,
            shape,
            int(n_carbon),
            radius,
            min_sep,
            on_carbon_only,
            max_tries=40 * int(n_carbon) + 200,
            existing=existing,
        )
    for x, y, k in placed:
        rows.append(dict(x=x, y=y, species=k, group="single"))
    rows += _overlap_rows(rng, placed, config.preset("overlap_probability"), radius)
    table = pd.DataFrame(rows, columns=["x", "y", "species", "group"])
    table["diameter"] = [2 * radius[k] for k in table["species"]]
    return table, density, coverage, n_agg


def _aggregate_rows(
    rng: np.random.Generator, n_agg: int, radius: np.ndarray, shape: tuple[int, int]
) -> list[dict]:
    """``n_agg`` aggregates: clumps of 4-15 touching particles of one species each."""
    h, w = shape
    rows: list[dict] = []
    for _ in range(n_agg):
        k = int(rng.integers(len(radius)))
        r = radius[k]
        cx, cy = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
        members = int(rng.integers(4, 16))
        pts = [(cx, cy)]
        for _ in range(members - 1):
            bx, by = pts[int(rng.integers(len(pts)))]
            ang = rng.uniform(0, 2 * np.pi)
            step = rng.uniform(0.9, 1.5) * r
            pts.append((bx + step * np.cos(ang), by + step * np.sin(ang)))
        for x, y in pts:
            rows.append(dict(x=float(round(x)), y=float(round(y)), species=k, group="aggregate"))
    return rows


def _overlap_rows(
    rng: np.random.Generator, placed: list, probability: float, radius: np.ndarray
) -> list[dict]:
    """Deliberate overlaps: particles dropped 0.3-1 diameter from placed ones.

    Each placed particle gets one with ``probability``.
    """
    n_overlap = rng.binomial(len(placed), probability) if placed else 0
    rows = []
    for j in rng.choice(len(placed), size=n_overlap, replace=False) if n_overlap else []:
        x, y, k = placed[int(j)]
        ang = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.3, 1.0) * 2 * radius[k]
        rows.append(
            dict(
                x=float(round(x + dist * np.cos(ang))),
                y=float(round(y + dist * np.sin(ang))),
                species=k,
                group="single",
            )
        )
    return rows


def _label_reasons(
    config: SimulationConfig, table: pd.DataFrame, shape: tuple[int, int], ctx: Context
) -> pd.DataFrame:
    """Why an expert would skip each particle (first reason wins).

    Adds ``pickable``, ``reason`` and ``on_carbon``. Draws nothing.
    """
    h, w = shape
    carbon_mask, cont_mask = ctx.carbon, ctx.contamination
    reasons = np.full(len(table), "ok", dtype=object)
    xs, ys, ds = table["x"].to_numpy(), table["y"].to_numpy(), table["diameter"].to_numpy()
    ix = np.clip(xs, 0, w - 1).astype(int)
    iy = np.clip(ys, 0, h - 1).astype(int)
    on_carbon = carbon_mask[iy, ix] if len(table) else np.zeros(0, bool)
    overlapping = np.zeros(len(table), bool)
    if len(table) > 1:
        centres = np.stack([xs, ys], axis=1)
        pairs = cKDTree(centres).query_pairs(config.overlap_limit * ds.max(), output_type="ndarray")
        if len(pairs):
            d = np.linalg.norm(centres[pairs[:, 0]] - centres[pairs[:, 1]], axis=1)
            close = pairs[d < config.overlap_limit * 0.5 * (ds[pairs[:, 0]] + ds[pairs[:, 1]])]
            overlapping[close.ravel()] = True
    for i in range(len(table)):
        vis = visible_fraction(shape, xs[i], ys[i], ds[i])
        r = ds[i] / 2
        y0, y1 = int(max(0, ys[i] - r)), int(min(h, ys[i] + r + 1))
        x0, x1 = int(max(0, xs[i] - r)), int(min(w, xs[i] + r + 1))
        touches_ice = y1 > y0 and x1 > x0 and cont_mask[y0:y1, x0:x1].any()
        if vis < config.edge_min_visible:
            reasons[i] = "edge"
        elif touches_ice:
            reasons[i] = "contamination"
        elif on_carbon[i] and not config.pick_on_carbon:
            reasons[i] = "carbon"
        elif table["group"].iat[i] == "aggregate":
            reasons[i] = "aggregate"
        elif overlapping[i]:
            reasons[i] = "overlap"
    table["pickable"] = reasons == "ok"
    table["reason"] = reasons
    table["on_carbon"] = on_carbon
    return table


def _potentials(
    config: SimulationConfig,
    rng: np.random.Generator,
    shape: tuple[int, int],
    px: float,
    table: pd.DataFrame,
    banks: list,
    n_agg: int,
    ctx: Context,
    use_carbon: bool,
    imaging: _Imaging,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Projected potential of the particles and the context, and the transfer function.

    Returns (particles, footprint, context phase, transfer): the particles' potential with
    their footprint, the context's phase, and the CTF x detector MTF.
    """
    preset = PRESETS[config.difficulty]
    xs, ys, ds = table["x"].to_numpy(), table["y"].to_numpy(), table["diameter"].to_numpy()
    part = np.zeros(shape, dtype=np.float32)
    foot = np.zeros(shape, dtype=bool)
    for x, y, k in zip(xs.astype(int), ys.astype(int), table["species"], strict=True):
        view, fp = banks[k].sample(rng)
        _paste(part, view, x, y)
        _paste(foot, fp, x, y, op="or")
    # Aggregates also carry amorphous denatured protein between the particles.
    if n_agg:
        agg = table["group"].to_numpy() == "aggregate"
        blob = disk_mask(shape, xs[agg], ys[agg], ds[agg] * 1.1).astype(np.float32)
        scale = float(np.mean([b.views.max() for b in banks])) * 0.25
        part += blob * scale * (0.5 + rng.random(shape, dtype=np.float32))

    # Context potential: carbon texture (amorphous) on top of the context phase map.
    ctx_phase = ctx.phase * 0.1
    mtf = (
        detector_mtf(shape, binning=max(1.0, px / config.detector_pixel_size))
        if config.mtf
        else None
    )
    transfer = ctf_2d(shape, px, imaging.ctf)
    if mtf is not None:
        transfer = transfer * mtf
    if use_carbon:
        # Texture strength is set relative to the shot noise: variance ratio drawn per image.
        tex_ratio = _draw(rng, preset["carbon_texture"])
        tex = rng.standard_normal(shape, dtype=np.float32)
        rms_transfer = float(np.sqrt(np.mean(transfer.astype(np.float64) ** 2)))
        tex_std = np.sqrt(tex_ratio / imaging.dose_px) / max(rms_transfer, 1e-6)
        ctx_phase = ctx_phase + tex * (tex_std * ctx.carbon)
    return part, foot, ctx_phase, transfer


def _expose(
    config: SimulationConfig,
    rng: np.random.Generator,
    shape: tuple[int, int],
    part: np.ndarray,
    foot: np.ndarray,
    ctx_phase: np.ndarray,
    transfer: np.ndarray,
    ctx: Context,
    imaging: _Imaging,
) -> tuple[np.ndarray, dict, float]:
    """Image formation at the target SNR, then shot noise.

    Returns (image, noise-free components, the SNR achieved).
    """
    dose_px = imaging.dose_px
    fft_kw = dict(workers=1)
    u = scipy.fft.irfft2(scipy.fft.rfft2(part, **fft_kw) * transfer, s=shape, **fft_kw)
    v = scipy.fft.irfft2(scipy.fft.rfft2(ctx_phase, **fft_kw) * transfer, s=shape, **fft_kw)
    u = u.astype(np.float32)
    v = v.astype(np.float32)
    amp = np.exp(-ctx.thickness).astype(np.float32)

    # Particle scale for the target SNR (see module docstring), measured at the reference
    # scale: integer-binned so the long side is about ``snr_reference_size`` pixels.
    b = snr_binning(shape, config.snr_reference_size)
    region = foot & ~ctx.contamination
    if not region.any():
        region = foot if foot.any() else np.ones(shape, bool)
    tu_b, region_b = _binned(amp * u, b), _binned(region, b) > 0.5
    if not region_b.any():
        region_b = np.ones_like(region_b)
    base_b = _binned(amp * (1 + v), b)[region_b]
    sig = float(np.mean(tu_b[region_b].astype(np.float64) ** 2))
    # Shot-noise variance of a b×b block mean of counts is mean(counts) / b².
    noise_var = float(np.mean(base_b)) / (b * b)
    a = float(np.sqrt(imaging.snr_target * noise_var / (dose_px * sig))) if sig > 0 else 0.0
    clean = (amp * (1.0 + np.float32(a) * u + v)).astype(np.float32, copy=False)
    np.maximum(clean, 1e-3, out=clean)
    expected = clean * np.float32(dose_px)
    image = rng.poisson(expected).astype(np.float32)
    # Real detectors and binning correlate neighbouring pixels' noise slightly (EMPIAR-10146:
    # nearest-neighbour correlation ~0.03); a weak [c, 1, c] kernel on the noise reproduces it.
    c = float(rng.uniform(0.0, config.noise_correlation))
    if c > 0:
        kernel = np.array([c, 1.0, c], dtype=np.float32) / np.sqrt(1 + 2 * c * c)
        noise = image - expected
        image = expected + cv2.sepFilter2D(noise, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT)
    image = image.astype(np.float32, copy=False)

    signal = (dose_px * a) * tu_b[region_b]
    achieved = float(
        np.mean(signal.astype(np.float64) ** 2)
        / (np.mean(_binned(expected, b)[region_b]) / (b * b))
    )
    components = dict(
        expected=expected,
        particle_signal=(dose_px * a) * amp * u,
        particle_potential=part * a,
        amplitude=amp,
    )
    return image, components, achieved


def micrograph_seed(seed: int, index: int) -> np.random.SeedSequence:
    """Seed of micrograph ``index`` in a run with ``seed``: any one can be regenerated alone."""
    return np.random.SeedSequence([int(seed), int(index)])


def stream(
    config: SimulationConfig, seed: int = 0, start: int = 0
) -> Iterator[SimulatedMicrograph]:
    """Endless fresh micrographs for training; item i equals micrograph i of ``write_dataset``.

    Each is ``simulate_micrograph(config, default_rng(micrograph_seed(seed, i)))``, so a batch
    seen in training can be regenerated exactly from (seed, i).
    """
    i = start
    while True:
        yield simulate_micrograph(config, np.random.default_rng(micrograph_seed(seed, i)))
        i += 1
