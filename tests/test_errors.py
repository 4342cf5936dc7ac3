"""The error classes live in cryosegnet.errors; cryosegnet.io.errors is the old path."""

from __future__ import annotations

import cryosegnet.errors as errors
import cryosegnet.io.errors as old_errors

NAMES = [
    "CheckpointError",
    "CoordinateFileError",
    "CryoSegNetError",
    "MicrographError",
    "SettingsError",
]


def test_old_and_new_import_paths_give_the_same_classes():
    for name in NAMES:
        assert getattr(old_errors, name) is getattr(errors, name)
    assert sorted(old_errors.__all__) == NAMES


def test_an_error_raised_by_the_package_is_caught_through_the_old_path(tmp_path):
    from cryosegnet.io.micrographs import read_micrograph

    missing = tmp_path / "missing.mrc"
    try:
        read_micrograph(missing)
    except old_errors.MicrographError as error:
        assert str(missing) in str(error)
    else:  # pragma: no cover - read_micrograph must raise
        raise AssertionError("reading a missing micrograph did not raise")
