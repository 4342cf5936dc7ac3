"""Read micrographs from MRC, TIFF, PNG and JPEG into float32 arrays.

The format is taken from the file's content (magic bytes), not its extension, so a
mislabelled file still reads, and anything unreadable fails with one line naming the file.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import mrcfile
import numpy as np
import tifffile

from cryosegnet.io.errors import MicrographError

MICROGRAPH_SUFFIXES = (".mrc", ".mrcs", ".map", ".tif", ".tiff", ".png", ".jpg", ".jpeg")
MIN_SIDE = 64


@dataclass
class Micrograph:
    """A single micrograph as read: ``data[row, col]`` in float32, plus what the header knew."""

    path: Path
    data: np.ndarray
    pixel_size: float | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape  # type: ignore[return-value]

    @property
    def stem(self) -> str:
        return micrograph_stem(self.path)


def micrograph_stem(path: str | os.PathLike) -> str:
    """Name used for a micrograph's output files (``a/b/mic_001.mrc`` -> ``mic_001``)."""
    return Path(path).stem


def sniff_format(path: Path) -> str:
    """Guess the file format from its first bytes; fall back to the extension."""
    with open(path, "rb") as handle:
        head = handle.read(224)
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


def _read_mrc(path: Path) -> tuple[np.ndarray, float | None]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mrc = mrcfile.open(path, mode="r", permissive=True)
    except Exception as exc:  # mrcfile raises ValueError/OSError subclasses on bad headers
        raise MicrographError(path, f"unreadable MRC ({_first_line(exc)})") from exc
    with mrc:
        if mrc.data is None:
            raise MicrographError(path, "MRC header is invalid or the data block is truncated")
        data = np.asarray(mrc.data)
        voxel = float(mrc.voxel_size.x) if mrc.voxel_size is not None else 0.0
        expected = int(mrc.header.nx) * int(mrc.header.ny) * int(mrc.header.nz)
        if data.size < expected:
            raise MicrographError(path, "MRC data block is truncated")
    pixel_size = voxel if np.isfinite(voxel) and voxel > 0 else None
    return data, pixel_size


def _read_tiff(path: Path) -> np.ndarray:
    try:
        return tifffile.imread(path)
    except Exception as exc:
        raise MicrographError(path, f"unreadable TIFF ({_first_line(exc)})") from exc


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
    """Read one micrograph; raise :class:`MicrographError` with a one-line reason on failure."""
    path = Path(path)
    if not path.exists():
        raise MicrographError(path, "no such file")
    if path.is_dir():
        raise MicrographError(path, "is a folder, not a micrograph")
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
    return Micrograph(path=path, data=_as_single_image(path, data), pixel_size=pixel_size)


def _as_single_image(path: Path, data: np.ndarray) -> np.ndarray:
    """Squeeze a 1xHxW section to HxW, refuse real stacks, and check the pixel values."""
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 3:
        raise MicrographError(
            path,
            f"is a stack of {data.shape[0]} sections; pick expects single micrographs "
            "(motion-corrected sums), not movies or tomograms",
        )
    if data.ndim != 2:
        raise MicrographError(path, f"has {data.ndim} dimensions; expected a 2D image")
    if min(data.shape) < MIN_SIDE:
        raise MicrographError(
            path, f"is only {data.shape[1]}x{data.shape[0]} px; at least {MIN_SIDE} px needed"
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


def find_micrographs(inputs: list[str]) -> list[Path]:
    """Expand files, folders and globs into a sorted, de-duplicated list of micrographs."""
    import glob

    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += [p for p in sorted(path.iterdir()) if p.suffix.lower() in MICROGRAPH_SUFFIXES]
        elif path.exists():
            found.append(path)
        else:
            found += [Path(p) for p in sorted(glob.glob(item)) if Path(p).is_file()]
    unique: dict[str, Path] = {}
    for p in found:
        unique.setdefault(str(p.resolve()), p)
    return list(unique.values())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
