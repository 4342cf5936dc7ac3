"""Functions in src/ stay short enough to read at once: at most MAX_LINES lines of code.

A function's docstring does not count (the standards ask for full numpydoc sections on the
public API, and documentation should never push code to be split). The few functions that are
longer are listed below with why, and say why in a ``# Long on purpose: ...`` comment above
their ``def``; the list may only shrink: a listed function that is no longer long fails the
test too, so it is taken off.
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
    "classification/classify2d.py:classify_particles": "one loop over iterations that updates "
    "a dozen tensors of state together (classes, poses, certainty, half sums)",
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


def test_each_long_function_says_why_in_a_comment_above_it() -> None:
    # The reader of the code sees the reason where the function is, not only in this list.
    silent = []
    for name in _long_functions():
        module, function = name.split(":")
        lines = (SRC / module).read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        node = next(
            n
            for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == function
        )
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        above = []
        for line in reversed(lines[: first - 1]):
            if not line.lstrip().startswith("#"):
                break
            above.append(line)
        if not any("Long on purpose" in line for line in above):
            silent.append(name)
    assert not silent, f"long functions without a '# Long on purpose: ...' comment: {silent}"
