"""``cryosegnet`` command line: a thin layer over the library, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from cryosegnet import __version__
from cryosegnet.errors import CryoSegNetError, first_line

# Subcommand modules; each defines add_parser(subparsers) and sets func on its parser.
SUBCOMMAND_MODULES = (
    "pick",
    "simulate",
    "train",
    "finetune",
    "evaluate",
    "classify",
    "select",
    "export_model",
    "show",
    "threshold",
    "report",
    "demo",
    "relion_external",
)


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return " ".join(_shown(v) for v in value)
    return str(value)


class _DefaultsHelp(argparse.HelpFormatter):
    """Every option's default in ``--help``, read from the parser (never copied by hand).

    An option whose help already names its default (``default: ...``, ``%(default)s``) is
    left as written; a closing ``(VALUE)`` for the default becomes ``(default: VALUE)``;
    flags, and options defaulting to None (computed: their help says how), get nothing added.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or action.nargs == 0
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default in ("", [], ())
            or "%(default)" in text
            or "default" in text.lower()
        ):
            return text  # a flag, no default, or the help says it already
        shown = _shown(default).replace("%", "%%")
        if text.endswith(f"({shown})"):
            return f"{text[: -len(shown) - 2]}(default: {shown})"
        return f"{text} (default: {shown})"


def _with_defaults(formatter: Any) -> Any:
    """``formatter`` (a parser's own, e.g. RawDescriptionHelpFormatter) plus the defaults."""
    if issubclass(formatter, _DefaultsHelp):
        return formatter
    return type(f"Defaults{formatter.__name__}", (_DefaultsHelp, formatter), {})


class _IntermixedParser(argparse.ArgumentParser):
    """A subcommand's parser that takes its positionals between and after options.

    Why: ``cryosegnet classify PICKS -o OUT MICROGRAPHS...`` is how a scientist types it (and
    how shells expand globs after options), yet plain argparse stops filling positionals at
    the first option and rejects what follows as "unrecognized arguments".
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._intermixing:  # the intermixed parse's own inner passes
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryosegnet",
        description="Cryo-EM particle picking: denoise -> attention U-Net -> SAM/built-in "
        "instance masks -> post-processing -> RELION/CryoSPARC STAR.",
    )
    parser.add_argument("--version", action="version", version=f"cryosegnet {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_IntermixedParser
    )
    for name in SUBCOMMAND_MODULES:
        # A missing module is a broken install or a typo here: fail, never drop a command.
        module = importlib.import_module(f"cryosegnet.cli.{name}")
        module.add_parser(subparsers)
    for sub in subparsers.choices.values():
        sub.formatter_class = _with_defaults(sub.formatter_class)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    try:
        return int(args.func(args) or 0)
    except CryoSegNetError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything unforeseen still gets one line, not a traceback
        if debug:
            raise
        detail = first_line(exc)
        what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        print(f"error: {what} (re-run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
