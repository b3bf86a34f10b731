"""The NATS sink's chain across batch boundaries, against a real ``nats-server`` (2.9).

A batch chained on the previous one (stored, or still in flight) leaves the subject and stream
expectations out of its first message when that message has the subject of the message it is
chained on: the chain implies them. That holds because JetStream sets the stream's last message
id on every message it stores (to "" for a message without ``Nats-Msg-Id``), so a message stored
with ``Nats-Expected-Last-Msg-Id: <subject>:<replay id>`` lands right after that event of its
own subject. These tests put something else where the chain planned a message, at each batch
boundary (another channel set, a foreign publisher without message id, an ex-leader, a batch
whose end never reached the server, a chain started again from the stream's end, a write that
had nothing to write), and check that the stream holds every event once, in replay-id order
per subject, with nothing stored after a gap.

They were run against the rule broken on purpose. Without ``Nats-Expected-Last-Msg-Id`` on a
chained message, the first three (foreign message, lost batch, ex-leader) lose an event; with a
chain start taken for a continuation, Orders 3 lands after Orders 50 and the ex-leader is not
fenced out; with the chain kept across a term, no chain starts from the stream's end. The
others pin what the rule must keep doing (the anchor keeps its subject through a write with
nothing to write; a batch chained on a copy goes on one by one and counts the duplicate): the
old rule, or a chained message that expects only its sequence or only the last message id,
fails their header checks, though their stream content stays right.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

from sfstream.relay import LeaseLost, _nats
from sfstream.relay._nats import NatsSink, channel_subject
from tests.relay._nats_servers import NatsServer
from tests.relay.test_nats_pipeline import (
    Recorder,
    another_channel_set_writes,
    first_headers,
    message_headers,
    replay_ids,
    slow_answers,
    stored,
)
from tests.relay.test_nats_sink import ORDERS, ORG, SHIPMENTS, event

ORDERS_SUBJECT = channel_subject(ORG, ORDERS)
#: a subject of the stream that belongs to no channel set of these tests
OTHER = "sfstream.other.event.X__e"


@pytest.fixture
async def sink(nats_server: NatsServer) -> AsyncIterator[NatsSink]:
    async with NatsSink(nats_server.url, request_timeout=1.0, retry_for=5.0) as opened:
        yield opened


async def publish(url: str, subject: str, headers: dict[str, str]) -> int:
    """Publish one message from a connection of its own; its stream sequence."""
    nc = await nats.connect(url)
    try:
        ack = await nc.jetstream().publish(subject, b"{}", headers=headers)
        return int(ack.seq)
    finally:
        await nc.close()


def chained_on(block: bytes, message_id: str, sequence: int) -> bool:
    """Whether a message's headers expect ``message_id`` at ``sequence`` as the stream's last
    message, and neither the subject's last sequence nor the stream (the chain implies both)."""
    return (
        f"Nats-Expected-Last-Msg-Id: {message_id}\r\n".encode() in block
        and f"Nats-Expected-Last-Sequence: {sequence}\r\n".encode() in block
        and b"Nats-Expected-Last-Subject-Sequence: " not in block
        and b"Nats-Expected-Stream: " not in block
    )


async def test_a_message_without_id_where_a_batch_in_flight_was_planned(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """A foreign publisher (no ``Nats-Msg-Id``) stores a message between two batches: W1
    (Orders 2, chained on Orders 1) is refused, and W2 (Orders 3), sent chained on W1 before
    W1's answer, expects the stream's last sequence to be 2, which it is (the foreign message
    took Orders 2's place). Only the last message id it expects refuses it: without it, Orders
    3 would be stored after the foreign message and Orders 2 skipped by W1's retry (its replay
    id below the subject's position) and lost."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1)])
    seq = await publish(nats_server.url, OTHER, {"Sfstream-Replay-Id": "1"})
    assert seq == 2  # where this writer's chain plans Orders 2
    slow_answers(sink, 0.5)  # W1's refusal comes after W2 went out chained on it
    recorder = Recorder(sink)
    first = asyncio.ensure_future(sink.write(lease, [event(2)]))
    await asyncio.sleep(0)  # begun first, as the relay begins its writes
    second = asyncio.ensure_future(sink.write(lease, [event(3)]))
    await asyncio.gather(first, second)
    w1, w2 = (first_headers(command) for command in recorder.commands[:2])
    assert chained_on(w1, f"{ORDERS_SUBJECT}:1", 1)
    assert chained_on(w2, f"{ORDERS_SUBJECT}:2", 2)
    assert sink.stats.conflicts >= 1
    messages = await stored(nats_server.url)
    assert messages[1] == (OTHER, 1)
    assert replay_ids(messages) == [1, 2, 3]
    assert len(messages) == 4
    await sink.write(lease, [event(4)])  # and it goes on
    assert replay_ids(await stored(nats_server.url)) == [1, 2, 3, 4]


async def test_a_batch_chained_on_one_that_never_reached_the_server(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """W1 (Orders 2, Orders 3) never reaches the server (taken out of the connection's queue
    when it broke, or lost with it), and another channel set's two messages land at the
    sequences planned for it. W2 (Orders 4), chained on W1's planned end, finds the stream's
    last sequence where it expects it: the last message id must refuse it, or Orders 4 follows
    Orders 1 and W1's one-by-one path skips Orders 2 and 3 for good."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1)])
    recorder = Recorder(sink)
    held: list[bytes] = []
    send = recorder.send
    w1 = f"Nats-Msg-Id: {ORDERS_SUBJECT}:2\r\n".encode()

    async def losing(command: bytes, priority: bool = False) -> None:
        if not held and w1 in command:
            held.append(command)  # never reaches the server
            # Another channel set writes meanwhile.
            for n in (7, 8):
                await recorder.nc.publish(
                    OTHER, b"{}", headers={"Sfstream-Replay-Id": str(n), "Nats-Msg-Id": f"o:{n}"}
                )
            return
        await send(command, priority)

    recorder.nc._send_command = losing
    first = asyncio.ensure_future(sink.write(lease, [event(2), event(3)]))
    # W2 begins a moment later: its lease check is read afresh (the read sent ahead of W1 was
    # lost with it), and it goes out chained on W1, not yet answered.
    await asyncio.sleep(_nats._CHECK_FRESH * 2)
    second = asyncio.ensure_future(sink.write(lease, [event(4)]))
    await asyncio.gather(first, second)
    assert held
    w2 = next(command for command in recorder.commands if b"Sfstream-Replay-Id: 4\r\n" in command)
    assert chained_on(first_headers(w2), f"{ORDERS_SUBJECT}:3", 3)
    messages = await stored(nats_server.url)
    assert messages[1:3] == [(OTHER, 7), (OTHER, 8)]  # W2 expected sequence 3 as the last
    assert replay_ids(messages) == [1, 2, 3, 4]
    assert len(messages) == 6


@pytest.mark.parametrize("start", ["new term", "after a refused batch"])
async def test_a_chain_started_from_the_stream_end_expects_its_subjects_position(
    sink: NatsSink, nats_server: NatsServer, start: str
) -> None:
    """A chain read from the stream's end knows neither who wrote the last message nor its
    subject: its first message expects its subject's position even when the stream's last
    message is of that subject. Here a new leader takes the lease and writes Orders 50 between
    this writer's reading of the Orders position and of the stream's end (so the stream's last
    message is an Orders one, at the sequence the chain expects): Orders 3 must be refused,
    and the ex-leader fenced out (taken for a continuation, Orders 3 would be stored after
    Orders 50)."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1), event(2)])
    if start == "new term":
        await sink.release(lease)
        lease = await sink.acquire("orders", "relay-a", 10)
        assert lease is not None
    else:
        # Another channel set breaks the chain: Orders 3's batch is refused and sent again
        # as a new chain, from the stream's end.
        await another_channel_set_writes(nats_server.url, "shipments", event(1, SHIPMENTS))
    recorder = Recorder(sink)
    stream_end = sink._stream_end
    ends = 0

    async def new_leader_writes_first() -> Any:
        nonlocal ends
        ends += 1
        async with NatsSink(nats_server.url) as other:
            await other.release(lease)  # the new leader's lease: this one is no longer held
        headers = {"Nats-Msg-Id": f"{ORDERS_SUBJECT}:50", "Sfstream-Replay-Id": "50"}
        await publish(nats_server.url, ORDERS_SUBJECT, headers)
        return await stream_end()

    sink._stream_end = new_leader_writes_first  # type: ignore[method-assign]
    with pytest.raises(LeaseLost):
        await sink.write(lease, [event(3)])
    assert ends == 1
    blocks = [block for command in recorder.commands for block in message_headers(command)]
    fresh = blocks[-1]  # the chain started from the stream's end
    assert b"Nats-Expected-Last-Msg-Id: " not in fresh
    assert b"Nats-Expected-Last-Subject-Sequence: 2\r\n" in fresh
    assert b"Nats-Expected-Stream: SFSTREAM\r\n" in fresh
    messages = await stored(nats_server.url)
    assert replay_ids(messages) == [1, 2, 50]
    if start != "new term":
        assert chained_on(blocks[0], f"{ORDERS_SUBJECT}:2", 2)  # before the chain broke


async def test_an_ex_leaders_batches_chained_on_its_own_are_fenced_out(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ex-leader X sends W1 (Orders 3) and W2 (Orders 4, chained on W1: no subject
    expectation), both held by the network. Its lease expires; the new leader Y writes
    Shipments 1, which lands at the sequence X planned for Orders 3. Then X's batches reach
    JetStream: W1 is refused, and W2, whose expected last sequence matches, is refused by the
    last message id it expects (else Orders 4 would be stored with Orders 3 missing, and Y
    would skip Orders 3 as below the position)."""
    async with (
        NatsSink(nats_server.url, request_timeout=1.0, retry_for=0.5) as x,
        NatsSink(nats_server.url, request_timeout=1.0, retry_for=5.0) as y,
    ):
        x_lease = await x.acquire("set", "X", 1.0)
        assert x_lease is not None
        await x.write(x_lease, [event(1), event(2)])
        held: list[bytes] = []
        real = _nats._raw_sender

        def holding(nc: Any) -> Any:
            raw = real(nc)
            if nc is not x._nc or raw is None:
                return raw
            _send, flush = raw

            async def hold(data: bytes) -> None:
                held.append(data)  # held by the network

            return hold, flush

        monkeypatch.setattr(_nats, "_raw_sender", holding)
        first = asyncio.ensure_future(x.write(x_lease, [event(3)]))
        # W2 begins a moment later: its lease check is read afresh (the read sent ahead of
        # W1 is held with it), and it goes out chained on W1, not yet answered.
        await asyncio.sleep(_nats._CHECK_FRESH * 2)
        second = asyncio.ensure_future(x.write(x_lease, [event(4)]))
        for _ in range(500):
            if len(held) >= 2:
                break
            await asyncio.sleep(0.002)
        assert len(held) == 2
        assert chained_on(first_headers(held[1]), f"{ORDERS_SUBJECT}:3", 3)
        first.cancel()  # X's term ends
        second.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        monkeypatch.setattr(_nats, "_raw_sender", real)
        await asyncio.sleep(1.1)  # X's lease expires
        assert await y.acquire("set", "Y", 30) is None
        await asyncio.sleep(1.1)
        y_lease = await y.acquire("set", "Y", 30)
        assert y_lease is not None
        for channel in (ORDERS, SHIPMENTS):
            await y.position(ORG, channel)  # as the relay does when its term begins
        await y.write(y_lease, [event(1, SHIPMENTS)])
        assert await y._stream_end() == ("", 3, "")  # where X planned Orders 3
        for data in held:  # the network delivers X's batches at last
            await x._nc._send_command(data)  # type: ignore[union-attr]
        await x._nc.flush()  # type: ignore[union-attr]
        await asyncio.sleep(0.3)
        await y.write(y_lease, [event(3), event(4), event(5)])
        messages = await stored(nats_server.url)
    assert replay_ids(messages) == [1, 2, 3, 4, 5]
    assert replay_ids(messages, SHIPMENTS) == [1]
    assert len(messages) == 6


async def test_a_write_with_nothing_to_write_keeps_the_chain_and_its_subject(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """A write whose events are all stored already keeps the chain where it was, with its
    subject: the next batch of that subject goes out chained without the implied expectations,
    and is stored; once another writer moved the stream on, that kept anchor is refused and the
    batch chained anew from the positions."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1), event(2)])
    recorder = Recorder(sink)
    await sink.write(lease, [event(2)])  # sent already: nothing planned
    assert sink.stats.skipped == 1
    assert sink._chain == (f"{ORDERS_SUBJECT}:2", 2, ORDERS_SUBJECT)
    await sink.write(lease, [event(3)])
    assert chained_on(first_headers(recorder.commands[-1]), f"{ORDERS_SUBJECT}:2", 2)
    assert sink.stats.conflicts == 0
    await sink.write(lease, [event(3)])  # nothing planned again
    await publish(nats_server.url, OTHER, {"Sfstream-Replay-Id": "1"})  # no message id
    await sink.write(lease, [event(4)])
    assert sink.stats.conflicts == 1  # the kept anchor no longer holds
    messages = await stored(nats_server.url)
    assert replay_ids(messages) == [1, 2, 3, 4]
    assert messages[3] == (OTHER, 1)


async def test_a_duplicate_at_the_end_of_a_batch_in_flight(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """Another process stores its copy of Orders 2 right where W1 planned it, just before
    W1's own: W1's Orders 2 is a duplicate (JetStream checks nothing on it and keeps the copy
    as the stream's last message), and W2 (Orders 3), chained on it, is stored after the copy.
    W1's duplicate answer sends both on one by one, where they find everything stored: each
    event once, in order."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1)])
    recorder = Recorder(sink)
    send = recorder.send
    end_of_w1 = f"Nats-Msg-Id: {ORDERS_SUBJECT}:2\r\n".encode()
    copies = 0

    async def copy_first(command: bytes, priority: bool = False) -> None:
        nonlocal copies
        if not copies and end_of_w1 in command:
            copies += 1
            # On this connection: in order, right before W1.
            await recorder.nc.publish(
                ORDERS_SUBJECT,
                b"{}",
                headers={"Sfstream-Replay-Id": "2", "Nats-Msg-Id": f"{ORDERS_SUBJECT}:2"},
            )
        await send(command, priority)

    recorder.nc._send_command = copy_first
    slow_answers(sink, 0.5)  # W1's answer comes after W2 went out chained on it
    first = asyncio.ensure_future(sink.write(lease, [event(2)]))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(sink.write(lease, [event(3)]))
    await asyncio.gather(first, second)
    assert copies == 1
    w2 = next(command for command in recorder.commands if b"Sfstream-Replay-Id: 3\r\n" in command)
    assert chained_on(first_headers(w2), f"{ORDERS_SUBJECT}:2", 2)
    assert sink.stats.duplicates >= 1
    messages = await stored(nats_server.url)
    assert replay_ids(messages) == [1, 2, 3]
    assert len(messages) == 3
    assert await sink.position(ORG, ORDERS) == 3
