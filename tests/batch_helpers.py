"""A stand-in picker and small micrographs for the tests that drive :func:`pick_batch`
without a U-Net (they test the orchestration alone and run in milliseconds)."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd

from cryosegnet.io.coordinates import (
    make_picks,
    read_star_blocks,
)
from cryosegnet.io.layout import INDEX_STAR
from cryosegnet.picking.batch import pick_batch
from cryosegnet.picking.picker import PickResult


class StubPicker:
    """Stands in for :class:`Picker`: picks depend on the image, so a different micrograph
    gives different picks; ``threshold`` is one of the options a result records."""

    def __init__(self, threshold: float = 0.5, n_picks: int | None = None) -> None:
        self.calls = 0
        self.threshold = threshold
        self.n_picks = n_picks

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        return image

    def pick_denoised(self, denoised, original_shapes) -> list[PickResult]:
        self.calls += 1
        results = []
        for image, shape in zip(denoised, original_shapes, strict=True):
            n = self.n_picks if self.n_picks is not None else 2
            x = 10.0 + float(image.mean() > 0) * 30 + np.arange(n)
            picks = make_picks(x, 20.0 + np.arange(n), 0.9, 40.0 if n else None)
            results.append(
                PickResult(
                    picks=picks,
                    diameter=40.0 if n else float("nan"),
                    working_shape=image.shape,
                    original_shape=tuple(shape),
                    stage="stub",
                )
            )
        return results


def small_mrc(path: Path, sign: float = 1.0, shape=(128, 160)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data((rng.normal(size=shape) + 3 * sign).astype(np.float32))
    return path


def run_batch(picker, mics, out, **kwargs):
    return pick_batch(picker, [Path(m) for m in mics], out, progress=False, **kwargs)


def index_of(out: Path) -> pd.DataFrame:
    return read_star_blocks(out / INDEX_STAR)["coordinate_files"]
