from __future__ import annotations

import cv2
import mrcfile
import numpy as np
import pytest
import tifffile

from cryosegnet.errors import MicrographError
from cryosegnet.io.micrographs import find_micrographs, read_micrograph

RNG = np.random.default_rng(1)


def _image(dtype) -> np.ndarray:
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        lo, hi = max(info.min, -1000), min(info.max, 1000)
        return RNG.integers(lo, hi, (70, 90)).astype(dtype)
    return RNG.normal(0, 1, (70, 90)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8, np.int16, np.uint16])
def test_mrc_modes(tmp_path, dtype):
    data = _image(dtype)
    path = tmp_path / "mic.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 1.25
    mic = read_micrograph(path)
    assert mic.data.dtype == np.float32
    assert mic.shape == (70, 90)
    np.testing.assert_allclose(mic.data, data.astype(np.float32))
    assert mic.pixel_size == pytest.approx(1.25)


def test_single_section_volume_is_a_micrograph(tmp_path):
    path = tmp_path / "one.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(_image(np.float32)[None])
    assert read_micrograph(path).shape == (70, 90)


def test_stack_is_refused(tmp_path):
    path = tmp_path / "movie.mrcs"
    with mrcfile.new(path) as mrc:
        mrc.set_data(RNG.normal(size=(3, 70, 90)).astype(np.float32))
    with pytest.raises(MicrographError, match="stack of 3 sections"):
        read_micrograph(path)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_8_and_16_bit(tmp_path, dtype):
    data = RNG.integers(0, np.iinfo(dtype).max, (70, 90)).astype(dtype)
    path = tmp_path / "mic.png"
    cv2.imwrite(str(path), data)
    np.testing.assert_array_equal(read_micrograph(path).data, data.astype(np.float32))


def test_jpeg_and_colour(tmp_path):
    data = RNG.integers(0, 255, (70, 90, 3)).astype(np.uint8)
    path = tmp_path / "mic.jpg"
    cv2.imwrite(str(path), data)
    mic = read_micrograph(path)
    assert mic.shape == (70, 90)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_tiff(tmp_path, dtype):
    data = _image(dtype)
    path = tmp_path / "mic.tif"
    tifffile.imwrite(path, data)
    np.testing.assert_allclose(read_micrograph(path).data, data.astype(np.float32))


def test_wrong_extension_reads_by_content(tmp_path):
    data = RNG.integers(0, 255, (70, 90)).astype(np.uint8)
    path = tmp_path / "actually_png.mrc"
    cv2.imwrite(str(tmp_path / "x.png"), data)
    (tmp_path / "x.png").rename(path)
    np.testing.assert_array_equal(read_micrograph(path).data, data.astype(np.float32))


def test_truncated_mrc(tmp_path):
    path = tmp_path / "cut.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(_image(np.float32))
    raw = path.read_bytes()
    path.write_bytes(raw[: 1024 + 500])
    with pytest.raises(MicrographError) as info:
        read_micrograph(path)
    assert "cut.mrc" in str(info.value)
    assert "\n" not in str(info.value)


def test_garbage_file(tmp_path):
    path = tmp_path / "noise.png"
    path.write_bytes(RNG.integers(0, 255, 5000).astype(np.uint8).tobytes())
    with pytest.raises(MicrographError, match="noise.png"):
        read_micrograph(path)


def test_nan_pixels_filled_and_all_nan_refused(tmp_path):
    data = _image(np.float32)
    data[3, 4] = np.nan
    data[5, 6] = np.inf
    path = tmp_path / "nan.mrc"
    with mrcfile.new(path) as mrc, pytest.warns(RuntimeWarning, match="Data array contains"):
        mrc.set_data(data)  # mrcfile warns about the NaN/Inf pixels written on purpose
    assert np.isfinite(read_micrograph(path).data).all()
    with mrcfile.new(path, overwrite=True) as mrc, pytest.warns(RuntimeWarning, match="NaN"):
        mrc.set_data(np.full((70, 90), np.nan, np.float32))
    with pytest.raises(MicrographError, match="NaN"):
        read_micrograph(path)


def test_constant_and_tiny_images_refused(tmp_path):
    path = tmp_path / "flat.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.ones((70, 90), np.float32))
    with pytest.raises(MicrographError, match="constant"):
        read_micrograph(path)
    path = tmp_path / "tiny.png"
    cv2.imwrite(str(path), RNG.integers(0, 255, (30, 40)).astype(np.uint8))
    with pytest.raises(MicrographError, match="30 px"):
        read_micrograph(path)


def test_find_micrographs_files_folders_globs(tmp_path):
    for name in ["a.mrc", "b.png", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    sub = tmp_path / "with space é"
    sub.mkdir()
    (sub / "c.tif").write_bytes(b"x")
    found = find_micrographs([str(tmp_path), str(tmp_path / "*.png"), str(sub)])
    assert [p.name for p in found] == ["a.mrc", "b.png", "c.tif"]
    assert find_micrographs([str(tmp_path / "*.nothing")]) == []


def test_real_shared_micrographs(shared_dir):
    epu = read_micrograph(shared_dir / "data/real/unlabeled-raw/epu2.9_example.mrc")
    assert epu.shape == (4096, 4096)
    assert epu.pixel_size == pytest.approx(0.667, abs=1e-3)
    fei = read_micrograph(shared_dir / "data/real/unlabeled-raw/fei-extended.mrc")
    assert fei.shape == (3838, 3710)
    assert fei.pixel_size == pytest.approx(0.854, abs=2e-3)
