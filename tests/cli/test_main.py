"""``main()``: parsing, exit codes, errors as one line, --debug, and ``sfstream emulator``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sfstream import __version__
from sfstream.cli import ExitCode, _errors
from sfstream.cli._errors import CliError, to_cli_error
from sfstream.emulator import EmulatorThread
from sfstream.exceptions import (
    AuthenticationError,
    ClientError,
    ReplayError,
    ServerError,
    SfstreamError,
    TransportError,
    TransportTimeoutError,
)
from sfstream.salesforce import ReplayMarker, SqliteStorage
from tests.cli.conftest import EVENT, ROOT, CliRunner, Run, json_lines, password_args


def test_version_and_help(cli: CliRunner) -> None:
    run = cli("--version")
    assert (run.code, run.out.strip()) == (0, f"sfstream {__version__}")
    helped = cli("listen", "--help")
    assert helped.code == 0
    assert "SFSTREAM_CONSUMER_KEY" in helped.out
    assert "130  interrupted" in helped.out


def test_usage_errors_exit_2(cli: CliRunner) -> None:
    assert cli().code == 2
    assert "usage: sfstream" in cli().err
    assert cli("listen").code == 2
    assert cli("frobnicate").code == 2
    assert cli("listen", EVENT, "--replay", "yesterday").code == 2
    assert "expected new, all or a replay id" in cli("listen", EVENT, "--replay", "x").err
    assert cli("listen", EVENT, "--replay", "-3").code == 2
    # 0 is no replay id (they start at 1): Salesforce refused it after the login, exit 1
    assert "a replay id is -2, -1 or positive, not 0" in cli("listen", EVENT, "--replay", "0").err
    assert cli("listen", EVENT, "--count", "0").code == 2
    assert cli("listen", EVENT, "--count", "many").code == 2
    assert cli("listen", EVENT, "--timeout", "-1").code == 2
    assert cli("listen", EVENT, "--timeout", "soon").code == 2
    assert cli("demo", "--interval", "60").code == 2
    assert cli("demo", "--interval", "fast").code == 2


@pytest.mark.parametrize(
    "command",
    [["listen", EVENT, "--access-token", "abcd", "--instance-url", "https://x.io"], ["demo"]],
)
def test_an_empty_store_path_is_a_usage_error(cli: CliRunner, command: list[str]) -> None:
    # --store "$UNSET" ran without a store, in silence: the next run did not resume.
    run = cli(*command, "--store", "")
    run.assert_one_error_line(2, "argument --store: expected a file path, not an empty string")


def test_usage_errors_are_one_line_with_did_you_mean(cli: CliRunner) -> None:
    run = cli("listen", EVENT, "--jsn")
    line = run.assert_one_error_line(2, "unknown option --jsn", "did you mean --json?")
    assert "sfstream listen --help" in line
    assert len(run.err.splitlines()) == 1  # no usage block
    cli("listen", EVENT, "--replay-all").assert_one_error_line(2, "did you mean --replay?")
    cli("lsten", EVENT).assert_one_error_line(2, "unknown command lsten", "did you mean listen?")
    cli("listen", EVENT, "--fallback", "nwe").assert_one_error_line(
        2, "argument --fallback: invalid choice: 'nwe'", "did you mean new? (one of new, all)"
    )
    cli("listen", EVENT, "--color", "blue").assert_one_error_line(
        2, "invalid choice", "one of auto, always, never"
    )
    cli("listen", EVENT, "--zzzzzz").assert_one_error_line(
        2, "unknown option --zzzzzz", "sfstream listen --help shows every option"
    )
    cli("listen").assert_one_error_line(2, "the following arguments are required: CHANNEL")
    cli("demo", "stray").assert_one_error_line(2, "unexpected argument stray")
    cli("--jsn").assert_one_error_line(2, "unknown option --jsn", "sfstream --help")


@pytest.mark.parametrize("command", [["listen", EVENT], ["publish", EVENT, "{}"]])
def test_the_rest_of_an_unquoted_secret_is_not_echoed(cli: CliRunner, command: list[str]) -> None:
    # "--password my secretword": "unexpected argument secretword" printed half the password.
    run = cli(*command, "--password", "my", "secretword", "--username", "u")
    run.assert_one_error_line(2, "1 unexpected argument(s), not shown", "quote a value")
    assert "secretword" not in run.all
    plain = cli(*command, "--username", "u", "extra")
    plain.assert_one_error_line(2, "unexpected argument extra")


def test_a_command_calling_parser_error_reports_one_line(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sfstream import cli as cli_module

    parser = cli_module.build_parser()

    async def refuse(args: argparse.Namespace, console: Any) -> int:
        parser.error("--foo needs --bar")

    monkeypatch.setitem(cli_module._COMMANDS, "demo", refuse)
    run = cli("demo")
    run.assert_one_error_line(2, "--foo needs --bar", "sfstream --help shows every option")


def test_missing_credentials_and_bad_channels(cli: CliRunner) -> None:
    cli("listen", EVENT).assert_one_error_line(2, "no credentials", "--sf-org")
    cli(
        "listen", "Order__e", "--access-token", "abcd", "--instance-url", "https://x.example.com"
    ).assert_one_error_line(2, "not a channel: 'Order__e'")
    cli(
        "listen",
        "/meta/connect",
        "--access-token",
        "abcd",
        "--instance-url",
        "https://x.example.com",
    ).assert_one_error_line(2, "not a channel")


@pytest.mark.parametrize("channel", ["/event/Ord er__e", "/", "/event/Caf\u00e9__e", "/event//x"])
def test_an_invalid_channel_name_is_a_usage_error_before_logging_in(
    cli: CliRunner, org: EmulatorThread, channel: str
) -> None:
    # It was refused by the client after the login, exit 1 (bayeux --subscribe: exit 2).
    run = cli("listen", channel, *password_args(org))
    run.assert_one_error_line(2, f"invalid channel name {channel!r}", "/event/Order__e")
    assert "connected to" not in run.err
    assert org.call(org.emulator.sessions) == []


def test_subscription_errors(cli: CliRunner, org: EmulatorThread, tmp_path: Path) -> None:
    creds = password_args(org)
    cli("listen", "/event/Nope__e", *creds).assert_one_error_line(
        1,
        "/event/Nope__e: The channel you requested to subscribe to does not exist",
        "check the channel name",
    )
    # "Did you mean", from the org's own channels (platform events, PushTopics, /u/ channels).
    for typo, meant in [
        ("/event/Ordr__e", "/event/Order__e"),
        ("/event/order__e", "/event/Order__e"),
        ("/topic/Acounts", "/topic/Accounts"),
        ("/u/notes", "/u/Notes"),
    ]:
        cli("listen", typo, *creds).assert_one_error_line(
            1, f"{typo}: The channel you requested", f"did you mean {meant}?"
        )
    org.publish(EVENT, {"Amount__c": 1})
    # 42 was never issued: the hint does not blame the retention window alone.
    line = cli("listen", EVENT, "--replay", "42", *creds).assert_one_error_line(
        1, "Salesforce refused the replay id: The replayId {42}", "--replay all"
    )
    assert "only an id this channel issued" in line
    assert "a replay id is valid for 24 h" not in line
    store = str(tmp_path / "store")
    line = cli("listen", EVENT, "--replay", "42", "--store", store, *creds).assert_one_error_line(1)
    assert f"delete the store {store}" in line
    # A stored id: its date tells whether it expired or was never issued on this channel.
    now = datetime.now(UTC)
    for age, why in [
        (timedelta(hours=2), "within this channel's 72 h, so it was not issued on this channel"),
        (timedelta(days=4), "older than this channel's 72 h"),
    ]:
        # A store of its own for each age: a store never moves a marker backwards.
        aged = str(tmp_path / f"store-{age.total_seconds():.0f}")
        marker = ReplayMarker((now - age).isoformat().replace("+00:00", "Z"), 42)
        asyncio.run(store_marker(aged, EVENT, marker))
        line = cli("listen", EVENT, "--store", aged, *creds).assert_one_error_line(
            1, "Salesforce refused the replay id", why
        )
        assert "the stored replay id is from " in line


async def store_marker(path: str, channel: str, marker: ReplayMarker) -> None:
    async with SqliteStorage(path) as store:
        await store.set_replay_marker(channel, marker)


def test_unreachable_hosts_exit_4(cli: CliRunner) -> None:
    run = cli(
        "listen",
        EVENT,
        "--login-url",
        "http://127.0.0.1:9",
        "--consumer-key",
        "k",
        "--consumer-secret",
        "s",
        "--username",
        "u",
        "--password",
        "p",
    )
    run.assert_one_error_line(4, "cannot reach 127.0.0.1:9", "--login-url")
    cli(
        "listen", EVENT, "--access-token", "abcd", "--instance-url", "http://127.0.0.1:9"
    ).assert_one_error_line(4, "127.0.0.1:9")


@pytest.mark.parametrize(
    ("arm", "detail"),
    [
        (
            lambda org: org.http_error(503, target="token"),
            "the token endpoint answered HTTP 503 with a body that is not JSON (text/html)",
        ),
        (
            lambda org: org.invalid_json(target="token"),
            "the token endpoint answered HTTP 200 with a body that is not JSON",
        ),
    ],
)
def test_a_failing_login_server_is_not_blamed_on_the_credentials(
    cli: CliRunner, org: EmulatorThread, arm: Any, detail: str
) -> None:
    """The library raises AuthenticationTransportError (issue #14): the command line says the
    server failed, exit status 4 like an unreachable host, not 3 with "check the credentials"."""
    org.call(arm, org.emulator)
    line = cli("listen", EVENT, *password_args(org)).assert_one_error_line(
        4, f"no token from 127.0.0.1:{org.emulator.port}: {detail}", "not the credentials"
    )
    assert "check the credentials" not in line
    assert "authentication failed" not in line


def test_a_login_url_with_a_path_is_not_blamed_on_the_credentials(
    cli: CliRunner, org: EmulatorThread
) -> None:
    # The token request met the org's 404 page; the hint said "check the credentials".
    creds = password_args(org)
    login = creds.index("--login-url") + 1
    creds[login] += "/lightning/page/home"
    run = cli("listen", EVENT, *creds)
    run.assert_one_error_line(3, "HTTP 404", "check --login-url", "without a path")
    assert "check the credentials" not in run.err


def test_debug_shows_the_traceback_and_logs(cli: CliRunner, org: EmulatorThread) -> None:
    logger = logging.getLogger("sfstream")
    handlers, level = list(logger.handlers), logger.level
    run = cli("--debug", "listen", "/event/Nope__e", *password_args(org))
    assert run.code == 1
    assert "Traceback" in run.err
    assert "DEBUG sfstream." in run.err
    assert run.err.rstrip().splitlines()[-1].startswith("sfstream: /event/Nope__e")
    run.assert_no_secret()
    assert (logger.handlers, logger.level) == (handlers, level)
    after = cli("listen", "/event/Nope__e", "--debug", *password_args(org))
    assert "DEBUG" in after.err  # --debug after the command works too
    quiet = cli("listen", "/event/Nope__e", *password_args(org))
    assert "DEBUG" not in quiet.err


@pytest.mark.parametrize(
    "command", [["listen", "/event/Nope__e"], ["publish", "/event/Nope__e", "{}"]]
)
def test_debug_with_json_keeps_every_stderr_line_json(
    cli: CliRunner, org: EmulatorThread, command: list[str]
) -> None:
    # The --debug records were plain text lines among the JSON ones.
    run = cli(*command, "--json", "--debug", *password_args(org))
    assert run.code == 1
    lines = json_lines(run.err)  # each line parses
    logs = [line for line in lines if "log" in line]
    assert logs
    assert {line["level"] for line in logs} >= {"DEBUG"}
    assert all(line["logger"].startswith("sfstream.") and line["time"] for line in logs)
    assert any("Traceback" in line.get("note", "") for line in lines)
    assert lines[-1]["exitCode"] == 1
    run.assert_no_secret()


def test_unexpected_errors(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    from sfstream import cli as package

    async def boom(args: argparse.Namespace, console: Any) -> int:
        raise RuntimeError("boom")

    async def known(args: argparse.Namespace, console: Any) -> int:
        raise TransportError("the request to x:1 failed")

    monkeypatch.setitem(package._COMMANDS, "publish", boom)
    run = cli("publish", EVENT, "{}")
    run.assert_one_error_line(1, "unexpected error: RuntimeError: boom", "--debug")
    debug = cli("--debug", "publish", EVENT, "{}")
    assert "Traceback" in debug.err
    assert "raise RuntimeError" in debug.err
    monkeypatch.setitem(package._COMMANDS, "publish", known)
    cli("publish", EVENT, "{}").assert_one_error_line(4, "connection failed")


def test_to_cli_error() -> None:
    def check(exc: BaseException, code: ExitCode, *parts: str, **context: Any) -> None:
        error = to_cli_error(exc, **context)
        assert error is not None
        assert error.code is code, error
        for part in parts:
            assert part in str(error), str(error)

    network = AuthenticationError("Network request failed: no token")
    network.__cause__ = TimeoutError()
    check(
        network,
        ExitCode.CONNECTION,
        "cannot reach login.salesforce.com: timed out",
        login_url="https://login.salesforce.com",
    )
    other = AuthenticationError("Network request failed")
    other.__cause__ = aiohttp.ClientPayloadError("truncated")
    check(other, ExitCode.CONNECTION, "cannot reach the server: truncated")
    for error, description, hint in [
        ("invalid_client_id", "client identifier invalid", "--consumer-key"),
        ("invalid_client", "invalid client credentials", "--consumer-secret"),
        ("invalid_grant", "expired access/refresh token", "get a new one"),
        ("invalid_grant", "audience is invalid", "--sandbox"),
        ("invalid_grant", "user hasn't approved this consumer", "pre-authorise"),
        ("invalid_grant", "no client credentials user enabled", "Run As"),
        ("invalid_grant", "ip restricted or invalid login hours", "security token"),
        ("unsupported_grant_type", "grant type not supported", "not enabled"),
        ("weird", None, "check the credentials"),
    ]:
        exc = AuthenticationError("x", error=error, error_description=description)
        check(exc, ExitCode.AUTHENTICATION, f"authentication failed: {error}", hint)
    check(
        AuthenticationError("Authentication failed: the token reply has no instance_url"),
        ExitCode.AUTHENTICATION,
        "authentication failed: the token reply has no instance_url",
    )
    check(
        AuthenticationError("no refresh token to authenticate with"),
        ExitCode.AUTHENTICATION,
        "authentication failed: no refresh token",
    )
    check(AuthenticationError(""), ExitCode.AUTHENTICATION, "authentication failed")
    denied = ServerError(
        "handshake refused",
        {
            "error": "403::Handshake denied",
            "ext": {"sfdc": {"failureReason": "401::Authentication invalid"}},
        },
    )
    check(denied, ExitCode.AUTHENTICATION, "Salesforce refused the session")
    # Salesforce's failureReason first: a 503 behind a 401 error is a busy server (it was
    # reported as refused credentials, "check the credentials")
    busy = ServerError(
        "subscribe to /event/Order__e refused",
        {
            "error": "401::Authentication invalid",
            "subscription": "/event/Order__e",
            "ext": {"sfdc": {"failureReason": "503::Server is too busy.  Please try later."}},
        },
    )
    check(busy, ExitCode.CONNECTION, "/event/Order__e: Salesforce is too busy", "few minutes")
    assert "credentials" not in str(to_cli_error(busy))
    check(
        ServerError("connect refused", {"error": "401::Authentication invalid"}),
        ExitCode.AUTHENTICATION,
        "Salesforce refused the session",
    )
    check(
        ServerError("publish refused", {"error": "403::Publish is not allowed"}),
        ExitCode.ERROR,
        "Salesforce refused: publish refused: 403::Publish is not allowed",
    )
    check(
        TransportTimeoutError("no connection within 30 s"),
        ExitCode.CONNECTION,
        "connection lost",
        "--connection-timeout",
    )
    check(
        ReplayError("not a marker"),
        ExitCode.ERROR,
        "replay store: not a marker",
        "check the replay store",
    )
    check(ReplayError("not a marker"), ExitCode.ERROR, "damaged, delete s.db", store="s.db")
    check(
        ReplayError("cannot write the replay marker: database is locked"),
        ExitCode.ERROR,
        "another process is writing the store s.db",
        store="s.db",
    )
    check(
        ReplayError("cannot reach Redis at 127.0.0.1:6379: Connection refused"),
        ExitCode.ERROR,
        "server is running and reachable",
        store="redis://127.0.0.1:6379",
    )
    check(ClientError("instance_url uses plain http"), ExitCode.USAGE, "plain http")
    check(SfstreamError("odd"), ExitCode.ERROR, "odd")
    check(
        FileNotFoundError(2, "No such file or directory", "key.pem"),
        ExitCode.ERROR,
        "key.pem: No such file or directory",
    )
    check(ConnectionResetError("reset by peer"), ExitCode.CONNECTION, "reset by peer")
    assert to_cli_error(BrokenPipeError()) is None
    assert to_cli_error(ValueError("x")) is None
    same = CliError("already", ExitCode.USAGE)
    assert to_cli_error(same) is same
    assert str(CliError("a", hint="b")) == "a — b"
    assert _errors._host("not a url") == "not a url"


def test_broken_pipe_is_quiet(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    from sfstream import cli as package

    async def closed(args: argparse.Namespace, console: Any) -> int:
        raise BrokenPipeError

    monkeypatch.setitem(package._COMMANDS, "publish", closed)
    run = cli("publish", EVENT, "{}")
    assert (run.code, run.all) == (0, "")


# -- sfstream emulator ----------------------------------------------------------------------------


def run_emulator(cli: CliRunner, *argv: str, serve_for: float = 2.0) -> Run:
    """``sfstream emulator --port 0 ...`` in this process, interrupted (SIGINT) after
    ``serve_for`` seconds if it serves."""
    timer = threading.Timer(serve_for, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        return cli("emulator", "--port", "0", *argv)
    finally:
        timer.cancel()


def test_emulator_command_in_process(cli: CliRunner) -> None:
    run = run_emulator(cli, "--event", "A__e", serve_for=1.0)
    assert run.code == 0, run.err
    assert "Salesforce emulator listening on http://127.0.0.1:" in run.out
    assert "/event/A__e" in run.out
    assert "Salesforce emulator stopped." in run.out


def test_emulator_command_serves_listen_and_publish(
    sfstream: CliRunner, clean_env: pytest.MonkeyPatch
) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sfstream",
            "emulator",
            "--port",
            "0",
            "--event",
            "Order__e:Amount__c",
            "--hold-time",
            "0.3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    try:
        banner: dict[str, str] = {}
        for line in process.stdout:
            label, _, value = line.strip().partition("  ")
            if value:
                banner[label] = value.strip()
            if "Press Ctrl+C" in line:
                break
        env = {
            "SFSTREAM_LOGIN_URL": banner["login URL"],
            "SFSTREAM_CONSUMER_KEY": banner["consumer key"],
            "SFSTREAM_CONSUMER_SECRET": banner["consumer secret"],
            "SFSTREAM_USERNAME": banner["username"],
            "SFSTREAM_PASSWORD": banner["password"],
        }
        published = sfstream("publish", EVENT, '{"Amount__c": 3}', env=env)
        assert published.code == 0, published.err
        listened = sfstream("listen", EVENT, "--replay", "all", "--count", "1", env=env)
        assert listened.code == 0, listened.err
        assert published.out.strip() in listened.out
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert "stopped" in out


def test_emulator_output_closed_by_its_reader(clean_env: pytest.MonkeyPatch) -> None:
    """``sfstream emulator | head -1``: the org keeps serving, and stops without a traceback
    (printing "stopped" raised BrokenPipeError: a traceback and exit status 1)."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "sfstream", "emulator", "--port", "0"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as reader:
            first = reader.readline()  # then the reader goes away, as head -1 does
        url = first.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:")

        async def status() -> int:
            async with aiohttp.ClientSession() as session, session.get(url + "/_emulator") as r:
                return r.status

        assert asyncio.run(status()) == 200  # still serving
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("content", [b"precious data\n", b"\xff\xfe", b'{"other": 1}\n'])
def test_emulator_refuses_a_state_file_that_is_not_one(
    cli: CliRunner, tmp_path: Path, content: bytes
) -> None:
    # The emulator skipped the lines it could not read and rewrote the file: the file was lost.
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    run = run_emulator(cli, "--state-file", str(path))
    assert run.code == 2
    assert "this file is not an emulator state file" in run.err
    assert path.read_bytes() == content


def test_emulator_state_file_new_or_its_own(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "org.state"
    for _ in range(2):  # created, then read back
        run = run_emulator(cli, "--state-file", str(path), serve_for=1.0)
        assert run.code == 0, run.err
    assert path.read_bytes().startswith(b'{"k":')


@pytest.mark.parametrize("option", ["--hold-time", "--session-expiry", "--token-lifetime"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_emulator_seconds_are_finite(cli: CliRunner, option: str, value: str) -> None:
    # nan passed every check (nan < 0 is false) and the org served with it.
    run = run_emulator(cli, option, value)
    assert run.code == 2
    assert f"argument {option}: expected a number of seconds, not '{value}'" in run.err


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('{"port": "abc"}', "port: invalid literal for int()"),
        ('{"no_admin": "false"}', "no_admin: expected true or false, not 'false'"),
        ('{"hold_time": "nan"}', "hold_time: expected a finite number, not 'nan'"),
    ],
)
def test_emulator_config_values_name_their_key(
    cli: CliRunner, tmp_path: Path, config: str, message: str
) -> None:
    # The key was not named, and "false" (a string) meant true.
    path = tmp_path / "org.json"
    path.write_text(config)
    run = run_emulator(cli, "--config", str(path))
    assert run.code == 2
    assert f"{path}: {message}" in run.err


def test_python_dash_m_sfstream(sfstream: CliRunner) -> None:
    run = sfstream("--version")
    assert (run.code, run.out.strip()) == (0, f"sfstream {__version__}")
    bad = sfstream("listen", EVENT)
    bad.assert_one_error_line(2, "no credentials")


def test_command_errors_outside_the_known_tree(
    cli: CliRunner, org: EmulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sfstream.cli import _demo, _publish

    async def refused(self: Any) -> int:
        raise AuthenticationError(
            "x", error="invalid_grant", error_description="authentication failure"
        )

    async def odd(self: Any, *args: Any) -> Any:
        raise RuntimeError("odd")

    monkeypatch.setattr(_demo.Demo, "run", refused)
    cli("demo").assert_one_error_line(3, "check username/password/security token")
    monkeypatch.setattr(_demo.Demo, "run", odd)
    cli("demo").assert_one_error_line(1, "unexpected error: RuntimeError: odd")
    monkeypatch.setattr(_publish.RestClient, "publish_event", odd)
    cli("publish", EVENT, "{}", *password_args(org)).assert_one_error_line(
        1, "unexpected error: RuntimeError: odd"
    )


def test_silence_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sfstream import cli as package

    with open(tmp_path / "out.txt", "w") as stream:
        monkeypatch.setattr(sys, "stdout", stream)
        package._silence_stdout()
        stream.write("dropped")
    assert (tmp_path / "out.txt").read_text() == ""
    monkeypatch.setattr(sys, "stdout", object())
    package._silence_stdout()  # nothing to silence


@pytest.mark.parametrize("port", ["-1", "65536", "99999"])
def test_emulator_port_out_of_range_is_a_usage_error(cli: CliRunner, port: str) -> None:
    run = cli("emulator", "--port", port)  # raised OverflowError from bind()
    assert run.code == 2
    assert f"port {port}: a port is 0 to 65535" in run.err


def test_emulator_port_out_of_range_in_a_config_file(cli: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "org.json"
    config.write_text('{"port": 70000}')
    run = cli("emulator", "--config", str(config))
    assert run.code == 2
    assert "port 70000: a port is 0 to 65535" in run.err
