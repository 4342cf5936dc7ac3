"""Every command's --help shows each option's default, and the README documents only options
that exist (the README drifted from the code before)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from cryosegnet.cli import main as cli_main

README = Path(__file__).resolve().parents[1] / "README.md"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli_main.build_parser()
    return dict(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_help_shows_every_default(command):
    sub = _subparsers()[command]
    formatter = sub._get_formatter()
    for action in sub._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.option_strings[0]} has no help text"
        if action.nargs == 0 or action.default in (None, False, "", [], ()):
            continue
        text = formatter._get_help_string(action) % {**vars(action), "default": action.default}
        assert "default" in text.lower(), f"{command} {action.option_strings[0]}: {text!r}"


def test_help_takes_defaults_from_the_parser():
    help_text = " ".join(_subparsers()["simulate"].format_help().split())
    assert "image size N or HxW (default: 1024)" in help_text
    assert "(default: 200 300)" in help_text
    pick = " ".join(_subparsers()["pick"].format_help().split())
    assert "--sam-model-type {vit_h,vit_l,vit_b} SAM architecture" in pick
    assert "(default: vit_h)" in pick


def _readme_options() -> set[str]:
    text = README.read_text()
    text = re.sub(r"pip install[^\n]*", "", text)  # pip's own options
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]+", text))


def test_readme_documents_only_options_that_exist():
    known = {"--help", "--version"}
    for sub in _subparsers().values():
        for action in sub._actions:
            known.update(action.option_strings)
    # Options of other programs the README quotes (RELION's relion_preprocess and External
    # job arguments, which relion-external takes as RELION passes them; Topaz).
    foreign = {
        "--i",
        "--coord_dir",
        "--coord_suffix",
        "--extract",
        "--up-scale",
        "--in_mics",
        "--in_movies",
        "--in_coords",
        "--in_parts",
        "--o",
        "--j",
    }
    unknown = sorted(o for o in _readme_options() - known if o not in foreign)
    assert not unknown, f"README names options no command has: {unknown}"


def test_readme_command_table_shows_the_real_defaults():
    """`simulate ... [--size 1024]` in the command table is the parser's default."""
    table = README.read_text().split("## All commands", 1)[1].split("\n## ", 1)[0]
    subs = _subparsers()
    checked = 0
    for line in table.splitlines():
        match = re.match(r"\| `cryosegnet ([\w-]+) ([^`]*)`", line)
        if not match:
            continue
        options = {
            a.option_strings[-1]: a for a in subs[match.group(1)]._actions if a.option_strings
        }
        for option, value in re.findall(r"\[(--[\w-]+) (\d+(?:\.\d+)?)\]", match.group(2)):
            assert float(options[option].default) == float(value), (match.group(1), option)
            checked += 1
    assert checked


def test_readme_watch_section_states_the_real_defaults():
    section = README.read_text().split("### Pick during collection", 1)[1].split("\n### ", 1)[0]
    pick = {a.option_strings[-1]: a for a in _subparsers()["pick"]._actions if a.option_strings}
    found = re.findall(r"`(--[\w-]+)`[^`]*?\(default (\d+(?:\.\d+)?)\)", section)
    assert {option for option, _ in found} == {"--watch-timeout", "--settle", "--watch-interval"}
    for option, value in found:
        assert float(pick[option].default) == float(value), option


def test_finetune_without_labels_names_only_its_own_options(tmp_path, capsys):
    code = cli_main.main(["finetune", "-o", str(tmp_path / "ft")])
    err = capsys.readouterr().err
    assert code != 0
    assert "--images and --labels" in err and "--simulated" not in err
    assert not (tmp_path / "ft").exists()
