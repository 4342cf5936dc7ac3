"""Atomic file writes: a file is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path


def _plain_file_mode() -> int:
    """Permissions a plainly created file gets (``mkstemp`` makes 0600: others could not read)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _plain_file_mode()

# Every temp file this module makes is hidden and carries this mark, so a run can find and
# remove the ones a killed run left behind (and readers can ignore them).
TEMP_MARK = ".cryosegnet-tmp"


def is_temp_file(path: str | os.PathLike) -> bool:
    """True for a temp file made by :func:`atomic_write` or :func:`atomic_path`."""
    name = Path(path).name
    return name.startswith(".") and TEMP_MARK in name


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds.

    The temp file lives in the destination folder so the final ``os.replace`` is atomic
    on POSIX filesystems. Anything that fails inside the block leaves ``path`` untouched.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_MARK, dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for libraries that insist on writing by file name.

    The temp name keeps the destination's suffix so format detection by extension still works.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.stem}{TEMP_MARK}.", suffix=path.suffix, dir=path.parent
    )
    try:
        os.fchmod(fd, _FILE_MODE)
    finally:
        os.close(fd)
    try:
        yield Path(tmp_name)
        _fsync(tmp_name)  # the library closed it; flush to disk before the rename publishes it
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _fsync(name: str) -> None:
    fd = os.open(name, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_texts_together(texts: Mapping[str | os.PathLike, str]) -> None:
    """Write several text files so that all of them are replaced, or none.

    Every file is first written completely to a temp file beside its destination (and flushed
    to disk); only then are the temp files renamed over their destinations, one after the
    other. A failure while writing (a full disk, a quota) removes the temp files and leaves
    every destination as it was, so files that must agree (an index and its particles) never
    disagree. Each rename is atomic; only a crash between two renames could separate them.

    Parameters
    ----------
    texts : Mapping of path to str
        The destination paths and their complete contents (UTF-8).
    """
    temps: list[tuple[str, Path]] = []
    try:
        for path, text in texts.items():
            path = Path(path)
            fd, tmp_name = tempfile.mkstemp(
                prefix=f".{path.name}.", suffix=TEMP_MARK, dir=path.parent
            )
            temps.append((tmp_name, path))
            os.fchmod(fd, _FILE_MODE)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        for tmp_name, path in temps:
            os.replace(tmp_name, path)
    except BaseException:
        for tmp_name, _ in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        raise
