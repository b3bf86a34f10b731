"""End to end: events from the emulated org, through ``sfstream``'s client, into the NATS sink.

A first relay writes what it receives and dies; a standby takes the lease over, resumes from
the position kept in JetStream and writes the rest; a worker with a pull consumer then receives
every event exactly once, in order, with its payload. (The relay runner is another module; this
drives the sink with :class:`sfstream.SalesforceStreamingClient` directly, as the runner does.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from sfstream import (
    DefaultMappingStorage,
    ReplayMarker,
    ReplayMarkerStorage,
    ReplayOption,
    SalesforceStreamingClient,
)
from sfstream.bayeux import Message
from sfstream.emulator import Emulator
from sfstream.relay import Lease, RelayEvent
from sfstream.relay._nats import NatsSink
from tests.integration.conftest import HOLD_TIME, SESSION_EXPIRY, credentials_of, receive_n
from tests.relay._nats_servers import NatsServer
from tests.relay.test_nats_sink import take_over

CHANNEL = "/event/Order__e"


@pytest.fixture
async def org() -> AsyncIterator[Emulator]:
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]},
        hold_time=HOLD_TIME,
        session_expiry=SESSION_EXPIRY,
    ) as emulator:
        yield emulator


def relay_event(org: Emulator, message: Message) -> RelayEvent:
    """What the relay runner makes of a received message."""
    data = message["data"]
    return RelayEvent(
        org=org.org_id,
        channel=message["channel"],
        replay_id=int(data["event"]["replayId"]),
        date=str(data["payload"]["CreatedDate"]),
        payload=json.dumps(message).encode(),
        event_uuid=data["event"].get("EventUuid"),
    )


async def relay(
    org: Emulator,
    sink: NatsSink,
    lease: Lease,
    count: int,
    replay: ReplayOption | ReplayMarkerStorage,
) -> list[int]:
    """Subscribe (from ``replay``), write ``count`` received events into the sink."""
    async with SalesforceStreamingClient(**credentials_of(org), replay=replay) as client:
        await client.subscribe(CHANNEL)
        messages = await receive_n(client, count)
        await sink.write(lease, [relay_event(org, message) for message in messages])
    return [int(message["data"]["event"]["replayId"]) for message in messages]


async def test_relay_failover_into_jetstream_then_a_worker(
    org: Emulator, nats_server: NatsServer
) -> None:
    ttl = 0.5
    published = [(await org.publish(CHANNEL, {"Amount__c": n})).replay_id for n in range(6)]

    async with NatsSink(nats_server.url) as first, NatsSink(nats_server.url) as standby:
        lease = await first.acquire("orders", "relay-1", ttl)
        assert lease is not None
        assert await standby.acquire("orders", "relay-2", ttl) is None
        position = await first.position(org.org_id, CHANNEL)
        assert position is None  # nothing written yet: the relay starts from retention
        written = await relay(org, first, lease, 6, ReplayOption.ALL_EVENTS)
        assert written == published
        # relay-1 dies without releasing; events keep coming meanwhile
        published += [
            (await org.publish(CHANNEL, {"Amount__c": n})).replay_id for n in range(6, 10)
        ]
        lease_2 = await take_over(standby, "orders", "relay-2", ttl)
        position = await standby.position(org.org_id, CHANNEL)
        assert position == published[5]
        markers = {CHANNEL: ReplayMarker(date="", replay_id=position)}
        resumed = await relay(
            org, standby, lease_2, 4, DefaultMappingStorage(markers, ReplayOption.ALL_EVENTS)
        )
        assert resumed == published[6:]
        assert await standby.position(org.org_id, CHANNEL) == published[-1]

    # a worker: pull consumer with explicit acks on all platform events of the org
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        worker = await js.pull_subscribe(
            f"sfstream.{org.org_id}.event.>",
            durable="orders-worker",
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT),
        )
        received: list[tuple[int, int]] = []
        while len(received) < len(published):
            for message in await worker.fetch(10, timeout=2):
                bayeux = json.loads(message.data)
                received.append(
                    (bayeux["data"]["event"]["replayId"], bayeux["data"]["payload"]["Amount__c"])
                )
                await message.ack()
        assert received == [(replay_id, n) for n, replay_id in enumerate(published)]
    finally:
        await nc.close()
