"""Functions in src/ stay short enough to read at once: at most MAX_LINES lines of code.

A function's docstring does not count (the standards ask for full numpydoc sections on the
public API, and documentation should never push code to be split). The few functions that are
longer are listed below with why; the list may only shrink: a listed function that is no
longer long fails the test too, so it is taken off.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "cryosegnet"
MAX_LINES = 80

# "module path:function" -> why it is longer than MAX_LINES.
LONG_ON_PURPOSE = {
    "cli/pick.py:add_parser": "the pick command's options, declared one after another",
    "cli/simulate.py:add_parser": "the simulate command's options, declared one after another",
    "evaluation/metrics.py:evaluate_picks": "not split yet: one pass over the micrographs "
    "that matches picks to labels and gathers every pooled and per-micrograph figure",
    "classification/classify2d.py:classify_particles": "not split yet: the iterations of 2D "
    "classification (align, average, reassign) with their bookkeeping",
    "simulation/micrograph.py:_particle_table": "not split yet: places each species' particles "
    "(spacing, clusters, ice, carbon, edges) in one table",
    "cli/evaluate.py:_run": "not split yet: the evaluate command's option checks, pairing and "
    "output, one after another",
    "simulation/densities.py:_shape_points": "one branch per procedural particle shape",
    "training/refine_loop.py:refine_picks": "not split yet: the label-free loop's rounds "
    "(samples, fine-tuning, re-pick, classes, stop rule) and its final outputs, in order",
}


def _code_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the function's end, less its docstring."""
    lines = function.end_lineno - function.lineno + 1  # type: ignore[operator]
    first = function.body[0] if function.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        lines -= first.end_lineno - first.lineno + 1  # type: ignore[operator]
    return lines


def _long_functions() -> dict[str, int]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = _code_lines(node)
                if lines > MAX_LINES:
                    found[f"{path.relative_to(SRC).as_posix()}:{node.name}"] = lines
    return found


def test_no_function_is_longer_than_the_limit_without_a_reason() -> None:
    unexplained = {name: n for name, n in _long_functions().items() if name not in LONG_ON_PURPOSE}
    assert not unexplained, f"functions over {MAX_LINES} lines of code: {unexplained}"


def test_the_list_of_long_functions_holds_only_long_ones() -> None:
    long_now = _long_functions()
    stale = sorted(name for name in LONG_ON_PURPOSE if name not in long_now)
    assert not stale, f"no longer long (or gone): take them off LONG_ON_PURPOSE: {stale}"
