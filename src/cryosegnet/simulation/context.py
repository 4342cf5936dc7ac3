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


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-std random field with correlation length ~``scale_px`` pixels."""
    h, w = shape
    gh = max(2, int(np.ceil(h / max(scale_px, 1.0))) + 2)
    gw = max(2, int(np.ceil(w / max(scale_px, 1.0))) + 2)
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
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
    size_a: tuple[float, float] = (300.0, 3000.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Crystalline-ice contamination: ``count`` dense, irregular blobs.

    Returns (bool mask, thickness in mean free paths). Blobs are thick (1-4 mean free paths, so
    very dark), have irregular polygon-like outlines and a slightly rough interior.
    """
    h, w = shape
    mask = np.zeros(shape, dtype=bool)
    thick = np.zeros(shape, dtype=np.float32)
    for _ in range(count):
        d = rng.uniform(*size_a) / pixel_size
        d = float(np.clip(d, 6, 0.6 * max(h, w)))
        cx, cy = rng.uniform(-0.05 * w, 1.05 * w), rng.uniform(-0.05 * h, 1.05 * h)
        x0, x1 = int(max(0, cx - d)), int(min(w, cx + d + 1))
        y0, y1 = int(max(0, cy - d)), int(min(h, cy + d + 1))
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        ang = np.arctan2(yy - cy, xx - cx)
        # Irregular outline: radius modulated by a few random harmonics (facets of ice crystals).
        r = np.full_like(ang, 0.5 * d)
        for harmonic in range(2, 7):
            r *= 1 + rng.uniform(0, 0.25 / harmonic * 2) * np.cos(harmonic * ang + rng.uniform(0, 6.3))
        dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        inside = dist < r
        if not inside.any():
            continue
        # Dome-shaped thickness profile: thickest in the middle, soft but sharp-ish rim.
        depth = rng.uniform(1.0, 4.0)
        prof = np.clip(1 - (dist / np.maximum(r, 1e-3)) ** 2, 0, 1) ** 0.35
        rough = 1 + 0.1 * smooth_field(rng, inside.shape, max(3.0, d / 6))
        thick[y0:y1, x0:x1] += depth * prof * rough * inside
        mask[y0:y1, x0:x1] |= inside
    return mask, thick


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
    contamination_size_a: tuple[float, float] = (300.0, 3000.0),
) -> Context:
    """Draw the context maps of one micrograph."""
    thickness = ice_thickness(rng, shape, ice_mean, ice_gradient)
    phase = np.zeros(shape, dtype=np.float32)
    carbon_mask = np.zeros(shape, dtype=bool)
    info: dict = {"ice_mean": ice_mean, "ice_gradient": ice_gradient}
    if carbon:
        carbon_mask, dist = hole_edge_mask(rng, shape, pixel_size, carbon_fraction)
        # Ice meniscus: thicker close to the edge inside the hole (capillary rise).
        meniscus_px = rng.uniform(500.0, 2000.0) / pixel_size
        inside = ~carbon_mask
        rise = rng.uniform(0.1, 0.6) * ice_mean
        thickness[inside] += rise * np.exp(dist[inside] / meniscus_px)
        # Carbon: extra thickness (amplitude), a uniform phase step (edge fringes through the
        # CTF) and amorphous texture (Thon rings in the power spectrum).
        soft = np.clip(dist / 1.5 + 0.5, 0, 1).astype(np.float32)  # ~1.5 px anti-aliased edge
        thickness += carbon_thickness * soft
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
