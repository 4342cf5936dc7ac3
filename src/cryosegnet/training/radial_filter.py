"""A learnt, rotationally symmetric, noise-whitened matched filter for round particles.

A place's features are the means of thin rings of the pre-filtered micrograph around it (its
radial profile). The filter is Fisher's linear discriminant of those profiles:
``w = C^-1 (mu_particles - mu_random)``, ``C`` the profiles' covariance at random places of the
batch (shrunk a little toward its diagonal mean, so a few thousand places give a stable
inverse). Picks are the local maxima of the filter's response, kept a set distance apart, best
first; those closer than a particle's diameter or so to a better one rank after all others.

Why: it reads only a rotational average, so a few hundred positives (the picks that 2D
classification keeps, re-centred by their class alignment) fix its two dozen numbers, while the
whitening turns the ice's correlated noise into a known background the response is measured
against. On the apoferritin ``train`` split, learnt from the picks ``classify --low-snr --auto``
keeps, it picked about as well as the same filter learnt from labels, and its picks are
centred. It suits round particles in fields of them. On simulated TRPV1 fields with few
particles and other dark things its strongest responses were not particles, so pooled over a
batch it fell far below the picker told the size: its linear score is not comparable across
micrographs that hold other dark things. Hence its scores are, by default, in each
micrograph's own units (``score_units``, below).

The response of the whole micrograph is one convolution: the filter is linear in the ring means,
so its weights fold into a single radial kernel. Fitting reads ring means only at the positives
and the random places (patches), so no per-ring map of a micrograph is ever held.

Scores (``score_units``): ``micrograph`` (the default) is a robust z-score of each
micrograph's own response, its median subtracted and its median absolute deviation x 1.4826
the unit; ``batch`` scales the response once for the batch, the random places 0 on average
and the positives 1. Measured with the shipped filter, labels 3-fold by micrograph
(``bench/studies/radial_template.py --parts units``), batch -> micrograph units: simulated
TRPV1 easy best F1 / AUPRC 0.416 / 0.362 -> 0.672 / 0.381, medium 0.344 / 0.337 -> 0.443 /
0.243, apoferritin ``train`` 0.611 / 0.623 -> 0.613 / 0.624; without labels, in the loop
(``bench/refine.py``): simulated fields with junk and empty fields 0.234 / 0.155 -> 0.438 /
0.239, apoferritin ``train`` 0.631 / 0.599 -> 0.631 / 0.603. Per-micrograph units cannot tell
an empty micrograph: its noise is scaled to the same units as a full one's, so it keeps as
many picks (batch units kept two thirds as many on a simulated empty field, and as many on
phase-randomised copies of apoferritin micrographs).

The threshold is read off the positives themselves, scored in those units (in ``micrograph``
units each micrograph with positives is read a second time, to score them as :meth:`pick`
does): the score the weakest tenth of them stay under (``threshold_quantile``), so the picks
kept are those that look at least as particle-like as nine in ten of the particles the classes
kept. On the apoferritin ``train`` split, in batch units, it came to 0.74, where F1 was within
0.01 of its best (0.70); Fisher's midpoint, 0.5, gave 3 x the picks and F1 0.07 below its best.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from cryosegnet.errors import CryoSegNetError, SettingsError

#: What a saved filter's ``kind`` field says (so a reader can tell the file apart).
KIND = "cryosegnet radial filter"
#: 2: ``settings.score_units``; a file of format 1 has none and scores in ``batch`` units.
#: 3: ``settings.crowding``; a file of an earlier format has none and demotes no pick.
#: 4: ``settings.tail_border``; a file of an earlier format reads its tail ratio inside its
#: ``border``, as it did.
#: 5: ``unet_map`` (a U-Net's map added to the response); a file of an earlier format has none.
FORMAT_VERSION = 5
#: What a score is measured against (:attr:`RadialFilterSettings.score_units`).
SCORE_UNITS = ("batch", "micrograph")
#: How far a micrograph's pixel size may differ from the filter's (a rounded header value).
PIXEL_SIZE_TOLERANCE = 0.02
#: How far a diameter asked for may differ from the filter's (a value rounded when typed).
DIAMETER_TOLERANCE = 0.01
#: Turns a median absolute deviation into a Gaussian's standard deviation.
MAD_TO_SD = 1.4826


def robust_z(values: np.ndarray) -> np.ndarray:
    """``values`` less their median, over 1.4826 x their median absolute deviation (float32).

    A score in these units means the same on every micrograph, whatever its contrast: the
    ``micrograph`` score units, and the unit a U-Net's map is added to the response in.

    Parameters
    ----------
    values : numpy.ndarray
        A response or a map.

    Returns
    -------
    numpy.ndarray
        float32, the same shape (a constant input: less its median only).
    """
    values = np.asarray(values, np.float32)
    centre = float(np.median(values))
    spread = MAD_TO_SD * float(np.median(np.abs(values - np.float32(centre))))
    return (values - np.float32(centre)) / np.float32(spread if spread > 0 else 1)


def scores_at(response: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """A response's values at some places (rounded and clipped, as :func:`ring_features`
    reads them).

    Parameters
    ----------
    response : numpy.ndarray
        A micrograph's response.
    xy : numpy.ndarray
        ``(n, 2)`` places, x = column.

    Returns
    -------
    numpy.ndarray
        float64, one per place.
    """
    h, w = response.shape
    xy = np.asarray(xy, float).reshape(-1, 2)
    x = np.clip(np.round(xy[:, 0]).astype(int), 0, w - 1)
    y = np.clip(np.round(xy[:, 1]).astype(int), 0, h - 1)
    return response[y, x].astype(np.float64)


@dataclass(frozen=True)
class RadialFilterSettings:
    """How the filter reads a micrograph, learns and picks; every default is here once.

    Lengths are in particle diameters (the filter's ``diameter``, micrograph pixels). The
    defaults are those of the study that measured the filter on the apoferritin ``train``
    split (``bench/studies/radial_template.py``).

    Attributes
    ----------
    ring_width : float
        Width of each ring (1/23 of a diameter: about 3 px for a 68 px particle, fine enough to
        resolve a shell).
    reach : float
        Outer radius of the outermost ring (0.7: the particle and the ice just around it, which
        tells a particle from a dark patch of ice).
    lowpass : float
        Gaussian sigma of the low-pass applied first (1/12: about 6 px for a 68 px particle).
        It smooths the ring means across neighbouring rings, so the few hundred positives of
        the loop fix a steadier profile. In the loop, without labels
        (``bench/studies/radial_lowpass.py``), 1/45 -> 1/12 moved the picks written on the
        16 simulated fields with junk from best F1 / AUPRC 0.531 / 0.305 to 0.560 / 0.333 (at a
        quarter diameter 0.398 -> 0.489), and on the apoferritin ``train`` split from 0.677 /
        0.553 to 0.677 / 0.548 (every candidate 0.677 / 0.679 -> 0.684 / 0.685; a quarter
        diameter 0.561 -> 0.570). 1/10 did as well on both; 1/7 fell on both (0.525 and 0.658).
    background : float
        Gaussian sigma of the background removed (0.9: ice-thickness gradients and carbon
        edges, wider than a particle). Wider ones (1.5-10) lifted the loop's picks on simulated
        fields with junk and left apoferritin unchanged, but the filter then saw no particle on
        the simulations (so ``auto`` would not keep it), and no labelled real set here has
        gradients to check them on (``bench/studies/radial_lowpass.py``): not adopted.
    random_places : int
        Random places per micrograph at which the noise's mean and covariance are measured.
    shrinkage : float
        Share of the covariance replaced by its diagonal mean (1 %: a stable inverse).
    separation : float
        Picks closer than this to a better one are dropped (0.6: touching particles survive).
    crowding : float
        Picks closer than this to a better, uncrowded pick are *crowded*: ranked after every
        uncrowded pick of their micrograph, their score lowered by ``crowding_penalty`` (a soft
        non-maximum suppression). Particles in one layer of ice seldom come closer than a
        diameter (95 % of the apoferritin ``train`` labels' nearest neighbours are 0.95
        diameters away or more), while a crowded field's response has maxima between touching
        particles and a second one on some particles. 0.9 (at or below ``separation`` no pick
        is crowded). With the loop's filter on that split, learnt without labels, it moved best
        F1 / AUPRC over every candidate from 0.631 / 0.634 to 0.677 / 0.679, and F1 at the
        threshold from 0.576 to 0.676 (picks dropped at 0.9 instead: 0.677 / 0.590); on
        simulated fields with junk (particles 0.85-1.1 diameters apart or more), in the loop,
        0.438 -> 0.531 best F1 (``bench/refine.py``).
    crowding_penalty : float
        What a crowded pick's score loses, in score units (10: below the threshold, so the
        picks written at it are uncrowded; a lower ``min_score`` adds the crowded ones last).
    border : float
        Margin of the micrograph where no pick is made (1/6). Particles cut by the edge are
        particles too: a tenth of the apoferritin ``train`` labels lie within d/3 of it,
        peers pick them and RELION's extraction pads their boxes. Nearer than d/6 the rings
        read mostly the reflected micrograph. From 1/3 to 1/6, re-picking with the loop's
        fitted filters, best F1 / AUPRC of the written picks went 0.677 / 0.548 -> 0.682 /
        0.555 on that split and 0.560 / 0.333 -> 0.565 / 0.340 on simulated fields with
        junk; 1/12 did as well on both, no border at all worse on both
        (``bench/studies/radial_border.py``). The tail ratio keeps its own margin,
        ``tail_border``.
    peak_window : float
        Width of the local-maximum window (1/8, at least 3 px).
    max_candidates : int
        Best local maxima considered before the separation step.
    threshold_quantile : float
        The fitted filter's threshold is this quantile of its positives' scores, in
        ``score_units``; picks under it are dropped.
    empty_level : float
        A micrograph's response counts as particle-like where it stands this many robust
        standard deviations above its median, and as its mirror image where it stands as far
        below (:meth:`RadialFilter.tail_ratio`).
    min_tail_ratio : float
        A micrograph with fewer than this many times as many pixels in the upper tail as in
        the lower one shows nothing the filter matches: it is judged empty (1.5: on the
        apoferritin ``train`` split, with a filter learnt there without labels, the real
        micrographs' ratios were 1.75-4.1 and their phase-randomised copies' 0.60-1.23; with the
        d/12 ``lowpass``, 1.84-4.07 and 0.62-1.30).
    tail_border : float
        Margin of the micrograph where the tail ratio is not read (1/3: the margin its cut was
        chosen with; nearer the edge the rings read the reflected micrograph). Not tied to
        ``border``: when the picks' margin went from 1/3 to 1/6, reading the ratio there too
        moved a real apoferritin ``test`` micrograph from 1.53 to 1.39, under the cut, and
        emptied it (``bench/studies/radial_border.py``).
    score_units : str
        What a score is measured against. ``batch``: one scale for the whole batch (0: the
        random places' mean response, 1: the positives'). ``micrograph``: each micrograph's
        own response, less its median, over 1.4826 x its median absolute deviation (a robust
        z-score), so that a micrograph whose other dark things respond strongly does not
        outrank the particles of the others.
    """

    ring_width: float = 1 / 23
    reach: float = 0.7
    lowpass: float = 1 / 12
    background: float = 0.9
    random_places: int = 3000
    shrinkage: float = 0.01
    separation: float = 0.6
    crowding: float = 0.9
    crowding_penalty: float = 10.0
    border: float = 1 / 6
    peak_window: float = 1 / 8
    max_candidates: int = 5000
    threshold_quantile: float = 0.1
    empty_level: float = 3.0
    min_tail_ratio: float = 1.5
    tail_border: float = 1 / 3
    score_units: str = "micrograph"

    def __post_init__(self) -> None:
        checks = [
            (0 < self.ring_width < self.reach, "radial filter: ring width must be in (0, reach)"),
            (self.lowpass > 0 and self.background > 0, "radial filter: sigmas must be > 0"),
            (self.random_places >= 10, "radial filter: at least 10 random places"),
            (0 <= self.shrinkage <= 1, "radial filter: shrinkage must be in [0, 1]"),
            (self.separation > 0 and self.border >= 0, "radial filter: separation > 0"),
            (
                self.crowding >= 0 and self.crowding_penalty >= 0,
                "radial filter: crowding and its penalty must be >= 0",
            ),
            (self.peak_window > 0 and self.max_candidates >= 1, "radial filter: peak window"),
            (0 <= self.threshold_quantile <= 1, "radial filter: threshold quantile in [0, 1]"),
            (self.empty_level > 0, "radial filter: the empty test's level must be > 0"),
            (self.min_tail_ratio >= 0, "radial filter: the minimum tail ratio must be >= 0"),
            (self.tail_border >= 0, "radial filter: the tail ratio's margin must be >= 0"),
            (
                self.score_units in SCORE_UNITS,
                f"radial filter: score units must be one of {', '.join(SCORE_UNITS)}, "
                f"not {self.score_units!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)


def prefilter(image: np.ndarray, diameter: float, settings: RadialFilterSettings) -> np.ndarray:
    """Low-pass, remove the background and standardise one micrograph.

    Parameters
    ----------
    image : numpy.ndarray
        The micrograph as read (2D).
    diameter : float
        Particle diameter in its pixels.
    settings : RadialFilterSettings
        The two Gaussian widths.

    Returns
    -------
    numpy.ndarray
        float32, mean 0, standard deviation 1 (particles dark as in the micrograph).
    """
    from cryosegnet.preprocessing.filters import gaussian_filter, on_shrunk_copy

    image = gaussian_filter(np.asarray(image, dtype=np.float32), settings.lowpass * diameter)
    # the background is smooth: on a shrunk copy it costs a small filter, where a 4k
    # micrograph's 200-px sigma would take a minute
    image = image - on_shrunk_copy(image, settings.background * diameter, gaussian_filter)
    spread = float(image.std())
    return (image - float(image.mean())) / (spread if spread > 0 else 1.0)


def ring_kernels(diameter: float, settings: RadialFilterSettings) -> np.ndarray:
    """The rings as averaging kernels, innermost first.

    Parameters
    ----------
    diameter : float
        Particle diameter in micrograph pixels.
    settings : RadialFilterSettings
        Ring width and reach.

    Returns
    -------
    numpy.ndarray
        ``(n_rings, 2 r + 1, 2 r + 1)`` float32, each summing to 1 (``r`` the reach in
        pixels); rings that hold no pixel centre are left out.
    """
    reach = max(1, int(round(settings.reach * diameter)))
    step = settings.ring_width * diameter
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    radius = np.hypot(yy, xx)
    ring = (radius / step).astype(int)
    ring[radius >= reach] = -1
    kernels = [(ring == i).astype(np.float32) for i in range(int(ring.max()) + 1)]
    return np.stack([k / k.sum() for k in kernels if k.sum() > 0])


def ring_features(image: np.ndarray, xy: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Ring means of a pre-filtered micrograph at some places.

    Parameters
    ----------
    image : numpy.ndarray
        Output of :func:`prefilter`.
    xy : numpy.ndarray
        ``(n, 2)`` places (x = column, y = row), rounded and clipped to the image.
    kernels : numpy.ndarray
        :func:`ring_kernels`.

    Returns
    -------
    numpy.ndarray
        ``(n, n_rings)``: what a convolution of each ring with reflecting edges gives there.
    """
    reach = kernels.shape[-1] // 2
    h, w = image.shape
    x = np.clip(np.round(xy[:, 0]).astype(int), 0, w - 1)
    y = np.clip(np.round(xy[:, 1]).astype(int), 0, h - 1)
    padded = np.pad(image, reach, mode="symmetric")  # OpenCV's BORDER_REFLECT
    flat = kernels.reshape(len(kernels), -1).T
    features = np.empty((len(x), len(kernels)), dtype=np.float64)
    size = 2 * reach + 1
    for start in range(0, len(x), 256):  # a few hundred patches at a time bound the memory
        patches = np.stack(
            [
                padded[j : j + size, i : i + size]
                for i, j in zip(x[start : start + 256], y[start : start + 256], strict=True)
            ]
        )
        features[start : start + len(patches)] = patches.reshape(len(patches), -1) @ flat
    return features


@dataclass(frozen=True)
class RadialFilter:
    """A fitted filter: what :meth:`pick` needs, and what it was learnt from.

    Attributes
    ----------
    diameter : float
        Particle diameter in micrograph pixels the rings are scaled to.
    weights : tuple of float
        One weight per ring, scaled so that the positives' mean response less the random
        places' is 1.
    offset : float
        The random places' mean response (subtracted from every score).
    threshold : float
        Picks scoring under it are dropped (``settings.threshold_quantile`` of the positives'
        scores when fitted).
    settings : RadialFilterSettings
        Rings, pre-filter and picking.
    n_positives, n_micrographs : int
        What it was learnt from (recorded, not used).
    pixel_size : float or None
        Å per pixel of the micrographs it was learnt on, where known: ``diameter`` and every
        ring are in their pixels, so a micrograph of another pixel size is refused
        (:meth:`check_pixel_size`).
    map_weight : float
        Weight of a U-Net's probability map, in robust z units, added to the response before
        picking (:meth:`with_map`; 0: the filter alone). The two read different things: the
        filter a whitened rotational average, a U-Net fine-tuned on labels what they taught
        it. ``threshold`` is then on the sum's scale (the refinement loop sets it to write as
        many picks as that U-Net's own picker); the tail ratio (empty micrographs) reads the
        filter's response alone.
    map_model : str or None
        The U-Net checkpoint's file name, beside the saved filter (with ``map_weight``).
    map_model_sha256 : str or None
        Its SHA-256, so that another checkpoint under that name is refused.
    """

    diameter: float
    weights: tuple[float, ...]
    offset: float
    threshold: float
    settings: RadialFilterSettings = field(default_factory=RadialFilterSettings)
    n_positives: int = 0
    n_micrographs: int = 0
    pixel_size: float | None = None
    map_weight: float = 0.0
    map_model: str | None = None
    map_model_sha256: str | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.diameter) and self.diameter > 2):
            raise SettingsError(f"radial filter: diameter must be > 2 px, not {self.diameter}")
        if not (np.isfinite(self.map_weight) and self.map_weight >= 0):
            raise SettingsError(f"radial filter: map weight must be >= 0, not {self.map_weight}")
        rings = len(ring_kernels(self.diameter, self.settings))
        if len(self.weights) != rings:
            raise SettingsError(
                f"radial filter: {len(self.weights)} weights for {rings} rings of a "
                f"{self.diameter:g} px particle"
            )

    @classmethod
    def fit(
        cls,
        images: Mapping[str, np.ndarray],
        positives_by_image: Mapping[str, np.ndarray],
        diameter: float,
        seed: int | np.random.Generator = 0,
        settings: RadialFilterSettings | None = None,
    ) -> RadialFilter:
        """Learn the filter from particle centres (Fisher's discriminant against random places).

        Parameters
        ----------
        images : mapping of str to numpy.ndarray
            The micrographs by name, each read in turn (a lazy mapping keeps one in memory at
            a time): once, and in ``micrograph`` units those with positives a second time (the
            threshold is read off the positives scored in their micrograph's units). Every
            one gives random places; those in ``positives_by_image`` give positives too.
        positives_by_image : mapping of str to numpy.ndarray
            ``(n, 2)`` particle centres (x, y in micrograph pixels) by micrograph name.
        diameter : float
            Particle diameter in micrograph pixels.
        seed : int or numpy.random.Generator
            Draws the random places.
        settings : RadialFilterSettings, optional
            Default: :class:`RadialFilterSettings()`.

        Returns
        -------
        RadialFilter
            Its weights, offset and threshold, with how many positives it learnt from.

        Raises
        ------
        CryoSegNetError
            No positive in any of the images.
        """
        settings = settings or RadialFilterSettings()
        rng = np.random.default_rng(seed)
        kernels = ring_kernels(diameter, settings)
        particles, noise, taught = [], [], set()
        for name, image in images.items():
            filtered = prefilter(image, diameter, settings)
            h, w = filtered.shape
            n = settings.random_places
            places = np.c_[rng.uniform(0, w, n), rng.uniform(0, h, n)]
            noise.append(ring_features(filtered, places, kernels))
            xy = np.asarray(positives_by_image.get(name, np.empty((0, 2))), float).reshape(-1, 2)
            if len(xy):
                particles.append(ring_features(filtered, xy, kernels))
                taught.add(name)
        if not particles:
            raise CryoSegNetError("radial filter: no particle centre to learn from")
        positive = np.concatenate(particles)
        random = np.concatenate(noise)
        covariance = np.cov(random.T)
        spread = np.trace(covariance) / len(covariance)
        covariance = (1 - settings.shrinkage) * covariance + settings.shrinkage * spread * np.eye(
            len(covariance)
        )
        difference = positive.mean(0) - random.mean(0)
        weights = np.linalg.solve(covariance, difference)
        weights /= float(difference @ weights)  # > 0: C is positive definite
        offset = float(random.mean(0) @ weights)
        fitted = cls(
            diameter=float(diameter),
            weights=tuple(float(v) for v in weights),
            offset=offset,
            threshold=0.0,
            settings=settings,
            n_positives=len(positive),
            n_micrographs=len(particles),
        )
        if settings.score_units == "batch":
            scores = positive @ weights - offset
        else:  # each micrograph's units need its whole response: a second pass over them
            scores = np.concatenate(
                [
                    fitted._scores_at(images[name], positions)
                    for name, positions in positives_by_image.items()
                    if name in taught
                ]
            )
        threshold = float(np.quantile(scores, settings.threshold_quantile))
        return dataclasses.replace(fitted, threshold=threshold)

    def _scores_at(self, image: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """The scores :meth:`response` gives at some places (:func:`scores_at`)."""
        return scores_at(self.response(image), xy)

    def kernel(self) -> np.ndarray:
        """The single radial kernel whose convolution is the filter's response.

        Returns
        -------
        numpy.ndarray
            ``(2 r + 1, 2 r + 1)`` float32.
        """
        kernels = ring_kernels(self.diameter, self.settings)
        return np.tensordot(np.asarray(self.weights, np.float32), kernels, axes=1)

    def prefilter(self, image: np.ndarray) -> np.ndarray:
        """A micrograph as the filter reads it (:func:`prefilter` at its diameter).

        Parameters
        ----------
        image : numpy.ndarray
            The micrograph as read.

        Returns
        -------
        numpy.ndarray
            float32, the micrograph's shape; what :meth:`response` takes with ``prefiltered``.
        """
        return prefilter(image, self.diameter, self.settings)

    def response(self, image: np.ndarray, prefiltered: bool = False) -> np.ndarray:
        """The score of every pixel of a micrograph, in ``settings.score_units``.

        ``batch``: 0 at a random place on average, 1 at a particle; ``micrograph``: 0 at the
        micrograph's median place, 1 a robust standard deviation of its response above it.

        Parameters
        ----------
        image : numpy.ndarray
            The micrograph as read (or :meth:`prefilter`'s output, with ``prefiltered``).
        prefiltered : bool
            ``image`` is already :meth:`prefilter`'s output.

        Returns
        -------
        numpy.ndarray
            float32, the micrograph's shape.
        """
        filtered = image if prefiltered else self.prefilter(image)
        response = cv2.filter2D(filtered, -1, self.kernel(), borderType=cv2.BORDER_REFLECT)
        response -= np.float32(self.offset)
        if self.settings.score_units == "micrograph":
            response = robust_z(response)
        return response

    def with_map(self, response: np.ndarray, unet_map: np.ndarray | None) -> np.ndarray:
        """The response the picks are made from: :meth:`response`, plus ``map_weight`` x the
        U-Net's map in robust z units (:func:`robust_z`) when the filter was learnt with one.

        Parameters
        ----------
        response : numpy.ndarray
            :meth:`response`'s output.
        unet_map : numpy.ndarray or None
            The U-Net's probability map at the micrograph's size (None: the filter has no
            ``map_weight``).

        Returns
        -------
        numpy.ndarray
            float32, the micrograph's shape.

        Raises
        ------
        CryoSegNetError
            The filter was learnt with a map and none is given, or its shape is not the
            response's.
        """
        if not self.map_weight:
            return response
        if unet_map is None or unet_map.shape != response.shape:
            raise CryoSegNetError(
                "radial filter: learnt with a U-Net's map added to its response; it needs "
                "that U-Net's map at the micrograph's size"
            )
        return response + np.float32(self.map_weight) * robust_z(unet_map)

    def pick(self, image: np.ndarray, min_score: float | None = None) -> pd.DataFrame:
        """The response's local maxima, best first, kept apart, above a score.

        Parameters
        ----------
        image : numpy.ndarray
            The micrograph as read.
        min_score : float, optional
            Default: the fitted ``threshold``; ``-inf`` keeps every maximum (a ranking to
            evaluate).

        Returns
        -------
        pandas.DataFrame
            ``x``, ``y`` (micrograph pixels, x = column), ``score``; best first. A crowded
            pick's score is lowered by ``settings.crowding_penalty``
            (:class:`RadialFilterSettings`).
        """
        return self.pick_response(self.response(image), min_score)

    def pick_response(self, response: np.ndarray, min_score: float | None = None) -> pd.DataFrame:
        """:meth:`pick` of a micrograph's :meth:`response` (a batch reads and pre-filters
        ahead, and the response serves the picks and :meth:`tail_ratio`).

        Parameters
        ----------
        response : numpy.ndarray
            :meth:`response`'s output.
        min_score : float, optional
            As :meth:`pick`'s.

        Returns
        -------
        pandas.DataFrame
            As :meth:`pick`'s.
        """
        from cryosegnet.detection.peaks import local_maxima, suppress_close_peaks

        threshold = self.threshold if min_score is None else min_score
        footprint = max(3, int(self.settings.peak_window * self.diameter) | 1)
        xs, ys, scores = local_maxima(response, footprint, floor=threshold)
        border = int(self.settings.border * self.diameter)
        h, w = response.shape
        inside = (xs >= border) & (xs < w - border) & (ys >= border) & (ys < h - border)
        xs, ys, scores = xs[inside], ys[inside], scores[inside].astype(float)
        best = np.argsort(-scores, kind="stable")[: self.settings.max_candidates]
        x, y, scores = xs[best].astype(float), ys[best].astype(float), scores[best]
        uncrowded = suppress_close_peaks(x, y, scores, self.settings.crowding * self.diameter)
        # the uncrowded picks first, whatever their score: none of them is dropped, and a
        # crowded candidate goes where it is too close to one of them or to a better crowded one
        span = float(scores.max() - scores.min()) + 1.0 if len(scores) else 0.0
        rank = np.where(uncrowded, scores + span, scores)
        kept = suppress_close_peaks(x, y, rank, self.settings.separation * self.diameter)
        scored = np.where(uncrowded, scores, scores - self.settings.crowding_penalty)
        picks = pd.DataFrame({"x": x[kept], "y": y[kept], "score": scored[kept]})
        picks = picks[picks["score"] >= threshold]
        return picks.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)

    def tail_ratio(self, response: np.ndarray) -> float:
        """How lopsided a micrograph's :meth:`response` is towards particles: the share of its
        pixels ``empty_level`` robust standard deviations above its median over the share as
        far below (:func:`~cryosegnet.postprocessing.empty_micrographs.response_asymmetry`),
        inside the margin ``tail_border``.

        Why: on noise alone, such as empty ice or a micrograph's phase-randomised copy (the
        same power spectrum, so the same response variance and as many picks above any
        threshold), a linear filter's response is as often far below its median as far above
        it; the particles it matches add to the upper tail only. Under ``min_tail_ratio`` a
        micrograph is judged empty.

        Parameters
        ----------
        response : numpy.ndarray
            :meth:`response`'s output.

        Returns
        -------
        float
            About 1 (0.6-1.2 measured) on noise alone; above ``min_tail_ratio`` where the
            filter sees particles.
        """
        from cryosegnet.postprocessing.empty_micrographs import response_asymmetry

        border = int(self.settings.tail_border * self.diameter)
        height, width = response.shape
        if min(height, width) > 2 * border + 16:
            response = response[border : height - border, border : width - border]
        return response_asymmetry(response, self.settings.empty_level)

    def check_pixel_size(self, name: str | os.PathLike, pixel_size: float | None) -> None:
        """Refuse a micrograph whose pixel size is not the filter's (where both are known).

        Parameters
        ----------
        name : str or os.PathLike
            The micrograph, as the error names it.
        pixel_size : float or None
            Its pixel size in Å (header, ``--angpix`` or an input STAR); None: unknown.

        Raises
        ------
        MicrographError
            The two differ by more than ``PIXEL_SIZE_TOLERANCE``: the filter's rings would
            not fit the particles.
        """
        from cryosegnet.errors import MicrographError

        if self.pixel_size is None or pixel_size is None:
            return
        if abs(pixel_size / self.pixel_size - 1) > PIXEL_SIZE_TOLERANCE:
            raise MicrographError(
                name,
                f"pixel size {pixel_size:g} Å/px, but the radial filter was learnt at "
                f"{self.pixel_size:g} Å/px (its {self.diameter:g} px particles would not fit); "
                "learn a filter on this data with pick --refine",
            )

    def check_diameter(
        self, name: str | os.PathLike, diameter_px: float, tolerance: float = DIAMETER_TOLERANCE
    ) -> None:
        """Refuse a particle diameter other than the filter's: its rings are of its own size.

        Parameters
        ----------
        name : str or os.PathLike
            The filter's file, as the error names it.
        diameter_px : float
            The diameter asked for (``pick --diameter``), in micrograph pixels.
        tolerance : float
            How far, relative, it may differ from the filter's and still be taken as the same
            (a value rounded when typed).

        Raises
        ------
        CryoSegNetError
            The two differ by more than ``tolerance``.
        """
        if not math.isclose(diameter_px, self.diameter, rel_tol=tolerance):
            raise CryoSegNetError(
                f"--diameter {diameter_px:g}: {name} was learnt for {self.diameter:g} px "
                "particles and picks at that size; leave --diameter out, or learn a filter at "
                "the other size"
            )

    def looks_empty(self, tail_ratio: float) -> bool:
        """True when a micrograph's :meth:`tail_ratio` is under ``min_tail_ratio``."""
        return tail_ratio < self.settings.min_tail_ratio

    def to_dict(self) -> dict:
        """Everything to rebuild the filter, with what the file is.

        Returns
        -------
        dict
            JSON-ready.
        """
        return {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "diameter_px": self.diameter,
            "weights": list(self.weights),
            "offset": self.offset,
            "threshold": self.threshold,
            "settings": asdict(self.settings),
            "trained_on": {"positives": self.n_positives, "micrographs": self.n_micrographs},
            "pixel_size_angstrom": self.pixel_size,
            "unet_map": {
                "weight": self.map_weight,
                "model": self.map_model,
                "sha256": self.map_model_sha256,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> RadialFilter:
        """Rebuild a filter from :meth:`to_dict`'s output.

        Parameters
        ----------
        data : mapping
            As written.

        Returns
        -------
        RadialFilter
            As it was written.

        Raises
        ------
        CryoSegNetError
            Not a radial filter, a newer format, or missing fields.
        """
        if data.get("kind") != KIND:
            raise CryoSegNetError(f"not a {KIND} (kind: {data.get('kind')!r})")
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise CryoSegNetError(
                f"{KIND} format {data['format_version']} is newer than this cryosegnet reads"
            )
        try:
            trained = data.get("trained_on", {})
            # written before the options: scored in the batch's units (format 1), no pick
            # crowded (formats 1 and 2), the tail ratio read inside the border (formats 1-3)
            saved = data.get("settings", {})
            settings = {"score_units": "batch", "crowding": 0.0, **saved}
            settings.setdefault("tail_border", saved.get("border", 1 / 3))
            unet_map = data.get("unet_map") or {}  # none before format 5
            return cls(
                diameter=float(data["diameter_px"]),
                weights=tuple(float(v) for v in data["weights"]),
                offset=float(data["offset"]),
                threshold=float(data["threshold"]),
                settings=RadialFilterSettings(**settings),
                n_positives=int(trained.get("positives", 0)),
                n_micrographs=int(trained.get("micrographs", 0)),
                pixel_size=_positive_or_none(data.get("pixel_size_angstrom")),
                map_weight=float(unet_map.get("weight") or 0.0),
                map_model=unet_map.get("model"),
                map_model_sha256=unet_map.get("sha256"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CryoSegNetError(f"{KIND}: missing or bad field ({exc})") from exc

    def save(self, path: str | os.PathLike) -> Path:
        """Write the filter as JSON, atomically.

        Parameters
        ----------
        path : str or os.PathLike
            Destination (``.json``).

        Returns
        -------
        pathlib.Path
        """
        from cryosegnet.classification.outputs import write_json

        write_json(Path(path), self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RadialFilter:
        """Read a filter :meth:`save` wrote.

        Parameters
        ----------
        path : str or os.PathLike
            The JSON file.

        Returns
        -------
        RadialFilter
            As :meth:`save` wrote it.

        Raises
        ------
        CryoSegNetError
            Unreadable, not JSON, or not a radial filter (the message names the file).
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CryoSegNetError(f"{path}: cannot read the radial filter ({exc})") from exc
        if not isinstance(data, dict):
            raise CryoSegNetError(f"{path}: not a {KIND}")
        try:
            return cls.from_dict(data)
        except (CryoSegNetError, SettingsError) as exc:
            raise CryoSegNetError(f"{path}: {exc}") from exc


def _positive_or_none(value) -> float | None:
    """A recorded pixel size: a positive number, else None (unknown)."""
    if value is None:
        return None
    number = float(value)
    return number if np.isfinite(number) and number > 0 else None
