"""Values ready for :mod:`json`: the one converter every JSON file of the package goes through.

JSON has no NaN and no numpy types, and results are full of both (a precision of ``nan`` for
an empty micrograph, an ``np.float32`` threshold). Reports, training histories and benchmark
records convert with :func:`json_safe` (or pass :func:`json_default` as ``json.dump``'s
``default=``) instead of each keeping its own copy.
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["json_default", "json_safe"]


def json_safe(value):
    """A copy of ``value`` that :func:`json.dumps` writes as strict JSON.

    Dicts, lists and tuples are converted recursively (tuples become lists), numpy scalars
    and arrays become Python numbers and lists, and non-finite floats become ``None``
    (``null``); everything else is returned unchanged.

    Examples
    --------
    >>> json_safe({"f1": np.float32(0.5), "auprc": float("nan"), "n": [np.int64(3)]})
    {'f1': 0.5, 'auprc': None, 'n': [3]}
    """
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def json_default(value):
    """The ``default=`` hook for :func:`json.dump`: numpy values as Python ones.

    Anything else becomes its ``str`` (paths, for instance), so a record is never lost to an
    unexpected type.

    Examples
    --------
    >>> import json
    >>> from pathlib import PurePosixPath
    >>> json.dumps({"n": np.int64(3), "path": PurePosixPath("a/b")}, default=json_default)
    '{"n": 3, "path": "a/b"}'
    """
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)
