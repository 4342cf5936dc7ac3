"""What is at a path, in words, for messages that refuse it ("a file, not a folder")."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def what_is_at(path: str | os.PathLike) -> str:
    """A short phrase for what ``path`` is: ``a folder``, ``a file``, ``a symbolic link to a
    missing target (X)``, ``a symbolic link loop``, ``a FIFO``..., or ``nothing``.

    Parameters
    ----------
    path : str or os.PathLike
        Any path; it is not followed further than the system follows it.

    Returns
    -------
    str
        The phrase, to complete "PATH is ...".
    """
    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        if path.is_symlink():
            return f"a symbolic link to a missing target ({os.readlink(path)})"
        if exc.errno == errno.ENOENT:
            return "nothing"
        return f"not accessible ({exc.strerror or exc})"
    mode = info.st_mode
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISREG, "a file"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file or folder"
