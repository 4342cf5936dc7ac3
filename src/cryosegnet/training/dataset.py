"""Training data: denoised micrographs at the U-Net's working resolution plus particle centres.

Denoising costs about a second per micrograph, far more than a training step, so every
micrograph is denoised once and cached (``.npz`` keyed by file identity and the denoising
settings); epochs then only crop and augment arrays in memory. Labelled micrographs and
simulated ones end up as the same :class:`TrainingSample`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cryosegnet.geometry import disk_mask
from cryosegnet.io.atomic import atomic_write
from cryosegnet.io.micrographs import read_micrograph
from cryosegnet.preprocessing.denoise import DenoiseSettings, denoise

log = logging.getLogger("cryosegnet")


# Target value of pixels the loss ignores (neither particle nor background).
IGNORE = 2


@dataclass
class TrainingSample:
    """One denoised micrograph (uint8, working resolution) and its particles in working pixels.

    ``scale`` is working pixels per pixel of the micrograph as read (``diameter / scale`` is
    the diameter in micrograph pixels); ``pixel_size`` is the micrograph's Å/px when its
    header gave one.
    """

    name: str
    image: np.ndarray
    x: np.ndarray
    y: np.ndarray
    diameter: np.ndarray
    source: str = "labelled"
    scale: float = 1.0
    pixel_size: float | None = None
    # Places the loss ignores (working px): candidates whose label is unknown, such as the
    # unsure picks of a pseudo-labelled micrograph (training/adapt.py). Empty for real labels.
    unsure_x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    unsure_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    unsure_diameter: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # Pixels known to be background (working resolution, bool), or None: every pixel that is
    # no particle is background (labels). Given, the other non-particle pixels are ignored by
    # the loss: a label-free run knows its rejected picks and the ice far from its kept picks
    # are background, not that every pixel it did not keep is (training/refine_loop.py).
    known_background: np.ndarray | None = field(default=None, repr=False)
    # Target disks are this fraction of each particle's diameter (TrainConfig.target_fraction).
    target_fraction: float = 1.0
    _target: np.ndarray | None = field(default=None, repr=False)

    @property
    def target(self) -> np.ndarray:
        """Disk mask (uint8) of the particles, the paper's segmentation target: 1 particle,
        0 background, :data:`IGNORE` where the loss must not look (unsure disks, whole size;
        outside ``known_background`` when it is given).
        With ``target_fraction`` < 1 the disks are the particles' centres only."""
        if self._target is None:
            diameter = self.diameter * self.target_fraction
            target = disk_mask(self.image.shape, self.x, self.y, diameter).astype(np.uint8)
            if len(self.unsure_x):
                unsure = disk_mask(
                    self.image.shape, self.unsure_x, self.unsure_y, self.unsure_diameter
                )
                target[unsure & (target == 0)] = IGNORE
            if self.known_background is not None:
                target[(target == 0) & ~self.known_background] = IGNORE
            self._target = target
        return self._target

    @property
    def median_diameter(self) -> float:
        d = self.diameter[np.isfinite(self.diameter)]
        return float(np.median(d)) if len(d) else float("nan")

    def labels(self) -> pd.DataFrame:
        """Particles as a picks table (working pixels), for validation matching."""
        return pd.DataFrame({"x": self.x, "y": self.y, "score": 1.0, "diameter": self.diameter})


def _cache_key(parts: dict) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _cached_denoise(
    key_parts: dict,
    load: Callable[[], np.ndarray],
    settings: DenoiseSettings,
    cache_dir: Path | None,
) -> np.ndarray:
    """Denoised uint8 image from the cache, or computed (and cached) from ``load()``."""
    path = None
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        path = cache_dir / f"{_cache_key({**key_parts, 'denoise': settings.to_dict()})}.npz"
        if path.is_file():
            try:
                with np.load(path) as data:
                    return data["image"]
            except Exception:  # a damaged cache entry is rebuilt, never trusted
                log.warning("rebuilding damaged cache entry %s", path)
    image = denoise(load(), settings)
    if path is not None:
        with atomic_write(path, "wb") as handle:
            np.savez(handle, image=image)
    return image


def labelled_sample(
    image_path: str | os.PathLike,
    labels: pd.DataFrame,
    settings: DenoiseSettings,
    diameter: float | None = None,
    cache_dir: str | os.PathLike | None = None,
    name: str | None = None,
) -> TrainingSample:
    """Denoise one labelled micrograph and bring its particles to working resolution.

    ``diameter`` (pixels of the micrograph as read) fills in labels without one.
    """
    image_path = Path(image_path)
    stat = image_path.stat()
    shape_holder: dict = {}

    def load() -> np.ndarray:
        micrograph = read_micrograph(image_path)
        shape_holder["shape"] = micrograph.shape
        shape_holder["pixel_size"] = micrograph.pixel_size
        return micrograph.data

    key = {"path": str(image_path.resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns}
    cache = Path(cache_dir) if cache_dir is not None else None
    image = _cached_denoise(key, load, settings, cache)
    if "shape" in shape_holder:
        original, pixel_size = shape_holder["shape"], shape_holder["pixel_size"]
        if cache is not None:
            _remember_shape(cache, key, original, pixel_size)
    else:
        original, pixel_size = _original_shape(image_path, cache, key)
    sy, sx = image.shape[0] / original[0], image.shape[1] / original[1]
    d = labels["diameter"].to_numpy(float) if "diameter" in labels else np.full(len(labels), np.nan)
    if diameter is not None:
        d = np.where(np.isfinite(d) & (d > 0), d, diameter)
    if len(d) and not np.all(np.isfinite(d) & (d > 0)):
        raise ValueError(
            f"{image_path}: labels carry no particle diameter; give --diameter (pixels)"
        )
    return TrainingSample(
        name=name or image_path.stem,
        image=image,
        x=labels["x"].to_numpy(float) * sx,
        y=labels["y"].to_numpy(float) * sy,
        diameter=d * (sx + sy) / 2,
        source="labelled",
        scale=(sx + sy) / 2,
        pixel_size=pixel_size,
    )


def _shape_file(cache: Path, key: dict) -> Path:
    return cache / f"{_cache_key(key)}.shape.json"


def _remember_shape(
    cache: Path, key: dict, shape: tuple[int, int], pixel_size: float | None
) -> None:
    with atomic_write(_shape_file(cache, key)) as handle:
        json.dump({"shape": list(shape), "pixel_size": pixel_size}, handle)


def _original_shape(
    path: Path, cache: Path | None, key: dict
) -> tuple[tuple[int, int], float | None]:
    """(shape, Å/px or None) of the micrograph as read; from the cache when the image itself
    was not loaded. Older caches hold the shape alone: the header is then read again."""
    if cache is not None and _shape_file(cache, key).is_file():
        record = json.loads(_shape_file(cache, key).read_text())
        if isinstance(record, dict):
            return tuple(record["shape"]), record.get("pixel_size")
    micrograph = read_micrograph(path)
    if cache is not None:
        _remember_shape(cache, key, micrograph.shape, micrograph.pixel_size)
    return micrograph.shape, micrograph.pixel_size


def _parallel_map(fn: Callable, items: list, workers: int, desc: str, progress: bool) -> list:
    """``[fn(*item) for item in items]``, in ``workers`` processes when > 1 (order kept).

    Simulation and denoising are single-threaded NumPy/OpenCV work, so processes scale them
    across cores; results are identical to the serial path.
    """
    from tqdm import tqdm

    if workers <= 1 or len(items) <= 1:
        return [fn(*item) for item in tqdm(items, desc=desc, unit="mic", disable=not progress)]
    from concurrent.futures import ProcessPoolExecutor

    n = min(workers, len(items))
    import multiprocessing

    # forkserver, not fork: a forked child inherits OpenCV's thread pool mid-state and can
    # deadlock in cv2.setNumThreads when the parent has already used OpenCV.
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=n, initializer=_quiet_worker, mp_context=context) as pool:
        futures = [pool.submit(fn, *item) for item in items]
        return [f.result() for f in tqdm(futures, desc=desc, unit="mic", disable=not progress)]


def _quiet_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core; no oversubscription


def load_labelled(
    pairs: Iterable[tuple[Path, pd.DataFrame]],
    settings: DenoiseSettings,
    diameter: float | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    workers: int = 1,
) -> list[TrainingSample]:
    """Denoise (or fetch from the cache) every labelled micrograph."""
    items = [(path, labels, settings, diameter, cache_dir) for path, labels in pairs]
    return _parallel_map(labelled_sample, items, workers, "denoising", progress)


def simulated_sample(
    config, settings: DenoiseSettings, seed: int, index: int, cache_dir: str | os.PathLike | None
) -> TrainingSample:
    """Simulated micrograph ``index`` of run ``seed``, denoised, with its pickable particles."""
    from cryosegnet.simulation.micrograph import micrograph_seed, simulate_micrograph

    cache = Path(cache_dir) if cache_dir is not None else None
    holder: dict = {}
    key = {"simulated": config.to_dict(), "seed": int(seed), "index": int(index), "v": 1}
    table_path = cache / f"{_cache_key(key)}.particles.csv" if cache is not None else None

    def simulate():
        return simulate_micrograph(config, np.random.default_rng(micrograph_seed(seed, index)))

    def load() -> np.ndarray:
        holder["sim"] = simulate()
        return holder["sim"].image

    image = _cached_denoise(key, load, settings, cache)
    if "sim" not in holder and table_path is not None and table_path.is_file():
        with open(table_path) as handle:
            shape = tuple(int(v) for v in handle.readline().split()[2:4])
            picks = pd.read_csv(handle)
    else:
        sim = holder.get("sim") or simulate()  # the table can be lost while the image is not
        picks, shape = sim.picks[["x", "y", "diameter"]], sim.image.shape
        if table_path is not None:
            with atomic_write(table_path, newline="") as handle:
                handle.write(f"# shape {shape[0]} {shape[1]}\n")
                picks.to_csv(handle, index=False)
    sy, sx = image.shape[0] / shape[0], image.shape[1] / shape[1]
    return TrainingSample(
        name=f"sim_{seed}_{index:05d}",
        image=image,
        x=picks["x"].to_numpy(float) * sx,
        y=picks["y"].to_numpy(float) * sy,
        diameter=picks["diameter"].to_numpy(float) * (sx + sy) / 2,
        source="simulated",
        scale=(sx + sy) / 2,
    )


def simulated_samples(
    n: int,
    config,
    settings: DenoiseSettings,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    start: int = 0,
    workers: int = 1,
) -> list[TrainingSample]:
    """Simulate micrographs ``start .. start+n-1`` of run ``seed`` and denoise them.

    Micrograph i depends only on (config, seed, i), so a cached one is reused exactly and a
    validation set drawn with another seed never overlaps the training set.
    Only particles an expert would pick (``pickable``) become targets, so the network learns to
    leave aggregates, carbon and contamination alone.
    """
    items = [(config, settings, seed, i, cache_dir) for i in range(start, start + n)]
    return _parallel_map(simulated_sample, items, workers, "simulating", progress)


def split_samples(
    samples: list[TrainingSample], val_fraction: float, seed: int = 0
) -> tuple[list[TrainingSample], list[TrainingSample]]:
    """Hold out whole micrographs for validation, separately per source (labelled/simulated).

    Any source with at least two micrographs gives at least one to validation when
    ``val_fraction`` > 0, and always keeps at least one for training.
    """
    rng = np.random.default_rng(seed)
    train, val = [], []
    for source in sorted({s.source for s in samples}):
        group = [s for s in samples if s.source == source]
        n_val = 0
        if val_fraction > 0 and len(group) >= 2:
            n_val = min(max(1, round(len(group) * val_fraction)), len(group) - 1)
        order = rng.permutation(len(group))
        val += [group[k] for k in sorted(order[:n_val])]
        train += [group[k] for k in sorted(order[n_val:])]
    return train, val
