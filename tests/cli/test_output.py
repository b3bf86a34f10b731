"""Rendering: colours, events for humans, redaction, the progress line, the trace writer."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sfstream.bayeux import Message
from sfstream.cli._output import (
    REDACTED,
    BacklogProgress,
    Console,
    Style,
    _duration,
    colour_wanted,
    describe_event,
    event_time,
    format_event,
    json_line,
    redact,
)
from sfstream.cli._trace import TraceExtension, trace_writer


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    assert colour_wanted(Terminal())
    assert not colour_wanted(io.StringIO())
    assert colour_wanted(io.StringIO(), "always")
    assert not colour_wanted(Terminal(), "never")
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_wanted(Terminal())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not colour_wanted(Terminal())


def test_style() -> None:
    assert Style(True)("x", "red", "bold") == "\x1b[31;1mx\x1b[0m"
    assert Style(True)("x") == "x"
    assert Style(True)("", "red") == ""
    assert Style(False)("x", "red") == "x"


def test_redact_and_scrub() -> None:
    value = {"Access_Token": "a", "nested": [{"password": "p", "ok": 1}], "client-secret": "s"}
    assert redact(value) == {
        "Access_Token": REDACTED,
        "nested": [{"password": REDACTED, "ok": 1}],
        "client-secret": REDACTED,
    }
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err, color="never")
    current = ["first-token"]
    console.add_secret("short")
    console.add_secret("abc")  # too short to scrub safely
    console.add_secret(None)
    console.add_secret(lambda: current[0])
    console.print("short first-token abc")
    current[0] = "second-token"
    console.note("first-token second-token")
    console.error("boom second-token")
    assert out.getvalue() == f"{REDACTED} {REDACTED} abc\n"
    assert err.getvalue() == f"first-token {REDACTED}\nsfstream: boom {REDACTED}\n"
    assert not console.err_isatty


def message(data: Any, channel: str = "/x") -> Message:
    return {"channel": channel, "data": data}


def test_describe_every_kind_of_event() -> None:
    topic = {"event": {"type": "updated", "replayId": 3}, "sobject": {"Id": "001", "Name": "A B"}}
    assert describe_event(message(topic)) == 'updated  Id=001 Name="A B"'
    generic = {"event": {"replayId": 1}, "payload": "hi"}
    assert describe_event(message(generic)) == "hi"
    platform = {
        "payload": {"CreatedDate": "x", "CreatedById": "y", "N__c": 1, "Secret": "s"},
        "event": {"replayId": 2, "EventUuid": "u-1"},
    }
    assert describe_event(message(platform)) == f'N__c=1 Secret="{REDACTED}"  (EventUuid u-1)'
    empty = {"payload": {"CreatedDate": "x"}, "event": {"EventUuid": "u-2"}}
    assert describe_event(message(empty)) == "(EventUuid u-2)"
    no_uuid = {"payload": {"N__c": [1, 2]}, "event": "not a mapping"}
    assert describe_event(message(no_uuid)) == "N__c=[1,2]"
    cdc = {
        "payload": {
            "ChangeEventHeader": {
                "changeType": "UPDATE",
                "entityName": "Account",
                "recordIds": ["1", "2"],
            },
            "Name": "",
            "LastModifiedDate": "z",
        },
        "event": {"replayId": 9},
    }
    assert describe_event(message(cdc)) == 'UPDATE Account 1,2  Name=""'
    gap = {"payload": {"ChangeEventHeader": {"changeType": "GAP_OVERFLOW"}}}
    assert describe_event(message(gap)) == "GAP_OVERFLOW"
    assert describe_event(message({"other": True})) == '{"other":true}'
    assert describe_event(message("text")) == "text"
    assert describe_event({"channel": "/x"}) == "null"


def test_format_event() -> None:
    moment = datetime(2024, 1, 2, 3, 4, 5)
    data = {"event": {"replayId": 7}, "payload": "p"}
    assert format_event(message(data, "/u/N"), Style(False), now=moment) == "03:04:05 /u/N #7  p"
    assert format_event(message("x"), Style(False), now=moment) == "03:04:05 /x #?  x"
    coloured = format_event(message(data, "/u/N"), Style(True), now=moment)
    assert "\x1b[36m/u/N\x1b[0m" in coloured
    assert format_event(message(data), Style(False)).endswith("#7  p")


def test_json_line() -> None:
    assert json_line({"a": [1, "é"], "when": datetime(2024, 1, 1)}) == (
        '{"a":[1,"\\u00e9"],"when":"2024-01-01 00:00:00"}'
    )


def event_at(moment: datetime, replay_id: int = 1) -> Message:
    stamp = moment.isoformat().replace("+00:00", "Z")
    return message({"event": {"replayId": replay_id, "createdDate": stamp}, "payload": "x"})


def test_event_time() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert event_time(event_at(moment)) == moment
    assert event_time(message({"payload": "no date"})) is None


def test_backlog_progress() -> None:
    now = [100.0]
    err = Terminal()
    console = Console(io.StringIO(), err, color="never")
    since = datetime(2024, 1, 1, tzinfo=UTC)
    progress = BacklogProgress(
        console, enabled=True, since=since, clock=lambda: now[0], now=lambda: since
    )
    old = event_at(since - timedelta(minutes=5))
    progress.seen(old)
    assert err.getvalue() == (
        "\r\x1b[2Kreplaying the backlog: 1 event (1,000,000/s), 5 min 0 s behind"
    )
    now[0] += 0.05
    progress.seen(old)  # not redrawn within 0.1 s
    assert err.getvalue().count("replaying") == 1
    now[0] += 0.2
    progress.seen(old)
    assert err.getvalue().endswith("replaying the backlog: 3 events (12/s), 5 min 0 s behind")
    progress.clear()
    progress.clear()
    assert err.getvalue().endswith("\r\x1b[2K")
    progress.seen(event_at(since + timedelta(seconds=1)))  # a live event ends it
    assert not progress.active
    assert err.getvalue().endswith("replayed 3 backlog events in 0.2 s (12/s)\n")
    progress.seen(old)
    progress.finish()
    progress.draw(force=True)
    assert err.getvalue().endswith("(12/s)\n")


def test_backlog_progress_shows_how_far_behind_and_an_interruption() -> None:
    since = datetime(2024, 1, 1, tzinfo=UTC)
    moment = [since]
    err = Terminal()
    console = Console(io.StringIO(), err, color="never")
    progress = BacklogProgress(
        console, enabled=True, since=since, clock=lambda: 0.0, now=lambda: moment[0]
    )
    assert not progress.shares_terminal  # stdout is a file: events never erase the line
    progress.seen(event_at(since - timedelta(hours=3, minutes=12)))
    assert err.getvalue().endswith("1 event (1,000,000/s), 3 h 12 min behind")
    progress.before_output()
    assert err.getvalue().endswith("behind")  # not erased
    progress.finish(interrupted=True)
    assert err.getvalue().endswith(
        "\r\x1b[2Kinterrupted after 1 backlog event in 0.0 s (1,000,000/s); "
        "the last one was 3 h 12 min behind\n"
    )
    caught_up = BacklogProgress(
        Console(Terminal(), err, color="never"),
        enabled=True,
        since=since,
        clock=lambda: 0.0,
        now=lambda: since,
    )
    assert caught_up.shares_terminal
    caught_up.seen(event_at(since - timedelta(milliseconds=10)))
    assert err.getvalue().endswith("1 event (1,000,000/s), caught up")
    caught_up.before_output()
    assert err.getvalue().endswith("\r\x1b[2K")  # the same terminal: erased for the event
    caught_up.seen(event_at(since - timedelta(milliseconds=5)))  # drawn again at once
    assert err.getvalue().endswith("2 events (2,000,000/s), caught up")
    nothing = BacklogProgress(console, enabled=True, since=since, clock=lambda: 0.0)
    nothing.finish(interrupted=True)
    assert err.getvalue().endswith("interrupted after 0 backlog events in 0.0 s\n")


def test_the_summary_times_the_replay_not_the_idle_second_after_it() -> None:
    """The backlog ends when a second passes with nothing to receive: that second (or the wait
    for the live event that ended it) is not part of the replay's time or rate. Ctrl-C counts
    until the interruption."""
    since = datetime(2024, 1, 1, tzinfo=UTC)
    clock = [10.0]
    err = Terminal()
    console = Console(io.StringIO(), err, color="never")
    progress = BacklogProgress(
        console, enabled=True, since=since, clock=lambda: clock[0], now=lambda: since
    )
    old = event_at(since - timedelta(minutes=1))
    for _ in range(4):
        clock[0] += 0.5
        progress.seen(old)  # 4 events over 2 s
    clock[0] += 1.0  # the idle second that ends the backlog
    progress.finish()
    assert err.getvalue().endswith("replayed 4 backlog events in 2.0 s (2/s)\n")
    assert "1 events" not in err.getvalue()

    interrupted = BacklogProgress(
        console, enabled=True, since=since, clock=lambda: clock[0], now=lambda: since
    )
    clock[0] += 1.0
    interrupted.seen(old)
    clock[0] += 2.0
    interrupted.finish(interrupted=True)
    assert err.getvalue().endswith(
        "interrupted after 1 backlog event in 3.0 s (0/s); the last one was 1 min 0 s behind\n"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0 s"), (42, "42 s"), (200, "3 min 20 s"), (18720, "5 h 12 min"), (183600, "2 d 3 h")],
)
def test_duration(seconds: float, text: str) -> None:
    assert _duration(seconds) == text


def test_disabled_or_empty_progress_prints_nothing() -> None:
    err = Terminal()
    console = Console(io.StringIO(), err, color="never")
    idle = BacklogProgress(console, enabled=False)
    idle.seen(message({"payload": "x"}))
    idle.finish()
    empty = BacklogProgress(console, enabled=True)
    empty.finish()
    assert err.getvalue() == ""


def test_trace_writer_redacts() -> None:
    err = io.StringIO()
    console = Console(io.StringIO(), err, color="never")
    console.add_secret("tok-secret")
    write = trace_writer(console)
    write("out", {"channel": "/meta/handshake", "ext": {"password": "p"}})
    write("in", {"channel": "/x", "data": {"note": "has tok-secret inside"}})
    assert err.getvalue().splitlines() == [
        '>> {"channel":"/meta/handshake","ext":{"password":"[redacted]"}}',
        '<< {"channel":"/x","data":{"note":"has [redacted] inside"}}',
    ]


async def test_trace_extension_sees_what_goes_on_the_wire() -> None:
    from sfstream import AccessTokenAuthenticator, Client

    seen: list[tuple[str, Message]] = []
    trace = TraceExtension(lambda d, m: seen.append((d, m)))
    client = Client(
        AccessTokenAuthenticator("tok-1234", "https://acme.my.salesforce.com"),
        extensions=[trace],
    )
    replay = client._replay
    replay.set_replay_id("/event/A__e", 5)
    subscribe: Message = {"channel": "/meta/subscribe", "subscription": "/event/A__e"}
    # the order the client registers them in: the replay extension first, then the trace
    for extension in (replay, trace):
        extension.outgoing(subscribe)
    assert seen[-1] == ("out", {**subscribe, "ext": {"replay": {"/event/A__e": 5}}})
    delivery = message({"event": {"replayId": 9}, "payload": {}}, "/event/A__e")
    assert trace.incoming(delivery) is None
    assert seen[-1] == ("in", delivery)
