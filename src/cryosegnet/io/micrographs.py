"""Read micrographs from MRC, TIFF, PNG and JPEG into float32 arrays.

The format is taken from the file's content (magic bytes), not its extension, so a
mislabelled file still reads, and anything unreadable fails with one line naming the file.
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import mrcfile
import numpy as np
import tifffile

from cryosegnet.errors import MicrographError, first_line

MICROGRAPH_SUFFIXES = (".mrc", ".mrcs", ".map", ".tif", ".tiff", ".png", ".jpg", ".jpeg")
MIN_SIDE = 64
MAX_ASPECT = 8
MAX_PIXELS_ENV = "CRYOSEGNET_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 20000 * 20000


@dataclass
class Micrograph:
    """A single micrograph as read: ``data[row, col]`` in float32, plus what the header knew."""

    path: Path
    data: np.ndarray
    pixel_size: float | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.data.shape  # type: ignore[return-value]

    @property
    def stem(self) -> str:
        """The micrograph's name without folders and image extension."""
        return micrograph_stem(self.path)


def micrograph_stem(path: str | os.PathLike) -> str:
    """Name used for a micrograph's output files (``a/b/mic_001.mrc`` -> ``mic_001``)."""
    return Path(path).stem


def sniff_format(path: Path) -> str:
    """Guess the file format from its first bytes; fall back to the extension."""
    with open(path, "rb") as handle:
        head = handle.read(224)
    if head.startswith(b"\x1f\x8b"):
        raise MicrographError(path, "is gzip-compressed; decompress it first (gunzip)")
    if head.startswith(b"\x89PNG"):
        return "png"
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if len(head) >= 212 and head[208:212] == b"MAP ":
        return "mrc"
    suffix = path.suffix.lower()
    if suffix in (".mrc", ".mrcs", ".map", ".st", ".rec"):
        return "mrc"
    raise MicrographError(path, "not a recognised micrograph (expected MRC, TIFF, PNG or JPEG)")


# Bytes per voxel of the MRC modes cryo-EM uses (mode 101, 4-bit, is handled separately).
_MRC_MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2}


def _check_mrc_header(path: Path) -> None:
    """Refuse a corrupt, truncated or stacked MRC from its header alone, before reading data.

    mrcfile allocates whatever the header claims (data block, extended header) before reading,
    so one corrupt header could cost gigabytes; and a movie stack would be read in full only
    to be refused.
    """
    with open(path, "rb") as handle:
        head = handle.read(1024)
    if len(head) < 1024:
        raise MicrographError(path, "MRC header is truncated (file shorter than 1024 bytes)")
    for order in ("<", ">"):
        nx, ny, nz, mode = np.frombuffer(head, dtype=f"{order}i4", count=4)
        nsymbt = int(np.frombuffer(head, dtype=f"{order}i4", count=1, offset=92)[0])
        if int(mode) in _MRC_MODE_BYTES or int(mode) == 101:
            break
    else:  # mrcfile could not read the data either, but would first allocate the header's sizes
        raise MicrographError(
            path,
            f"MRC data mode {int(np.frombuffer(head, '<i4', 1, 12)[0])} is not supported "
            f"(modes {', '.join(str(m) for m in sorted(_MRC_MODE_BYTES))}; or the header is "
            "corrupt)",
        )
    nx, ny, nz, mode = int(nx), int(ny), int(nz), int(mode)
    if min(nx, ny, nz) <= 0 or nsymbt < 0:
        raise MicrographError(
            path, f"MRC header is invalid (size {nx}x{ny}x{nz}, extended header {nsymbt} bytes)"
        )
    if nz > 1:
        raise MicrographError(path, _stack_message(nz))
    limit = max_pixels()
    if nx * ny > limit:
        raise MicrographError(
            path,
            f"is {nx}x{ny} px, above the limit of {limit} pixels (set "
            f"{MAX_PIXELS_ENV}=N to allow larger micrographs)",
        )
    row_bytes = (nx + 1) // 2 if mode == 101 else nx * _MRC_MODE_BYTES[mode]
    expected = 1024 + nsymbt + row_bytes * ny * nz
    actual = path.stat().st_size
    if actual < expected:
        raise MicrographError(
            path,
            f"MRC data block is truncated (header says {nx}x{ny}x{nz}, mode {mode}: "
            f"{expected} bytes; file has {actual})",
        )
    if actual > expected:  # read as the header says, the pixels would be scrambled
        raise MicrographError(
            path,
            f"MRC header does not match the file (header says {nx}x{ny}x{nz}, mode {mode}: "
            f"{expected} bytes; file has {actual - expected} bytes more)",
        )


def max_pixels() -> int:
    """Largest micrograph (pixels) read: ``$CRYOSEGNET_MAX_PIXELS`` or 20000 x 20000."""
    try:
        return int(float(os.environ.get(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS)))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def _stack_message(n_sections: int) -> str:
    return (
        f"is a stack of {n_sections} sections; pick expects single micrographs "
        "(motion-corrected sums), not movies or tomograms"
    )


def _read_mrc(path: Path) -> tuple[np.ndarray, float | None]:
    _check_mrc_header(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mrc = mrcfile.open(path, mode="r", permissive=True)
    except PermissionError:
        raise
    except Exception as exc:  # mrcfile raises ValueError/OSError subclasses on bad headers
        raise MicrographError(path, f"unreadable MRC ({_first_line(exc)})") from exc
    with mrc:
        if mrc.data is None:
            if int(mrc.header.mode) == 101:
                raise MicrographError(
                    path,
                    "MRC data mode 101 (4-bit) is not supported; "
                    "convert it to mode 2 (float32) or 1 (int16)",
                )
            raise MicrographError(path, "MRC header is invalid or the data block is truncated")
        data = np.asarray(mrc.data)
        voxel = float(mrc.voxel_size.x) if mrc.voxel_size is not None else 0.0
        expected = int(mrc.header.nx) * int(mrc.header.ny) * int(mrc.header.nz)
        if data.size < expected:
            raise MicrographError(path, "MRC data block is truncated")
    pixel_size = voxel if np.isfinite(voxel) and voxel > 0 else None
    return data, pixel_size


def _read_tiff(path: Path) -> np.ndarray:
    """First image series; colour (RGB) becomes grey, and a stack is refused before reading."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape = series.axes, series.shape
            rgb = tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB and "S" in axes
            planes = [n for a, n in zip(axes, shape, strict=True) if a not in "YXS" and n > 1]
            if planes:
                raise MicrographError(path, _stack_message(int(np.prod(planes))))
            data = series.asarray()
    except (MicrographError, PermissionError):
        raise
    except Exception as exc:
        raise MicrographError(path, f"unreadable TIFF ({_first_line(exc)})") from exc
    if rgb:  # (Y, X, S) or (S, Y, X): ITU-R 601 luma, as OpenCV does for PNG/JPEG
        data = np.moveaxis(data, axes.index("S"), -1)[..., :3].astype(np.float32)
        data = data @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return data


def _read_raster(path: Path) -> np.ndarray:
    buffer = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise MicrographError(path, "unreadable or truncated image file")
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = image[:, :, :3]
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image


def read_micrograph(path: str | os.PathLike) -> Micrograph:
    """Read one micrograph (MRC, TIFF, PNG or JPEG) as float32.

    Parameters
    ----------
    path : str or os.PathLike
        The file; its format is read from its first bytes, not its name.

    Returns
    -------
    Micrograph
        The image (float32, one 2D section) and its pixel size in Å when the header has one.

    Raises
    ------
    MicrographError
        With a one-line reason naming the file: missing, unreadable, truncated, a stack or a
        volume, too large, or not an image.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise MicrographError(path, "symbolic link loop") from exc
        if exc.errno == errno.ENOENT:
            raise MicrographError(path, "no such file") from exc
        raise MicrographError(path, f"cannot open ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(mode):
        raise MicrographError(path, "is a folder, not a micrograph")
    if not stat.S_ISREG(mode):  # a FIFO or device would block the read forever
        raise MicrographError(path, "is not a regular file (FIFO, socket or device)")
    try:
        fmt = sniff_format(path)
    except PermissionError as exc:
        raise MicrographError(path, "permission denied") from exc
    except OSError as exc:
        raise MicrographError(path, f"cannot open ({exc.strerror or exc})") from exc
    pixel_size = None
    try:
        if fmt == "mrc":
            data, pixel_size = _read_mrc(path)
        elif fmt == "tiff":
            data = _read_tiff(path)
        else:
            data = _read_raster(path)
    except PermissionError as exc:
        raise MicrographError(path, "permission denied") from exc
    except OSError as exc:  # I/O error on a failing disk or network share
        raise MicrographError(path, f"cannot read ({exc.strerror or exc})") from exc
    return Micrograph(path=path, data=_as_single_image(path, data), pixel_size=pixel_size)


def _as_single_image(path: Path, data: np.ndarray) -> np.ndarray:
    """Squeeze a 1xHxW section to HxW, refuse real stacks, and check the pixel values."""
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 3:
        raise MicrographError(path, _stack_message(data.shape[0]))
    if data.ndim != 2:
        raise MicrographError(path, f"has {data.ndim} dimensions; expected a 2D image")
    if min(data.shape) < MIN_SIDE:
        raise MicrographError(
            path, f"is only {data.shape[1]}x{data.shape[0]} px; at least {MIN_SIDE} px needed"
        )
    ratio = max(data.shape) / min(data.shape)
    if ratio > MAX_ASPECT:
        raise MicrographError(
            path,
            f"is {data.shape[1]}x{data.shape[0]} px, a strip rather than a micrograph "
            f"(sides differ more than {MAX_ASPECT}:1; it would shrink to a few pixels)",
        )
    if np.iscomplexobj(data):
        raise MicrographError(path, "holds complex (Fourier-space) data, not an image")
    image = data.astype(np.float32, copy=True)
    finite = np.isfinite(image)
    if not finite.all():
        if not finite.any():
            raise MicrographError(path, "every pixel is NaN or Inf")
        # A few bad detector pixels should not cost the micrograph: fill with the median.
        image[~finite] = np.median(image[finite])
    if float(image.max()) == float(image.min()):
        raise MicrographError(path, "is a constant image (no contrast to pick from)")
    return image


def find_micrographs(inputs: list[str], problems: list[str] | None = None) -> list[Path]:
    """Expand files, folders and globs into a sorted, de-duplicated list of micrographs.

    An input that yields nothing (no such file, an empty folder, a glob matching nothing, a
    symlink loop) is described in ``problems`` (one line each, naming it) when given.
    """
    import glob

    problems = problems if problems is not None else []
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if _is_link_loop(path):
            problems.append(f"{item}: symbolic link loop")
        elif path.is_dir():
            try:
                entries = sorted(path.iterdir())
            except OSError as exc:
                problems.append(f"{item}: cannot list the folder ({exc.strerror or exc})")
                continue
            mics = [p for p in entries if p.suffix.lower() in MICROGRAPH_SUFFIXES]
            if not mics:
                problems.append(
                    f"{item}: folder holds no micrographs ({', '.join(MICROGRAPH_SUFFIXES)})"
                )
            found += mics
        elif path.exists() or path.is_symlink():
            found.append(path)
        elif glob.has_magic(item):
            matches = [Path(p) for p in sorted(glob.glob(item))]
            matches = [p for p in matches if not p.is_dir()]
            if not matches:
                problems.append(f"{item}: no file matches this pattern")
            found += matches
        else:
            problems.append(f"{item}: no such file or folder")
    unique: dict[str, Path] = {}
    for p in found:
        unique.setdefault(os.path.realpath(p), p)  # realpath: never raises on a link loop
    return list(unique.values())


def _is_link_loop(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _first_line(exc: BaseException) -> str:
    return first_line(exc) or type(exc).__name__
