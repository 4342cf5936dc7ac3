"""The public API is declared once (``cryosegnet.__all__``) and every name in it works."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import cryosegnet

API_INDEX = Path(__file__).resolve().parents[1] / "docs" / "api" / "index.rst"
PUBLIC = [name for name in cryosegnet.__all__ if name != "__version__"]


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_imports_from_the_package_root(name):
    value = getattr(cryosegnet, name)
    assert value.__name__ == name
    assert name in dir(cryosegnet)


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_in_the_api_reference(name):
    value = getattr(cryosegnet, name)
    text = API_INDEX.read_text()
    places = (
        f"cryosegnet.{name}",  # documented under the package root
        f"{cryosegnet._PUBLIC[name]}.{name}",  # or where the API declares it
        f"automodule:: {value.__module__}\n",  # or with its whole module
    )
    assert any(place in text for place in places), f"{name} is not in docs/api/index.rst"


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_function_documents_its_parameters(name):
    value = getattr(cryosegnet, name)
    doc = inspect.getdoc(value) or ""
    assert doc, f"{name} has no docstring"
    takes_arguments = [
        p for p in inspect.signature(value).parameters.values() if p.name not in ("self", "cls")
    ]
    if inspect.isfunction(value) and takes_arguments:
        assert "Parameters\n----------" in doc, f"{name}: no numpydoc Parameters section"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Pickr'"):
        cryosegnet.Pickr  # noqa: B018


def test_importing_the_package_loads_no_torch():
    code = "import cryosegnet, sys; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
