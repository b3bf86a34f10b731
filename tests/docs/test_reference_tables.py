"""Tables of the documentation that describe the code: they list what the code has.

- ``docs/bayeux.md``: a row for every parameter of ``BayeuxClient``, with its default;
- ``docs/scaling-nats.md``: the subject of each channel is what ``channel_subject`` makes, for
  the org name the page says (the configured name, ``default`` on the command line).
- ``docs/scaling.md``: its relay configuration file is accepted as it is, and a channel in two
  sets of one org is refused, as the page says.
- ``docs/emulator.md``: a row for every ``Emulator`` option, and each fault method with the
  parameters and defaults it has;
- ``docs/getting-started.md``: every extra of ``pyproject.toml``;
- ``docs/scaling.md``: every option of ``sfstream relay``.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from sfstream.bayeux import BayeuxClient
from sfstream.relay import ChannelSet, channel_subject, subject_channel

ROOT = Path(__file__).resolve().parents[2]


def table_rows(page: str, header: str) -> list[list[str]]:
    """The cells of the markdown table whose header row starts with ``header``."""
    lines = page.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip("|"))])
    return rows


def test_every_bayeux_client_parameter_has_a_row_with_its_default() -> None:
    page = (ROOT / "docs" / "bayeux.md").read_text(encoding="utf-8")
    rows = {row[0]: row[1] for row in table_rows(page, "| parameter | default |")}
    documented: dict[str, str] = {}
    for names, default in rows.items():
        for name in re.findall(r"`(\w+)`", names):
            documented[name] = default
    parameters = inspect.signature(BayeuxClient).parameters
    missing = [name for name in parameters if name != "url" and name not in documented]
    assert not missing, f"docs/bayeux.md has no row for BayeuxClient({', '.join(missing)})"
    for name, parameter in parameters.items():
        default = parameter.default
        if name == "url" or default is None:
            continue  # None defaults are described in words ("long polling only", ...)
        if isinstance(default, int | float) and not isinstance(default, bool):
            shown = re.sub(r"[`,_]", "", documented[name])
            assert shown.startswith(repr(default)), (
                f"docs/bayeux.md: {name} defaults to {default!r}, the page says {shown!r}"
            )


def test_the_subjects_shown_are_those_the_relay_writes_to() -> None:
    page = (ROOT / "docs" / "scaling-nats.md").read_text(encoding="utf-8")
    header = "| channel | subject (org `"
    org = page.split(header, 1)[1].split("`", 1)[0]
    rows = table_rows(page, header)
    assert rows
    for channel_cell, subject_cell in rows:
        channel, subject = channel_cell.strip("`"), subject_cell.strip("`")
        assert channel_subject(org, channel) == subject
        assert subject_channel(subject) == (org, channel)


def test_the_command_line_org_name_is_the_one_the_page_gives() -> None:
    page = (ROOT / "docs" / "scaling-nats.md").read_text(encoding="utf-8")
    default = ChannelSet("orders", ("/event/Order__e",)).org
    assert f"`{default}` for `sfstream relay` without `--config`" in page


@pytest.mark.parametrize("example", ["nats_worker.py"])
def test_the_example_names_the_subject_the_relay_writes_to(example: str) -> None:
    text = (ROOT / "examples" / example).read_text(encoding="utf-8")
    default = ChannelSet("orders", ("/event/Order__e",)).org
    assert f"``{channel_subject(default, '/event/Order__e')}``" in text


def test_the_relay_configuration_file_shown_is_accepted() -> None:
    """The TOML example of docs/scaling.md is a valid configuration: two sets of two orgs, the
    secret read from the variable the file names."""
    import tomllib

    from sfstream.relay._config import parse_config

    page = (ROOT / "docs" / "scaling.md").read_text(encoding="utf-8")
    [block] = re.findall(r"```toml\n(.*?)```", page, re.DOTALL)
    config = parse_config(tomllib.loads(block), {"PROD_SF_PASSWORD": "from the environment"})
    assert [s.channel_set.name for s in config.sets] == ["orders", "eu-accounts"]
    assert [s.channel_set.org for s in config.sets] == ["prod", "eu"]
    assert config.orgs["prod"].options["password"] == "from the environment"
    assert config.sets[1].stream == "SFSTREAM"


def test_a_channel_in_two_sets_of_one_org_is_refused_as_the_page_says() -> None:
    from sfstream.relay._config import ConfigError, parse_config

    page = (ROOT / "docs" / "scaling.md").read_text(encoding="utf-8")
    assert "A\nchannel of an org may belong to one set only (the file is refused otherwise)" in page
    sets = [{"name": name, "org": "prod", "channels": ["/event/Order__e"]} for name in ("a", "b")]
    with pytest.raises(ConfigError, match="already relayed by set 'a'"):
        parse_config({"sink": "redis://127.0.0.1:6379/0", "orgs": {"prod": {}}, "sets": sets})


def test_getting_started_names_every_extra() -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = pyproject["project"]["optional-dependencies"]
    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    missing = [name for name in extras if f"'.[{name}]'" not in page]
    assert not missing, f"docs/getting-started.md (Install) does not name the extras {missing}"


def _documented_signature(text: str) -> list[tuple[str, object]]:
    """``name(a, b=1)`` -> ``[("a", EMPTY), ("b", 1)]``."""
    import ast

    function = ast.parse(f"def {text}: ...").body[0]
    assert isinstance(function, ast.FunctionDef)
    arguments = function.args
    names = [a.arg for a in [*arguments.args, *arguments.kwonlyargs]]
    defaults: list[object] = [inspect.Parameter.empty] * (
        len(arguments.args) - len(arguments.defaults)
    )
    defaults += [ast.literal_eval(d) for d in arguments.defaults]
    defaults += [
        inspect.Parameter.empty if d is None else ast.literal_eval(d) for d in arguments.kw_defaults
    ]
    return list(zip(names, defaults, strict=True))


def test_the_emulator_page_lists_every_option_and_each_fault_method_as_it_is() -> None:
    from sfstream.emulator import Emulator

    page = (ROOT / "docs" / "emulator.md").read_text(encoding="utf-8")
    options = {
        name
        for row in table_rows(page, "| option | default | meaning |")
        for name in re.findall(r"`(\w+)`", row[0].split("[", 1)[0])
    }
    parameters = inspect.signature(Emulator).parameters
    assert set(parameters) <= options, f"no row for {sorted(set(parameters) - options)}"

    methods = 0
    for row in table_rows(page, "| method | effect |"):
        for call in re.findall(r"`(\w+\([^`]*\))`", row[0]):
            name, arguments = call.split("(", 1)
            if "(" in arguments:
                continue  # add_fault(Fault(...)): an example, not a signature
            signature = inspect.signature(getattr(Emulator, name))
            actual = [
                (p.name, p.default) for p in signature.parameters.values() if p.name != "self"
            ]
            documented = _documented_signature(call)
            assert documented == actual, f"docs/emulator.md shows {call}; the code has {signature}"
            methods += 1
    assert methods >= 12


@pytest.mark.parametrize(("command", "page"), [("relay", "scaling.md")])
def test_every_option_of_the_command_is_on_its_page(command: str, page: str) -> None:
    """tests/cli/test_docs.py checks docs/cli.md for demo, listen and publish, and
    tests/cli/test_bayeux.py docs/bayeux-cli.md; relay's options are on scaling.md."""
    import argparse

    from sfstream.cli import build_parser
    from sfstream.cli._credentials import ENVIRONMENT

    [subparsers] = [
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    parser = subparsers.choices[command]
    credentials = {f"--{name.replace('_', '-')}" for name in ENVIRONMENT}
    # --debug, --color, -h: every command takes them, as docs/cli.md says once.
    common = {option for action in build_parser()._actions for option in action.option_strings}
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    missing = [
        option
        for action in parser._actions
        for option in action.option_strings
        if option not in credentials | common  # documented once, in docs/cli.md
        and f"`{option}" not in text
        and not (option.startswith("--") and any(f"`{o}" in text for o in action.option_strings))
    ]
    assert not missing, f"docs/{page} does not document {missing}"
