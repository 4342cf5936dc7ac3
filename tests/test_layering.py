"""Layering: the low layers import nothing above them.

Each subpackage is imported, with all its modules, in a fresh interpreter, and ``sys.modules``
shows what it pulled in. Evaluation must not need training (both use
:mod:`cryosegnet.geometry` for disks), and reading or writing files (:mod:`cryosegnet.io`)
must not load torch, which takes seconds and is not needed to read a micrograph.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SUBPACKAGES = (
    "cryosegnet.errors",
    "cryosegnet.geometry",
    "cryosegnet.io",
    "cryosegnet.preprocessing",
    "cryosegnet.postprocessing",
    "cryosegnet.simulation",
    "cryosegnet.evaluation",
    "cryosegnet.detection",
    "cryosegnet.masks",
    "cryosegnet.model",
    "cryosegnet.training",
    "cryosegnet.picking",
    "cryosegnet.classification",
    "cryosegnet.inspection",
    "cryosegnet.cli",
)

_HIGHER = (
    "cryosegnet.cli",
    "cryosegnet.evaluation",
    "cryosegnet.inspection",
    "cryosegnet.masks",
    "cryosegnet.model",
    "cryosegnet.picking",
    "cryosegnet.simulation",
    "cryosegnet.training",
)

# package -> modules (and their submodules) it must not import
FORBIDDEN = {
    "cryosegnet.errors": ("torch", "cryosegnet.io", *_HIGHER),
    "cryosegnet.geometry": ("torch", "cryosegnet.io", *_HIGHER),
    "cryosegnet.io": ("torch", *_HIGHER),
    "cryosegnet.evaluation": ("cryosegnet.training", "cryosegnet.picking", "cryosegnet.cli"),
    # Peaks, suppression and the size estimate serve every stage: nothing above them.
    "cryosegnet.detection": (
        "cryosegnet.picking",
        "cryosegnet.training",
        "cryosegnet.inspection",
        "cryosegnet.classification",
        "cryosegnet.cli",
    ),
}

_PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(getattr(package, "__path__", []), package.__name__ + "."):
    importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def imported_by(package: str) -> list[str]:
    """Every module in ``sys.modules`` after importing ``package`` and all its modules."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, package],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_subpackage_imports_only_the_layers_below_it(package):
    modules = imported_by(package)
    assert package in modules
    pulled = sorted(m for m in modules for p in FORBIDDEN.get(package, ()) if _under(m, p))
    assert not pulled, f"{package} imports {pulled}"


def test_the_probe_sees_what_a_package_imports():
    # The check above is only as good as the probe: it must see a dependency that exists.
    modules = imported_by("cryosegnet.evaluation")
    assert "cryosegnet.geometry" in modules and "cryosegnet.io.coordinates" in modules


@pytest.mark.parametrize("module", ["watch", "distributed"])
def test_picking_front_ends_use_only_the_public_batch_api(module):
    # The watch and the Dask client build on picking.batch through its public names, so batch
    # can change its private helpers freely.
    import ast

    import cryosegnet.picking

    folder = Path(cryosegnet.picking.__file__).parent
    tree = ast.parse((folder / f"{module}.py").read_text())
    private = sorted(
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "cryosegnet.picking.batch"
        for alias in node.names
        if alias.name.startswith("_")
    )
    assert not private, f"picking/{module}.py imports private names of batch: {private}"
