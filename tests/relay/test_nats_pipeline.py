"""The NATS sink's pipelined batches against a real ``nats-server`` (2.9, per test on loopback).

A batch is published as one chain (``Nats-Expected-Last-Msg-Id`` from each message to the one
before, the first one chained on the end of the previous batch) and only its last message asks
for an acknowledgement. These tests break that path in each way it can break: another writer
in the middle of a batch or between two batches, a duplicate or an error on the last message,
a connection lost in the middle, a lease that may expire in the middle. Each time the sink
goes on from the stored positions, and the stream holds every event once, in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any, cast

import nats
import pytest

from sfstream.exceptions import InvalidArgumentError
from sfstream.relay import EventRefused, LeaseLost, SinkError, _nats
from sfstream.relay._nats import NatsSink, channel_subject
from sfstream.relay._sink import RelayBatch
from tests.relay._nats_servers import NatsServer, ReplyDropper
from tests.relay.test_nats_sink import ORDERS, ORG, SHIPMENTS, event
from tests.relay.test_nats_sink import stored as stored_messages


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches handed to the connection two messages at a time (so a test can act between)."""
    monkeypatch.setattr(_nats, "_CHUNK", 6)


async def stored(url: str) -> list[tuple[str, int]]:
    """Every message of the stream as (subject, replay id), in stream order."""
    return [(subject, replay_id) for subject, replay_id, _data in await stored_messages(url)]


def replay_ids(messages: list[tuple[str, int]], channel: str = ORDERS) -> list[int]:
    subject = channel_subject(ORG, channel)
    return [replay_id for s, replay_id in messages if s == subject]


async def another_channel_set_writes(url: str, name: str, one: Any) -> None:
    """Another channel set, ``name``, writes ``one`` into the same stream."""
    async with NatsSink(url) as other:
        other_lease = await other.acquire(name, "relay-b", 10)
        assert other_lease is not None
        await other.write(other_lease, [one])


class Recorder:
    """Wraps the sink connection's raw command queue: records what is sent, and can act after
    the n-th piece of a batch (``after``)."""

    def __init__(self, sink: NatsSink) -> None:
        self.nc = cast(Any, sink._nc)
        self.original = self.nc._send_command
        self.commands: list[bytes] = []
        self.pieces = 0
        self.after: dict[int, Any] = {}
        self.nc._send_command = self.send

    async def send(self, command: bytes, priority: bool = False) -> None:
        await self.original(command, priority)
        if b"HPUB " in command:
            self.commands.append(command)
            self.pieces += 1
            action = self.after.pop(self.pieces, None)
            if action is not None:
                await action()

    def hpub_lines(self) -> list[list[bytes]]:
        """The HPUB protocol lines sent, split in words."""
        return [
            line.split(b" ")
            for command in self.commands
            for line in command.split(b"\r\n")
            if line.startswith(b"HPUB ")
        ]


@pytest.fixture
async def sink(nats_server: NatsServer) -> AsyncIterator[NatsSink]:
    async with NatsSink(nats_server.url, request_timeout=1.0, retry_for=5.0) as opened:
        yield opened


async def test_one_acknowledgement_per_batch_and_the_next_batch_chains_on_it(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    recorder = Recorder(sink)
    reads = 0
    current = sink._current

    async def counted(held: Any) -> Any:
        nonlocal reads
        reads += 1
        return await current(held)

    sink._current = counted  # type: ignore[assignment,method-assign]
    await sink.write(lease, [event(1), event(2), event(3), event(1, SHIPMENTS)])
    lines = recorder.hpub_lines()
    assert len(lines) == 4
    assert [len(words) for words in lines] == [4, 4, 4, 5]  # a reply subject on the last only
    first = recorder.commands[0]
    # The lease read for the next batch goes out in front of this one.
    assert first.startswith(b"PUB $JS.API.STREAM.MSG.GET.KV_sfstream-leases ")
    assert first.count(b"Nats-Expected-Last-Subject-Sequence: 0\r\n") == 2  # each new subject
    assert first.count(b"Nats-Expected-Last-Msg-Id: ") == 3
    recorder.commands.clear()
    await sink.write(lease, [event(4), event(2, SHIPMENTS)])
    assert reads == 1  # the second batch was cleared by the read sent ahead of the first
    second = recorder.commands[0].split(b"\r\n\r\n")[0]  # the first message's headers
    shipment_1 = channel_subject(ORG, SHIPMENTS).encode() + b":1"
    assert b"Nats-Expected-Last-Msg-Id: " + shipment_1 + b"\r\n" in second
    assert b"Nats-Expected-Last-Sequence: 4\r\n" in second  # nothing else stored since
    # Each message expects where its subject's last message is: Orders 3 at sequence 3,
    # Shipments 1 at 4.
    assert b"Nats-Expected-Last-Subject-Sequence: 3\r\n" in second
    assert b"Nats-Expected-Last-Subject-Sequence: 4\r\n" in recorder.commands[0]
    assert sink.stats.written == 6
    messages = await stored(nats_server.url)
    assert replay_ids(messages) == [1, 2, 3, 4]
    assert replay_ids(messages, SHIPMENTS) == [1, 2]
    assert await sink.position(ORG, ORDERS) == 4


async def test_another_writer_between_two_batches_breaks_the_chain_and_the_batch_is_chained_anew(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """Another channel set sharing the stream writes between two batches: the next batch's
    first message no longer finds this writer's last one at the end of the stream. The batch is
    published again as a new chain from the subjects' positions (still pipelined)."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1), event(2)])
    await another_channel_set_writes(nats_server.url, "shipments", event(1, SHIPMENTS))
    recorder = Recorder(sink)
    await sink.write(lease, [event(3), event(4)])
    assert sink.stats.conflicts == 1
    assert len([words for words in recorder.hpub_lines() if len(words) == 5]) == 2  # two tries
    assert sink.stats.written == 4
    messages = await stored(nats_server.url)
    assert replay_ids(messages) == [1, 2, 3, 4]
    assert replay_ids(messages, SHIPMENTS) == [1]


@pytest.mark.usefixtures("small_pieces")
async def test_another_writer_in_the_middle_of_a_batch_refuses_the_rest(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1)])
    recorder = Recorder(sink)

    async def other_channel_set_writes() -> None:
        # On the same connection, so that it lands right after the batch's first piece.
        await recorder.nc.publish(
            channel_subject(ORG, SHIPMENTS),
            b"{}",
            headers={"Sfstream-Replay-Id": "7", "Nats-Msg-Id": "other:7"},
        )

    recorder.after[1] = other_channel_set_writes
    await sink.write(lease, [event(n) for n in range(2, 9)])
    assert recorder.pieces >= 3
    assert sink.stats.conflicts >= 1
    messages = await stored(nats_server.url)
    assert replay_ids(messages) == list(range(1, 9))
    assert replay_ids(messages, SHIPMENTS) == [7]
    await sink.write(lease, [event(9)])  # and it goes on pipelined
    assert replay_ids(await stored(nats_server.url)) == list(range(1, 10))


async def test_a_duplicate_last_message_goes_on_one_by_one(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """The batch's last event is in the stream already (stored by another process under the
    same lease, e.g. an earlier attempt): its duplicate answer says nothing about the others,
    so the sink reads the positions and goes on one by one."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1)])
    subject = channel_subject(ORG, ORDERS)
    nc = await nats.connect(nats_server.url)
    try:
        for n in (2, 3):
            await nc.jetstream().publish(
                subject,
                b"{}",
                headers={"Sfstream-Replay-Id": str(n), "Nats-Msg-Id": f"{subject}:{n}"},
            )
    finally:
        await nc.close()
    await sink.write(lease, [event(2), event(3)])
    assert sink.stats.duplicates == 1
    assert sink.stats.skipped == 2
    assert sink.stats.written == 1
    await sink.write(lease, [event(4)])
    assert replay_ids(await stored(nats_server.url)) == [1, 2, 3, 4]


@pytest.mark.parametrize("pipeline", [True, False])
async def test_events_at_or_below_the_position_are_skipped_and_said_so(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture, pipeline: bool
) -> None:
    async with NatsSink(nats_server.url, request_timeout=1.0, pipeline=pipeline) as sink:
        lease = await sink.acquire("orders", "relay-a", 10)
        assert lease is not None
        with caplog.at_level("WARNING", logger="sfstream.relay._nats"):
            await sink.write(lease, [event(5), event(6)])
            assert not caplog.records
            # Replay ids that went back (a refreshed sandbox with --fallback) lose the events
            # below the position: never silently.
            await sink.write(lease, [event(2), event(1), event(7)])
        assert replay_ids(await stored(nats_server.url)) == [5, 6, 7]
        assert sink.stats.skipped == 2
        assert [r.getMessage() for r in caplog.records] == [
            "SFSTREAM: 2 of 3 events were not written: their replay ids are not above their "
            "subject's position in JetStream (already stored, or Salesforce's replay ids went "
            "back: a refreshed sandbox, a migrated org)"
        ]


async def test_an_error_on_the_last_message_is_a_sink_error_and_the_rest_is_stored_once(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().add_stream(name="SFSTREAM", subjects=["sfstream.>"], max_msg_size=1024)
    finally:
        await nc.close()
    async with NatsSink(nats_server.url) as sink:
        lease = await sink.acquire("orders", "relay-a", 10)
        assert lease is not None
        with pytest.raises(SinkError, match="JetStream refused an event"):
            await sink.write(lease, [event(1), event(2), event(3, size=4096)])
        assert sink.stats.skipped == 2  # stored by the batch, found by the one-by-one path
        assert await sink.position(ORG, ORDERS) == 2
    assert replay_ids(await stored(nats_server.url)) == [1, 2]


@pytest.mark.usefixtures("small_pieces")
async def test_a_connection_lost_in_the_middle_of_a_batch(nats_server: NatsServer) -> None:
    async with (
        ReplyDropper(nats_server.port) as proxy,
        NatsSink(proxy.url, request_timeout=0.5, retry_for=10.0) as sink,
    ):
        lease = await sink.acquire("orders", "relay-a", 10)
        assert lease is not None
        await sink.write(lease, [event(1)])
        recorder = Recorder(sink)

        async def cut() -> None:
            await asyncio.sleep(0.05)  # the first piece reaches the server
            proxy.cut()

        recorder.after[1] = cut
        await sink.write(lease, [event(n) for n in range(2, 9)])
        assert sink.stats.conflicts == 1  # unconfirmed: the positions were read again
        await sink.write(lease, [event(9), event(10)])
        assert await sink.position(ORG, ORDERS) == 10
    assert replay_ids(await stored(nats_server.url)) == list(range(1, 11))


@pytest.mark.usefixtures("small_pieces")
async def test_no_piece_goes_out_once_the_lease_may_have_expired_in_a_batch(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1)])
    recorder = Recorder(sink)
    # The lease was last renewed almost one TTL ago...
    sink._valid_until[(lease.name, lease.token)] = asyncio.get_running_loop().time() + 0.3

    async def time_passes() -> None:
        await asyncio.sleep(0.4)  # ...and the process pauses in the middle of the batch

    recorder.after[1] = time_passes
    with pytest.raises(LeaseLost, match="may have expired"):
        await sink.write(lease, [event(n) for n in range(2, 9)])
    assert recorder.pieces == 1
    assert all(len(words) == 4 for words in recorder.hpub_lines())  # the last was never sent
    assert replay_ids(await stored(nats_server.url)) == [1, 2]  # the first piece, in order
    lease = await sink.renew(lease)
    await sink.write(lease, [event(n) for n in range(2, 9)])
    assert replay_ids(await stored(nats_server.url)) == list(range(1, 9))


async def test_the_lease_read_sent_ahead(sink: NatsSink, monkeypatch: pytest.MonkeyPatch) -> None:
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    nc: Any = sink._nc
    await sink._ack_inbox(nc)
    current = sink._current
    ordinary_reads = 0

    async def counted(held: Any) -> Any:
        nonlocal ordinary_reads
        ordinary_reads += 1
        return await current(held)

    monkeypatch.setattr(sink, "_current", counted)

    async def read_ahead(held: Any, stream: bytes = b"KV_sfstream-leases") -> Any:
        command, check = sink._lease_read(held)
        await nc._send_command(command.replace(b"KV_sfstream-leases", stream))
        await nc._flush_pending()
        return await check

    entry = await read_ahead(lease)
    assert entry is not None
    assert (entry.holder, entry.token) == (lease.holder, lease.token)
    other = type(lease)("shipments", "relay-a", lease.token, 10)
    assert await read_ahead(other) is None  # a key never written: no message
    assert await read_ahead(type(lease)("orders", "relay-b", lease.token, 10)) is None
    assert ordinary_reads == 0
    # An error answer (here: no such stream): the ordinary read, with its retries, decides.
    entry = await read_ahead(lease, b"KV_nosuch")
    assert ordinary_reads == 1
    assert entry is not None
    await sink.release(lease)  # (which reads the lease the ordinary way)
    assert await read_ahead(lease) is None  # a delete marker
    assert ordinary_reads == 2


async def test_an_old_lease_read_is_made_again(sink: NatsSink, nats_server: NatsServer) -> None:
    """The read sent ahead of a batch clears the next one only if that comes soon after."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1)])
    assert sink._next_check is not None
    ahead = sink._next_check[2]
    await asyncio.sleep(_nats._CHECK_FRESH * 2)
    async with NatsSink(nats_server.url) as other:  # meanwhile the lease was released...
        await other.release(lease)
    with pytest.raises(LeaseLost):
        await sink.write(lease, [event(2)])
    assert ahead.done()
    assert ahead.result() is not None  # it said "held", but it was too old to count
    assert replay_ids(await stored(nats_server.url)) == [1]


async def test_without_raw_commands_the_sink_goes_one_by_one(
    sink: NatsSink, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nats-py without the raw command queue: the public API, one message at a time."""
    monkeypatch.setattr(_nats, "_raw_sender", lambda nc: None)
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1), event(2), event(1, SHIPMENTS)])
    assert sink.stats.written == 3
    assert sink.stats.conflicts == 0
    messages = await stored(nats_server.url)
    assert replay_ids(messages) == [1, 2]
    assert replay_ids(messages, SHIPMENTS) == [1]


@pytest.mark.parametrize("as_run", [False, True])
async def test_an_event_larger_than_the_server_takes_is_a_clear_sink_error(
    sink: NatsSink, nats_server: NatsServer, as_run: bool
) -> None:
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    nc: Any = sink._nc
    events = [event(1), event(2, size=nc.max_payload), event(3)]
    with pytest.raises(EventRefused, match=r"\(replay id 2\) .* more than the NATS server takes"):
        await sink.write(lease, RelayBatch.of(ORG, events) if as_run else events)
    assert nc.is_connected  # nothing the server would refuse by closing the connection
    await sink.write(lease, [event(1)])
    assert replay_ids(await stored(nats_server.url)) == [1]


async def test_position_reads_what_the_stream_holds_now_for_the_next_write(
    nats_server: NatsServer,
) -> None:
    # The stream loses the tail of a channel after this writer wrote it (here: the stream is
    # lost and made again with less); the relay resubscribes from position(): the events sent
    # again must be written, not skipped by what this writer remembered of the subject.
    shipments = channel_subject(ORG, SHIPMENTS)
    async with NatsSink(nats_server.url) as sink:
        lease = await sink.acquire("orders", "relay-a", 10)
        assert lease is not None
        await sink.write(lease, [event(i, SHIPMENTS) for i in range(1, 11)])
        js = sink._jetstream()
        await js.delete_stream("SFSTREAM")
        async with NatsSink(nats_server.url) as other:  # makes the stream again
            js_other = other._jetstream()
            for i in range(1, 6):
                headers = {"Nats-Msg-Id": f"{shipments}:{i}", "Sfstream-Replay-Id": str(i)}
                await js_other.publish(shipments, b"{}", headers=headers)
        assert await sink.position(ORG, SHIPMENTS) == 5
        await sink.write(lease, [event(i, SHIPMENTS) for i in range(6, 11)])
        await sink.write(lease, [event(i, SHIPMENTS) for i in range(11, 13)])
    assert replay_ids(await stored(nats_server.url), SHIPMENTS) == list(range(1, 13))


async def test_no_batch_goes_out_without_an_anchor_after_a_broken_chain(
    nats_server: NatsServer,
) -> None:
    # Shipments was written inside a batch (not last: its sequence is not known). The chain
    # then breaks (another writer's copy of an event). Another writer (a new leader) writes
    # Shipments 50: this writer's next batch of Shipments must not be stored after it.
    async with NatsSink(nats_server.url) as sink:
        lease = await sink.acquire("orders", "relay-a", 10)
        assert lease is not None
        await sink.write(
            lease,
            [event(i, SHIPMENTS) for i in range(1, 11)] + [event(i) for i in range(1, 11)],
        )
        js = sink._jetstream()
        orders = channel_subject(ORG, ORDERS)
        shipments = channel_subject(ORG, SHIPMENTS)
        headers = {"Nats-Msg-Id": f"{orders}:11", "Sfstream-Replay-Id": "11"}
        await js.publish(orders, b"{}", headers=headers)
        await sink.write(lease, [event(11)])  # a duplicate answer: the chain is not known
        headers = {"Nats-Msg-Id": f"{shipments}:50", "Sfstream-Replay-Id": "50"}
        await js.publish(shipments, b"{}", headers=headers)
        await sink.write(lease, [event(11, SHIPMENTS), event(12, SHIPMENTS)])
    assert replay_ids(await stored(nats_server.url), SHIPMENTS) == [*range(1, 11), 50]


async def test_a_batch_that_could_not_be_sent_leaves_nothing_behind(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1)])
    nc: Any = sink._nc
    original = nc._send_command
    failed: list[bytes] = []

    async def fail_once(command: bytes, priority: bool = False) -> None:
        if b"HPUB " in command and not failed:
            failed.append(command)
            raise OSError("the socket broke (injected)")  # before anything was queued
        await original(command, priority)

    nc._send_command = fail_once
    await sink.write(lease, [event(2), event(3)])  # then one by one, from the stream
    assert failed
    await sink.write(lease, [event(4)])
    await asyncio.sleep(0.2)  # the lease read sent ahead of the next batch is answered
    assert sink._acks == {}  # no acknowledgement waited for that can never come
    assert sink._reads == {}
    assert replay_ids(await stored(nats_server.url)) == [1, 2, 3, 4]


def first_headers(command: bytes) -> bytes:
    """The headers of the first message of a batch's first piece."""
    return command.split(b"\r\n\r\n")[0]


async def test_batches_in_flight_are_chained_on_each_other_and_stored_in_order(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """As the relay writes (up to pipeline_depth writes begun before the first is answered):
    each batch goes out chained on the one before it, without waiting for its answer."""
    assert sink.pipeline_depth == _nats.DEFAULT_PIPELINE_DEPTH > 1
    assert sink.takes_batches
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    recorder = Recorder(sink)
    writes = [
        asyncio.ensure_future(sink.write(lease, RelayBatch.of(ORG, [event(1), event(2)]))),
        asyncio.ensure_future(sink.write(lease, [event(3), event(4)])),
        asyncio.ensure_future(sink.write(lease, RelayBatch.of(ORG, [event(5), event(6)]))),
    ]
    await asyncio.gather(*writes)
    assert sink.stats.conflicts == 0
    assert sink.stats.written == 6
    assert len(recorder.commands) == 3
    orders = channel_subject(ORG, ORDERS).encode()
    for command, anchor in zip(recorder.commands[1:], (2, 4), strict=True):
        headers = first_headers(command)
        assert b"Nats-Expected-Last-Msg-Id: " + orders + b":%d\r\n" % anchor in headers
        # Sent before the batch before it was answered: where that one's messages go if it
        # is stored whole (and this one is refused with it otherwise).
        assert b"Nats-Expected-Last-Sequence: %d\r\n" % anchor in headers
        # It follows a message of its own subject: the chain implies where the subject ends.
        assert b"Nats-Expected-Last-Subject-Sequence: " not in headers
    assert replay_ids(await stored(nats_server.url)) == [1, 2, 3, 4, 5, 6]
    # And once the pipeline is empty, the next batch expects the last one's sequence too.
    recorder.commands.clear()
    await sink.write(lease, [event(7)])
    assert b"Nats-Expected-Last-Sequence: 6\r\n" in first_headers(recorder.commands[0])
    assert replay_ids(await stored(nats_server.url)) == list(range(1, 8))


def message_headers(command: bytes) -> list[bytes]:
    """The header block of each HPUB message in ``command``, in order."""
    blocks = []
    at = command.find(b"HPUB ")
    while at != -1:
        line_end = command.index(b"\r\n", at)
        words = command[at:line_end].split(b" ")
        header_size, total = int(words[-2]), int(words[-1])
        blocks.append(command[line_end + 2 : line_end + 2 + header_size])
        at = command.find(b"HPUB ", line_end + 2 + total)
    return blocks


async def test_a_message_after_one_of_its_subject_leaves_the_implied_expectations_out(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """Right after a message of its own subject, a message's chain (last message id and
    sequence) implies its subject's last sequence and the stream: those two headers, a lookup
    each in JetStream per message, go only on a subject's first message of a chain and on a
    message after another subject's, also across batches chained on each other."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    recorder = Recorder(sink)
    batch = [event(1), event(2), event(1, SHIPMENTS), event(3), event(4)]
    await sink.write(lease, RelayBatch.of(ORG, batch))
    await sink.write(lease, RelayBatch.of(ORG, [event(5), event(6), event(7)]))  # a run
    await sink.write(lease, [event(2, SHIPMENTS)])
    blocks = [block for command in recorder.commands for block in message_headers(command)]
    assert len(blocks) == 9
    expects = [
        (b"Nats-Expected-Stream: " in block, b"Nats-Expected-Last-Subject-Sequence: " in block)
        for block in blocks
    ]
    full, chained = (True, True), (False, False)
    # Orders 5 follows Orders 4, the end of the batch before: chained; Shipments 2 follows
    # Orders 7: its subject's last sequence (3) is expected.
    assert expects == [full, chained, full, full, chained, chained, chained, chained, full]
    assert b"Nats-Expected-Last-Subject-Sequence: 3\r\n" in blocks[8]
    assert all(b"Nats-Expected-Last-Sequence: " in block for block in blocks)
    assert all(b"Nats-Expected-Last-Msg-Id: " in block for block in blocks[1:])
    # Orders 3 follows Shipments 1 (sequence 3): it expects Orders 2 at sequence 2.
    assert b"Nats-Expected-Last-Subject-Sequence: 2\r\n" in blocks[3]
    assert sink.stats.conflicts == 0
    messages = await stored(nats_server.url)
    assert replay_ids(messages) == [1, 2, 3, 4, 5, 6, 7]
    assert replay_ids(messages, SHIPMENTS) == [1, 2]


async def test_the_writes_after_a_failed_one_write_nothing(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """The second of three writes in flight fails: the third, begun already, must not store
    its events after the gap (the relay would resume after them and lose the second's)."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    nc: Any = sink._nc
    writes = [
        asyncio.ensure_future(sink.write(lease, [event(1), event(2)])),
        asyncio.ensure_future(sink.write(lease, [event(3), event(4, size=nc.max_payload)])),
        asyncio.ensure_future(sink.write(lease, [event(5), event(6)])),
    ]
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], EventRefused)
    assert isinstance(results[2], SinkError)
    assert "earlier write" in str(results[2])
    assert replay_ids(await stored(nats_server.url)) == [1, 2]
    assert await sink.position(ORG, ORDERS) == 2
    await sink.write(lease, [event(3), event(4), event(5), event(6)])
    assert replay_ids(await stored(nats_server.url)) == [1, 2, 3, 4, 5, 6]


async def test_a_broken_chain_under_batches_in_flight_is_mended_in_order(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """Another channel set writes to the stream just before three batches go out chained on
    each other: the first is refused, and so is every batch chained on it; each goes on from
    the stored positions after the one before it, and the stream holds each event once, in
    order."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1)])
    await another_channel_set_writes(nats_server.url, "shipments", event(1, SHIPMENTS))
    writes = [
        asyncio.ensure_future(sink.write(lease, [event(n) for n in range(first, first + 3)]))
        for first in (2, 5, 8)
    ]
    await asyncio.gather(*writes)
    assert sink.stats.conflicts >= 1
    messages = await stored(nats_server.url)
    assert replay_ids(messages) == list(range(1, 11))
    assert replay_ids(messages, SHIPMENTS) == [1]
    await sink.write(lease, [event(11)])
    assert replay_ids(await stored(nats_server.url)) == list(range(1, 12))


async def test_pipeline_depth_is_checked(nats_server: NatsServer) -> None:
    for wrong in (0, -1, 1.5, "2"):
        with pytest.raises(InvalidArgumentError, match="pipeline_depth"):
            NatsSink(nats_server.url, pipeline_depth=wrong)  # type: ignore[arg-type]
    assert NatsSink(nats_server.url, pipeline=False).pipeline_depth == 1
    assert NatsSink(nats_server.url, pipeline_depth=2).pipeline_depth == 2


def slow_answers(sink: NatsSink, delay: float, *later_ones: float) -> None:
    """Answers to batches (not lease reads) reach the sink ``delay`` seconds late (the next
    ones, ``later_ones`` seconds late, in turn)."""
    on_ack = sink._on_ack
    late: set[asyncio.Future[None]] = set()
    delays = [delay, *later_ones]

    async def slow(message: Any) -> None:
        if message.subject.rpartition(".")[2].startswith("L"):
            await on_ack(message)
            return
        wait = delays.pop(0) if len(delays) > 1 else delays[0]

        async def later() -> None:
            await asyncio.sleep(wait)
            await on_ack(message)

        task = asyncio.ensure_future(later())
        late.add(task)
        task.add_done_callback(late.discard)

    sink._on_ack = slow  # type: ignore[method-assign]
    sink._ack_prefix = None  # a new subscription, with the slow callback


@pytest.mark.usefixtures("small_pieces")
async def test_nothing_is_chained_on_a_batch_that_goes_on_one_by_one(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """A batch broken by another writer goes on one message at a time; its last message id
    (which the next batch would chain on) may be stored before the rest of it. A batch begun
    meanwhile must not be stored after that message: it waits and starts a new chain (found
    by review: Shipments ended 1, 4 with 2 and 3 skipped)."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    recorder = Recorder(sink)

    async def other_channel_set_writes() -> None:
        await recorder.nc.publish(
            "sfstream.other.event.X__e",
            b"{}",
            headers={"Sfstream-Replay-Id": "7", "Nats-Msg-Id": "other:7"},
        )

    recorder.after[1] = other_channel_set_writes  # right after Shipments 1
    publish = sink._publish

    async def slow_shipments(held: Any, subject: str, one: Any, cursor: Any) -> None:
        if subject == channel_subject(ORG, SHIPMENTS):
            await asyncio.sleep(0.5)
        await publish(held, subject, one, cursor)

    sink._publish = slow_shipments  # type: ignore[method-assign,assignment]
    first = asyncio.ensure_future(
        sink.write(lease, [event(1, SHIPMENTS), event(2, SHIPMENTS), event(3, SHIPMENTS), event(1)])
    )
    await asyncio.sleep(0.25)  # Orders 1 is stored one by one, Shipments 2 not yet
    second = asyncio.ensure_future(sink.write(lease, [event(4, SHIPMENTS)]))
    await asyncio.gather(first, second)
    messages = await stored(nats_server.url)
    assert replay_ids(messages, SHIPMENTS) == [1, 2, 3, 4]
    assert replay_ids(messages) == [1]


async def test_a_write_begun_after_a_failed_one_fails_while_an_earlier_one_is_in_flight(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """The relay awaits its writes in order: W2 fails while W1 is still in flight, and the
    relay begins W3 before it learns of W2's failure. W3 must not be stored after the gap
    (found by review: Orders ended 1, 2, 3, 5)."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1)])
    slow_answers(sink, 0.3)
    nc: Any = sink._nc
    first = asyncio.ensure_future(sink.write(lease, [event(2), event(3)]))
    await asyncio.sleep(0)  # begun first, as the relay begins its writes
    with pytest.raises(EventRefused):
        await sink.write(lease, [event(4), event(1, SHIPMENTS, size=nc.max_payload)])
    assert not first.done()
    with pytest.raises(SinkError, match="an earlier write failed"):
        await sink.write(lease, [event(5)])
    await first
    assert replay_ids(await stored(nats_server.url)) == [1, 2, 3]
    # Reading the positions again (as the relay does in its next term) clears the way.
    assert await sink.position(ORG, ORDERS) == 3
    await sink.write(lease, [event(4), event(5)])
    assert replay_ids(await stored(nats_server.url)) == [1, 2, 3, 4, 5]


async def test_positions_dropped_while_a_batch_reads_them(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """W2 reads a position while W1, broken by another writer, drops the positions it holds:
    W2 must read them again, not fail with a KeyError or write after a gap (found by
    review)."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    await sink.write(lease, [event(1)])
    await another_channel_set_writes(nats_server.url, "other", event(7, "/event/X__e"))
    read_cursor = sink._read_cursor
    reads: list[str] = []

    async def slow_read(subject: str) -> Any:
        reads.append(subject)
        if subject == channel_subject(ORG, SHIPMENTS):
            await asyncio.sleep(0.3)
        elif reads.count(subject) == 1:
            await asyncio.sleep(0.5)
        return await read_cursor(subject)

    sink._read_cursor = slow_read  # type: ignore[method-assign]
    slow_answers(sink, 0.1)
    first = asyncio.ensure_future(sink.write(lease, [event(2), event(3)]))
    await asyncio.sleep(0)  # begun first, as the relay begins its writes
    await sink.write(lease, [event(4), event(1, SHIPMENTS)])
    await sink.write(lease, [event(5)])
    await first
    messages = await stored(nats_server.url)
    assert replay_ids(messages) == [1, 2, 3, 4, 5]
    assert replay_ids(messages, SHIPMENTS) == [1]


async def test_an_event_delivered_again_is_not_put_in_a_later_chain(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """JetStream checks nothing else on a message it finds to be a duplicate, and the
    stream's last message id stays: a chain that carries an event stored already (delivered
    again) would let its next message through after a broken chain. W1 is refused (another
    channel set wrote), its retry stores Orders 2 and 3; W2 (Shipments 1), chained on W1, is
    refused and its answer lost; W3 carries Orders 3 again and then Shipments 2: Shipments 2
    must not be stored before Shipments 1 (found by review: Shipments ended [2])."""
    lease = await sink.acquire("orders", "relay-a", 30)
    assert lease is not None
    sink._request_timeout = 0.3
    refused = 0
    on_ack = sink._on_ack

    async def lossy(message: Any) -> None:
        nonlocal refused
        if not message.subject.rpartition(".")[2].startswith("L"):
            if refused:
                return  # W2's answer and the later ones are lost
            if b"error" in message.data:
                refused += 1  # W1's refusal comes late: W2 is sent chained on W1 meanwhile
                asyncio.get_running_loop().call_later(
                    0.05, lambda: asyncio.ensure_future(on_ack(message))
                )
                return
        await on_ack(message)

    sink._on_ack = lossy  # type: ignore[method-assign]
    sink._ack_prefix = None
    await sink.write(lease, [event(1)])
    other = await nats.connect(nats_server.url)
    try:
        await other.jetstream().publish(
            "sfstream.other.x", b"{}", headers={"Sfstream-Replay-Id": "1", "Nats-Msg-Id": "o:1"}
        )
    finally:
        await other.close()
    recorder = Recorder(sink)
    first = asyncio.ensure_future(sink.write(lease, [event(2), event(3)]))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(sink.write(lease, [event(1, SHIPMENTS)]))
    orders_2 = channel_subject(ORG, ORDERS).encode() + b":2\r\n"
    for _ in range(2000):  # W1's retry is sent
        if sum(command.count(b"Nats-Msg-Id: " + orders_2) for command in recorder.commands) >= 2:
            break
        await asyncio.sleep(0.001)
    third = asyncio.ensure_future(sink.write(lease, [event(3), event(2, SHIPMENTS)]))
    await asyncio.gather(first, second, third)
    messages = await stored(nats_server.url)
    assert replay_ids(messages, SHIPMENTS) == [1, 2]
    assert replay_ids(messages) == [1, 2, 3]


async def test_an_ex_leaders_late_chain_cannot_pass_through_the_new_leaders_copy(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ex-leader X's batch [Cases 2, Shipments 2, Orders 2, Shipments 3] reaches JetStream
    late (held by the network), after the new leader Y stored Orders 2. JetStream finds X's
    Orders 2 a duplicate and checks nothing else on it; X's Shipments 3 must still not be
    stored after Shipments 1 (each message expects the stream's and its subject's last
    sequence, not only the last message id; found by review: Shipments ended [1, 3])."""
    cases = "/event/Case__e"
    monkeypatch.setattr(_nats, "_CHUNK", 7)  # the first piece: the lease read and Cases 2
    async with (
        NatsSink(nats_server.url, request_timeout=0.3, retry_for=0.5) as x,
        NatsSink(nats_server.url, request_timeout=0.3, retry_for=0.5) as y,
    ):
        x_lease = await x.acquire("set", "X", 1.0)
        assert x_lease is not None
        await x.write(x_lease, [event(1), event(1, SHIPMENTS), event(1, cases)])
        held: list[bytes] = []
        real = _nats._raw_sender

        def holding(nc: Any) -> Any:
            raw = real(nc)
            if nc is not x._nc or raw is None:
                return raw
            send, flush = raw

            async def send_first(data: bytes) -> None:
                if held or b"Case__e:2" not in data:
                    held.append(data)  # held by the network
                else:
                    await send(data)
                    held.append(b"")

            return send_first, flush

        monkeypatch.setattr(_nats, "_raw_sender", holding)
        late = asyncio.ensure_future(
            x.write(x_lease, [event(2, cases), event(2, SHIPMENTS), event(2), event(3, SHIPMENTS)])
        )
        for _ in range(500):
            if len(held) > 1:
                break
            await asyncio.sleep(0.002)
        late.cancel()  # X's term ends
        await asyncio.gather(late, return_exceptions=True)
        monkeypatch.setattr(_nats, "_raw_sender", real)
        await asyncio.sleep(1.1)  # X's lease expires
        assert await y.acquire("set", "Y", 30) is None
        await asyncio.sleep(1.1)
        y_lease = await y.acquire("set", "Y", 30)
        assert y_lease is not None
        for channel in (ORDERS, SHIPMENTS, cases):
            await y.position(ORG, channel)
        await y.write(y_lease, [event(2)])
        for data in held[1:]:  # the network delivers X's rest at last
            await cast(Any, x._nc)._send_command(data)
        await cast(Any, x._nc).flush()
        await asyncio.sleep(0.3)
        await y.write(y_lease, [event(2, SHIPMENTS), event(3, SHIPMENTS)])
        messages = await stored(nats_server.url)
    assert replay_ids(messages, SHIPMENTS) == [1, 2, 3]
    assert replay_ids(messages) == [1, 2]
    assert replay_ids(messages, cases) == [1, 2]


async def test_an_answer_does_not_move_a_position_back_under_batches_sent_since(
    sink: NatsSink, nats_server: NatsServer
) -> None:
    """W1's answer comes while W2 and W3 are in flight: the subject's expected sequence stays
    where W3 will leave it, and W4, chained behind W3, is stored as planned (a regression
    made W4 expect W1's end, and every batch after it went on one message at a time)."""
    lease = await sink.acquire("orders", "relay-a", 10)
    assert lease is not None
    slow_answers(sink, 0.05, 0.5, 0.5)
    writes = []
    for first in (1, 3, 5):
        writes.append(asyncio.ensure_future(sink.write(lease, [event(first), event(first + 1)])))
        await asyncio.sleep(0)
    await writes[0]
    assert not writes[2].done()
    assert sink._cursors[channel_subject(ORG, ORDERS)].sequence == 6
    writes.append(asyncio.ensure_future(sink.write(lease, [event(7), event(8)])))
    await asyncio.gather(*writes)
    assert sink.stats.conflicts == 0
    assert replay_ids(await stored(nats_server.url)) == list(range(1, 9))


def platform_event(replay_id: int, uuid: bool) -> Any:
    """An event of ORDERS, with an event uuid (a platform event) or none (a PushTopic)."""
    made = event(replay_id)
    return made if uuid else dataclasses.replace(made, event_uuid=None)


@pytest.mark.parametrize("uuids", [True, False])
async def test_a_run_is_sent_as_the_same_bytes_as_event_by_event(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, uuids: bool
) -> None:
    """A batch of one channel with rising replay ids (a run) is made column by column; it must
    be byte for byte what the sink makes one event at a time, and stored the same."""
    history = [
        [event(1)],  # a chain to go on from
        [platform_event(i, uuids) for i in range(2, 40)],  # a run: after the stream's end
        [platform_event(i, uuids) for i in (40, 41, 45, 46)],  # another run, chained on it
        [platform_event(i, uuids) for i in (46, 47, 48)],  # 46 sent already: not a run
    ]
    sent: dict[bool, list[bytes]] = {}
    kept: dict[bool, list[tuple[str, int, bytes]]] = {}
    for runs in (True, False):
        if not runs:
            monkeypatch.setattr(_nats, "_is_run", lambda events, chunk: False)
        folder = tmp_path / f"runs-{runs}"
        folder.mkdir()
        with NatsServer(folder) as server:
            async with NatsSink(server.url) as sink:
                lease = await sink.acquire("orders", "relay-a", 10)
                assert lease is not None
                recorder = Recorder(sink)
                for batch in history:
                    await sink.write(lease, RelayBatch.of(ORG, batch))
                # the reply subject of each batch's last message is the connection's own
                sent[runs] = [
                    b" ".join(words[:1] + words[-2:]) + b"\r\n" + rest
                    for command in recorder.commands
                    for words, rest in [
                        (part.split(b"\r\n", 1)[0].split(b" "), part.split(b"\r\n", 1)[1])
                        for part in command.split(b"HPUB ")[1:]
                    ]
                ]
                kept[runs] = await stored_messages(server.url)
    assert sent[True] == sent[False]
    assert kept[True] == kept[False]
    assert [replay_id for _s, replay_id, _d in kept[True]] == [*range(1, 42), 45, 46, 47, 48]
