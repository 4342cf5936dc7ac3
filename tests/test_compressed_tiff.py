"""Compressed TIFF micrographs (as EPU, SerialEM and MotionCor2 write them) read exactly like
uncompressed ones: the codecs (imagecodecs) are a dependency, not an optional extra."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cryosegnet.io.micrographs import read_micrograph


@pytest.mark.parametrize("compression", ["lzw", "deflate", "zstd"])
@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
def test_compressed_tiffs_read_back_exactly(tmp_path, compression, dtype):
    rng = np.random.default_rng(0)
    image = (rng.normal(100, 10, size=(200, 220))).astype(dtype)
    path = tmp_path / f"mic_{compression}.tif"
    tifffile.imwrite(path, image, compression=compression)
    micrograph = read_micrograph(path)
    assert micrograph.shape == (200, 220)
    np.testing.assert_array_equal(micrograph.data, image.astype(np.float32))
