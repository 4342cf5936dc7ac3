"""Pictures of micrographs and picks: contrast for the eye, circles where the picks are.

Nothing here denoises for the U-Net; the aim is a picture a person can judge at a glance.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cryosegnet.preprocessing.denoise import resize, standardize_to_uint8

PICK_COLOUR_BGR = (0, 0, 255)  # red on a grey micrograph
BAD_REGION_COLOUR_BGR = (255, 160, 0)  # blue, apart from the red circles
BAD_REGION_OPACITY = 0.35  # enough to see, light enough to see the ice beneath
DISPLAY_CLIP_SIGMA = 3.0


DISPLAY_BLUR_SIGMA = 1.2


def display_image(data: np.ndarray, height: int, blur: float = DISPLAY_BLUR_SIGMA) -> np.ndarray:
    """A grey uint8 picture of ``data`` whose height is ``height`` px.

    The micrograph is area-averaged down (which also averages the shot noise away),
    low-passed (Gaussian of ``blur`` picture pixels when shrunk: particles read better, and
    JPEG thumbnails come out smaller), and mapped to 0..255 with the median and MAD at
    ±:data:`DISPLAY_CLIP_SIGMA`, so contamination does not squeeze the particles' contrast.

    Parameters
    ----------
    data : numpy.ndarray
        The micrograph, ``data[row, col]``.
    height : int
        Height of the picture; the width keeps the aspect ratio.
    blur : float
        Gaussian sigma in picture pixels, applied when the picture is smaller than the data.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(height, round(height * cols / rows))``.
    """
    rows, cols = data.shape
    height = max(1, int(height))
    width = max(1, int(round(height * cols / rows)))
    small = resize(np.asarray(data, dtype=np.float32), (height, width))
    if height < rows and blur > 0:
        small = cv2.GaussianBlur(small, (0, 0), blur)
    return standardize_to_uint8(small, DISPLAY_CLIP_SIGMA)


def estimate_display_diameter(picks: pd.DataFrame, shape: tuple[int, int] | None = None) -> float:
    """Diameter (micrograph px) to draw picks with when their files do not carry one.

    The median of the known ``diameter`` values if there are any; otherwise the median
    distance from each pick to its nearest neighbour (picks of a packed micrograph sit about one
    diameter apart), capped at a twentieth of the micrograph; 1/50 of the micrograph's long side
    when there are fewer than two picks. Only for drawing: it is not a particle-size estimate.

    Parameters
    ----------
    picks : pandas.DataFrame
        Picks table (``x``, ``y``, optionally ``diameter``).
    shape : tuple of int, optional
        Micrograph (rows, cols), for the cap and the fallback.

    Returns
    -------
    float
        A positive diameter in micrograph pixels.
    """
    long_side = float(max(shape)) if shape else None
    if "diameter" in picks:
        known = picks["diameter"].to_numpy(float)
        known = known[np.isfinite(known) & (known > 0)]
        if known.size:
            return float(np.median(known))
    xy = picks[["x", "y"]].to_numpy(float) if len(picks) else np.empty((0, 2))
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) >= 2:
        distances, _ = cKDTree(xy).query(xy, k=2)
        diameter = float(np.median(distances[:, 1]))
        if long_side:
            diameter = min(diameter, long_side / 20)
        if diameter > 0:
            return diameter
    if long_side:
        return long_side / 50
    return 20.0


def draw_picks(
    picture: np.ndarray,
    picks: pd.DataFrame,
    scale: float,
    diameter: float,
    colour: tuple[int, int, int] = PICK_COLOUR_BGR,
    thickness: int = 2,
) -> np.ndarray:
    """Draw a circle at every pick on a copy of ``picture`` (grey or BGR).

    Parameters
    ----------
    picture : numpy.ndarray
        ``uint8`` picture of the micrograph, grey (2-D) or BGR.
    picks : pandas.DataFrame
        Picks in micrograph pixels (x = column, y = row, pixel centres at integers).
    scale : float
        Picture pixels per micrograph pixel.
    diameter : float
        Circle diameter in micrograph pixels for picks without a finite ``diameter``.
    colour : tuple of int
        BGR colour of the circles.
    thickness : int
        Line width in picture pixels.

    Returns
    -------
    numpy.ndarray
        BGR ``uint8`` picture with the circles.
    """
    canvas = cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR) if picture.ndim == 2 else picture.copy()
    if not len(picks):
        return canvas
    if "diameter" in picks:
        sizes = picks["diameter"].to_numpy(float)
    else:
        sizes = np.full(len(picks), np.nan)
    sizes = np.where(np.isfinite(sizes) & (sizes > 0), sizes, diameter)
    for x, y, d in zip(picks["x"].to_numpy(float), picks["y"].to_numpy(float), sizes):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        # Pixel centres: micrograph pixel i covers [i - 0.5, i + 0.5), so scale about the edges.
        centre = (int(round((x + 0.5) * scale - 0.5)), int(round((y + 0.5) * scale - 0.5)))
        cv2.circle(
            canvas,
            centre,
            max(1, int(round(d * scale / 2))),
            colour,
            thickness,
            lineType=cv2.LINE_AA,
        )
    return canvas


def draw_mask(
    picture: np.ndarray,
    mask: np.ndarray,
    colour: tuple[int, int, int] = BAD_REGION_COLOUR_BGR,
    opacity: float = BAD_REGION_OPACITY,
) -> np.ndarray:
    """Tint the masked part of a copy of ``picture`` (bad regions: contamination, carbon).

    Parameters
    ----------
    picture : numpy.ndarray
        ``uint8`` picture, grey (2-D) or BGR.
    mask : numpy.ndarray
        Boolean mask covering the same micrograph at any scale (it is resized to the picture,
        nearest neighbour).
    colour : tuple of int
        BGR colour of the tint.
    opacity : float
        Weight of the colour over the picture, 0..1.

    Returns
    -------
    numpy.ndarray
        BGR ``uint8`` picture.
    """
    canvas = cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR) if picture.ndim == 2 else picture.copy()
    height, width = canvas.shape[:2]
    inside = cv2.resize(
        np.asarray(mask, dtype=np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
    ).astype(bool)
    if inside.any():
        tint = np.asarray(colour, dtype=np.float32)
        blended = (1 - opacity) * canvas[inside].astype(np.float32) + opacity * tint
        canvas[inside] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return canvas
