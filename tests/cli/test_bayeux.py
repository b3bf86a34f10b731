"""``sfstream bayeux``: any Bayeux server, here the emulator's (long polling only, a token in a
``--header``); against Faye over WebSocket in ``tests/interop/test_cli_bayeux.py``."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime

import pytest

from sfstream.bayeux import Status, StatusKind
from sfstream.cli import ExitCode, _bayeux, build_parser
from sfstream.cli._output import Console
from sfstream.emulator import EmulatorThread
from tests.cli.conftest import GENERIC, ROOT, CliRunner, json_lines, publish_when_subscribed


def token_args(org: EmulatorThread) -> tuple[str, list[str]]:
    token = org.call(org.emulator.issue_access_token)
    return token, [org.emulator.cometd_url(), "--header", f"Authorization: Bearer {token}"]


def test_subscribe_and_print_json_lines(cli: CliRunner, org: EmulatorThread) -> None:
    token, args = token_args(org)
    publisher = publish_when_subscribed(org, GENERIC, ["one", "two"])
    run = cli("bayeux", *args, "--subscribe", GENERIC, "--json", "--count", "2", "--timeout", "20")
    publisher.join()
    assert run.code == 0, run.err
    lines = json_lines(run.out)
    assert [line["data"]["payload"] for line in lines] == ["one", "two"]
    assert "connected to" in run.err
    assert "over long-polling" in run.err
    run.assert_no_secret(token)


def test_human_lines_and_a_trace_with_times_channels_and_round_trips(
    cli: CliRunner, org: EmulatorThread
) -> None:
    token, args = token_args(org)
    publisher = publish_when_subscribed(org, GENERIC, ["hello"])
    run = cli("bayeux", *args, "--subscribe", GENERIC, "--trace", "--count", "1", "--timeout", "20")
    publisher.join()
    assert run.code == 0, run.err
    assert GENERIC in run.out
    assert '"payload":"hello"' in run.out
    sent = [line for line in run.err.splitlines() if " >> /meta/handshake " in line]
    replies = [line for line in run.err.splitlines() if " << /meta/handshake " in line]
    assert sent
    assert replies
    assert " ms " in replies[0]
    datetime.fromisoformat(replies[0].split(" ")[0])  # starts with a timestamp
    run.assert_no_secret(token)


def test_websocket_first_falls_back_on_a_long_polling_server(
    cli: CliRunner, org: EmulatorThread
) -> None:
    token, args = token_args(org)
    publisher = publish_when_subscribed(org, GENERIC, ["fb"])
    run = cli(
        "bayeux",
        *args,
        "--subscribe",
        GENERIC,
        "--connection-type",
        "websocket",
        "--connection-type",
        "long-polling",
        "--count",
        "1",
        "--timeout",
        "20",
    )
    publisher.join()
    assert run.code == 0, run.err
    assert "falling back: websocket -> long-polling" in run.err
    assert "over long-polling" in run.err
    run.assert_no_secret(token)


def test_websocket_only_reports_the_refused_upgrade(cli: CliRunner, org: EmulatorThread) -> None:
    token, args = token_args(org)
    run = cli("bayeux", *args, "--subscribe", GENERIC, "--connection-type", "websocket")
    run.assert_one_error_line(4, "connection failed", "WebSocket upgrade")
    run.assert_no_secret(token)


def test_a_refused_publish_is_a_runtime_error(cli: CliRunner, org: EmulatorThread) -> None:
    token, args = token_args(org)
    run = cli("bayeux", *args, "--publish", GENERIC, '{"x": 1}')
    run.assert_one_error_line(1, "the server refused")
    run.assert_no_secret(token)


def test_a_refused_token_is_reported(cli: CliRunner, org: EmulatorThread) -> None:
    run = cli(
        "bayeux",
        org.emulator.cometd_url(),
        "--header",
        "Authorization: Bearer not-a-valid-token-123",
        "--subscribe",
        GENERIC,
    )
    run.assert_one_error_line(3, "authentication failed", "401::Authentication invalid")
    run.assert_no_secret("not-a-valid-token-123")


def test_count_not_reached_within_timeout(cli: CliRunner, org: EmulatorThread) -> None:
    _, args = token_args(org)
    run = cli("bayeux", *args, "--subscribe", GENERIC, "--count", "1", "--timeout", "0.5")
    run.assert_one_error_line(5, "received 0 of 1 messages")


def test_no_server_is_a_connection_error(cli: CliRunner) -> None:
    run = cli("bayeux", "http://127.0.0.1:9/bayeux", "--subscribe", "/a", "-q")
    run.assert_one_error_line(4, "connection failed")


@pytest.mark.parametrize(
    ("argv", "part"),
    [
        (["http://127.0.0.1:9/b"], "nothing to do"),
        (["ftp://host/b", "--subscribe", "/a"], "not a Bayeux URL"),
        (["http://127.0.0.1:9/b", "--subscribe", "no-slash"], "no-slash"),
        (["http://127.0.0.1:9/b", "--publish", "/a", "{not json"], "not JSON"),
        (["http://127.0.0.1:9/b", "--publish", "/a/*", "1"], "/a/*"),
        (["http://[::1/b", "--subscribe", "/a"], "not a Bayeux URL"),
        # Python's json reads these and wrote them on the wire as NaN/Infinity (not JSON).
        (["http://127.0.0.1:9/b", "--publish", "/a", '{"x": NaN}'], "NaN is not a JSON number"),
        (["http://127.0.0.1:9/b", "--publish", "/a", "[-Infinity]"], "-Infinity is not a JSON"),
        (["http://127.0.0.1:9/b", "--publish", "/a", "[1e999]"], "1e999 is not a JSON number"),
        # An undecodable byte of the argument (a lone surrogate) went on the wire as \udce9.
        (
            ["http://127.0.0.1:9/b", "--publish", "/a", '"caf\udce9"'],
            "--publish data is not UTF-8 text: byte 0xe9 at position 4",
        ),
    ],
)
def test_usage_errors(cli: CliRunner, argv: list[str], part: str) -> None:
    run = cli("bayeux", *argv)
    run.assert_one_error_line(2, part)


def test_a_bad_header_is_a_usage_error(cli: CliRunner) -> None:
    run = cli("bayeux", "http://127.0.0.1:9/b", "--header", "no colon", "--subscribe", "/a")
    assert run.code == 2
    assert "expected NAME:VALUE" in run.err


def test_parse_header() -> None:
    assert _bayeux.parse_header("X-A: b: c") == ("X-A", "b: c")
    assert _bayeux.parse_header("X-A: a\tb") == ("X-A", "a\tb")
    for bad in (":v", "a b:c", "novalue", "X-A: a\r\nB: c", "X-A: \x00"):
        with pytest.raises(argparse.ArgumentTypeError):
            _bayeux.parse_header(bad)


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_bad_header_is_never_echoed(cli: CliRunner, json_flag: list[str]) -> None:
    # A header missing its colon was echoed whole: the token with it.
    header = "Authorization Bearer 00Dxx!AQ4AQSecretToken"
    run = cli("bayeux", "http://127.0.0.1:9/b", "--subscribe", "/a", "--header", header, *json_flag)
    assert run.code == 2
    assert "expected NAME:VALUE" in run.err
    assert "SecretToken" not in run.all


def test_a_header_with_a_line_break_is_a_usage_error(cli: CliRunner) -> None:
    # aiohttp refused it when sending: "unexpected error: ValueError", exit 1.
    run = cli("bayeux", "http://127.0.0.1:9/b", "--subscribe", "/a", "--header", "X-A: a\r\nB: c")
    run.assert_one_error_line(2, "the value of header X-A holds a control character")


def test_trace_json_lines_and_round_trip_times() -> None:
    err = io.StringIO()
    console = Console(io.StringIO(), err, color="never")
    ticks = iter([1.0, 1.25, 2.0, 3.0])
    write = _bayeux.wire_tracer(
        console,
        as_json=True,
        clock=lambda: next(ticks),
        now=lambda: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    write("out", {"channel": "/meta/handshake", "id": "1", "ext": {"access_token": "secret-abc"}})
    write("in", {"channel": "/meta/handshake", "id": "1", "successful": True})
    write("in", {"channel": "/chat", "id": "1", "data": {}})  # a delivery echoing an id
    write("in", {"channel": "/meta/connect", "id": "9", "successful": True})
    lines = [json.loads(line) for line in err.getvalue().splitlines()]
    assert [line["rtt_ms"] for line in lines] == [None, 250.0, None, None]
    assert lines[0]["time"] == "2026-01-02T03:04:05.000+00:00"
    assert [line["direction"] for line in lines] == ["out", "in", "in", "in"]
    assert "secret-abc" not in err.getvalue()


def test_status_lines() -> None:
    assert _bayeux.status_line(Status(StatusKind.FALLBACK, "a -> b")) == "falling back: a -> b"
    for kind in (
        StatusKind.SESSION_LOST,
        StatusKind.CONNECTION_LOST,
        StatusKind.RECONNECTED,
        StatusKind.PAUSED,
        StatusKind.RESUBSCRIBE_FAILED,
        StatusKind.STOPPED,
    ):
        assert _bayeux.status_line(Status(kind, "x", "/c"))
    assert _bayeux.status_line(Status(StatusKind.CONNECTED)) is None


def test_every_option_and_exit_code_is_documented() -> None:
    page = (ROOT / "docs" / "bayeux-cli.md").read_text()
    parser = build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for option in action.choices["bayeux"]._actions:
        for name in option.option_strings:
            assert f"`{name}" in page, f"bayeux {name} is not in docs/bayeux-cli.md"
    for code in ExitCode:
        assert f"{int(code)} " in page, code


def test_ws_urls_mean_the_same_http_endpoint() -> None:
    assert _bayeux._http_url("ws://127.0.0.1:8000/bayeux") == "http://127.0.0.1:8000/bayeux"
    assert _bayeux._http_url("wss://example.com/cometd") == "https://example.com/cometd"
    assert _bayeux._http_url("http://example.com/cometd") == "http://example.com/cometd"


def test_secrets_in_the_url_are_never_printed(cli: CliRunner, org: EmulatorThread) -> None:
    token, args = token_args(org)
    url = args[0] + "?access_token=query-secret-1&x=1&api_key=k%2Fey-2"
    run = cli("bayeux", url, *args[1:], "--subscribe", GENERIC, "--trace", "--timeout", "0.5")
    assert run.code == 0, run.err
    assert "access_token=[redacted]&x=1&api_key=[redacted]" in run.err
    run.assert_no_secret(token, "query-secret-1", "k%2Fey-2", "k/ey-2")

    # The URL's password is scrubbed too; with an Authorization header as well it is a usage
    # error (aiohttp refuses the pair), not an "unexpected error".
    url = args[0].replace("http://", "http://ann:url%40password-1@")
    both = cli("bayeux", url, *args[1:], "--subscribe", GENERIC)
    both.assert_one_error_line(2, "both in the URL and in an Authorization header")
    alone = cli("bayeux", url, "--subscribe", GENERIC, "--timeout", "0.5")
    assert alone.code == ExitCode.AUTHENTICATION  # the emulator wants a token
    alone.assert_no_secret(token, "url@password-1", "url%40password-1")


def test_json_makes_every_stderr_line_json_as_listen_does(
    cli: CliRunner, org: EmulatorThread
) -> None:
    token, args = token_args(org)
    publisher = publish_when_subscribed(org, GENERIC, ["j"])
    run = cli(
        "bayeux",
        *args,
        "--subscribe",
        GENERIC,
        "--json",
        "--trace",
        "--count",
        "1",
        "--timeout",
        "20",
    )
    publisher.join()
    assert run.code == 0, run.err
    lines = json_lines(run.err)  # every line parses
    notes = [line["note"] for line in lines if "note" in line]
    assert any(note.startswith("connected to ") for note in notes)
    assert f"subscribed to {GENERIC}" in notes
    traced = [line for line in lines if "direction" in line]
    assert {line["direction"] for line in traced} == {"out", "in"}
    assert all(set(line) == {"note"} or line in traced for line in lines)
    assert "\x1b[" not in run.err
    run.assert_no_secret(token)

    # An error is one JSON object too, with the exit code.
    failed = cli("bayeux", "http://127.0.0.1:9/bayeux", "--subscribe", "/a", "--json", "-q")
    assert failed.code == ExitCode.CONNECTION
    [error] = json_lines(failed.err)
    assert error["exitCode"] == ExitCode.CONNECTION
    assert error["error"].startswith("connection failed")
    usage = cli("bayeux", "ftp://host/b", "--subscribe", "/a", "--json")
    assert json_lines(usage.err) == [
        {
            "error": "not a Bayeux URL: 'ftp://host/b'",
            "hint": "e.g. http://127.0.0.1:8000/bayeux",
            "exitCode": 2,
        }
    ]


def test_a_usage_error_with_json_is_json(cli: CliRunner) -> None:
    run = cli("bayeux", "http://127.0.0.1:9/b", "--subscribe", "/a", "--json", "--jsn")
    assert run.code == ExitCode.USAGE
    [error] = json_lines(run.err)
    assert error["exitCode"] == ExitCode.USAGE
    assert "--jsn" in error["error"]
