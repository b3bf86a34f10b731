"""``docs/cli.md`` documents every command, option, environment variable and exit code."""

from __future__ import annotations

import argparse

import pytest

from sfstream.cli import ExitCode, build_parser
from sfstream.cli._credentials import ENVIRONMENT
from tests.cli.conftest import ROOT

PAGE = (ROOT / "docs" / "cli.md").read_text()


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


@pytest.mark.parametrize("command", ["demo", "listen", "publish"])
def test_every_option_is_documented(command: str) -> None:
    parser = subcommands()[command]
    assert f"## sfstream {command}" in PAGE
    for action in parser._actions:
        for option in action.option_strings:
            assert f"`{option}" in PAGE, f"{command} {option} is not in docs/cli.md"


def test_the_emulator_command_is_documented() -> None:
    assert "## sfstream emulator" in PAGE
    assert "(emulator.md)" in PAGE


def test_every_variable_and_exit_code_is_documented() -> None:
    for variable in ENVIRONMENT.values():
        assert f"`{variable}`" in PAGE, variable
    for code in ExitCode:
        assert f"\n| {int(code)} |" in PAGE, code
    assert "`NO_COLOR`" in PAGE


@pytest.mark.parametrize("argv", [["lsten"], ["listen", "/event/Order__e", "--jsn"]])
def test_the_usage_errors_shown_are_what_the_command_prints(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from sfstream.cli import main

    assert main(argv) == ExitCode.USAGE
    [line] = capsys.readouterr().err.splitlines()
    assert "did you mean" in line
    assert f"\n{line}\n" in PAGE, f"docs/cli.md shows another text for: {line}"
