"""The NATS JetStream sink against a real ``nats-server`` (2.9, started per test on loopback).

Covers the sink's contract (:mod:`sfstream.relay._sink`): events and positions in one message,
order per channel, skipping what is already stored, the lease (compare-and-set on a key-value
bucket, expiry by observation, takeover with a larger token) and the fencing of an ex-leader,
plus a retried publish whose acknowledgement was lost (JetStream's ``Nats-Msg-Id`` dedup).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.js.api import ConsumerConfig, RetentionPolicy

from sfstream.exceptions import InvalidArgumentError, SfstreamError
from sfstream.relay import Lease, LeaseLost, RelayEvent, SinkError, _nats
from sfstream.relay._nats import (
    NatsSink,
    channel_subject,
    decode_token,
    encode_token,
    subject_channel,
)
from tests.relay import _nats_servers
from tests.relay._nats_servers import NatsServer, ReplyDropper

ORG = "00Dxx0000001gEREAY"
ORDERS = "/event/Order__e"
SHIPMENTS = "/event/Shipment__e"


def event(replay_id: int, channel: str = ORDERS, org: str = ORG, size: int = 0) -> RelayEvent:
    """An event; ``size`` pads its message with that many more bytes."""
    payload: dict[str, object] = {
        "channel": channel,
        "data": {"event": {"replayId": replay_id}, "payload": {}},
    }
    if size:
        payload["pad"] = "x" * size
    return RelayEvent(
        org=org,
        channel=channel,
        replay_id=replay_id,
        date="2026-12-07T04:00:00.000Z",
        payload=json.dumps(payload).encode(),
        event_uuid=f"uuid-{replay_id}",
    )


@pytest.fixture
async def sink(nats_server: NatsServer) -> AsyncIterator[NatsSink]:
    async with NatsSink(nats_server.url, request_timeout=1.0, retry_for=5.0) as opened:
        yield opened


async def stored(server_url: str, stream: str = "SFSTREAM") -> list[tuple[str, int, bytes]]:
    """Every message of ``stream`` as (subject, replay id header, payload), in stream order."""
    nc = await nats.connect(server_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg(stream, seq)
            assert message.subject is not None
            assert message.headers is not None
            out.append(
                (message.subject, int(message.headers["Sfstream-Replay-Id"]), message.data or b"")
            )
        return out
    finally:
        await nc.close()


async def take_over(
    sink: NatsSink, name: str, holder: str, ttl: float, within: float | None = None
) -> Lease:
    """Poll ``acquire`` as a standby does until it gets the lease (bounded)."""
    async with asyncio.timeout(within or ttl * 4 + 5):
        while True:
            lease = await sink.acquire(name, holder, ttl)
            if lease is not None:
                return lease
            await asyncio.sleep(ttl / 10)


# -- subjects and URLs (no server) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "subject"),
    [
        ("/event/Order__e", "sfstream.00D1.event.Order__e"),
        ("/data/ChangeEvents", "sfstream.00D1.data.ChangeEvents"),
        ("/data/AccountChangeEvent", "sfstream.00D1.data.AccountChangeEvent"),
        ("/topic/Acc?Type=Partner", "sfstream.00D1.topic.Acc~3FType~3DPartner"),
        ("/u/a.b c*>~", "sfstream.00D1.u.a~2Eb~20c~2A~3E~7E"),
        ("/event//x/", "sfstream.00D1.event.~.x.~"),
        ("/event/Café", "sfstream.00D1.event.Caf~C3~A9"),
    ],
)
def test_channel_subjects_are_valid_nats_subjects_and_reversible(
    channel: str, subject: str
) -> None:
    assert channel_subject("00D1", channel) == subject
    assert subject_channel(subject) == ("00D1", channel)
    for token in subject.split("."):
        assert token
        assert not set(token) & {"*", ">", " ", "\t", "\r", "\n"}


@given(st.text(min_size=0, max_size=30))
def test_encode_token_round_trips_and_never_holds_separators(text: str) -> None:
    token = encode_token(text)
    assert decode_token(token) == text
    assert token
    assert all(c.isascii() and (c.isalnum() or c in "_-~") for c in token)


@pytest.mark.parametrize("token", ["~", "~4", "~zz", "a.b", "~FF", "é"])
def test_decode_token_refuses_what_encode_token_never_makes(token: str) -> None:
    if token == "~":
        assert decode_token(token) == ""
        return
    with pytest.raises(InvalidArgumentError, match="not an encoded subject token"):
        decode_token(token)


def test_subject_channel_refuses_foreign_subjects() -> None:
    with pytest.raises(InvalidArgumentError, match="does not start with"):
        subject_channel("other.00D1.event.X")
    with pytest.raises(InvalidArgumentError, match="names no channel"):
        subject_channel("sfstream.00D1")


def test_channel_without_leading_slash_is_a_sink_error() -> None:
    with pytest.raises(SinkError, match="not a Salesforce channel"):
        channel_subject(ORG, "event/Order__e")


def test_url_lists_and_options() -> None:
    sink = NatsSink(
        "nats://127.0.0.1:4222, nats://127.0.0.2:4223?replicas=3&stream=EVENTS&bucket=leases"
    )
    assert sink._servers == ["nats://127.0.0.1:4222", "nats://127.0.0.2:4223"]
    assert sink.stream == "EVENTS"
    assert sink.bucket == "leases"
    assert sink._replicas == 3
    assert NatsSink("nats://h?stream=A", stream="B").stream == "B"  # keywords win
    assert NatsSink("nats://h").prefix == "sfstream"


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("redis://h:6379", {}, "not a NATS URL"),
        ("", {}, "no NATS server URL"),
        ("nats://h:99999", {}, "invalid NATS URL"),
        ("nats://h?colour=red", {}, "unknown NATS sink option"),
        ("nats://h?replicas=three", {}, "replicas must be an integer"),
        ("nats://h", {"replicas": 7}, "between 1 and 5"),
        ("nats://h", {"stream": "a.b"}, "invalid stream name"),
        ("nats://h", {"bucket": "a b"}, "invalid bucket name"),
        ("nats://h", {"prefix": "a.>"}, "invalid subject prefix"),
        ("nats://h", {"request_timeout": 0}, "must be > 0"),
    ],
)
def test_bad_configuration_is_a_clear_sink_error(
    url: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(SinkError, match=message):
        NatsSink(url, **kwargs)  # type: ignore[arg-type]


def test_password_in_url_is_never_shown() -> None:
    sink = NatsSink("nats://relay:s3cret-pw@127.0.0.1:4222")
    assert "s3cret-pw" not in repr(sink)
    with pytest.raises(SinkError) as raised:
        NatsSink("nats://relay:s3cret-pw@127.0.0.1:4222?bogus=1,redis://u:s3cret-pw@h")
    assert "s3cret-pw" not in str(raised.value)


async def test_unreachable_server_is_a_sink_error() -> None:
    from tests.relay._nats_servers import free_port

    sink = NatsSink(f"nats://u:s3cret-pw@127.0.0.1:{free_port()}", connect_timeout=1.0)
    with pytest.raises(SinkError, match="cannot connect to NATS") as raised:
        await sink.open()
    assert "s3cret-pw" not in str(raised.value)
    assert isinstance(raised.value, SfstreamError)


async def test_not_open_is_a_sink_error() -> None:
    sink = NatsSink("nats://127.0.0.1:4222")
    with pytest.raises(SinkError, match="not open"):
        await sink.position(ORG, ORDERS)


# -- stream and positions ---------------------------------------------------------------------


async def test_open_creates_stream_and_bucket_once(nats_server: NatsServer) -> None:
    async with NatsSink(nats_server.url) as first, NatsSink(nats_server.url) as second:
        assert await first.position(ORG, ORDERS) is None
        assert await second.position(ORG, ORDERS) is None
    nc = await nats.connect(nats_server.url)
    try:
        info = await nc.jetstream().stream_info("SFSTREAM")
        assert info.config.subjects == ["sfstream.>"]
        kv = await nc.jetstream().stream_info("KV_sfstream-leases")
        assert kv.config.max_msgs_per_subject == 1
    finally:
        await nc.close()
    # closing twice is fine, and a closed sink is not reopened by accident
    await first.close()
    with pytest.raises(SinkError, match="closed"):
        await first.open()


async def test_existing_stream_with_other_subjects_is_refused(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().add_stream(name="SFSTREAM", subjects=["elsewhere.>"])
    finally:
        await nc.close()
    with pytest.raises(SinkError, match="does not hold the subjects"):
        async with NatsSink(nats_server.url):
            pass


async def test_write_then_position_per_channel(sink: NatsSink, nats_server: NatsServer) -> None:
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    batch = [event(11), event(5, SHIPMENTS), event(12), event(6, SHIPMENTS), event(13)]
    await sink.write(lease, batch)
    assert await sink.position(ORG, ORDERS) == 13
    assert await sink.position(ORG, SHIPMENTS) == 6
    assert await sink.position("another-org", ORDERS) is None
    messages = await stored(nats_server.url)
    orders = [(r, p) for s, r, p in messages if s == "sfstream.00Dxx0000001gEREAY.event.Order__e"]
    assert [r for r, _ in orders] == [11, 12, 13]  # in order within the channel
    assert json.loads(orders[0][1])["data"]["event"]["replayId"] == 11  # payload as given
    assert sorted(r for _, r, _ in messages) == [5, 6, 11, 12, 13]
    assert sink.stats.written == 5


async def test_headers_carry_the_event_description(sink: NatsSink, nats_server: NatsServer) -> None:
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(7, "/topic/Acc?Type=Partner")])
    nc = await nats.connect(nats_server.url)
    try:
        subject = channel_subject(ORG, "/topic/Acc?Type=Partner")
        message = await nc.jetstream().get_last_msg("SFSTREAM", subject)
        assert message.headers is not None
        # Where it came from is the subject's to say (no header repeats it on every message).
        assert subject_channel(message.subject or "") == (ORG, "/topic/Acc?Type=Partner")
        assert "Sfstream-Channel" not in message.headers
        assert "Sfstream-Org" not in message.headers
        assert message.headers["Sfstream-Replay-Id"] == "7"
        assert message.headers["Sfstream-Event-Uuid"] == "uuid-7"
        assert message.headers["Sfstream-Date"] == "2026-12-07T04:00:00.000Z"
        assert message.headers["Nats-Msg-Id"] == f"{subject}:7"
    finally:
        await nc.close()


async def test_events_already_stored_are_skipped(sink: NatsSink, nats_server: NatsServer) -> None:
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1), event(2), event(3)])
    await sink.write(lease, [event(2), event(3), event(4)])  # a resubscription repeats 2 and 3
    assert [r for _, r, _ in await stored(nats_server.url)] == [1, 2, 3, 4]
    assert sink.stats.skipped == 2
    # a new sink (a restarted relay) knows the position only from the engine
    async with NatsSink(nats_server.url) as again:
        new_lease = await again.acquire("other-set", "relay-b", 10)
        assert new_lease is not None
        await again.write(new_lease, [event(3), event(4), event(5)])
    assert [r for _, r, _ in await stored(nats_server.url)] == [1, 2, 3, 4, 5]


async def test_retried_publish_whose_ack_was_lost_is_stored_once(nats_server: NatsServer) -> None:
    async with (
        ReplyDropper(nats_server.port) as proxy,
        # one message at a time: the careful path, which retries a request without an answer
        NatsSink(proxy.url, request_timeout=0.5, retry_for=10.0, pipeline=False) as sink,
    ):
        lease = await sink.acquire("orders", "relay-a", 10)
        assert lease is not None
        await sink.write(lease, [event(1)])
        proxy.drop_next(b'{"stream":"SFSTREAM", "seq":2}')  # the ack of the next event
        await sink.write(lease, [event(2), event(3)])
        assert proxy.dropped == 1  # the first ack of event 2 never reached the sink
        assert sink.stats.retries >= 1
        assert sink.stats.duplicates == 1  # the retry was recognised by its Nats-Msg-Id
        assert await sink.position(ORG, ORDERS) == 3
    assert [r for _, r, _ in await stored(nats_server.url)] == [1, 2, 3]


async def test_a_pipelined_batch_whose_acks_were_lost_is_stored_once(
    nats_server: NatsServer,
) -> None:
    async with (
        ReplyDropper(nats_server.port) as proxy,
        NatsSink(proxy.url, request_timeout=0.5, retry_for=10.0) as sink,
    ):
        lease = await sink.acquire("orders", "relay-a", 10)
        assert lease is not None
        await sink.write(lease, [event(1)])
        # the batch's only acknowledgement: that of its last message
        proxy.drop_next(b'{"stream":"SFSTREAM", "seq":4}')
        await sink.write(lease, [event(2), event(3), event(4, SHIPMENTS)])
        assert proxy.dropped == 1
        assert sink.stats.conflicts == 1  # the batch went on one message at a time...
        assert sink.stats.skipped >= 1  # ...and found what the pipeline had stored
        await sink.write(lease, [event(4), event(5, SHIPMENTS)])  # pipelined again
        assert await sink.position(ORG, ORDERS) == 4
    assert [r for _, r, _ in await stored(nats_server.url)] == [1, 2, 3, 4, 4, 5]


async def test_the_chain_refuses_the_rest_of_a_batch_after_another_write(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipelined batch is stored only as an unbroken chain (Nats-Expected-Last-Msg-Id): a
    message another writer slips in between two of the batch's refuses the rest, which goes on
    from the subject's stored position; no replay id is stored twice."""
    monkeypatch.setattr(_nats, "_CHUNK", 6)  # two messages a piece
    subject = channel_subject(ORG, ORDERS)

    async with NatsSink(nats_server.url) as sink:
        lease = await sink.acquire("orders", "relay-a", 10)
        assert lease is not None
        nc: Any = sink._nc
        original = nc._send_command
        pieces = 0

        async def send_command(command: bytes, priority: bool = False) -> None:
            nonlocal pieces
            await original(command, priority)
            if b"HPUB " in command:
                pieces += 1
                if pieces == 1:  # on the same connection: right after the batch's first piece
                    await nc.publish(
                        subject, b"{}", headers={"Sfstream-Replay-Id": "2", "Nats-Msg-Id": "x"}
                    )

        nc._send_command = send_command
        await sink.write(lease, [event(n) for n in range(1, 6)])
        assert pieces >= 3
        assert sink.stats.conflicts == 1
        # 1 was stored by the batch's first piece, 2 by the other writer: 3, 4, 5 follow them
        assert sink.stats.skipped == 2
    assert [r for s, r, _ in await stored(nats_server.url) if s == subject] == [1, 2, 3, 4, 5]


async def test_engine_unavailable_for_too_long_is_a_sink_error(nats_server: NatsServer) -> None:
    async with NatsSink(nats_server.url, request_timeout=0.2, retry_for=0.5) as sink:
        lease = await sink.acquire("orders", "relay-a", 10)
        assert lease is not None
        nats_server.stop()
        with pytest.raises(SinkError, match="did not answer"):
            await sink.write(lease, [event(1)])


# -- the lease --------------------------------------------------------------------------------


async def test_lease_is_exclusive_renewable_and_released(nats_server: NatsServer) -> None:
    async with NatsSink(nats_server.url) as a, NatsSink(nats_server.url) as b:
        lease_a = await a.acquire("orders", "relay-a", 5)
        assert lease_a is not None
        assert lease_a.holder == "relay-a"
        assert await b.acquire("orders", "relay-b", 5) is None
        assert await b.acquire("orders", "relay-b", 5) is None  # not expired: renewals below
        renewed = await a.renew(lease_a)
        assert renewed == lease_a
        assert await a.renew(renewed) == lease_a  # the token stays while the holder stays
        await b.release(Lease("orders", "relay-b", lease_a.token + 1, 5))  # not b's: no effect
        assert await b.acquire("orders", "relay-b", 5) is None
        await a.release(lease_a)
        await a.release(lease_a)  # twice: nothing happens, no LeaseLost
        lease_b = await b.acquire("orders", "relay-b", 5)  # released: free at once
        assert lease_b is not None
        assert lease_b.token > lease_a.token
        with pytest.raises(LeaseLost):
            await a.renew(lease_a)
        other = await a.acquire("shipments", "relay-a", 5)  # another channel set, own lease
        assert other is not None
        assert other.token > lease_b.token


async def test_standby_takes_over_an_expired_lease_with_a_larger_token(
    nats_server: NatsServer,
) -> None:
    ttl = 1.5  # renewals every 0.25 s stay well inside it on a loaded machine
    async with NatsSink(nats_server.url) as a, NatsSink(nats_server.url) as b:
        lease_a = await a.acquire("orders", "relay-a", ttl)
        assert lease_a is not None
        # while a renews, b never gets the lease, however long it waits
        loop = asyncio.get_running_loop()
        until = loop.time() + ttl * 3
        while loop.time() < until:
            assert await b.acquire("orders", "relay-b", ttl) is None
            lease_a = await a.renew(lease_a)
            await asyncio.sleep(ttl / 6)
        # a stops renewing (dies): b takes over, not before one TTL of its own observation
        first_look = loop.time()
        lease_b = await take_over(b, "orders", "relay-b", ttl)
        assert loop.time() - first_look >= ttl
        assert lease_b.token > lease_a.token
        with pytest.raises(LeaseLost):
            await a.renew(lease_a)


async def test_ex_leader_cannot_write_after_a_takeover(nats_server: NatsServer) -> None:
    ttl = 0.4
    async with NatsSink(nats_server.url) as a, NatsSink(nats_server.url) as b:
        lease_a = await a.acquire("orders", "relay-a", ttl)
        assert lease_a is not None
        await a.write(lease_a, [event(1), event(1, SHIPMENTS)])
        lease_b = await take_over(b, "orders", "relay-b", ttl)  # a paused, its lease expired
        assert await b.position(ORG, ORDERS) == 1  # b resumes from the engine
        with pytest.raises(LeaseLost):
            await a.write(lease_a, [event(2), event(2, SHIPMENTS)])
        await b.write(lease_b, [event(2), event(3)])
        with pytest.raises(LeaseLost):
            await a.write(lease_a, [event(4)])
    assert sorted(r for _, r, _ in await stored(nats_server.url)) == [1, 1, 2, 3]


class CheckedTooEarly(NatsSink):
    """A sink whose next lease check happened just before a takeover (the race window).

    Its first check answers from before the takeover; later checks read the engine.
    """

    stale_checks = 0

    def _check_valid(self, lease: Lease) -> float:
        # Its own clock says the lease is still valid (a process paused between the check and
        # the publish): only the stream's fencing is left to refuse it.
        return asyncio.get_running_loop().time() + 60

    async def _current(self, lease: Lease):
        if self.stale_checks:
            self.stale_checks -= 1
            _, entry = await self._read_lease("orders")
            assert entry is not None
            return type(entry)(entry.revision, lease.holder, lease.token, lease.ttl)
        return await super()._current(lease)


@pytest.mark.parametrize(
    ("replay_ids", "refused_by"),
    [
        ([3], "conflicts"),  # Nats-Expected-Last-Subject-Sequence no longer matches
        ([2, 3], "duplicates"),  # event 2 is stored (by b): a duplicate ack makes a check again
    ],
)
async def test_the_stream_fences_an_ex_leader_that_checked_its_lease_too_early(
    nats_server: NatsServer, replay_ids: list[int], refused_by: str
) -> None:
    ttl = 0.4
    ex_leader = CheckedTooEarly(nats_server.url, pipeline=False)  # one message at a time
    async with ex_leader as a, NatsSink(nats_server.url) as b:
        lease_a = await a.acquire("orders", "relay-a", ttl)
        assert lease_a is not None
        await a.write(lease_a, [event(1)])
        lease_b = await take_over(b, "orders", "relay-b", ttl)
        await b.write(lease_b, [event(2)])
        a.stale_checks = 1  # a's check passes, its publish expects the sequence of event 1
        with pytest.raises(LeaseLost):
            await a.write(lease_a, [event(n) for n in replay_ids])
        assert getattr(a.stats, refused_by) == 1
        assert a.stats.written == 1
    assert [r for _, r, _ in await stored(nats_server.url)] == [1, 2]


@pytest.mark.parametrize(
    ("replay_ids", "refused"),
    [
        # 3 expects a's own last message (sequence and id) at the end of the stream: refused
        ([3], True),
        # 2 is b's (a duplicate answer, which skips the other checks); 3 follows it in the
        # chain: the very next event, once, in order. Only the batch's last message is
        # acknowledged, so a learns of the takeover at its next batch's lease check.
        ([2, 3], False),
    ],
)
async def test_a_pipelined_ex_leader_that_checked_too_early_appends_nothing_out_of_order(
    nats_server: NatsServer, replay_ids: list[int], refused: bool
) -> None:
    ttl = 0.4
    async with CheckedTooEarly(nats_server.url) as a, NatsSink(nats_server.url) as b:
        lease_a = await a.acquire("orders", "relay-a", ttl)
        assert lease_a is not None
        await a.write(lease_a, [event(1)])
        lease_b = await take_over(b, "orders", "relay-b", ttl)
        await b.write(lease_b, [event(2)])
        a.stale_checks = 1
        if refused:
            with pytest.raises(LeaseLost):
                await a.write(lease_a, [event(n) for n in replay_ids])
            assert a.stats.written == 1
        else:
            await a.write(lease_a, [event(n) for n in replay_ids])
            with pytest.raises(LeaseLost):
                await a.write(lease_a, [event(4)])
        lease_b = await b.renew(lease_b)
        await b.write(lease_b, [event(3), event(4)])  # b goes on: 3 is skipped if a stored it
    assert [r for _, r, _ in await stored(nats_server.url)] == [1, 2, 3, 4]


async def test_no_write_once_the_lease_may_have_expired(nats_server: NatsServer) -> None:
    """Not renewed for one TTL: a standby may hold the lease now, so the sink writes nothing
    more under it, even though nobody took it yet (the bucket would still say "yours")."""
    ttl = 0.4
    async with NatsSink(nats_server.url) as a:
        lease = await a.acquire("orders", "relay-a", ttl)
        assert lease is not None
        await a.write(lease, [event(1)])
        await asyncio.sleep(ttl)
        with pytest.raises(LeaseLost, match="may have expired"):
            await a.write(lease, [event(2)])
        assert a.stats.conflicts == 0  # refused before any publish
        lease = await a.renew(lease)  # still its lease in the bucket: renewing revives it
        await a.write(lease, [event(2)])
    assert [r for _, r, _ in await stored(nats_server.url)] == [1, 2]


async def test_a_write_by_another_process_under_the_same_lease_is_adopted(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1)])
    # Someone else appends event 2 (e.g. an ex-leader within the race window).
    nc = await nats.connect(nats_server.url)
    try:
        subject = channel_subject(ORG, ORDERS)
        await nc.jetstream().publish(subject, b"{}", headers={"Sfstream-Replay-Id": "2"})
    finally:
        await nc.close()
    await sink.write(lease, [event(2), event(3)])  # 2 is there already: skipped, 3 follows it
    assert [r for _, r, _ in await stored(nats_server.url)] == [1, 2, 3]
    assert sink.stats.conflicts == 1
    assert sink.stats.skipped == 1


async def test_a_foreign_message_on_a_subject_is_a_clear_error(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().publish(channel_subject(ORG, ORDERS), b"not from sfstream")
    finally:
        await nc.close()
    with pytest.raises(SinkError, match="no Sfstream-Replay-Id header"):
        await sink.position(ORG, ORDERS)


async def test_a_pull_consumer_receives_the_events_in_order(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(n) for n in range(1, 21)])
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        pull = await js.pull_subscribe(
            "sfstream.*.event.>", durable="workers", config=ConsumerConfig(ack_wait=5)
        )
        seen: list[int] = []
        while len(seen) < 20:
            for message in await pull.fetch(10, timeout=2):
                seen.append(int(message.headers["Sfstream-Replay-Id"]))  # type: ignore[index]
                await message.ack()
        assert seen == list(range(1, 21))
    finally:
        await nc.close()


# -- edges ------------------------------------------------------------------------------------


async def test_open_twice_is_one_connection(sink: NatsSink) -> None:
    nc = sink._nc
    await sink.open()
    assert sink._nc is nc


async def test_existing_work_queue_stream_is_refused(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().add_stream(
            name="SFSTREAM", subjects=["sfstream.>"], retention=RetentionPolicy.WORK_QUEUE
        )
    finally:
        await nc.close()
    with pytest.raises(SinkError, match="needs limits retention"):
        async with NatsSink(nats_server.url):
            pass


async def test_event_the_stream_refuses_is_a_sink_error(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().add_stream(name="SFSTREAM", subjects=["sfstream.>"], max_msg_size=512)
    finally:
        await nc.close()
    async with NatsSink(nats_server.url) as sink:
        lease = await sink.acquire("orders", "relay-a", 10)
        assert lease is not None
        big = RelayEvent(ORG, ORDERS, 1, "", b"x" * 2048)
        with pytest.raises(SinkError, match="JetStream refused an event"):
            await sink.write(lease, [big])
        assert await sink.position(ORG, ORDERS) is None


@pytest.mark.parametrize("pipelined", [True, False])
async def test_non_ascii_header_values_are_percent_encoded(
    sink: NatsSink, nats_server: NatsServer, pipelined: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    strange = RelayEvent(ORG, "/event/Café__e", 3, "mañana", b"{}", event_uuid="ü-1")
    if not pipelined:  # the one-by-one path (nats-py's own publish)
        monkeypatch.setattr(_nats, "_raw_sender", lambda nc: None)
    await sink.write(lease, [strange])
    assert await sink.position(ORG, "/event/Café__e") == 3
    nc = await nats.connect(nats_server.url)
    try:
        message = await nc.jetstream().get_last_msg(
            "SFSTREAM", channel_subject(ORG, "/event/Café__e")
        )
        assert message.headers is not None
        assert message.headers["Sfstream-Date"] == "ma%C3%B1ana"
        assert message.headers["Sfstream-Event-Uuid"] == "%C3%BC-1"
        assert subject_channel(message.subject or "") == (ORG, "/event/Café__e")  # exact
    finally:
        await nc.close()


async def test_unreadable_lease_value_counts_as_free(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().publish("$KV.sfstream-leases.orders", b"not json")
    finally:
        await nc.close()
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    assert lease.token == 2


async def test_invalid_ttl_and_replay_id_header_are_sink_errors(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    with pytest.raises(SinkError, match="TTL must be > 0"):
        await sink.acquire("orders", "relay-a", 0)
    nc = await nats.connect(nats_server.url)
    try:
        subject = channel_subject(ORG, ORDERS)
        await nc.jetstream().publish(subject, b"{}", headers={"Sfstream-Replay-Id": "x"})
    finally:
        await nc.close()
    with pytest.raises(SinkError, match="invalid Sfstream-Replay-Id"):
        await sink.position(ORG, ORDERS)


async def test_renew_refused_by_the_bucket_is_lease_lost(nats_server: NatsServer) -> None:
    async with NatsSink(nats_server.url) as a:
        lease = await a.acquire("orders", "relay-a", 10)
        assert lease is not None
        # a writer that read the same revision renews first: a's compare-and-set must fail
        real_current = a._current

        async def current_then_someone_writes(held: Lease):
            entry = await real_current(held)
            nc = await nats.connect(nats_server.url)
            try:
                await nc.jetstream().publish("$KV.sfstream-leases.orders", b"{}")
            finally:
                await nc.close()
            return entry

        a._current = current_then_someone_writes  # type: ignore[method-assign,assignment]
        with pytest.raises(LeaseLost, match="while renewing"):
            await a.renew(lease)


async def test_open_waits_for_jetstream_longer_than_one_request(tmp_path: Path) -> None:
    # Connected, but JetStream does not answer yet (here: a server without it, started again
    # with it; a starting cluster electing its meta leader looks the same): a relay that
    # starts then waits for it, instead of exiting after retry_for.
    server = NatsServer(tmp_path, jetstream=False)
    server.start()
    server.wait_ready()
    sink = NatsSink(server.url, request_timeout=0.5, retry_for=0.5)
    opening = asyncio.ensure_future(sink.open())
    try:
        await asyncio.sleep(2.0)
        assert not opening.done(), opening.exception() or "opened"  # still waiting
        server.stop()
        server.jetstream = True
        server.start()
        await asyncio.to_thread(server.wait_ready)
        await asyncio.wait_for(opening, 30)
        lease = await sink.acquire("orders", "relay-a", 5)
        assert lease is not None
    finally:
        opening.cancel()
        await asyncio.gather(opening, return_exceptions=True)
        await sink.close()
        server.stop()


def test_a_test_server_whose_port_was_taken_meanwhile_starts_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tests' servers pick a free port, then bind it: a connection made in between may
    take it as its local port. The server is then started again on new ports."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = iter([busy])
        real = _nats_servers.free_port
        monkeypatch.setattr(_nats_servers, "free_port", lambda: next(picks, 0) or real())
        with NatsServer(tmp_path, jetstream=False) as server:
            assert server.port != busy
            assert server.ready()
    assert f"127.0.0.1:{busy}" in server.log.read_text()  # the first start failed on it
