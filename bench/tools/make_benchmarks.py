"""Splice the generated result tables into BENCHMARKS.md.

    python bench/tools/make_benchmarks.py          # rewrite the generated blocks
    python bench/tools/make_benchmarks.py --check  # exit 1 if BENCHMARKS.md is out of date

Every figure table in BENCHMARKS.md that comes from a benchmark run sits between
``<!-- generated from bench/results/NAME.md -->`` and ``<!-- end generated -->``; the text
between them is the bench's own markdown (itself generated from its JSON), so no figure is
copied by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BLOCK = re.compile(
    r"(<!-- generated from (bench/results/[\w.-]+\.md) -->\n)(.*?)(<!-- end generated -->)",
    re.DOTALL,
)


def demote(markdown: str) -> str:
    """Headings of the included file become level-4+, under BENCHMARKS.md's sections."""
    return re.sub(r"(?m)^(#+) ", lambda m: "#" * min(6, len(m.group(1)) + 3) + " ", markdown)


def render(text: str) -> str:
    def fill(match: re.Match) -> str:
        source = REPO / match.group(2)
        body = demote(source.read_text()).strip() + "\n"
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(fill, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--file", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    text = args.file.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print(f"{args.file.name} is out of date: run python bench/tools/make_benchmarks.py")
            return 1
        return 0
    args.file.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
