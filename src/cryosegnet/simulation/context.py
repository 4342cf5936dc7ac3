"""What makes real micrographs hard besides noise: ice, carbon, hole edges, contamination.

Every feature is described by two maps at the working resolution: ``thickness`` (in inelastic
mean free paths; the energy filter / objective aperture removes ``1 - exp(-t)`` of the beam, so
thick regions are dark) and ``phase`` (projected potential, which goes through the CTF with the
particles and so gets realistic Fresnel fringes at edges). Smooth random fields are drawn on a
coarse grid and upsampled with OpenCV, which costs almost nothing at 4096².
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial import cKDTree


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-std random field with correlation length ~``scale_px`` pixels."""
    h, w = shape
    gh = max(2, int(np.ceil(h / max(scale_px, 1.0))) + 2)
    gw = max(2, int(np.ceil(w / max(scale_px, 1.0))) + 2)
    coarse: np.ndarray = rng.standard_normal((gh, gw)).astype(np.float32)
    coarse = cv2.GaussianBlur(coarse, (0, 0), 0.7)
    out = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    out -= out.mean()
    return out / (out.std() + 1e-8)


@dataclass
class Context:
    """Context maps of one micrograph (all H×W)."""

    thickness: np.ndarray
    phase: np.ndarray
    carbon: np.ndarray  # bool: carbon film / support
    contamination: np.ndarray  # bool: crystalline-ice contamination
    info: dict = field(default_factory=dict)


def ice_thickness(
    rng: np.random.Generator, shape: tuple[int, int], mean: float, gradient: float
) -> np.ndarray:
    """Ice thickness (mean free paths): a mean, a linear ramp and gentle smooth undulation.

    ``gradient`` is the relative amplitude (fraction of ``mean``) of thickness changes across the
    field of view; real thin ice in one hole varies by a few percent.
    """
    h, w = shape
    angle = rng.uniform(0, 2 * np.pi)
    yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    blobs = smooth_field(rng, shape, max(h, w) / rng.uniform(1.5, 4.0))
    rel = gradient * (ramp * rng.uniform(0.5, 1.5) + 0.35 * blobs)
    return (mean * (1.0 + rel)).astype(np.float32)


def hole_edge_mask(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_size: float,
    fraction: tuple[float, float] = (0.1, 0.45),
) -> tuple[np.ndarray, np.ndarray]:
    """Carbon region outside a circular hole whose edge crosses the image.

    Returns the bool carbon mask and the signed distance to the edge in pixels (positive on
    carbon), which callers use to shape the ice meniscus near the edge. Holes are 1-2 µm across,
    so at typical fields of view the edge is a gentle arc; a slight waviness is added.
    """
    h, w = shape
    radius = rng.uniform(5000.0, 10000.0) / pixel_size  # hole radius in px
    radius = max(radius, 0.8 * max(h, w))
    angle = rng.uniform(0, 2 * np.pi)
    normal = np.array([np.cos(angle), np.sin(angle)])  # points from hole into carbon
    # Place the edge so that the wanted fraction of the image lies on carbon (approximately,
    # along the normal through the image centre).
    frac = rng.uniform(*fraction)
    extent = 0.5 * (abs(normal[0]) * w + abs(normal[1]) * h)
    edge_offset = extent * (1 - 2 * frac)
    centre = np.array([w / 2, h / 2]) + normal * (edge_offset - radius)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dist = np.sqrt((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) - radius
    wobble = smooth_field(rng, shape, max(h, w) / 3) * rng.uniform(0.0, 0.02) * max(h, w)
    dist = (dist + wobble).astype(np.float32)
    return dist > 0, dist


def contamination_blobs(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_size: float,
    count: int,
    size_a: tuple[float, float] = (80.0, 2000.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Crystalline-ice contamination: ``count`` dense, faceted blobs.

    Returns (bool mask, thickness in mean free paths). Half are faceted crystals, half rounded
    ice balls; all are dome-shaped and thick (0.7-2.5 mean free paths at the core, so dark with
    greyer rims), with sizes spread over more than a decade (log-uniform in ``size_a``); some
    come as small clusters.
    """
    h, w = shape
    canvas = np.zeros(shape, dtype=np.uint8)
    thick = np.zeros(shape, dtype=np.float32)
    for _ in range(count):
        d = float(np.exp(rng.uniform(np.log(size_a[0]), np.log(size_a[1])))) / pixel_size
        d = float(np.clip(d, 4, 0.5 * max(h, w)))
        cx, cy = rng.uniform(-0.05 * w, 1.05 * w), rng.uniform(-0.05 * h, 1.05 * h)
        pieces = 1 if rng.random() < 0.6 else int(rng.integers(2, 5))
        for _ in range(pieces):
            px_ = cx + rng.normal(0, 0.4 * d) * (pieces > 1)
            py_ = cy + rng.normal(0, 0.4 * d) * (pieces > 1)
            # Faceted crystals (few vertices) or rounded ice balls (many, nearly equal radii).
            rounded = rng.random() < 0.5
            n_vert = 48 if rounded else int(rng.integers(5, 9))
            ang = (
                np.sort(rng.uniform(0, 2 * np.pi, n_vert))
                if not rounded
                else np.linspace(0, 2 * np.pi, n_vert, endpoint=False) + rng.uniform(0, 1)
            )
            jitter = rng.uniform(0.6, 1.0, n_vert)
            if rounded:  # a smooth, gently lumpy outline
                jitter = (
                    1
                    + 0.04
                    * np.convolve(
                        np.tile(rng.standard_normal(n_vert), 3), np.ones(7) / 7, mode="same"
                    )[n_vert : 2 * n_vert]
                )
            if rounded:  # slightly elliptical
                squash = rng.uniform(0, 0.4) * np.cos(ang - rng.uniform(0, 3)) ** 2
                jitter = jitter / np.sqrt(1 + squash)
            rad = 0.5 * d * jitter * (rng.uniform(0.5, 1.0) if pieces > 1 else 1.0)
            poly = np.stack([px_ + rad * np.cos(ang), py_ + rad * np.sin(ang)], axis=1)
            # Work in the polygon's bounding box (plus a margin so the distance map sees a rim).
            x0 = int(max(0, np.floor(poly[:, 0].min()) - 2))
            y0 = int(max(0, np.floor(poly[:, 1].min()) - 2))
            x1 = int(min(w, np.ceil(poly[:, 0].max()) + 3))
            y1 = int(min(h, np.ceil(poly[:, 1].max()) + 3))
            depth = rng.uniform(0.7, 2.5)
            if x1 <= x0 or y1 <= y0:
                continue
            piece = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
            local = np.round((poly - [x0, y0]) * 16).astype(np.int32)
            cv2.fillPoly(piece, [local], 255, cv2.LINE_AA, shift=4)
            # Dome-shaped thickness over the distance to the rim, so the rim is greyer than the
            # core (as for real ice balls), with a little internal texture.
            dist = cv2.distanceTransform((piece > 127).astype(np.uint8), cv2.DIST_L2, 3)
            q = np.clip(dist / max(float(dist.max()), 1.0), 0.0, 1.0)
            prof = np.sqrt(np.maximum(2 * q - q * q, 0.0))
            prof = np.maximum(prof, piece.astype(np.float32) / 255 * 0.15)
            if min(piece.shape) > 8:
                prof *= 1 + 0.08 * smooth_field(rng, piece.shape, max(3.0, 0.2 * d))
            thick[y0:y1, x0:x1] += depth * prof
            canvas[y0:y1, x0:x1] |= piece
    return canvas > 127, thick


def crystalline_grains(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_size: float,
    grain_a: tuple[float, float] = (150.0, 1500.0),
) -> np.ndarray:
    """Diffraction contrast of crystalline ice, as extra thickness (mean free paths).

    Ice that froze too slowly is a mosaic of crystallites; a grain near a Bragg condition sends
    electrons outside the objective aperture and looks dark, the others barely differ from
    vitreous ice. The grains are the Voronoi cells of random seeds (a typical size drawn
    log-uniformly from ``grain_a``), most nearly clear and a few strongly dark, with edges
    softened over a few pixels: dark blobs of every size that are not particles.
    """
    h, w = shape
    grain_px = float(np.exp(rng.uniform(*np.log(grain_a)))) / pixel_size
    grain_px = float(np.clip(grain_px, 6.0, 0.5 * max(h, w)))
    n_seeds = int(np.clip(h * w / (grain_px * grain_px), 4, 20000))
    seeds = rng.uniform(0, 1, (n_seeds, 2)) * [w, h]
    # Labels on a coarse grid (a few px per cell), then upsampled: cheap at 4096².
    step = max(1, int(grain_px // 16))
    gy, gx = np.mgrid[0:h:step, 0:w:step]
    _, label = cKDTree(seeds).query(np.column_stack([gx.ravel(), gy.ravel()]))
    darkness = rng.exponential(rng.uniform(0.02, 0.1), n_seeds).astype(np.float32)
    darkness = np.minimum(darkness, 0.5)
    coarse = darkness[label].reshape(gy.shape)
    grains = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_NEAREST)
    return cv2.GaussianBlur(grains, (0, 0), max(1.0, 0.04 * grain_px))


def make_context(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_size: float,
    *,
    ice_mean: float = 0.3,
    ice_gradient: float = 0.05,
    carbon: bool = False,
    carbon_fraction: tuple[float, float] = (0.1, 0.45),
    carbon_thickness: float = 0.25,
    contamination: int = 0,
    contamination_size_a: tuple[float, float] = (80.0, 2000.0),
    crystalline: bool = False,
) -> Context:
    """Draw the context maps of one micrograph (``crystalline``: the ice is a crystal mosaic)."""
    thickness = ice_thickness(rng, shape, ice_mean, ice_gradient)
    if crystalline:
        grains = crystalline_grains(rng, shape, pixel_size)
        thickness += grains
    phase = np.zeros(shape, dtype=np.float32)
    carbon_mask = np.zeros(shape, dtype=bool)
    info: dict = {"ice_mean": ice_mean, "ice_gradient": ice_gradient, "crystalline": crystalline}
    if carbon:
        carbon_mask, dist = hole_edge_mask(rng, shape, pixel_size, carbon_fraction)
        # Ice meniscus: thicker close to the edge inside the hole (capillary rise).
        meniscus_px = rng.uniform(500.0, 2000.0) / pixel_size
        inside = ~carbon_mask
        rise = rng.uniform(0.05, 0.3) * ice_mean
        thickness[inside] += rise * np.exp(dist[inside] / meniscus_px)
        # Carbon: extra thickness (amplitude) on top of the ice at the edge, a uniform phase step
        # (edge fringes through the CTF) and amorphous texture (Thon rings in the spectrum).
        soft = np.clip(dist / 1.5 + 0.5, 0, 1).astype(np.float32)  # ~1.5 px anti-aliased edge
        thickness += (carbon_thickness + rise) * soft
        phase += 1.0 * soft
        info["carbon_fraction"] = float(carbon_mask.mean())
    cont_mask = np.zeros(shape, dtype=bool)
    if contamination > 0:
        cont_mask, cthick = contamination_blobs(
            rng, shape, pixel_size, contamination, contamination_size_a
        )
        thickness += cthick
        phase += 2.0 * cthick
        info["contamination_fraction"] = float(cont_mask.mean())
    return Context(thickness, phase, carbon_mask, cont_mask, info)
