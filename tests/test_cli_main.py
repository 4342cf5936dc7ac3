"""The command-line entry point: every subcommand module is registered, none silently lost."""

from __future__ import annotations

import pytest

from cryosegnet.cli import main as cli_main


def test_every_subcommand_is_registered():
    parser = cli_main.build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in cli_main.SUBCOMMAND_MODULES:
        assert name.replace("_", "-") in commands


def test_a_missing_command_module_fails_loudly(monkeypatch):
    monkeypatch.setattr(cli_main, "SUBCOMMAND_MODULES", (*cli_main.SUBCOMMAND_MODULES, "absent"))
    with pytest.raises(ModuleNotFoundError, match="absent"):
        cli_main.build_parser()


def test_the_version_is_defined_once(capsys):
    from pathlib import Path

    import cryosegnet

    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "cryosegnet.__version__"
    }
    with pytest.raises(SystemExit):
        cli_main.main(["--version"])
    assert capsys.readouterr().out.strip() == f"cryosegnet {cryosegnet.__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        ["classify", "picks", "-o", "out", "a.mrc", "b.mrc"],
        ["classify", "-o", "out", "picks", "a.mrc", "b.mrc"],
        ["classify", "picks", "a.mrc", "-o", "out", "b.mrc"],
    ],
)
def test_positionals_may_follow_options(argv):
    args = cli_main.build_parser().parse_args(argv)
    assert (args.picks, args.output, args.micrographs) == ("picks", "out", ["a.mrc", "b.mrc"])


def test_relion_arguments_still_pass_through_untouched():
    argv = ["relion-external", "--o", "job/", "--in_mics", "m.star", "--diameter", "120A"]
    args = cli_main.build_parser().parse_args(argv)
    assert args.relion_args == argv[1:]
