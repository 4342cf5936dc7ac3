"""Bad micrographs: every one either reads correctly or fails with one line naming it."""

from __future__ import annotations

import builtins
import os
import tracemalloc

import cv2
import mrcfile
import numpy as np
import pytest
import tifffile

from cryosegnet.errors import MicrographError
from cryosegnet.io import micrographs as micrographs_module
from cryosegnet.io.micrographs import find_micrographs, read_micrograph

RNG = np.random.default_rng(6)


def _noise(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return RNG.integers(info.min, int(info.max) + 1, shape, dtype=np.int64).astype(dtype)
    return RNG.normal(0, 1, shape).astype(dtype)


def _write_mrc(path, data: np.ndarray) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)


def _write_non_finite_mrc(path, data: np.ndarray) -> None:
    """Write an MRC with NaN/Inf pixels on purpose: mrcfile warns about them (and numpy, as
    mrcfile computes the header statistics of an all-Inf image)."""
    with pytest.warns(RuntimeWarning, match="Data array contains"), np.errstate(invalid="ignore"):
        _write_mrc(path, data)


def _one_line_error(path, match: str | None = None) -> MicrographError:
    with pytest.raises(MicrographError) as info:
        read_micrograph(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message
    if match:
        assert match in message, message
    return info.value


# ------------------------------------------------------------------ corrupt and truncated MRC


@pytest.mark.parametrize("keep", [0, 10, 1023, 1024, 1024 + 4 * 97, 1024 + 4 * 97 * 131 - 1])
def test_truncated_mrc_at_any_point(tmp_path, keep):
    path = tmp_path / "cut.mrc"
    _write_mrc(path, _noise((131, 97)))
    path.write_bytes(path.read_bytes()[:keep])
    _one_line_error(path)


@pytest.mark.parametrize(
    "offset, value",
    [(0, -5), (4, 0), (8, -1), (12, 99), (92, 10**9), (92, -200)],  # nx, ny, nz, mode, nsymbt
    ids=["nx<0", "ny=0", "nz<0", "mode99", "ext-header-huge", "ext-header-negative"],
)
def test_corrupt_mrc_header_fields(tmp_path, offset, value):
    path = tmp_path / "corrupt.mrc"
    _write_mrc(path, _noise((80, 96)))
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 4] = np.int32(value).tobytes()
    path.write_bytes(bytes(raw))
    assert _peak_bytes_while_failing(path) < 20e6


def _peak_bytes_while_failing(path) -> int:
    tracemalloc.start()
    try:
        _one_line_error(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("seed", [240, 247, 253, 272])  # headers claiming 1-2 GB
def test_mrc_with_garbage_header_allocates_nothing_big(tmp_path, seed):
    """A corrupt header must not make the reader allocate what it claims (mrcfile would)."""
    path = tmp_path / "garbage.mrc"
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert _peak_bytes_while_failing(path) < 20e6


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mrc"
    path.write_bytes(b"")
    _one_line_error(path)


def test_complex_mrc_is_refused(tmp_path):
    path = tmp_path / "fft.mrc"
    _write_mrc(path, (_noise((80, 96)) + 1j * _noise((80, 96))).astype(np.complex64))
    _one_line_error(path, "complex")


# ------------------------------------------------------------------ content vs extension


def _write_as(fmt: str, path, data: np.ndarray) -> None:
    if fmt == "mrc":
        _write_mrc(path, data)
    elif fmt == "tiff":
        tifffile.imwrite(path, data)
    else:
        ok, buffer = cv2.imencode(".png" if fmt == "png" else ".jpg", data)
        assert ok
        path.write_bytes(buffer.tobytes())


@pytest.mark.parametrize(
    "fmt, name",
    [
        ("mrc", "mic.tif"),
        ("mrc", "mic.png"),
        ("tiff", "mic.mrc"),
        ("tiff", "mic.jpg"),
        ("png", "mic.tiff"),
        ("png", "mic.mrc"),
        ("jpeg", "mic.png"),
        ("mrc", "mic"),
    ],
)
def test_wrong_extension_is_read_by_content(tmp_path, fmt, name):
    data = _noise((90, 110), np.uint8)
    path = tmp_path / name
    _write_as(fmt, path, data)
    mic = read_micrograph(path)
    assert mic.shape == (90, 110)
    if fmt != "jpeg":
        np.testing.assert_array_equal(mic.data, data.astype(np.float32))


def test_text_file_with_micrograph_extension(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n" * 20)
    _one_line_error(path)


# ------------------------------------------------------------------ pixel values


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_nan_and_inf_pixels_are_filled(tmp_path, dtype):
    data = _noise((100, 120), dtype)
    data[0, :] = np.nan
    data[5, 7] = np.inf
    data[9, 9] = -np.inf
    path = tmp_path / "hot.mrc"
    _write_non_finite_mrc(path, data)
    mic = read_micrograph(path)
    assert np.isfinite(mic.data).all()
    finite = np.isfinite(data)
    np.testing.assert_array_equal(mic.data[finite], data[finite].astype(np.float32))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_all_non_finite_refused(tmp_path, value):
    path = tmp_path / "dead.mrc"
    _write_non_finite_mrc(path, np.full((80, 80), value, np.float32))
    _one_line_error(path, "NaN or Inf")


@pytest.mark.parametrize("fmt", ["mrc", "tiff", "png"])
def test_constant_image_refused(tmp_path, fmt):
    path = tmp_path / f"flat.{fmt}"
    _write_as(fmt, path, np.full((80, 90), 7, np.uint8))
    _one_line_error(path, "constant")


def test_constant_apart_from_non_finite_refused(tmp_path):
    data = np.zeros((80, 80), np.float32)
    data[3, 3] = np.nan
    path = tmp_path / "flat_nan.mrc"
    _write_non_finite_mrc(path, data)
    _one_line_error(path, "constant")


# ------------------------------------------------------------------ sizes and shapes


@pytest.mark.parametrize("shape", [(63, 200), (200, 63), (1, 500), (10, 10)])
def test_tiny_images_refused(tmp_path, shape):
    path = tmp_path / "tiny.mrc"
    _write_mrc(path, _noise(shape))
    _one_line_error(path, "at least 64 px")


def test_smallest_accepted_size(tmp_path):
    path = tmp_path / "small.mrc"
    _write_mrc(path, _noise((64, 64)))
    assert read_micrograph(path).shape == (64, 64)


@pytest.mark.parametrize("fmt", ["mrc", "tiff", "png"])
@pytest.mark.parametrize("shape", [(97, 131), (131, 97), (65, 257)])
def test_non_square_and_odd_sizes_keep_orientation(tmp_path, fmt, shape):
    data = _noise(shape, np.uint8)
    path = tmp_path / f"odd.{fmt}"
    _write_as(fmt, path, data)
    np.testing.assert_array_equal(read_micrograph(path).data, data.astype(np.float32))


def test_odd_sizes_flow_through_preprocessing(tmp_path):
    """Odd, non-square micrographs keep their aspect ratio at working resolution."""
    from cryosegnet.preprocessing.denoise import DenoiseSettings, denoise, working_shape

    data = _noise((131, 97))
    settings = DenoiseSettings(working_size=96)
    out = denoise(data, settings)
    assert out.shape == working_shape(data.shape, 96)
    assert out.dtype == np.uint8


@pytest.mark.parametrize("nz", [2, 3, 40])
def test_real_mrc_stacks_refused(tmp_path, nz):
    path = tmp_path / "movie.mrcs"
    _write_mrc(path, _noise((nz, 70, 70)))
    _one_line_error(path, f"stack of {nz} sections")


def test_real_tiff_stack_refused(tmp_path):
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, _noise((5, 70, 70), np.uint16), photometric="minisblack")
    _one_line_error(path, "stack of 5 sections")


def test_rgb_tiff_is_a_colour_image_not_a_stack(tmp_path):
    """A colour TIFF is (H, W, 3): read as grey like PNG/JPEG, not refused as an H-section stack."""
    path = tmp_path / "colour.tif"
    rgb = _noise((100, 120, 3), np.uint8)
    tifffile.imwrite(path, rgb, photometric="rgb")
    mic = read_micrograph(path)
    assert mic.shape == (100, 120)
    expected = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(mic.data, expected, atol=1.0)


def test_huge_super_resolution_micrograph_reads(tmp_path):
    """An 11520 x 8184 (K3 super-resolution) micrograph: read, then shrunk to working size.

    Written lazily (memory-mapped, sparse file) in 8-bit to keep the test light; the float32
    case and its peak memory are measured in bench/bench_memory.py.
    """
    from cryosegnet.preprocessing.denoise import DenoiseSettings, denoise

    path = tmp_path / "k3_super.mrc"
    with mrcfile.new_mmap(path, shape=(8184, 11520), mrc_mode=0) as mrc:
        mrc.data[1000:1100, 2000:2300] = 50
        mrc.data[8000:, 11000:] = -20
    mic = read_micrograph(path)
    assert mic.shape == (8184, 11520)
    assert mic.data[1050, 2100] == 50 and mic.data[8100, 11100] == -20
    out = denoise(mic.data, DenoiseSettings(working_size=256))
    assert max(out.shape) == 256


# ------------------------------------------------------------------ 16-bit PNG and TIFF


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_16_bit_full_range_is_exact(tmp_path, fmt):
    data = _noise((100, 90), np.uint16)
    data[0, 0], data[0, 1] = 0, 65535
    path = tmp_path / f"sixteen.{fmt}"
    _write_as(fmt, path, data)
    mic = read_micrograph(path)
    np.testing.assert_array_equal(mic.data, data.astype(np.float32))
    assert mic.data.max() == 65535


def test_signed_16_bit_tiff(tmp_path):
    data = _noise((100, 90), np.int16)
    path = tmp_path / "signed.tif"
    tifffile.imwrite(path, data)
    np.testing.assert_array_equal(read_micrograph(path).data, data.astype(np.float32))


def test_truncated_png_and_tiff(tmp_path):
    for fmt in ("png", "tiff"):
        path = tmp_path / f"cut.{fmt}"
        _write_as(fmt, path, _noise((200, 200), np.uint16))
        path.write_bytes(path.read_bytes()[:300])
        _one_line_error(path)


# ------------------------------------------------------------------ permissions and names


def _deny(monkeypatch, path) -> None:
    """Make ``path`` unreadable: chmod for normal users; root ignores modes, so simulate."""
    if os.geteuid() != 0:
        os.chmod(path, 0)
        return
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if os.fspath(file) == os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(file, *args, **kwargs)

    real_fromfile = np.fromfile

    def guarded_fromfile(file, *args, **kwargs):
        if os.fspath(file) == os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_fromfile(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(micrographs_module.np, "fromfile", guarded_fromfile)


@pytest.mark.parametrize("fmt", ["mrc", "tiff", "png"])
def test_unreadable_file_permission(tmp_path, monkeypatch, fmt):
    path = tmp_path / f"locked.{fmt}"
    _write_as(fmt, path, _noise((80, 80), np.uint8))
    _deny(monkeypatch, path)
    _one_line_error(path, "permission denied")


@pytest.mark.parametrize("fmt", ["mrc", "tiff"])
def test_permission_denied_inside_the_format_reader(tmp_path, monkeypatch, fmt):
    """Sniffing succeeds but the format library then cannot open the file (e.g. ACL change)."""
    path = tmp_path / f"late.{fmt}"
    _write_as(fmt, path, _noise((80, 80), np.uint8))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", os.fspath(path))

    if fmt == "mrc":
        monkeypatch.setattr(micrographs_module.mrcfile, "open", refuse)
    else:
        monkeypatch.setattr(micrographs_module.tifffile, "imread", refuse)
        monkeypatch.setattr(micrographs_module.tifffile, "TiffFile", refuse)
    _one_line_error(path, "permission denied")


def test_missing_file_and_folder(tmp_path):
    _one_line_error(tmp_path / "nope.mrc", "no such file")
    _one_line_error(tmp_path, "folder")


@pytest.mark.parametrize("name", ["mic with spaces.mrc", "Mikrograf_äöü_β.mrc", "顕微鏡 01.tif"])
def test_unicode_and_spaces_in_names(tmp_path, name):
    folder = tmp_path / "data set é"
    folder.mkdir()
    path = folder / name
    data = _noise((80, 90), np.uint8)
    _write_as("tiff" if name.endswith(".tif") else "mrc", path, data)
    mic = read_micrograph(path)
    np.testing.assert_array_equal(mic.data, data.astype(np.float32))
    assert mic.stem == name.rsplit(".", 1)[0]
    assert find_micrographs([str(folder)]) == [path]
    assert find_micrographs([str(folder / "*")]) == [path]


def test_empty_folder_and_glob_matching_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    assert find_micrographs([str(tmp_path / "empty")]) == []
    assert find_micrographs([str(tmp_path / "*.mrc")]) == []
    assert find_micrographs([str(tmp_path / "does-not-exist" / "*.mrc")]) == []


def test_io_error_while_reading_is_one_line(tmp_path, monkeypatch):
    """A failing disk or network share (EIO) is the file's failure, in the reader's own error."""
    import errno

    path = tmp_path / "flaky.mrc"
    _write_mrc(path, _noise((80, 80)))

    def eio(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(micrographs_module, "_check_mrc_header", eio)
    _one_line_error(path, "Input/output error")
