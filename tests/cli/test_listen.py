"""``sfstream listen``: events as JSON lines or for humans, replay, the store, trace, stopping."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shelve
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sfstream.bayeux import Message, Status, StatusKind
from sfstream.cli import _listen
from sfstream.emulator import EmulatorThread
from sfstream.exceptions import ReplayError, ServerError
from sfstream.salesforce import MappingStorage, ReplayMarker
from tests.cli.conftest import (
    CDC,
    EVENT,
    GENERIC,
    PASSWORD,
    ROOT,
    TOPIC,
    CliRunner,
    amounts,
    json_lines,
    password_args,
    password_env,
    publish_when_subscribed,
    replay_ids,
)


def publish_orders(org: EmulatorThread, *values: int) -> None:
    for value in values:
        org.publish(EVENT, {"Amount__c": value})


def test_json_count_prints_n_parseable_lines(cli: CliRunner, org: EmulatorThread) -> None:
    publish_orders(org, 1, 2, 3, 4)
    run = cli("listen", EVENT, "--replay", "all", "--json", "--count", "3", *password_args(org))
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert len(lines) == 3
    messages = [json.loads(line) for line in lines]
    assert [m["channel"] for m in messages] == [EVENT] * 3
    assert amounts(messages) == [1, 2, 3]
    assert all(m["data"]["event"]["EventUuid"] for m in messages)
    run.assert_no_secret()


def test_new_events_by_default(cli: CliRunner, org: EmulatorThread) -> None:
    publish_orders(org, 1)  # before the subscription: not wanted
    publisher = publish_when_subscribed(org, EVENT, [{"Amount__c": 7}, {"Amount__c": 8}])
    run = cli("listen", EVENT, "--json", "--count", "2", "--timeout", "10", *password_args(org))
    publisher.join()
    assert run.code == 0, run.err
    assert amounts(json_lines(run.out)) == [7, 8]


def test_replay_all_gets_the_backlog(cli: CliRunner, org: EmulatorThread) -> None:
    publish_orders(org, *range(10))
    run = cli("listen", EVENT, "--replay", "all", "--json", "--count", "10", *password_args(org))
    assert run.code == 0, run.err
    assert replay_ids(json_lines(run.out)) == list(range(1, 11))


def test_replay_after_an_id(cli: CliRunner, org: EmulatorThread) -> None:
    publish_orders(org, *range(5))
    run = cli("listen", EVENT, "--replay", "2", "--json", "--count", "3", *password_args(org))
    assert run.code == 0, run.err
    assert replay_ids(json_lines(run.out)) == [3, 4, 5]


def test_store_resumes_across_runs_without_loss_or_duplicates(
    cli: CliRunner, org: EmulatorThread, tmp_path: Path
) -> None:
    store = str(tmp_path / "markers")
    creds = password_args(org)
    publish_orders(org, *range(1, 6))
    first = cli(
        "listen", EVENT, "--replay", "all", "--store", store, "--json", "--count", "3", *creds
    )
    assert first.code == 0, first.err
    assert replay_ids(json_lines(first.out)) == [1, 2, 3]
    second = cli(
        "listen", EVENT, "--store", store, "--json", "--count", "2", "--timeout", "5", *creds
    )
    assert second.code == 0, second.err
    assert replay_ids(json_lines(second.out)) == [4, 5]
    third = cli("listen", EVENT, "--store", store, "--json", "--timeout", "0.5", *creds)
    assert third.code == 0, third.err
    assert third.out == ""  # nothing twice
    publish_orders(org, 6, 7)
    fourth = cli("listen", EVENT, "--store", store, "--json", "--count", "2", *creds)
    assert replay_ids(json_lines(fourth.out)) == [6, 7]
    assert f"from {store}" in fourth.err


def test_store_in_subprocesses(sfstream: CliRunner, org: EmulatorThread, tmp_path: Path) -> None:
    store = str(tmp_path / "markers")
    publish_orders(org, 1, 2, 3, 4)
    env = password_env(org)
    first = sfstream(
        "listen", EVENT, "--replay", "all", "--store", store, "--json", "--count", "2", env=env
    )
    assert first.code == 0, first.err
    second = sfstream("listen", EVENT, "--store", store, "--json", "--count", "2", env=env)
    assert second.code == 0, second.err
    assert replay_ids(json_lines(first.out) + json_lines(second.out)) == [1, 2, 3, 4]
    first.assert_no_secret()
    second.assert_no_secret()


def test_human_output_of_every_channel_kind(cli: CliRunner, org: EmulatorThread) -> None:
    org.publish(EVENT, {"Amount__c": 42})
    org.call(org.emulator.create_record, "Account", {"Name": "Acme Corp"})
    org.publish(GENERIC, "hello there")
    run = cli(
        "listen",
        EVENT,
        TOPIC,
        GENERIC,
        CDC,
        "--replay",
        "all",
        "--count",
        "4",
        *password_args(org),
    )
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert len(lines) == 4
    by_channel = {line.split()[1]: line for line in lines}
    assert "#1  Amount__c=42  (EventUuid " in by_channel[EVENT]
    assert "created  Id=001" in by_channel[TOPIC]
    assert 'Name="Acme Corp"' in by_channel[TOPIC]
    assert '#1  "hello there"' in by_channel[GENERIC]
    assert "CREATE Account 001" in by_channel[CDC]
    assert "\x1b[" not in run.out
    assert "connected to http://127.0.0.1" in run.err
    assert f"subscribed to {EVENT} (all retained events)" in run.err


def test_quiet_prints_no_news(cli: CliRunner, org: EmulatorThread) -> None:
    publish_orders(org, 1)
    run = cli("listen", EVENT, "--replay", "all", "--count", "1", "-q", *password_args(org))
    assert run.code == 0
    assert run.err == ""


def test_trace_prints_messages_and_never_a_secret(cli: CliRunner, org: EmulatorThread) -> None:
    publish_orders(org, 5)
    token = org.call(org.emulator.issue_access_token)
    for creds in (
        password_args(org),
        ["--access-token", token, "--instance-url", org.instance_url],
    ):
        run = cli("listen", EVENT, "--replay", "all", "--count", "1", "--trace", *creds)
        assert run.code == 0, run.err
        assert '>> {"channel":"/meta/handshake"' in run.err
        assert '<< {"ext":{"replay":true' in run.err or '"/meta/handshake"' in run.err
        assert '"ext":{"replay":{"/event/Order__e":-2}}' in run.err
        assert '<< {"channel":"/event/Order__e"' in run.err
        run.assert_no_secret(token)


def test_trace_in_a_subprocess_never_prints_the_token(
    sfstream: CliRunner, org: EmulatorThread
) -> None:
    publish_orders(org, 5)
    token = org.call(org.emulator.issue_access_token)
    run = sfstream(
        "listen",
        EVENT,
        "--replay",
        "all",
        "--count",
        "1",
        "--trace",
        "--json",
        env={"SFSTREAM_ACCESS_TOKEN": token, "SFSTREAM_INSTANCE_URL": org.instance_url},
    )
    assert run.code == 0, run.err
    assert "/meta/connect" in run.err
    assert len(json_lines(run.out)) == 1
    run.assert_no_secret(token)


def test_timeout_without_count_is_success(cli: CliRunner, org: EmulatorThread) -> None:
    started = time.monotonic()
    run = cli("listen", EVENT, "--timeout", "0.5", *password_args(org))
    assert run.code == 0
    assert 0.5 <= time.monotonic() - started < 5


def test_timeout_before_count_is_exit_5(cli: CliRunner, org: EmulatorThread) -> None:
    publish_orders(org, 1)
    run = cli(
        "listen", EVENT, "--replay", "all", "--count", "3", "--timeout", "0.5", *password_args(org)
    )
    run.assert_one_error_line(5, "received 1 of 3 events within 0.5 s")
    assert len(run.out.splitlines()) == 1


def test_reconnects_are_reported_and_nothing_is_lost(cli: CliRunner, org: EmulatorThread) -> None:
    payloads = [{"Amount__c": n} for n in range(4)]
    publisher = publish_when_subscribed(org, EVENT, payloads, then=org.emulator.expire_sessions)
    run = cli("listen", EVENT, "--json", "--count", "4", "--timeout", "15", *password_args(org))
    publisher.join()
    assert run.code == 0, run.err
    assert amounts(json_lines(run.out)) == [0, 1, 2, 3]
    assert "session lost" in run.err
    assert "reconnected" in run.err


def test_revoked_token_is_renewed(cli: CliRunner, org: EmulatorThread) -> None:
    payloads = [{"Amount__c": n} for n in range(3)]
    revoke = lambda: org.emulator.revoke_tokens("access")  # noqa: E731
    publisher = publish_when_subscribed(org, EVENT, payloads, then=revoke)
    run = cli("listen", EVENT, "--json", "--count", "3", "--timeout", "15", *password_args(org))
    publisher.join()
    assert run.code == 0, run.err
    assert amounts(json_lines(run.out)) == [0, 1, 2]
    assert "logged in again" in run.err
    run.assert_no_secret()


def test_revoked_access_token_flag_fails_with_exit_3(cli: CliRunner, org: EmulatorThread) -> None:
    token = org.call(org.emulator.issue_access_token)
    revoke = lambda: org.emulator.revoke_tokens("access")  # noqa: E731
    publisher = publish_when_subscribed(org, EVENT, [{"Amount__c": 1}, {}], then=revoke)
    run = cli(
        "listen",
        EVENT,
        "--timeout",
        "15",
        "--access-token",
        token,
        "--instance-url",
        org.instance_url,
    )
    publisher.join()
    run.assert_one_error_line(3, "Salesforce refused the access token", "get a new one")
    run.assert_no_secret(token)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_backlog_progress_on_a_terminal(
    org: EmulatorThread, monkeypatch: pytest.MonkeyPatch, clean_env: pytest.MonkeyPatch
) -> None:
    from sfstream.cli import main

    out, err = io.StringIO(), FakeTerminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    publish_orders(org, *range(30))
    code = main(
        [
            "listen",
            EVENT,
            "--replay",
            "all",
            "--count",
            "31",
            "--timeout",
            "1.5",
            *password_args(org),
        ]
    )
    assert code == 5
    assert len(out.getvalue().splitlines()) == 30
    text = err.getvalue()
    assert "replaying the backlog: " in text
    assert "replayed 30 backlog events in " in text
    assert "\x1b[2m" in text  # the terminal gets colours
    # stdout is a file: the line is never erased for an event, only when the summary replaces
    # it (before the fix it was erased before each of the 30 events and seen only in passing).
    drawn = text.count("\r\x1b[2K\x1b[2mreplaying the backlog: ")
    assert drawn >= 1
    assert text.count("\r\x1b[2K") == drawn + 1
    # The events carry their date: how far behind the present (here just published).
    assert "/s), caught up" in text or " behind" in text


def test_backlog_progress_with_events_on_the_same_terminal(
    org: EmulatorThread, monkeypatch: pytest.MonkeyPatch, clean_env: pytest.MonkeyPatch
) -> None:
    from sfstream.cli import main

    out, err = FakeTerminal(), FakeTerminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    publish_orders(org, *range(5))
    code = main(["listen", EVENT, "--replay", "all", "--count", "5", *password_args(org)])
    assert code == 0
    # Erased before each event printed on the same terminal, and drawn again right after it.
    assert err.getvalue().count("replaying the backlog: 5 events") == 1
    assert err.getvalue().count("replaying the backlog: ") == 5


def test_json_lines_carry_the_arrival_time_and_errors_are_json(
    cli: CliRunner, org: EmulatorThread
) -> None:
    publish_orders(org, 1)
    run = cli(
        "listen",
        EVENT,
        "--replay",
        "all",
        "--json",
        "--count",
        "2",
        "--timeout",
        "1.5",
        *password_args(org),
    )
    assert run.code == 5
    [event] = json_lines(run.out)
    assert event["data"]["payload"]["Amount__c"] == 1
    arrived = datetime.fromisoformat(event["receivedAt"])
    assert abs((datetime.now(UTC) - arrived).total_seconds()) < 30
    assert event["receivedAt"].endswith("Z")
    lines = json_lines(run.err)  # every line of stderr is JSON too
    assert lines[-1] == {"error": "received 1 of 2 events within 1.5 s", "exitCode": 5}
    assert {"note": "waiting for events (Ctrl-C to stop)"} in lines
    usage = cli("listen", EVENT, "--json", "--replay", "soon")
    assert usage.code == 2
    [error] = json_lines(usage.err)
    assert error["exitCode"] == 2
    assert "expected new, all or a replay id" in error["error"]


def test_backlog_progress_ends_at_the_first_live_event(
    org: EmulatorThread, monkeypatch: pytest.MonkeyPatch, clean_env: pytest.MonkeyPatch
) -> None:
    from sfstream.cli import main

    out, err = io.StringIO(), FakeTerminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(_listen, "BACKLOG_IDLE", 30.0)
    publish_orders(org, 1, 2)
    publisher = publish_when_subscribed(org, EVENT, [{"Amount__c": 3}])
    code = main(
        [
            "listen",
            EVENT,
            "--replay",
            "all",
            "--count",
            "3",
            "--color",
            "never",
            *password_args(org),
        ]
    )
    publisher.join()
    assert code == 0
    assert "replayed 2 backlog events" in err.getvalue()
    assert "\x1b[2m" not in err.getvalue()
    assert len(out.getvalue().splitlines()) == 3


def test_fallback_after_a_refused_replay_id(cli: CliRunner, org: EmulatorThread) -> None:
    publish_orders(org, 1, 2)
    run = cli(
        "listen",
        EVENT,
        "--replay",
        "99",
        "--fallback",
        "all",
        "--json",
        "--count",
        "2",
        *password_args(org),
    )
    assert run.code == 0, run.err
    assert replay_ids(json_lines(run.out)) == [1, 2]
    assert "Salesforce refused the replay id: starting from all retained events" in run.err


def test_ctrl_c_exits_130(cli: CliRunner, org: EmulatorThread) -> None:
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        run = cli("listen", EVENT, *password_args(org))
    finally:
        timer.cancel()
    assert run.code == 130
    assert "Traceback" not in run.all


def test_ctrl_c_during_the_backlog_says_interrupted(
    org: EmulatorThread, monkeypatch: pytest.MonkeyPatch, clean_env: pytest.MonkeyPatch
) -> None:
    from sfstream.cli import main

    out, err = io.StringIO(), FakeTerminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(_listen, "BACKLOG_IDLE", 30.0)  # the backlog is never over by itself
    publish_orders(org, *range(12))
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code = main(["listen", EVENT, "--replay", "all", "--color", "never", *password_args(org)])
    finally:
        timer.cancel()
    assert code == 130
    assert len(out.getvalue().splitlines()) == 12
    assert "interrupted after 12 backlog events in " in err.getvalue()
    assert "replayed" not in err.getvalue()


def test_ctrl_c_in_a_subprocess(org: EmulatorThread, clean_env: pytest.MonkeyPatch) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sfstream", "listen", EVENT, *password_args(org)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stderr is not None
    try:
        for line in process.stderr:
            if "waiting for events" in line:
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130
    assert "Traceback" not in out + err
    assert PASSWORD not in out + err


def test_a_closed_pipe_ends_quietly(org: EmulatorThread, clean_env: pytest.MonkeyPatch) -> None:
    org.call(org.emulator.publish_many, EVENT, [{"Amount__c": n} for n in range(3000)])
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sfstream",
            "listen",
            EVENT,
            "--replay",
            "all",
            "--json",
            *password_args(org),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None
    try:
        assert process.stdout.readline()
        process.stdout.close()
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert b"Traceback" not in err
    assert b"sfstream:" not in err


@pytest.mark.parametrize(
    ("kind", "detail", "channel", "line"),
    [
        (StatusKind.SESSION_LOST, "403::x", None, "session lost (403::x)"),
        (StatusKind.CONNECTION_LOST, "HTTP 502", None, "connection problem (HTTP 502): retrying"),
        (StatusKind.RECONNECTED, "", None, "reconnected: each channel resumes"),
        (StatusKind.REAUTHENTICATED, "", None, "logged in again"),
        (StatusKind.REPLAY_FALLBACK, "NEW_EVENTS", "/x", "/x: Salesforce refused the replay id: "
         "starting from new events instead"),
        (StatusKind.REPLAY_MARKER_MISSING, "no date", "/x", "/x: no replay id stored for an event"),
        (StatusKind.RESUBSCRIBE_FAILED, "400::gone", "/x", "/x: could not subscribe again"),
        (StatusKind.STOPPED, "fatal", None, "stopped: fatal"),
        (StatusKind.PAUSED, "", None, None),
        (StatusKind.CONNECTED, "", None, None),
    ],
)  # fmt: skip
def test_status_lines(kind: StatusKind, detail: str, channel: str | None, line: str | None) -> None:
    text = _listen.status_line(Status(kind, detail, channel))
    if line is None:
        assert text is None
    else:
        assert text is not None
        assert text.startswith(line)


def test_parse_replay() -> None:
    assert _listen.parse_replay(" NEW ") == -1
    assert _listen.parse_replay("all") == -2
    assert _listen.parse_replay("41") == 41


def test_store_problems(cli: CliRunner, org: EmulatorThread, tmp_path: Path) -> None:
    """More in test_store.py."""
    creds = password_args(org)
    cli(
        "listen", EVENT, "--store", str(tmp_path / "no" / "such" / "dir"), *creds
    ).assert_one_error_line(1, "cannot open the store")
    store = str(tmp_path / "damaged")
    with shelve.open(store) as shelf:
        shelf[EVENT] = "not a marker"
    cli("listen", EVENT, "--store", store, *creds).assert_one_error_line(
        1, f"cannot read the shelve store {store}: the value stored for channel "
        "'/event/Order__e' is not a replay marker",
        f"delete {store}",
    )  # fmt: skip


@pytest.mark.parametrize("quiet", [[], ["-q"]])
async def test_an_event_without_a_marker_is_still_printed(quiet: list[str]) -> None:
    from sfstream.cli._output import Console

    class Storage:
        def __call__(self, message: Message) -> Any:
            @contextlib.asynccontextmanager
            async def store() -> AsyncIterator[None]:
                yield
                raise ReplayError("no replay id in the message")

            return store()

    class FakeClient:
        replay_storage = Storage()

    class Shelf:
        def sync(self) -> None:
            raise AssertionError("nothing was stored")

    out, err = io.StringIO(), io.StringIO()
    args = _listen_args("--store", "s", "--json", *quiet)
    listener = _listen._Listener(args, Console(out, err, color="never"), Shelf())  # type: ignore[arg-type]
    await listener.handle(FakeClient(), {"channel": "/u/x", "data": {"payload": "p"}})  # type: ignore[arg-type]
    printed = json.loads(out.getvalue())
    assert printed.pop("receivedAt").endswith("Z")
    assert printed == {"channel": "/u/x", "data": {"payload": "p"}}
    # A failure, not news: -q (no connection news) hid it, and the next run printed the
    # event again without a word.
    assert "no replay id stored: no replay id in the message" in err.getvalue()


async def _interrupt_during_the_marker_write(
    write_time: float, *argv: str
) -> tuple[io.StringIO, io.StringIO, list[str]]:
    """Handle one message with a store whose write takes ``write_time`` s, and cancel the
    handling (what SIGINT/SIGTERM do) once the write began: stdout, stderr, channels stored."""
    from sfstream.cli._output import Console

    stored: list[str] = []
    writing = asyncio.Event()

    class Storage:
        def __call__(self, message: Message) -> Any:
            @contextlib.asynccontextmanager
            async def store() -> AsyncIterator[None]:
                yield
                writing.set()
                await asyncio.sleep(write_time)  # the write the interruption lands in
                stored.append(message["channel"])

            return store()

    class FakeClient:
        replay_storage = Storage()

    out, err = io.StringIO(), io.StringIO()
    listener = _listen._Listener(_listen_args(*argv), Console(out, err, color="never"), object())  # type: ignore[arg-type]
    task = asyncio.ensure_future(
        listener.handle(FakeClient(), {"channel": "/u/x", "data": {"payload": "p"}})  # type: ignore[arg-type]
    )
    await writing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return out, err, stored


async def test_an_interruption_during_the_marker_write_still_stores_the_printed_event() -> None:
    out, _err, stored = await _interrupt_during_the_marker_write(0.2, "--store", "s", "--json")
    assert json.loads(out.getvalue())["data"] == {"payload": "p"}
    assert stored == ["/u/x"]  # it was printed, so it is stored: the next run starts after it


async def test_an_interruption_waiting_for_a_busy_store_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_listen, "SLOW_WRITE", 0.05)
    # another process holds the write lock for 0.5 s
    _out, err, stored = await _interrupt_during_the_marker_write(0.5, "--store", "orders.db", "-q")
    assert stored == ["/u/x"]
    # Ctrl-C seemed to do nothing for as long as the lock was held (up to 30 s).
    assert "interrupted: waiting to store the last printed event's replay id in orders.db" in (
        err.getvalue()
    )


def _listen_args(*argv: str) -> argparse.Namespace:
    from sfstream.cli import build_parser

    return build_parser().parse_args(["listen", "/u/x", *argv])


def test_a_killed_listener_resumes_without_a_gap(
    org: EmulatorThread, clean_env: pytest.MonkeyPatch, tmp_path: Path, sfstream: CliRunner
) -> None:
    """Markers are on disk as soon as their events are printed: SIGKILL loses none."""
    store = str(tmp_path / "markers")
    publish_orders(org, *range(1, 7))
    process = subprocess.Popen(
        [sys.executable, "-m", "sfstream", "listen", EVENT, "--replay", "all", "--store", store,
         "--json", *password_args(org)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        printed = [json.loads(process.stdout.readline()) for _ in range(6)]
        time.sleep(0.2)
    finally:
        process.kill()
        process.communicate()
    assert replay_ids(printed) == [1, 2, 3, 4, 5, 6]
    publish_orders(org, 7)
    again = sfstream("listen", EVENT, "--store", store, "--json", "--count", "1",
                     env=password_env(org))  # fmt: skip
    assert again.code == 0, again.err
    assert replay_ids(json_lines(again.out)) == [7]


async def test_stored_marker_note() -> None:
    now = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    refused = "400::The replayId {42} you provided was invalid. Please provide a valid ID."

    def error(channel: object) -> ServerError:
        return ServerError("Subscribe failed", {"error": refused, "subscription": channel})

    shelf = MappingStorage(
        {
            "/u/Notes": ReplayMarker("2024-06-01T11:00:00Z", 42),
            "/data/AccountChangeEvent": ReplayMarker("1716800000000", 7),  # CDC: epoch ms
            "/topic/Accounts": ReplayMarker("not a date", 1),
        }
    )
    note = _listen._stored_marker_note
    assert await note(error("/u/Notes"), shelf, now) == (
        "the stored replay id is from 2024-06-01 11:00 UTC, within this channel's 24 h, so it "
        "was not issued on this channel: is the store from another org?"
    )
    assert await note(error("/data/AccountChangeEvent"), shelf, now) == (
        "the stored replay id is from 2024-05-27 08:53 UTC, older than this channel's 72 h"
    )
    assert await note(error("/topic/Accounts"), shelf, now) is None
    assert await note(error("/u/Other"), shelf, now) is None
    assert await note(error(None), shelf, now) is None
    assert await note(error("/u/Notes"), None, now) is None
    other = ServerError("Subscribe failed", {"error": "403::Forbidden", "subscription": "/u/Notes"})
    assert await note(other, shelf, now) is None
