"""Pick with a saved radial filter, as ``cryosegnet pick`` picks with a U-Net.

``pick --refine DIR --refine-model radial`` learns a
:class:`~cryosegnet.training.radial_filter.RadialFilter` from the picks its 2D classes keep and
saves it as ``DIR/radial_filter.json``. :class:`RadialFilterPicker` lets the batch
(:func:`~cryosegnet.picking.batch.pick_batch`, ``--watch``) pick a new data collection with
that file, without the loop: the same per-micrograph files, index STARs, skip-if-done rule and
failure handling as ``pick``, because it is the same batch with another picker in it.

Why a stand-in rather than a stage: the filter reads the micrograph itself (its own
pre-filter), not the U-Net's map, so nothing of the U-Net picker but its denoising (for the
bad-region mask) applies; except for a filter learnt with a U-Net's map added to its response
(:attr:`~cryosegnet.training.radial_filter.RadialFilter.map_weight`), which needs that U-Net:
the loop saves it beside the filter and :meth:`RadialFilterPicker.load` reads it from there.
The refinement loop re-picks with this class too, so a saved filter re-used here picks exactly
as it did at the end of the loop.

    from cryosegnet.picking.batch import pick_batch
    picker = RadialFilterPicker.load("refine/radial_filter.json")
    pick_batch(picker, micrographs, "picks_next_session")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryosegnet.errors import CryoSegNetError
from cryosegnet.picking.config import PickerConfig
from cryosegnet.picking.picker import PickResult
from cryosegnet.preprocessing.denoise import DenoiseSettings, denoise
from cryosegnet.training.radial_filter import RadialFilter

#: What ``stage`` the picks' manifests record (a U-Net run's picks are never taken as done).
STAGE = "radial"


def map_at_size(probability: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A U-Net map at its working size, resized to the micrograph it was made from.

    Parameters
    ----------
    probability : numpy.ndarray
        One map of :meth:`~cryosegnet.picking.picker.Picker.probability_maps`.
    shape : tuple of int
        The micrograph's shape as read.

    Returns
    -------
    numpy.ndarray
        float32, ``shape[:2]``.
    """
    import cv2

    size = (int(shape[1]), int(shape[0]))
    return cv2.resize(probability, size, interpolation=cv2.INTER_LINEAR).astype(np.float32)


@dataclass(frozen=True)
class PreparedMicrograph:
    """One micrograph read for the filter: what the batch reads ahead (in its threads).

    Attributes
    ----------
    filtered : numpy.ndarray
        :meth:`RadialFilter.prefilter`'s output, at the micrograph's size.
    denoised : numpy.ndarray or None
        The U-Net picker's denoised working image, which its bad-region mask reads (None: no
        mask).
    unet_probability : numpy.ndarray or None
        The U-Net's map at its working size (``Picker.probability_maps``), where a caller has
        it already (the refinement loop sets the filter's threshold on it); None: the picker
        makes it. Kept at the working size: a batch's maps at 4k would fill the memory.
    """

    filtered: np.ndarray
    denoised: np.ndarray | None
    unet_probability: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The working shape (the denoised image's; else the micrograph's)."""
        return (self.denoised if self.denoised is not None else self.filtered).shape


@dataclass(frozen=True)
class _ToldSize:
    """The diameter the batch checks each micrograph against (a picker's post-processing
    settings, as far as the batch reads them)."""

    diameter_override: float
    tolerance_factor: None = None


class RadialFilterPicker:
    """A saved radial filter with the interface :func:`~cryosegnet.picking.batch.pick_batch`
    picks with.

    Parameters
    ----------
    radial : RadialFilter
        The fitted filter: its diameter (micrograph pixels) is the picks' diameter.
    denoise_settings : DenoiseSettings
        The U-Net picker's denoising, which the bad-region mask reads (and the batch's
        smallest-micrograph check).
    mask_bad_regions : bool
        Drop picks on contamination, carbon and nearly opaque ice, as ``pick`` does.
    threshold : float, optional
        Score cut in the filter's units (default: the fitted ``radial.threshold``).
    skip_empty : bool
        A micrograph whose response is not lopsided towards particles
        (:meth:`RadialFilter.looks_empty`) keeps no pick (``pick --skip-empty``).
    path : path, optional
        The file the filter was read from: recorded with the picks (a re-run with another
        filter picks again).
    measure_empty : bool
        Compute each micrograph's tail ratio without acting on it (the refinement loop judges
        the whole batch's). Off, and without ``skip_empty``, the response is not read twice:
        ``evidence`` is None, as the U-Net picker's without ``--skip-empty``.
    unet : Picker, optional
        The U-Net picker whose map joins the response of a filter learnt with one
        (``radial.map_weight`` > 0); its denoising must be ``denoise_settings``.

    Raises
    ------
    CryoSegNetError
        A threshold that is not a finite number, or a filter learnt with a U-Net's map and no
        ``unet``.
    """

    stage = STAGE

    def __init__(
        self,
        radial: RadialFilter,
        denoise_settings: DenoiseSettings,
        mask_bad_regions: bool = True,
        threshold: float | None = None,
        path: str | os.PathLike | None = None,
        skip_empty: bool = False,
        measure_empty: bool = False,
        unet=None,
    ) -> None:
        if threshold is not None and not np.isfinite(threshold):
            raise CryoSegNetError(f"radial filter: threshold {threshold} is not a finite number")
        if radial.map_weight and unet is None:
            raise CryoSegNetError(
                "radial filter: learnt with a U-Net's map added to its response; the picker "
                "needs that U-Net"
            )
        self.unet = unet if radial.map_weight else None
        self.radial = radial
        self.denoise_settings = denoise_settings
        self.threshold = float(radial.threshold if threshold is None else threshold)
        self.model_path = Path(path) if path is not None else None
        # What the batch reads of a picker's settings: the told size, the bad-region step.
        self.config = PickerConfig(
            diameter=radial.diameter, mask_bad_regions=mask_bad_regions, skip_empty=skip_empty
        )
        self.postprocess_settings = _ToldSize(radial.diameter)
        self.measure_empty = measure_empty or skip_empty

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        mask_bad_regions: bool = True,
        threshold: float | None = None,
        model: str | os.PathLike | None = None,
        skip_empty: bool = False,
    ) -> RadialFilterPicker:
        """The picker of a saved filter file.

        Parameters
        ----------
        path : str or os.PathLike
            ``radial_filter.json`` (:meth:`RadialFilter.save`).
        mask_bad_regions : bool
            As :class:`RadialFilterPicker`'s.
        threshold : float, optional
            As :class:`RadialFilterPicker`'s.
        model : str or os.PathLike, optional
            U-Net checkpoint whose denoising the bad-region mask reads (default: the shipped
            model's, as ``pick``'s). Not with a filter learnt with a U-Net's map: that U-Net
            is the checkpoint saved beside the file (``map_model``), checked by its SHA-256.
        skip_empty : bool
            As :class:`RadialFilterPicker`'s.

        Returns
        -------
        RadialFilterPicker

        Raises
        ------
        CryoSegNetError
            The file is missing, unreadable or not a radial filter; its U-Net is missing or is
            not the one it was learnt with (the message names the file).
        """
        from cryosegnet.model.checkpoint import (
            checkpoint_sha256,
            default_model_path,
            read_checkpoint,
        )

        radial = RadialFilter.load(path)
        unet = None
        if radial.map_weight:
            if model is not None:
                raise CryoSegNetError(f"{path}: its U-Net is the one saved beside it, not {model}")
            beside = Path(path).parent / str(radial.map_model)
            if not radial.map_model or not beside.is_file():
                raise CryoSegNetError(
                    f"{path}: learnt with the map of the U-Net {radial.map_model}, which is not "
                    "beside it (keep the two files together)"
                )
            if checkpoint_sha256(beside) != radial.map_model_sha256:
                raise CryoSegNetError(
                    f"{path}: {beside.name} beside it is not the U-Net it was learnt with"
                )
            from cryosegnet.picking.picker import Picker

            model, unet = beside, Picker(beside, device="cpu")
        record = read_checkpoint(model if model else default_model_path()).get("denoise") or {}
        settings = DenoiseSettings.from_dict(record if isinstance(record, dict) else {})
        return cls(radial, settings, mask_bad_regions, threshold, path, skip_empty, unet=unet)

    def describe(self) -> str:
        """One line for the log: the file, its size, threshold and units."""
        source = self.model_path.name if self.model_path else "in-memory radial filter"
        return (
            f"radial filter {source} ({self.radial.diameter:g} px particles, threshold "
            f"{self.threshold:.3g} in {self.radial.settings.score_units} units, learnt from "
            f"{self.radial.n_positives} picks)"
        )

    def preprocess(self, image: np.ndarray) -> PreparedMicrograph:
        """Read one micrograph for the filter (and for the bad-region mask).

        Parameters
        ----------
        image : numpy.ndarray
            The micrograph as read.

        Returns
        -------
        PreparedMicrograph
        """
        needed = self.config.mask_bad_regions or self.unet is not None
        denoised = denoise(image, self.denoise_settings) if needed else None
        return PreparedMicrograph(self.radial.prefilter(image), denoised)

    def check_pixel_size(self, name: str | os.PathLike, pixel_size: float | None) -> None:
        """Refuse a micrograph of another pixel size than the filter's (the batch asks as it
        reads each one; :meth:`RadialFilter.check_pixel_size`).

        Parameters
        ----------
        name : str or os.PathLike
            The micrograph, as errors name it.
        pixel_size : float or None
            Its pixel size in Å, where known.
        """
        self.radial.check_pixel_size(name, pixel_size)

    def size_of(self, image: np.ndarray, pixel_size: float | None = None) -> None:
        """No size to read off: the filter's diameter is the picks' (the batch asks)."""
        return None

    def sizes_per_blob(self) -> bool:
        """Never: one diameter, the filter's (the batch asks)."""
        return False

    def pick(self, image: np.ndarray) -> PickResult:
        """Pick one micrograph as read.

        Parameters
        ----------
        image : numpy.ndarray
            The micrograph.

        Returns
        -------
        PickResult
        """
        return self.pick_denoised([self.preprocess(image)], [image.shape])[0]

    def map_of(self, one: PreparedMicrograph) -> np.ndarray:
        """The U-Net's map of one prepared micrograph: the one it carries, else made here.

        Parameters
        ----------
        one : PreparedMicrograph
            :meth:`preprocess`'s output (with ``unet_probability`` where known).

        Returns
        -------
        numpy.ndarray
            float32, at the micrograph's size.

        Raises
        ------
        CryoSegNetError
            The filter adds no U-Net's map.
        """
        if self.unet is None:
            raise CryoSegNetError("radial filter: learnt without a U-Net's map")
        working = one.unet_probability
        if working is None:
            assert one.denoised is not None  # preprocess denoises for the U-Net
            working = self.unet.probability_maps([one.denoised])[0]
        return map_at_size(working, one.filtered.shape)

    def pick_denoised(
        self,
        prepared: list[PreparedMicrograph],
        original_shapes: list[tuple[int, int]],
        sizes: list | None = None,
    ) -> list[PickResult]:
        """Pick micrographs :meth:`preprocess` has read: the filter's picks above the
        threshold, less those in the bad regions.

        Parameters
        ----------
        prepared : list of PreparedMicrograph
            :meth:`preprocess`'s outputs.
        original_shapes : list of tuple of int
            Each micrograph's shape as read.
        sizes : list, optional
            Ignored (the batch passes its size estimates; the filter has one diameter).

        Returns
        -------
        list of PickResult
            Picks ``x``, ``y``, ``score`` (the filter's), ``diameter``; best first. Its
            ``evidence`` is the micrograph's :meth:`RadialFilter.tail_ratio` (None unless
            measured); ``empty``: judged empty with ``skip_empty``, and no picks.
        """
        from cryosegnet.postprocessing.bad_regions import drop_bad_region_picks

        results = []
        for one, shape in zip(prepared, original_shapes, strict=True):
            response = self.radial.response(one.filtered, prefiltered=True)
            evidence = self.radial.tail_ratio(response) if self.measure_empty else None
            judged = evidence is not None and self.radial.looks_empty(evidence)
            empty = bool(self.config.skip_empty and judged)
            if self.unet is not None:
                response = self.radial.with_map(response, self.map_of(one))
            picks = self.radial.pick_response(response, self.threshold)
            if empty:
                picks = picks.iloc[:0]
            picks = picks.assign(diameter=self.radial.diameter)
            counts = {"candidates": len(picks)}
            bad_regions = None
            if len(picks) and one.denoised is not None and self.config.mask_bad_regions:
                picks, bad_regions = drop_bad_region_picks(
                    picks, one.denoised, self.radial.diameter, shape
                )
                counts["after_bad_regions"] = len(picks)
            results.append(
                PickResult(
                    picks=picks.reset_index(drop=True),
                    diameter=self.radial.diameter,
                    working_shape=tuple(one.shape[:2]),  # type: ignore[arg-type]
                    original_shape=(int(shape[0]), int(shape[1])),
                    stage=STAGE,
                    counts=counts,
                    diameter_source="given",
                    bad_regions=bad_regions,
                    evidence=evidence,
                    empty=empty,
                )
            )
        return results
