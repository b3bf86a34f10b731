"""Small parts of the relay: event conversion, validation, metrics, the command's converters."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import pytest

import sfstream.relay
from sfstream.bayeux import StatusKind
from sfstream.cli import main
from sfstream.exceptions import InvalidArgumentError, ReplayError
from sfstream.relay import ChannelSet, Lease, RelayEvent, Sink, SinkError, SinkReplayStorage
from sfstream.relay._metrics import RelayMetrics
from sfstream.relay._runner import Relay, event_lag, run_relays, to_relay_batch, to_relay_event
from sfstream.relay._sink import RelayBatch

PLATFORM = {
    "channel": "/event/Order__e",
    "data": {
        "schema": "s",
        "payload": {"CreatedDate": "2026-01-01T00:00:00.000Z", "Amount__c": 5},
        "event": {"replayId": 7, "EventUuid": "uuid-7"},
    },
}
CDC = {
    "channel": "/data/AccountChangeEvent",
    "data": {
        "payload": {"ChangeEventHeader": {"commitTimestamp": 1767225600000}, "Name": "x"},
        "event": {"replayId": 8},
    },
}
TOPIC = {
    "channel": "/topic/Accounts",
    "data": {
        "event": {"replayId": 9, "createdDate": "2026-01-01T00:00:00.000Z", "type": "created"},
        "sobject": {"Id": "001"},
    },
}


def test_to_relay_event_for_each_channel_kind() -> None:
    platform = to_relay_event("org", PLATFORM)  # type: ignore[arg-type]
    assert (platform.replay_id, platform.date, platform.event_uuid) == (
        7,
        "2026-01-01T00:00:00.000Z",
        "uuid-7",
    )
    assert platform.payload.startswith(b"{")
    cdc = to_relay_event("org", CDC)  # type: ignore[arg-type]
    assert (cdc.replay_id, cdc.date, cdc.event_uuid) == (8, "1767225600000", None)
    topic = to_relay_event("org", TOPIC)  # type: ignore[arg-type]
    assert (topic.channel, topic.replay_id) == ("/topic/Accounts", 9)


@pytest.mark.parametrize(
    "message",
    [
        {"channel": "/event/X__e", "data": {"event": {"replayId": "7"}, "payload": {}}},
        {"channel": "/event/X__e", "data": {"event": {"replayId": 7}, "payload": {}}},
        {
            "channel": "/event/X__e",
            "data": {"event": {"replayId": 7}, "payload": {"CreatedDate": 1}},
        },
        {
            "channel": "/data/X",
            "data": {
                "event": {"replayId": 7},
                "payload": {"ChangeEventHeader": {"commitTimestamp": "x"}},
            },
        },
        {"channel": "/event/X__e", "data": "text"},
    ],
)
def test_to_relay_event_refuses_what_has_no_marker(message: dict[str, Any]) -> None:
    with pytest.raises(ReplayError):
        to_relay_event("org", message)  # type: ignore[arg-type]


def test_odd_but_valid_messages_take_the_slow_path() -> None:
    message = {
        "channel": "/data/X",
        "data": {
            "event": {"replayId": 3},
            "payload": {"ChangeEventHeader": {"commitTimestamp": "1767225600000"}},
        },
    }
    assert to_relay_event("org", message).date == "1767225600000"  # type: ignore[arg-type]


def test_channel_set_validation() -> None:
    with pytest.raises(InvalidArgumentError, match="needs a name"):
        ChannelSet("", ("/e",))
    with pytest.raises(InvalidArgumentError, match="no channels"):
        ChannelSet("a", ())
    with pytest.raises(InvalidArgumentError, match="twice"):
        ChannelSet("a", ("/topic/A", "/topic/A?x=1"))


@pytest.mark.parametrize(
    "options",
    [
        {"lease_ttl": 0},
        {"lease_ttl": float("inf")},  # failed with OverflowError at the first acquire
        {"lease_ttl": float("nan")},
        {"lease_ttl": 1e30},  # Redis refused the expiry: a relay standing by for ever
        {"poll_interval": float("nan")},
        {"batch_size": 0},
    ],
)
def test_relay_arguments_are_checked(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError, match=r"above 0|positive"):
        Relay(ChannelSet("a", ("/e",)), BrokenSink(), lambda *_: None, **options)  # type: ignore[arg-type]


def test_event_lag() -> None:
    event = to_relay_event("org", PLATFORM)  # type: ignore[arg-type]
    lag = event_lag(event, 1767225610.0)
    assert lag == pytest.approx(10.0)
    odd = RelayEvent("o", "/e", 1, "not a date", b"{}")
    assert event_lag(odd, 0) is None


def test_metrics_count_events_lag_and_statuses() -> None:
    metrics = RelayMetrics()
    event = to_relay_event("org", PLATFORM)  # type: ignore[arg-type]
    odd = RelayEvent("o", "/event/Odd__e", 2, "not a date", b"{}")
    metrics.written("orders", [event, event, odd], now=1767225612.0)
    metrics.status("orders", StatusKind.RECONNECTED)
    metrics.status("orders", StatusKind.REAUTHENTICATED)
    metrics.status("orders", StatusKind.PAUSED)
    metrics.set_role("orders", True)
    metrics.leadership("orders")
    text = metrics.exposition().decode()
    assert 'sfstream_relay_events_total{channel="/event/Order__e",set="orders"} 2.0' in text
    assert 'sfstream_relay_lag_seconds{channel="/event/Order__e",set="orders"} 12.0' in text
    assert 'sfstream_relay_reconnects_total{set="orders"} 1.0' in text
    assert 'sfstream_relay_reauthentications_total{set="orders"} 1.0' in text
    assert 'sfstream_relay_leader{set="orders"} 1.0' in text
    assert 'sfstream_relay_last_write_timestamp_seconds{set="orders"} 1.767225612e+09' in text


class BrokenSink(Sink):
    """A sink whose engine is unreachable (the relay's error paths)."""

    kind = "broken"

    async def open(self) -> None:
        raise SinkError("cannot reach the engine")

    async def close(self) -> None:
        return None

    async def acquire(self, name: str, holder: str, ttl: float) -> Lease | None:
        raise SinkError("down")

    async def renew(self, lease: Lease) -> Lease:
        raise SinkError("down")

    async def release(self, lease: Lease) -> None:
        raise SinkError("down")

    async def position(self, org: str, channel: str) -> int | None:
        raise SinkError("down")

    async def write(self, lease: Lease, events: Sequence[RelayEvent]) -> None:
        raise SinkError("down")


async def test_sink_replay_storage_turns_engine_errors_into_replay_errors() -> None:
    storage = SinkReplayStorage(BrokenSink(), "org")
    with pytest.raises(ReplayError, match="cannot read the position") as caught:
        await storage.get_replay_id("/event/X__e")
    assert isinstance(caught.value.__cause__, SinkError)


async def test_run_relays_raises_the_first_error_and_stops_the_others() -> None:
    broken = Relay(ChannelSet("a", ("/e",)), BrokenSink(), lambda *_: None)  # type: ignore[arg-type]
    assert not broken.healthy()
    with pytest.raises(SinkError, match="cannot reach"):
        await run_relays([broken])
    assert broken.status()["role"] == "stopped"
    assert "broken" not in repr(broken)
    assert "'a'" in repr(broken)


async def test_run_relays_cancelled_stops_the_relays() -> None:
    class Standby(BrokenSink):
        async def open(self) -> None:
            return None

    relay = Relay(ChannelSet("a", ("/e",)), Standby(), lambda *_: None, poll_interval=0.01)  # type: ignore[arg-type]
    task = asyncio.create_task(run_relays([relay]))
    await asyncio.sleep(0.1)
    assert relay.role.value == "standby"
    assert relay.lease is None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert relay.role.value == "stopped"


class ElectingSink(BrokenSink):
    """Grants the lease once; then every renewal hangs (an engine electing a leader for long)."""

    def __init__(self) -> None:
        self.granted = 0
        self.renewals = 0

    async def open(self) -> None:
        return None

    async def acquire(self, name: str, holder: str, ttl: float) -> Lease | None:
        if self.granted:
            return None
        self.granted += 1
        return Lease(name, holder, 1, ttl)

    async def renew(self, lease: Lease) -> Lease:
        self.renewals += 1
        await asyncio.Event().wait()  # no answer, for longer than the lease lives
        raise AssertionError("unreachable")


class IdleClient:
    """A Salesforce client that subscribes and then receives nothing."""

    pending_count = 0

    def __init__(self) -> None:
        self.auth = self

    async def authenticate(self) -> None:
        return None

    async def open(self) -> None:
        return None

    async def subscribe(self, channel: str) -> None:
        return None

    async def receive(self) -> Any:
        await asyncio.Event().wait()

    async def receive_many(self, max_count: int = 100) -> list[Any]:
        return [await self.receive()]

    async def close(self) -> None:
        return None


async def test_a_renewal_that_hangs_ends_the_term_when_the_lease_may_have_expired() -> None:
    sink = ElectingSink()
    relay = Relay(
        ChannelSet("a", ("/event/A__e",)),
        sink,
        lambda *_: IdleClient(),  # type: ignore[arg-type]
        lease_ttl=0.4,
        poll_interval=0.01,
    )
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(200):
            if relay.role.value == "leader":
                break
            await asyncio.sleep(0.01)
        assert relay.role.value == "leader"
        # The renewal never answers: once the lease may have expired (0.4 s after it was
        # taken), the relay stops acting as its leader instead of waiting for the engine.
        for _ in range(300):
            if relay.role.value == "standby":
                break
            await asyncio.sleep(0.01)
        assert relay.role.value == "standby"
        assert sink.renewals == 1
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)


def test_lazy_names() -> None:
    assert sfstream.relay.RedisSink.kind == "redis"
    assert sfstream.relay.NatsSink.kind == "nats"
    subject = sfstream.relay.channel_subject("org", "/event/Order__e")
    assert sfstream.relay.subject_channel(subject) == ("org", "/event/Order__e")
    with pytest.raises(AttributeError):
        _ = sfstream.relay.Nothing


@pytest.mark.parametrize(
    ("option", "value", "text"),
    [
        ("--lease-ttl", "x", "expected a number"),
        ("--lease-ttl", "0", "above 0"),
        ("--lease-ttl", "nan", "above 0"),
        ("--lease-ttl", "inf", "at most 86400"),
        ("--metrics", "host:x", "HOST:PORT"),
        ("--replay", "later", "expected new, all"),
    ],
)
def test_bad_option_values(
    capsys: pytest.CaptureFixture[str], option: str, value: str, text: str
) -> None:
    assert main(["relay", "--sink", "redis://h:1/0", option, value, "/event/X__e"]) == 2
    assert text in capsys.readouterr().err


def test_a_metrics_port_in_use_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SFSTREAM_ACCESS_TOKEN", "00Dxx!token")
    monkeypatch.setenv("SFSTREAM_INSTANCE_URL", "http://127.0.0.1:9")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(
            ["relay", "--sink", "redis://127.0.0.1:9/0", "--metrics", f"127.0.0.1:{port}", "/e"]
        )
    err = capsys.readouterr().err
    assert code == 2, err
    assert "cannot serve metrics" in err


def test_relay_batches_are_sequences_of_relay_events() -> None:
    created = {  # a CDC create event: the record's CreatedDate is in the payload too
        "channel": "/data/AccountChangeEvent",
        "data": {
            "payload": {
                "ChangeEventHeader": {"commitTimestamp": 1767225600000},
                "CreatedDate": "2025-01-01T00:00:00.000Z",
            },
            "event": {"replayId": 10},
        },
    }
    stamped = {  # a PushTopic whose record has a CreatedDate field
        "channel": "/topic/Accounts",
        "data": {
            "event": {"replayId": 11, "createdDate": "2026-01-01T00:00:00.000Z"},
            "payload": {"CreatedDate": "2025-01-01T00:00:00.000Z"},
        },
    }
    messages = [PLATFORM, CDC, TOPIC, created, stamped]
    refused: list[ReplayError] = []
    bad = {"channel": "/event/X__e", "data": {"event": {"replayId": "7"}, "payload": {}}}
    batch = to_relay_batch(
        "org",
        [bad, *messages],  # type: ignore[list-item]
        on_error=lambda _message, exc: refused.append(exc),
    )
    assert len(refused) == 1
    expected = [to_relay_event("org", m) for m in messages]  # type: ignore[arg-type]
    assert len(batch) == 5
    assert list(batch) == expected
    assert batch[1] == expected[1]
    assert hash(batch[0]) == hash(expected[0])  # frozen and hashable, as RelayEvent()
    assert list(batch[1:]) == expected[1:]
    assert isinstance(batch[1:], RelayBatch)
    assert batch.replay_ids == [7, 8, 9, 10, 11]
    assert batch.dates[3:] == ["1767225600000", "2026-01-01T00:00:00.000Z"]
    assert batch.event_uuids == ["uuid-7", None, None, None, None]
    assert "5 events" in repr(batch)
    assert list(RelayBatch.of("org", expected)) == expected
    with pytest.raises(ReplayError):
        to_relay_batch("org", [bad])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="same length"):
        RelayBatch("org", ["/e"], [], [], [], [])


class ListClient:
    """A Salesforce client with ``count`` platform events queued, then nothing."""

    def __init__(self, count: int) -> None:
        self.auth = self
        self.queue = [
            {**PLATFORM, "data": {**PLATFORM["data"], "event": {"replayId": i}}}  # type: ignore[dict-item]
            for i in range(1, count + 1)
        ]

    @property
    def pending_count(self) -> int:
        return len(self.queue)

    async def authenticate(self) -> None:
        return None

    async def open(self) -> None:
        return None

    async def subscribe(self, channel: str) -> None:
        return None

    async def receive_many(self, max_count: int = 100) -> list[Any]:
        if not self.queue:
            await asyncio.Event().wait()
        await asyncio.sleep(0)
        taken, self.queue = self.queue[: min(max_count, 7)], self.queue[min(max_count, 7) :]
        return taken

    async def close(self) -> None:
        return None


class SlowSink(BrokenSink):
    """Takes the lease; each write takes a while; records what it got and how many overlap."""

    def __init__(self, depth: int, batches: bool) -> None:
        self.pipeline_depth = depth
        self.takes_batches = batches  # type: ignore[misc]
        self.got: list[Sequence[RelayEvent]] = []
        self.in_flight = self.most = 0

    async def open(self) -> None:
        return None

    async def acquire(self, name: str, holder: str, ttl: float) -> Lease | None:
        return Lease(name, holder, 1, ttl)

    async def renew(self, lease: Lease) -> Lease:
        return lease

    async def release(self, lease: Lease) -> None:
        return None

    async def position(self, org: str, channel: str) -> int | None:
        return None

    async def write(self, lease: Lease, events: Sequence[RelayEvent]) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        self.got.append(events)
        await asyncio.sleep(0.01)
        self.in_flight -= 1


@pytest.mark.parametrize(("depth", "batches"), [(1, False), (3, True)])
async def test_the_relay_keeps_up_to_pipeline_depth_writes_in_flight(
    depth: int, batches: bool
) -> None:
    sink = SlowSink(depth, batches)
    relay = Relay(
        ChannelSet("a", ("/event/Order__e",)),
        sink,
        lambda *_: ListClient(200),  # type: ignore[arg-type]
        batch_size=10,
    )
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(500):
            if relay.written == 200:
                break
            await asyncio.sleep(0.01)
        assert relay.written == 200
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)
    assert sink.most == depth
    assert all(isinstance(events, RelayBatch) is batches for events in sink.got)
    assert all(isinstance(events, list) is not batches for events in sink.got)
    assert [e.replay_id for events in sink.got for e in events] == list(range(1, 201))


def test_a_batch_is_serialised_in_one_call_as_each_message_alone() -> None:
    import orjson

    from sfstream.relay import _runner

    each = _runner._compact_each
    assert each is not None  # orjson (with Fragment) is in the test environment
    tricky: Any = {  # a NUL byte and the split marker in a string, non-ASCII, a nested list
        "channel": "/event/Order__e",
        "data": {
            "payload": {
                "CreatedDate": "2026-01-01T00:00:00.000Z",
                "Note__c": 'a,\x00,b \x00 "é" 😀',
                "Items__c": [1, {"x": None}],
            },
            "event": {"replayId": 12},
        },
    }
    huge: Any = {  # orjson cannot write an integer above 64 bits: the standard library does
        "channel": "/event/Order__e",
        "data": {
            "payload": {"CreatedDate": "2026-01-01T00:00:00.000Z", "Big__c": 2**70},
            "event": {"replayId": 13},
        },
    }
    messages: list[Any] = [PLATFORM, tricky, CDC, TOPIC]
    assert each(messages) == [orjson.dumps(m) for m in messages]
    assert each([tricky]) == [orjson.dumps(tricky)]
    assert each([]) == []
    mixed = each([PLATFORM, huge, tricky])  # type: ignore[list-item]
    assert mixed[0] == orjson.dumps(PLATFORM)
    assert mixed[2] == orjson.dumps(tricky)
    import json

    assert mixed[1] == json.dumps(huge, separators=(",", ":")).encode()
    batch = to_relay_batch("org", [PLATFORM, huge, tricky])  # type: ignore[list-item]
    assert batch.payloads == mixed
    assert [json.loads(p) for p in batch.payloads] == [PLATFORM, huge, tricky]


@pytest.mark.parametrize(
    ("date", "uuid", "plain"),
    [
        ("2026-01-01T00:00:00.000Z", "4f7a0c1e-9d2b", True),
        ("2026-01-01T00:00:00.000Z", None, True),
        ("1767225600000", "a~!{}", True),
        ("2026-01-01 00:00:00", None, False),  # a space
        ("2026-01-01T00:00:00.000Z", "é", False),  # not ASCII
        ("2026-01-01T00:00:00\t", None, False),  # a control character
        ("2026-01-01T00:00:00\x7f", None, False),
        ("", "\r\n", False),
    ],
)
def test_nats_headers_take_dates_and_uuids_as_they_are_only_when_plain(
    date: str, uuid: str | None, plain: bool
) -> None:
    from sfstream.relay._nats import _plain

    batch = RelayBatch("org", ["/e/A"] * 2, [1, 2], ["2026", date], [b"{}"] * 2, [None, uuid])
    assert _plain(batch) is plain


class SlowReleaseSink(BrokenSink):
    """Grants the lease, renews it, and never answers its release (a stop that hangs)."""

    def __init__(self) -> None:
        self.releasing = asyncio.Event()

    async def open(self) -> None:
        return None

    async def acquire(self, name: str, holder: str, ttl: float) -> Lease | None:
        return Lease(name, holder, 1, ttl)

    async def renew(self, lease: Lease) -> Lease:
        return lease

    async def release(self, lease: Lease) -> None:
        self.releasing.set()
        await asyncio.Event().wait()


async def test_a_second_signal_stops_the_command_at_once_with_status_130() -> None:
    import argparse
    import io
    import os
    import signal

    from sfstream.cli._errors import ExitCode
    from sfstream.cli._output import Console
    from sfstream.cli._relay import _Command, _serve

    sink = SlowReleaseSink()
    relay = Relay(
        ChannelSet("a", ("/event/A__e",)),
        sink,
        lambda *_: IdleClient(),  # type: ignore[arg-type]
        lease_ttl=5,
        poll_interval=0.01,
    )
    err = io.StringIO()
    command = _Command(argparse.Namespace(quiet=False), Console(io.StringIO(), err))
    loop = asyncio.get_running_loop()
    serving = asyncio.create_task(_serve([relay], None, None, command))
    try:
        for _ in range(200):
            if relay.role.value == "leader":
                break
            await asyncio.sleep(0.01)
        assert relay.role.value == "leader"
        os.kill(os.getpid(), signal.SIGTERM)  # stop: finish the write, release the lease
        await asyncio.wait_for(sink.releasing.wait(), 5)
        os.kill(os.getpid(), signal.SIGTERM)  # the release hangs: stop at once
        # 130 as after one signal (not a CancelledError traceback), without waiting on.
        assert await asyncio.wait_for(serving, 5) == ExitCode.INTERRUPTED
        assert relay.role.value == "stopped"
        assert "stopping" in err.getvalue()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)


async def test_a_relay_that_takes_the_lease_at_once_never_says_it_stands_by() -> None:
    # "standing by (another relay holds the lease)" is printed on the way to standby: a relay
    # that finds the lease free is the leader without having stood by.
    roles: list[str] = []
    sink = SlowReleaseSink()
    relay = Relay(
        ChannelSet("a", ("/event/A__e",)),
        sink,
        lambda *_: IdleClient(),  # type: ignore[arg-type]
        on_role=lambda _relay, role: roles.append(role.value),
        poll_interval=0.01,
    )
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(200):
            if relay.role.value == "leader":
                break
            await asyncio.sleep(0.01)
        assert roles == ["leader"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert roles == ["leader", "stopped"]
    # Without the lease, a relay stands by after its first attempt.
    standby = Relay(ChannelSet("a", ("/e",)), ElectingSink(), lambda *_: None, poll_interval=0.01)  # type: ignore[arg-type]
    standby_sink = standby.sink
    assert isinstance(standby_sink, ElectingSink)
    standby_sink.granted = 1  # another relay holds it
    task = asyncio.create_task(standby.run())
    try:
        for _ in range(200):
            if standby.role.value == "standby":
                break
            await asyncio.sleep(0.01)
        assert standby.role.value == "standby"
    finally:
        standby.stop()
        await asyncio.wait_for(task, 5)
