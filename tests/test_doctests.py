"""The documented examples run: docstring examples of the public API and the README snippet."""

from __future__ import annotations

import doctest
import importlib

import pytest

DOCUMENTED_MODULES = (
    "cryosegnet.picking.picker",
    "cryosegnet.evaluation.metrics",
    "cryosegnet.simulation.micrograph",
    "cryosegnet.geometry",
    "cryosegnet.io.jsonsafe",
    "cryosegnet.postprocessing.empty_micrographs",
)


@pytest.mark.parametrize("name", DOCUMENTED_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
