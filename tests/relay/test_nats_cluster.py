"""The NATS sink on a 3-node JetStream cluster with R3 stream and bucket, one node killed.

The sink keeps writing while a node dies (SIGKILL): the client reconnects to another node, the
stream elects a new leader, publishes whose ack was lost are sent again with the same
``Nats-Msg-Id``. Afterwards the stream holds every event exactly once, in order per channel.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from sfstream.relay import LeaseLost
from sfstream.relay._nats import NatsSink, channel_subject
from tests.relay._nats_servers import NatsCluster
from tests.relay.test_nats_sink import ORDERS, ORG, SHIPMENTS, event, stored, take_over

#: Events per channel.
COUNT = 150
BATCH = 10


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path) as started:
        yield started


async def stream_leader(url: str, stream: str) -> str:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(stream)
        assert info.cluster is not None
        assert info.cluster.leader is not None
        assert len(info.cluster.replicas or []) == 2  # R3: a leader and two replicas
        return info.cluster.leader
    finally:
        await nc.close()


async def test_r3_cluster_is_created_and_used(cluster: NatsCluster) -> None:
    async with NatsSink(cluster.url + "?replicas=3") as sink:
        lease = await sink.acquire("orders", "relay-a", 5)
        assert lease is not None
        await sink.write(lease, [event(1), event(2)])
        assert await sink.position(ORG, ORDERS) == 2
    assert await stream_leader(cluster.urls[0], "SFSTREAM") in {"n1", "n2", "n3"}
    assert await stream_leader(cluster.urls[1], "KV_sfstream-leases") in {"n1", "n2", "n3"}


@pytest.mark.parametrize("victim", ["stream leader", "connected node"])
async def test_node_killed_mid_writes_loses_and_duplicates_nothing(
    cluster: NatsCluster, victim: str
) -> None:
    async with NatsSink(cluster.url, replicas=3, request_timeout=1.0, retry_for=40.0) as sink:
        lease = await sink.acquire("orders", "relay-a", 30)
        assert lease is not None
        killed = -1
        for start in range(1, COUNT + 1, BATCH):
            batch = []
            for replay_id in range(start, start + BATCH):
                batch += [event(replay_id), event(replay_id, SHIPMENTS)]
            if start == 1 + 5 * BATCH:  # mid-writes: kill a node and keep writing at once
                if victim == "stream leader":
                    name = await stream_leader(cluster.urls[0], "SFSTREAM")
                    killed = int(name.removeprefix("n")) - 1
                else:
                    assert sink._nc is not None
                    assert sink._nc.connected_url is not None
                    port = sink._nc.connected_url.port
                    killed = next(i for i, n in enumerate(cluster.nodes) if n.port == port)
                cluster.kill(killed)
            await sink.write(lease, batch)
        if victim == "stream leader":  # no answer until a new leader is elected: retried
            assert sink.stats.retries >= 1
        assert await sink.position(ORG, ORDERS) == COUNT
        assert await sink.position(ORG, SHIPMENTS) == COUNT
        survivor = cluster.urls[(killed + 1) % 3]
        messages = await stored(survivor)
        cluster.restart(killed)
    for channel in (ORDERS, SHIPMENTS):
        subject = channel_subject(ORG, channel)
        replay_ids = [r for s, r, _ in messages if s == subject]
        assert replay_ids == list(range(1, COUNT + 1))  # none lost, none twice, in order
    assert len(messages) == 2 * COUNT


async def test_standby_takes_over_while_a_node_is_down(cluster: NatsCluster) -> None:
    ttl = 1.0
    async with (
        NatsSink(cluster.url, replicas=3, request_timeout=1.0, retry_for=40.0) as a,
        NatsSink(cluster.url, replicas=3, request_timeout=1.0, retry_for=40.0) as b,
    ):
        lease_a = await a.acquire("orders", "relay-a", ttl)
        assert lease_a is not None
        await a.write(lease_a, [event(1), event(2)])
        kv_leader = await stream_leader(cluster.urls[0], "KV_sfstream-leases")
        cluster.kill(int(kv_leader.removeprefix("n")) - 1)  # the lease's own leader dies; a too
        # b takes a longer lease than a's: with a node down, its next requests may take longer
        # than a's 1 s TTL, and b's writes must not be refused by its own lease's expiry.
        lease_b = await take_over(b, "orders", "relay-b", 30.0, within=40)
        assert lease_b.token > lease_a.token
        assert await b.position(ORG, ORDERS) == 2
        await b.write(lease_b, [event(2), event(3)])
        with pytest.raises(LeaseLost):
            await a.write(lease_a, [event(3)])
        assert await b.position(ORG, ORDERS) == 3
