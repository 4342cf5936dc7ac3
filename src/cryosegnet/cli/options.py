"""Options several subcommands share, each declared once.

A subcommand module calls these instead of spelling the option out again, so the flag, its
type and its metavar are the same everywhere. The default is passed in by the caller, read
from the settings dataclass the option sets (never written here), and so is the help text
where a command says more than the usual line (what the option means there).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import TypeVar

DEBUG_HELP = "tracebacks on error"
DEVICE_HELP = "auto, cpu, cuda or cuda:N"
SEED_HELP = "random seed"
PICKS_FOLDER_HELP = "folder written by `pick`"

SettingsT = TypeVar("SettingsT")


def add_output(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    help: str,
    metavar: str | None = None,
    *,
    required: bool = True,
    default: str | None = None,
) -> None:
    """``-o/--output``: what the command writes (a folder or a file, as ``help`` says)."""
    parser.add_argument(
        "-o", "--output", required=required, default=default, metavar=metavar, help=help
    )


def add_debug(parser: argparse.ArgumentParser, help: str = DEBUG_HELP) -> None:
    """``--debug``: the main CLI re-raises instead of printing one line."""
    parser.add_argument("--debug", action="store_true", help=help)


def add_device(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    default: str,
    help: str = DEVICE_HELP,
) -> None:
    """``--device``: where torch runs (``default`` from the command's settings)."""
    parser.add_argument("--device", default=default, help=help)


def add_seed(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    default: int,
    help: str = SEED_HELP,
) -> None:
    """``--seed``: the random seed (``default`` from the command's settings)."""
    parser.add_argument("--seed", type=int, default=default, help=help)


def add_diameter(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    help: str,
    default: float | None = None,
) -> None:
    """``--diameter PX``: a particle diameter in micrograph pixels (``help`` says what for
    and what happens without it)."""
    parser.add_argument("--diameter", type=float, default=default, metavar="PX", help=help)


def add_number(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *flags: str,
    default: int | float | None,
    help: str,
    metavar: str | None = None,
    kind: type[int] | type[float] | None = None,
    dest: str | None = None,
) -> None:
    """A number option that sets a settings field: its type is its default's (``int`` or
    ``float``), so the two are read from one place, the settings dataclass. A field whose
    default is None (worked out by the command, as its help says) names its type: ``kind``."""
    number = type(default) if default is not None else kind
    if number not in (int, float):
        raise TypeError(f"{flags[-1]}: default {default!r} is not an int or a float")
    parser.add_argument(*flags, dest=dest, type=number, default=default, metavar=metavar, help=help)


def add_switch(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    *,
    default: bool,
    help: str,
    dest: str | None = None,
    turns_off: bool = False,
) -> None:
    """A flag that sets a boolean settings field (``dest``: the field, where the flag is not
    named after it), its default read from the settings dataclass. Giving the flag sets the
    field True, or False with ``turns_off`` (``--bright-particles`` turns ``dark_particles``
    off)."""
    action = "store_false" if turns_off else "store_true"
    parser.add_argument(flag, dest=dest, action=action, default=default, help=help)


def add_min_score(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    help: str,
    *,
    default: float | None = None,
    required: bool = False,
) -> None:
    """``--min-score X``: keep (or draw) only the picks whose figure of merit is >= X."""
    parser.add_argument(
        "--min-score", type=float, default=default, required=required, metavar="X", help=help
    )


def add_model(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    help: str,
    default: str | None = None,
) -> None:
    """``--model CKPT``: the U-Net checkpoint (``help`` says what happens without it)."""
    parser.add_argument("--model", default=default, metavar="CKPT", help=help)


def add_picks_folder(
    parser: argparse.ArgumentParser,
    dest: str = "picks_dir",
    metavar: str = "PICKS_DIR",
    help: str = PICKS_FOLDER_HELP,
) -> None:
    """The positional picks folder of the commands that read `pick`'s output."""
    parser.add_argument(dest, metavar=metavar, help=help)


def add_micrographs(parser: argparse.ArgumentParser, help: str) -> None:
    """Optional positional MICROGRAPHS (files, folders or globs) paired with picks by name."""
    parser.add_argument("micrographs", nargs="*", metavar="MICROGRAPHS", help=help)


def add_stage(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str, help: str
) -> None:
    """``--stage``: the instance-mask stage, by name or alias."""
    from cryosegnet.picking.config import STAGE_ALIASES, STAGES

    parser.add_argument(
        "--stage", choices=STAGES + tuple(STAGE_ALIASES), default=default, help=help
    )


def add_no_progress(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, help: str = "no progress bar"
) -> None:
    """``--no-progress``: no progress bar (a batch system's log gets a line per redraw)."""
    parser.add_argument("--no-progress", action="store_true", help=help)


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    help: str,
    description: str,
    func: Callable[[argparse.Namespace], int] | None = None,
) -> argparse.ArgumentParser:
    """A subcommand whose description is laid out by hand: its paragraphs and line breaks are
    kept as written (argparse would re-wrap them into one block). ``func`` runs the command
    (the main CLI calls ``args.func(args)``)."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if func is not None:
        parser.set_defaults(func=func)
    return parser


def settings_from(
    settings_class: Callable[..., SettingsT],
    args: argparse.Namespace,
    names: Iterable[str],
    **more: object,
) -> SettingsT:
    """The command's settings: each field of ``names`` as its option (an option whose dest is
    the field's name) gave it, and ``more`` (fields worked out from the options)."""
    return settings_class(**{name: getattr(args, name) for name in names}, **more)
