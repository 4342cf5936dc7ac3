"""Old location of :mod:`cryosegnet.errors`, kept for one release.

The error classes moved to :mod:`cryosegnet.errors` because every layer raises them,
not only :mod:`cryosegnet.io`. This module re-exports them so that third-party code
importing ``cryosegnet.io.errors`` keeps working; import from ``cryosegnet.errors``
in new code.
"""

from __future__ import annotations

from cryosegnet.errors import (
    CheckpointError,
    CoordinateFileError,
    CryoSegNetError,
    MicrographError,
    SettingsError,
)

__all__ = [
    "CheckpointError",
    "CoordinateFileError",
    "CryoSegNetError",
    "MicrographError",
    "SettingsError",
]
