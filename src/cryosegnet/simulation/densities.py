"""3D densities for simulated particles, all held as weighted pseudo-atoms.

A single point-cloud representation covers procedural shapes, user MRC maps and atomic models:
projecting a point cloud at any orientation is a rotation plus a 2D histogram, which is far
cheaper than rotating and integrating a voxel grid, and it resamples to any pixel size for free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

PROCEDURAL_KINDS = ("globular", "rod", "ring", "multidomain", "cn", "dn", "shell")


@dataclass(frozen=True)
class Density:
    """A particle as pseudo-atoms: ``points`` (N, 3) in Å centred on the origin, ``weights`` (N,).

    ``blur`` is the Gaussian sigma (Å) each point stands for; it keeps coarse point clouds from
    projecting as speckle. ``diameter`` (Å) is the label diameter, i.e. the longest dimension.
    """

    points: np.ndarray
    weights: np.ndarray
    blur: float
    name: str = "density"

    @property
    def radius(self) -> float:
        """Largest distance of a point from the centre (Å)."""
        return float(np.sqrt((self.points**2).sum(axis=1).max())) if len(self.points) else 0.0

    @property
    def diameter(self) -> float:
        return 2.0 * self.radius

    def scaled_to(self, diameter: float) -> Density:
        """Same shape, resized so that its diameter is ``diameter`` Å."""
        factor = diameter / max(self.diameter, 1e-6)
        return replace(self, points=self.points * factor, blur=self.blur * factor)


def _centred(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    centre = (points * weights[:, None]).sum(axis=0) / weights.sum()
    return points - centre


def _ellipsoid(rng: np.random.Generator, centre, radii, n: int) -> np.ndarray:
    """``n`` points uniform inside a randomly oriented ellipsoid."""
    direction = rng.standard_normal((n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-12
    r = rng.random(n) ** (1.0 / 3.0)
    local = direction * r[:, None] * np.asarray(radii, float)
    rot = Rotation.random(random_state=rng).as_matrix()
    return local @ rot.T + np.asarray(centre, float)


def _lumps(rng: np.random.Generator, centres: np.ndarray, radii: np.ndarray, n_total: int):
    """Union of ellipsoidal lumps, point count proportional to each lump's volume."""
    vol = np.prod(radii, axis=1)
    counts = np.maximum(8, np.round(n_total * vol / vol.sum()).astype(int))
    return np.concatenate(
        [_ellipsoid(rng, c, r, k) for c, r, k in zip(centres, radii, counts, strict=True)]
    )


def _subunit(rng: np.random.Generator, size: float, n: int) -> np.ndarray:
    """A lumpy globular subunit of roughly ``size`` radius (1-3 overlapping ellipsoids)."""
    k = int(rng.integers(1, 4))
    centres = rng.normal(0, 0.35 * size, (k, 3))
    radii = size * rng.uniform(0.55, 1.0, (k, 3))
    return _lumps(rng, centres, radii, n)


def _rotz(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# Long on purpose: one branch per procedural particle shape, each read on its own.
def _shape_points(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """Points of one procedural shape in arbitrary units (rescaled later)."""
    if kind == "globular":
        # A compact core with a few smaller domains bulging out of it.
        k = int(rng.integers(3, 9))
        centres = np.concatenate([np.zeros((1, 3)), rng.normal(0, 0.35, (k - 1, 3))])
        radii = np.concatenate([rng.uniform(0.5, 0.7, (1, 3)), rng.uniform(0.25, 0.55, (k - 1, 3))])
        return _lumps(rng, centres, radii, n)
    if kind == "rod":
        k = int(rng.integers(6, 15))
        aspect = rng.uniform(2.5, 6.0)
        z = np.linspace(-aspect / 2, aspect / 2, k)
        twist = rng.uniform(0.3, 1.2)
        offset = rng.uniform(0.0, 0.25)
        centres = np.stack(
            [offset * np.cos(twist * np.arange(k)), offset * np.sin(twist * np.arange(k)), z],
            axis=1,
        )
        radii = rng.uniform(0.35, 0.6, (k, 3))
        return _lumps(rng, centres, radii, n)
    if kind == "ring":
        k = int(rng.integers(5, 13))
        ring_r = 1.0
        tube = rng.uniform(0.33, 0.45) * ring_r * (8 / k) ** 0.5
        ang = 2 * np.pi * np.arange(k) / k
        centres = np.stack([ring_r * np.cos(ang), ring_r * np.sin(ang), np.zeros(k)], axis=1)
        radii = np.tile([tube * 1.2, tube, tube * rng.uniform(0.8, 1.6)], (k, 1))
        pts = _lumps(rng, centres, radii, n)
        if rng.random() < 0.3:  # a central plug / cap, as in many channels and chaperonins
            pts = np.concatenate([pts, _ellipsoid(rng, (0, 0, 0.3), (0.35, 0.35, 0.3), n // 8)])
        return pts
    if kind == "multidomain":
        k = int(rng.integers(2, 5))
        chain = [np.zeros(3)]  # domain centres, each touching the previous one
        sizes = rng.uniform(0.4, 0.8, k)
        for i in range(1, k):
            step = rng.standard_normal(3)
            step /= np.linalg.norm(step)
            chain.append(chain[-1] + step * (sizes[i - 1] + sizes[i]) * 0.85)
        parts = [
            _subunit(rng, s, int(n * s**3 / (sizes**3).sum()) + 8) + c
            for s, c in zip(sizes, chain, strict=True)
        ]
        return np.concatenate(parts)
    if kind in ("cn", "dn"):
        order = int(rng.integers(2, 9))
        copies_n = order * (2 if kind == "dn" else 1)
        size = rng.uniform(0.4, 0.7)
        sub = _subunit(rng, size, max(8, n // copies_n))
        # Neighbouring subunits touch or interpenetrate, as in real oligomers.
        ring_r = size * rng.uniform(0.55, 0.9) / np.sin(np.pi / order)
        z_off = size * rng.uniform(0.4, 0.8) if kind == "dn" else 0.0
        sub = sub + np.array([ring_r, 0.0, z_off])
        copies = [sub @ _rotz(2 * np.pi * i / order).T for i in range(order)]
        if kind == "dn":
            flip = np.diag([1.0, -1.0, -1.0])  # two-fold about x
            copies += [c @ flip.T for c in copies]
        return np.concatenate(copies)
    if kind == "shell":
        # Hollow cage (apoferritin-like): lumps on a sphere with an empty core.
        k = int(rng.choice([12, 20, 24, 32, 60]))
        golden = np.pi * (3 - np.sqrt(5))
        spiral = np.arange(k) + 0.5  # Fibonacci sphere
        zc = 1 - 2 * spiral / k
        rc = np.sqrt(1 - zc**2)
        centres = 0.8 * np.stack(
            [rc * np.cos(golden * spiral), rc * np.sin(golden * spiral), zc], axis=1
        )
        lump = 0.8 * np.sqrt(4.0 / k) * rng.uniform(0.85, 1.1)
        radii = np.tile([lump, lump, 0.2], (k, 1)) * rng.uniform(0.9, 1.1, (k, 3))
        pts = []
        counts = max(8, n // k)
        for c, r in zip(centres, radii, strict=True):
            # Orient each lump's short axis radially so the shell has a uniform thickness.
            normal = c / np.linalg.norm(c)
            helper = np.array([1.0, 0, 0]) if abs(normal[0]) < 0.9 else np.array([0, 1.0, 0])
            e1 = np.cross(normal, helper)
            e1 /= np.linalg.norm(e1)
            e2 = np.cross(normal, e1)
            d = rng.standard_normal((counts, 3))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            d *= (rng.random(counts) ** (1 / 3))[:, None] * r
            pts.append(c + d[:, :1] * e1 + d[:, 1:2] * e2 + d[:, 2:3] * normal)
        return np.concatenate(pts)
    raise ValueError(f"unknown procedural density kind {kind!r}; use one of {PROCEDURAL_KINDS}")


def _uniform_density(pts: np.ndarray, rng: np.random.Generator, k: int = 10) -> np.ndarray:
    """Thin regions where lumps or subunits overlap, so protein density stays uniform.

    Overlapping building blocks would otherwise stack their points and make a dense dark core
    much smaller than the particle's outline. Local density comes from the distance to the k-th
    neighbour; points are kept with probability (reference / local density), the reference
    being a low percentile, i.e. a singly covered region.
    """
    if len(pts) <= 4 * k:
        return pts
    dist, _ = cKDTree(pts).query(pts, k=k + 1)
    density = 1.0 / np.maximum(dist[:, -1], 1e-9) ** 3
    keep = rng.random(len(pts)) < np.minimum(1.0, np.percentile(density, 30) / density)
    return pts[keep]


def procedural_density(
    rng: np.random.Generator,
    diameter: float,
    kind: str | None = None,
    spacing: float | None = None,
    max_points: int = 40000,
) -> Density:
    """A random pseudo-atomic particle of the given ``kind`` and ``diameter`` (Å).

    ``spacing`` (Å) is the typical distance between pseudo-atoms; it only needs to be finer than
    the pixel size the density will be projected at (default: diameter / 40, at least 2 Å).
    """
    kind = kind or str(rng.choice(PROCEDURAL_KINDS))
    spacing = spacing or max(2.0, diameter / 40.0)
    # Volume of a solid sphere of this diameter bounds the point count; shapes fill ~30-60 %.
    n = int(np.clip(0.4 * (np.pi / 6) * (diameter / spacing) ** 3, 500, max_points))
    pts = _uniform_density(_shape_points(kind, rng, n), rng)
    pts = pts @ Rotation.random(random_state=rng).as_matrix().T
    weights = np.ones(len(pts), dtype=np.float64)
    pts = _centred(pts, weights)
    dens = Density(points=pts, weights=weights, blur=1.0, name=kind)
    dens = dens.scaled_to(diameter)
    # Internal texture: density concentrated around random "secondary structure" centres
    # ~15-25 Å apart, so projections are mottled rather than smooth blobs when the pixel size
    # resolves it (random, not periodic, unlike a sum of plane waves).
    sse = rng.uniform(15.0, 25.0)
    volume = 0.4 * np.pi / 6 * diameter**3
    n_centres = int(np.clip(volume / sse**3, 4, len(pts)))
    centres = dens.points[rng.choice(len(pts), size=n_centres, replace=False)]
    dist, _ = cKDTree(centres).query(dens.points, k=1)
    weights = 0.5 + np.exp(-0.5 * (dist / (0.3 * sse)) ** 2)
    dens = replace(dens, points=_centred(dens.points, weights), weights=weights)
    dens = dens.scaled_to(diameter)
    # Blur: each point stands for a cell of roughly spacing^3, so smear it over ~that width.
    cell = (0.4 * np.pi / 6 * diameter**3 / len(pts)) ** (1 / 3)
    return replace(dens, blur=float(0.6 * cell))


# --------------------------------------------------------------------------- user densities


def load_mrc_density(
    path: str | os.PathLike,
    voxel_size: float | None = None,
    threshold: float | None = None,
    max_points: int = 60000,
) -> Density:
    """A density from an MRC map: voxels above ``threshold`` become weighted pseudo-atoms.

    Any voxel size works: the map is binned down when it has more significant voxels than
    ``max_points`` (speed), and projection later resamples to the micrograph's pixel size. A map
    without a voxel size in its header (0) gets ``voxel_size`` or, failing that, 1 Å with the
    name marked ``unscaled`` so callers can rescale it to a wanted diameter.
    """
    import mrcfile
    from scipy import ndimage

    path = Path(path)
    with mrcfile.open(path, permissive=True) as mrc:
        data = np.asarray(mrc.data, dtype=np.float32)
        header_voxel = float(mrc.voxel_size.x) if mrc.voxel_size is not None else 0.0
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D map, got shape {data.shape}")
    unscaled = voxel_size is None and header_voxel <= 0
    vox = float(voxel_size or (header_voxel if header_voxel > 0 else 1.0))
    if threshold is None:
        # Voxels well above the solvent level; robust to maps with a nonzero background.
        background = float(np.median(data))
        spread = float(np.percentile(np.abs(data - background), 99.5))
        threshold = background + 0.1 * spread
    mask = data > threshold
    factor = 1
    while mask.sum() > max_points and min(data.shape) // (factor * 2) >= 8:
        factor *= 2
        mask = ndimage.zoom(data, 1 / factor, order=1) > threshold
    if factor > 1:
        data = ndimage.zoom(data, 1 / factor, order=1)
        vox *= factor
    idx = np.argwhere(mask)
    if len(idx) == 0:
        raise ValueError(f"{path}: no voxels above threshold {threshold:g}")
    # MRC data are indexed (z, y, x); turn into (x, y, z) in Å.
    pts = idx[:, ::-1].astype(np.float64) * vox
    weights = (data[mask] - threshold).astype(np.float64) + 1e-6
    pts = _centred(pts, weights)
    name = path.stem + ("-unscaled" if unscaled else "")
    return Density(points=pts, weights=weights, blur=0.5 * vox, name=name)


def load_atomic_model(path: str | os.PathLike, blur: float = 1.5) -> Density:
    """A density from a PDB/mmCIF model (first model; waters and hydrogens dropped).

    Each atom weighs its atomic number, a fair proxy for its electron scattering at the
    resolutions a picker sees.
    """
    import gemmi

    structure = gemmi.read_structure(str(path))
    if len(structure) == 0:
        raise ValueError(f"{path}: no models in file")
    coords, weights = [], []
    for chain in structure[0]:
        for residue in chain:
            if residue.is_water():
                continue
            for atom in residue:
                if atom.element.is_hydrogen:
                    continue
                coords.append((atom.pos.x, atom.pos.y, atom.pos.z))
                weights.append(atom.element.atomic_number)
    if not coords:
        raise ValueError(f"{path}: no atoms found")
    pts = np.asarray(coords, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    return Density(points=_centred(pts, w), weights=w, blur=blur, name=Path(path).stem)


def load_density(path: str | os.PathLike, voxel_size: float | None = None) -> Density:
    """Load an MRC map (``.mrc``, ``.map``, ``.mrcs``) or an atomic model (PDB/mmCIF)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".mrc", ".map", ".mrcs", ".rec"):
        return load_mrc_density(path, voxel_size=voxel_size)
    if suffix in (".pdb", ".ent", ".cif", ".mmcif", ".gz"):
        return load_atomic_model(path)
    raise ValueError(f"{path}: unsupported density file (use .mrc/.map or .pdb/.cif)")
