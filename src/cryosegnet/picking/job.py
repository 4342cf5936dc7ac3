"""One pick run as one value: :class:`PickJob`, and :func:`run_pick` that carries it out.

Every way into picking builds a :class:`PickJob` and hands it over: ``cryosegnet pick`` from
its options, the RELION External job from RELION's command line, a Python script directly.
The job says what to pick (micrographs, or a folder to watch), where the files go, with which
picker (:class:`PickerSpec`: model, device, :class:`~cryosegnet.picking.config.PickerConfig`)
and on what (in this process, or on a Dask cluster). It is frozen: nothing changes it once
built, and the Dask workers build their own pickers from its :class:`PickerSpec`.

    job = PickJob(inputs=(Path("mics/a.mrc"),), output=Path("picks"),
                  picker=PickerSpec(PickerConfig(stage="peaks"), device="cpu"))
    summary = run_pick(job)
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from cryosegnet.errors import CryoSegNetError
from cryosegnet.picking.batch import pick_batch
from cryosegnet.picking.config import PickerConfig
from cryosegnet.picking.picker import Picker, _config_with
from cryosegnet.picking.summary import BatchSummary
from cryosegnet.picking.units import PixelSizes
from cryosegnet.picking.watch import (
    DEFAULT_SETTLE_SECONDS,
    DEFAULT_WATCH_INTERVAL,
    DEFAULT_WATCH_TIMEOUT,
    WatchSummary,
)

if TYPE_CHECKING:
    from cryosegnet.picking.radial_picker import RadialFilterPicker

log = logging.getLogger("cryosegnet")


@dataclass(frozen=True)
class PickerSpec:
    """What builds a :class:`~cryosegnet.picking.picker.Picker`: its model, device, settings.

    A value, not a picker: each Dask worker builds its own picker from it, once.

    Parameters
    ----------
    config : PickerConfig
        Every setting that changes picks.
    model : str or None
        U-Net checkpoint; None: the model shipped with cryosegnet.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
    sam_checkpoint : str or None
        SAM weights for the ``sam``/``auto`` stages (else found in the SAM cache).
    diameter_per_micrograph : bool
        Each micrograph's diameter is given with the call (an Å diameter converted with its
        own pixel size), so the picker needs none of its own.
    runtime : str or None
        CPU inference engine (``auto``/``onnx``/``torch``; None: ``$CRYOSEGNET_RUNTIME``).
    """

    config: PickerConfig = field(default_factory=PickerConfig)
    model: str | None = None
    device: str = "auto"
    sam_checkpoint: str | None = None
    diameter_per_micrograph: bool = False
    runtime: str | None = None

    @classmethod
    def from_kwargs(cls, kwargs: Mapping) -> PickerSpec:
        """The spec of ``Picker(**kwargs)``.

        ``model``, ``device``, ``sam_checkpoint``,
        ``diameter_per_micrograph``, ``runtime``, ``config``, and any
        :class:`~cryosegnet.picking.config.PickerConfig` field or ``sam_options`` (a dict of
        SAM settings) on top of ``config``.

        Raises
        ------
        TypeError
            For a keyword that is none of these.
        """
        settings = dict(kwargs)
        model = settings.pop("model", None)
        sam_checkpoint = settings.pop("sam_checkpoint", None)
        return cls(
            config=_config_with(settings.pop("config", None), _settings_only(settings)),
            model=str(model) if model else None,
            device=str(settings.get("device") or "auto"),
            sam_checkpoint=str(sam_checkpoint) if sam_checkpoint else None,
            diameter_per_micrograph=bool(settings.get("diameter_per_micrograph", False)),
            runtime=settings.get("runtime"),
        )

    def build(self, device: str | None = None) -> Picker:
        """The picker (``device`` overrides the spec's: a worker's own GPU)."""
        return Picker(
            self.model,
            device or self.device,
            self.config,
            sam_checkpoint=self.sam_checkpoint,
            runtime=self.runtime,
            diameter_per_micrograph=self.diameter_per_micrograph,
        )

    def key(self, device: str | None = None) -> str:
        """The key a worker keeps its built picker under.

        A text that is equal for equal specs (and ``device``).
        """
        values = asdict(self)
        if device is not None:
            values["device"] = device
        return json.dumps(values, sort_keys=True, default=str)


_SPEC_ONLY = ("device", "diameter_per_micrograph", "runtime")


def _settings_only(settings: dict) -> dict:
    """``settings`` less the keywords that are the spec's own, not the config's."""
    return {k: v for k, v in settings.items() if k not in _SPEC_ONLY}


@dataclass(frozen=True)
class OutputOptions:
    """What is written for each micrograph.

    Parameters
    ----------
    formats : tuple of str
        Output formats (:data:`~cryosegnet.io.layout.OUTPUT_FORMATS`); the STAR always.
    box_size : float or None
        Box size of ``.box`` files (default: the diameter).
    overwrite : bool
        Pick again micrographs that already have a result.
    """

    formats: tuple[str, ...] = ("star",)
    box_size: float | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class SizeOptions:
    """How each micrograph's particle size and name are found (beyond the picker's own).

    Parameters
    ----------
    diameter_angstrom : float or None
        A diameter in Å, converted per micrograph with its pixel size.
    pixel_sizes : PixelSizes
        Where pixel sizes come from (``--angpix``, an input STAR) before the MRC header.
    names : mapping of Path to str
        The names the index files list (a RELION STAR's ``_rlnMicrographName``).
    """

    diameter_angstrom: float | None = None
    pixel_sizes: PixelSizes = field(default_factory=PixelSizes)
    names: Mapping[Path, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", MappingProxyType(dict(self.names)))


@dataclass(frozen=True)
class InProcess:
    """Pick in this process.

    ``batch_size`` micrographs per U-Net batch, ``workers`` threads reading and denoising
    ahead.
    """

    batch_size: int = 1
    workers: int = 1


@dataclass(frozen=True)
class Dask:
    """Pick on a Dask cluster.

    A running one at ``scheduler``, else ``n_workers`` local worker processes; ``devices``
    gives worker i device i (modulo their number).
    """

    scheduler: str | None = None
    n_workers: int | None = None
    devices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class WatchFolder:
    """Micrographs from a folder as they are written (``cryosegnet pick --watch``).

    Each is picked once unchanged for ``settle`` s; the folder is scanned every ``interval`` s until
    ``timeout`` s pass with nothing new.
    """

    folder: Path
    settle: float = DEFAULT_SETTLE_SECONDS
    interval: float = DEFAULT_WATCH_INTERVAL
    timeout: float = DEFAULT_WATCH_TIMEOUT


@dataclass(frozen=True)
class PickJob:
    """One pick run: what to pick, where the files go, with what and on what.

    Parameters
    ----------
    inputs : tuple of Path
        The micrographs (none when ``watch`` is given).
    output : Path
        The output folder.
    picker : PickerSpec
        The picker: model, device and settings.
    outputs : OutputOptions
        Formats, box size, overwrite.
    sizes : SizeOptions
        An Å diameter, pixel sizes and the micrographs' names.
    executor : InProcess or Dask
        Where the picking runs.
    watch : WatchFolder or None
        Pick the micrographs of a folder as they appear, instead of ``inputs``.
    progress : bool
        Show progress (a bar on a terminal, else a log line per micrograph).
    debug : bool
        Log full tracebacks.
    """

    inputs: tuple[Path, ...]
    output: Path
    picker: PickerSpec = field(default_factory=PickerSpec)
    outputs: OutputOptions = field(default_factory=OutputOptions)
    sizes: SizeOptions = field(default_factory=SizeOptions)
    executor: InProcess | Dask = field(default_factory=InProcess)
    watch: WatchFolder | None = None
    progress: bool = True
    debug: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(Path(p) for p in self.inputs))
        if self.watch is not None and self.inputs:
            raise ValueError("a watched folder takes the place of the inputs: give one")


def run_pick(
    job: PickJob,
    should_stop: Callable[[], bool] | None = None,
    picker: Picker | RadialFilterPicker | None = None,
) -> BatchSummary | WatchSummary:
    """Carry out ``job``: pick, write every file, rebuild the index files.

    Parameters
    ----------
    job : PickJob
        The run.
    should_stop : callable, optional
        Asked between micrographs (in process); True stops the run as Ctrl-C does, keeping
        what is finished (a RELION abort request).
    picker : Picker or RadialFilterPicker, optional
        ``job.picker`` already built (it checks the settings and names the manifest's
        options); built here when not given. A
        :class:`~cryosegnet.picking.radial_picker.RadialFilterPicker` picks in this process
        only (the Dask workers build U-Net pickers from ``job.picker``).

    Returns
    -------
    BatchSummary or WatchSummary
        What was done; :func:`~cryosegnet.picking.summary.finish_run` prints it and gives the
        exit code.
    """
    picker = picker if picker is not None else job.picker.build()
    if isinstance(job.executor, Dask):  # picking/distributed.py; dask only imported here
        if not isinstance(picker, Picker):
            raise CryoSegNetError("a radial filter picks in this process only, not on Dask")
        from cryosegnet.picking.distributed import run_on_cluster

        return run_on_cluster(job, picker)
    if job.watch is not None:
        return _watch_in_process(job, picker)
    return pick_batch(
        picker,
        list(job.inputs),
        job.output,
        formats=job.outputs.formats,
        overwrite=job.outputs.overwrite,
        batch_size=max(1, job.executor.batch_size),
        box_size=job.outputs.box_size,
        workers=max(1, job.executor.workers),
        progress=job.progress and sys.stderr.isatty(),
        debug=job.debug,
        diameter_angstrom=job.sizes.diameter_angstrom,
        pixel_sizes=job.sizes.pixel_sizes,
        names=job.sizes.names,
        should_stop=should_stop,
    )


def _watch_in_process(job: PickJob, picker: Picker | RadialFilterPicker) -> WatchSummary:
    """``--watch DIR`` in this process (picking/watch.py)."""
    from cryosegnet.picking.watch import watch_folder

    assert job.watch is not None and isinstance(job.executor, InProcess)
    return watch_folder(
        picker,
        job.watch.folder,
        job.output,
        settle=job.watch.settle,
        interval=job.watch.interval,
        timeout=job.watch.timeout,
        batch_size=max(1, job.executor.batch_size),
        formats=job.outputs.formats,
        overwrite=job.outputs.overwrite,
        box_size=job.outputs.box_size,
        workers=max(1, job.executor.workers),
        debug=job.debug,
        diameter_angstrom=job.sizes.diameter_angstrom,
        pixel_sizes=job.sizes.pixel_sizes,
    )
