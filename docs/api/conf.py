"""Sphinx configuration of the API reference (build: see CONTRIBUTING.md).

pip install ".[docs]" && sphinx-build -W -b html docs/api build/api
"""

from __future__ import annotations

import sys
from pathlib import Path

# Document the source tree (src layout), installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import cryosegnet  # noqa: E402

project = "cryosegnet"
author = "cryosegnet contributors"
copyright = "cryosegnet contributors"  # noqa: A001 - Sphinx's name for it
version = release = cryosegnet.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]

# Docstrings are numpydoc style (Parameters / Returns sections) or plain prose.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}

exclude_patterns = ["_build"]
html_theme = "alabaster"
