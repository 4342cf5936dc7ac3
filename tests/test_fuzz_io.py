"""Property-based tests (hypothesis) for the micrograph reader and the coordinate writers/readers.

The reader must turn *any* bytes into either an image or a one-line :class:`MicrographError`,
never another exception type; every coordinate writer must round-trip through its reader
within the precision its format states (STAR: 0.01 px and 1e-5 score; CSV and box: 1 px).
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryosegnet.errors import MicrographError
from cryosegnet.io.coordinates import (
    make_picks,
    read_coordinates,
    write_box,
    write_combined_star,
    write_coordinate_star,
    write_cryoppp_csv,
)
from cryosegnet.io.micrographs import read_micrograph

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

# Magic prefixes that send the bytes down each reader's path (the rest is random).
PREFIXES = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"II+\x00"]
SUFFIXES = [".mrc", ".tif", ".png", ".jpg", ".dat"]


def _read_must_only_raise_micrograph_error(path: Path) -> None:
    try:
        mic = read_micrograph(path)
    except MicrographError as exc:
        assert str(exc).startswith(str(path))
        assert "\n" not in str(exc)
        return
    # Whatever reads must be a usable image.
    assert mic.data.ndim == 2 and mic.data.dtype == np.float32
    assert np.isfinite(mic.data).all()


@FUZZ
@given(
    prefix=st.sampled_from(PREFIXES),
    body=st.binary(min_size=0, max_size=4096),
    suffix=st.sampled_from(SUFFIXES),
)
def test_random_bytes_raise_only_micrograph_error(prefix: bytes, body: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(prefix + body)
        _read_must_only_raise_micrograph_error(path)


def _mrc_header(nx: int, ny: int, nz: int, mode: int, nsymbt: int, exttyp: bytes) -> bytes:
    """A 1024-byte MRC2014 header with the given fields, everything else plausible."""
    header = bytearray(1024)
    struct.pack_into("<4i", header, 0, nx, ny, nz, mode)
    struct.pack_into("<3i", header, 28, max(nx, 1), max(ny, 1), max(nz, 1))  # mx, my, mz
    struct.pack_into("<3f", header, 40, float(nx), float(ny), float(nz))  # cella
    struct.pack_into("<3i", header, 64, 1, 2, 3)  # mapc, mapr, maps
    struct.pack_into("<i", header, 92, nsymbt)
    header[104:108] = exttyp
    struct.pack_into("<i", header, 108, 20140)
    header[208:212] = b"MAP "
    header[212:216] = b"DA\x00\x00"
    return bytes(header)


@FUZZ
@given(
    nx=st.one_of(st.integers(-4, 300), st.sampled_from([2**31 - 1, 11520, 0])),
    ny=st.one_of(st.integers(-4, 300), st.sampled_from([2**31 - 1, 8184, 0])),
    nz=st.one_of(st.integers(-2, 4), st.sampled_from([2**31 - 1, 1000])),
    mode=st.one_of(st.sampled_from([0, 1, 2, 3, 4, 6, 12, 101]), st.integers(-5, 200)),
    nsymbt=st.one_of(st.sampled_from([0, 0, 0, 128, 1024]), st.integers(-100, 10**9)),
    exttyp=st.sampled_from([b"\x00\x00\x00\x00", b"FEI1", b"FEI2", b"SERI", b"CCP4"]),
    n_data=st.integers(0, 200 * 200 * 4 + 4096),
    fill=st.sampled_from(["random", "nan", "inf", "zeros"]),
    seed=st.integers(0, 2**16),
)
def test_plausible_mrc_headers_raise_only_micrograph_error(
    nx: int,
    ny: int,
    nz: int,
    mode: int,
    nsymbt: int,
    exttyp: bytes,
    n_data: int,
    fill: str,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    if fill == "random":
        data = rng.integers(0, 256, n_data, dtype=np.uint8).tobytes()
    elif fill == "zeros":
        data = bytes(n_data)
    else:
        value = np.float32(np.nan if fill == "nan" else np.inf)
        data = np.full(n_data // 4, value, dtype=np.float32).tobytes()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.mrc"
        path.write_bytes(_mrc_header(nx, ny, nz, mode, nsymbt, exttyp) + data)
        _read_must_only_raise_micrograph_error(path)


# ------------------------------------------------------------------ coordinate round trips

coordinate = st.floats(0, 12000, allow_nan=False, allow_infinity=False)
score = st.floats(0, 1, allow_nan=False)


@st.composite
def picks_tables(draw):
    n = draw(st.integers(0, 30))
    xs = draw(st.lists(coordinate, min_size=n, max_size=n))
    ys = draw(st.lists(coordinate, min_size=n, max_size=n))
    scores = draw(st.lists(score, min_size=n, max_size=n))
    diameter = draw(st.floats(4, 800, allow_nan=False))
    return make_picks(xs, ys, scores, diameter)


ROUND_TRIP = settings(max_examples=40, deadline=None, database=None)


def _written_and_read(name: str, write) -> object:
    """Write with ``write(path)`` into a fresh folder, read back with read_coordinates."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        write(path)
        return read_coordinates(path)


@ROUND_TRIP
@given(picks=picks_tables())
def test_star_round_trip(picks) -> None:
    back = _written_and_read("mic.star", lambda path: write_coordinate_star(path, picks))
    assert len(back) == len(picks)
    np.testing.assert_allclose(back["x"], picks["x"], atol=0.005 + 1e-9)
    np.testing.assert_allclose(back["y"], picks["y"], atol=0.005 + 1e-9)
    np.testing.assert_allclose(back["score"], picks["score"], atol=5e-6 + 1e-12)


@ROUND_TRIP
@given(picks=picks_tables())
def test_csv_round_trip(picks) -> None:
    back = _written_and_read("mic.csv", lambda path: write_cryoppp_csv(path, picks))
    assert len(back) == len(picks)
    np.testing.assert_allclose(back["x"], picks["x"], atol=0.5 + 1e-9)
    np.testing.assert_allclose(back["y"], picks["y"], atol=0.5 + 1e-9)
    np.testing.assert_allclose(back["diameter"], picks["diameter"], atol=0.5 + 1e-9)


@ROUND_TRIP
@given(picks=picks_tables(), box=st.one_of(st.integers(8, 800), st.floats(8, 800)))
def test_box_round_trip(picks, box: float) -> None:
    """Whole-pixel corners and box size: centres come back within half a pixel, also for an
    estimated (fractional) box size."""
    back = _written_and_read("mic.box", lambda path: write_box(path, picks, box_size=box))
    assert len(back) == len(picks)
    np.testing.assert_allclose(back["x"], picks["x"], atol=0.5 + 1e-9)
    np.testing.assert_allclose(back["y"], picks["y"], atol=0.5 + 1e-9)
    np.testing.assert_allclose(back["diameter"], round(box))


micrograph_name = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=["Cs", "Cc", "Zl", "Zp"], exclude_characters="\"'#\\/"
    ),
    min_size=1,
    max_size=20,
).filter(lambda s: s.strip() == s and s not in (".", ".."))


@settings(max_examples=25, deadline=None, database=None)
@given(names=st.lists(micrograph_name, min_size=1, max_size=4, unique=True), picks=picks_tables())
def test_combined_star_round_trip_keeps_micrograph_names(names: list[str], picks) -> None:
    by_name = {f"Micrographs/{name}.mrc": picks for name in names}
    back = _written_and_read("particles.star", lambda path: write_combined_star(path, by_name))
    assert len(back) == len(picks) * len(names)
    if len(picks):
        assert sorted(set(back["micrograph"])) == sorted(names)
        np.testing.assert_allclose(back["x"], np.tile(picks["x"], len(names)), atol=0.005 + 1e-9)


@pytest.mark.parametrize("suffix", [".star", ".csv", ".box", ".tsv", ".cbox"])
@FUZZ
@given(body=st.binary(max_size=2048))
def test_coordinate_reader_raises_only_its_error(suffix: str, body: bytes) -> None:
    from cryosegnet.errors import CoordinateFileError

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"picks{suffix}"
        path.write_bytes(body)
        try:
            read_coordinates(path)
        except CoordinateFileError as exc:
            assert "\n" not in str(exc)
