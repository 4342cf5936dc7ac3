"""Contrast transfer function of the microscope and the detector MTF.

Conventions (RELION/CTFFIND): defocus > 0 is underfocus, ``defocus_u`` >= ``defocus_v`` along
``astig_angle`` (degrees from the x axis),
``chi(k) = pi * lambda * dz(theta) * k^2 - pi/2 * Cs * lambda^3 * k^4 + phase_shift`` and
``CTF(k) = -(sqrt(1 - A^2) sin chi + A cos chi) * exp(-B k^2 / 4)``.
With this sign, protein (positive potential) appears dark at low frequency, as in raw data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å."""
    v = voltage_kv * 1e3
    return 12.264259 / np.sqrt(v * (1 + 0.97846e-6 * v))


@dataclass(frozen=True)
class CTFParams:
    """Microscope settings. Defocus in µm, Cs in mm, B-factor in Å^2, angles in degrees."""

    defocus_u: float = 1.5
    defocus_v: float = 1.5
    astig_angle: float = 0.0
    voltage: float = 300.0
    cs: float = 2.7
    amplitude_contrast: float = 0.07
    bfactor: float = 50.0
    phase_shift: float = 0.0

    @property
    def wavelength(self) -> float:
        return electron_wavelength(self.voltage)

    @property
    def defocus_mean(self) -> float:
        return 0.5 * (self.defocus_u + self.defocus_v)


def frequency_grid(shape: tuple[int, int], pixel_size: float, rfft: bool = True):
    """Spatial frequency magnitude (1/Å) and angle (rad) for an (r)fft2 of ``shape``."""
    h, w = shape
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None] / pixel_size
    fx = (np.fft.rfftfreq(w) if rfft else np.fft.fftfreq(w)).astype(np.float32)[None, :]
    fx = fx / pixel_size
    k = np.sqrt(fx * fx + fy * fy)
    theta = np.arctan2(fy, fx)
    return k, theta


def chi(k: np.ndarray, theta: np.ndarray | float, params: CTFParams) -> np.ndarray:
    """Phase aberration chi(k, theta) in radians."""
    lam = params.wavelength
    du, dv = params.defocus_u * 1e4, params.defocus_v * 1e4
    dz = 0.5 * (du + dv) + 0.5 * (du - dv) * np.cos(2 * (theta - np.deg2rad(params.astig_angle)))
    cs = params.cs * 1e7
    k2 = k * k
    return (
        np.pi * lam * dz * k2 - 0.5 * np.pi * cs * lam**3 * k2 * k2 + np.deg2rad(params.phase_shift)
    )


def ctf_values(
    k: np.ndarray, theta: np.ndarray | float, params: CTFParams, envelope: bool = True
) -> np.ndarray:
    """CTF at frequencies ``k`` (1/Å) and directions ``theta`` (rad)."""
    a = params.amplitude_contrast
    c = chi(k, theta, params)
    out = -(np.sqrt(1 - a * a) * np.sin(c) + a * np.cos(c))
    if envelope and params.bfactor:
        out = out * np.exp(-params.bfactor * k * k / 4.0)
    return out.astype(np.float32)


def ctf_2d(
    shape: tuple[int, int],
    pixel_size: float,
    params: CTFParams,
    rfft: bool = True,
    envelope: bool = True,
) -> np.ndarray:
    """CTF sampled on the (r)fft2 grid of an image of ``shape``."""
    k, theta = frequency_grid(shape, pixel_size, rfft=rfft)
    return ctf_values(k, theta, params, envelope=envelope)


def ctf_zeros(params: CTFParams, n: int, theta: float | None = None) -> np.ndarray:
    """First ``n`` zeros of the CTF (1/Å) along direction ``theta`` (rad; None = mean defocus).

    Solves ``chi(k) = m*pi - atan(A / sqrt(1 - A^2))`` for m = 1..n exactly (Cs included),
    the analytical reference that tests compare simulated Thon rings against.
    """
    lam = params.wavelength
    if theta is None:
        dz = params.defocus_mean * 1e4
    else:
        du, dv = params.defocus_u * 1e4, params.defocus_v * 1e4
        ang = 2 * (theta - np.deg2rad(params.astig_angle))
        dz = 0.5 * (du + dv) + 0.5 * (du - dv) * np.cos(ang)
    cs = params.cs * 1e7
    a = params.amplitude_contrast
    phi = np.arctan2(a, np.sqrt(1 - a * a)) + np.deg2rad(params.phase_shift)
    target = np.arange(1, n + 1) * np.pi - phi
    # (pi/2) Cs lam^3 x^2 - pi lam dz x + target = 0 with x = k^2; take the smaller root.
    qa, qb = 0.5 * np.pi * cs * lam**3, -np.pi * lam * dz
    disc = qb * qb - 4 * qa * target
    if cs == 0:
        x = target / (np.pi * lam * dz)
    else:
        x = (-qb - np.sqrt(np.maximum(disc, 0))) / (2 * qa)
        x[disc < 0] = np.nan
    return np.sqrt(x)


def detector_mtf(shape: tuple[int, int], binning: float = 1.0, rfft: bool = True) -> np.ndarray:
    """MTF of a counting detector seen at the working pixel size.

    The detector pixel is ``1/binning`` of a working pixel, so its aperture MTF is
    ``sinc(f / binning)``; binning itself (box averaging) adds ``sinc(f)`` when binning > 1.
    ``f`` is in cycles per working pixel.
    """
    h, w = shape
    fy = np.abs(np.fft.fftfreq(h))[:, None]
    fx = np.abs(np.fft.rfftfreq(w) if rfft else np.fft.fftfreq(w))[None, :]
    mtf = np.sinc(fx / binning) * np.sinc(fy / binning)
    if binning > 1:
        mtf = mtf * np.sinc(fx) * np.sinc(fy)
    return mtf.astype(np.float32)
