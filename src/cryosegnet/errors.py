"""Errors that carry a one-line, user-facing message naming the file and the problem.

Every layer (io, picking, training, the command line) raises these, so they live at
the top of the package rather than under :mod:`cryosegnet.io`.
"""

from __future__ import annotations

import os


class CryoSegNetError(Exception):
    """Base class: ``str(error)`` is the single line shown to the user."""


class _FileError(CryoSegNetError):
    """A problem with one file: the message is ``"<path>: <problem>"``, both kept."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class MicrographError(_FileError):
    """A micrograph that cannot be read or processed."""


class CheckpointError(_FileError):
    """A model or SAM checkpoint that is missing, corrupt or of the wrong kind."""


class CoordinateFileError(_FileError):
    """A coordinate file that cannot be parsed."""


class NothingToLearnError(CryoSegNetError):
    """The label-free refinement loop found no kept particle to learn from.

    It wrote no model; the command line adds what the user may change.
    """


class SettingsError(CryoSegNetError, ValueError):
    """Options that cannot work together (an option that cannot apply is an error)."""


def first_line(error: BaseException) -> str:
    """The first non-blank line of ``str(error)`` ("" when it has none).

    What a one-line report shows of an exception whose message may run over several lines (a
    traceback-like text from a library).
    """
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return ""
