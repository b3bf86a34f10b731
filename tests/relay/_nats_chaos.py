"""The NATS engine of the relay chaos campaign: ``python -m tests.relay.chaos --engine nats``.

Three ``nats-server`` nodes in one JetStream cluster (``tests.relay._nats_servers.NatsCluster``);
the relays create the stream and the lease bucket with three replicas (``make_sink`` does so for a
URL listing three servers). The engine fault SIGKILLs the node that leads the events' stream, waits
until another node leads it, and starts the killed node again (same store).

JetStream acknowledges a publish once a quorum of the stream's replicas stored it (R3: two of
three), so killing one node loses no acknowledged write. The harness does not take that on trust:
it reads every subject's last sequence from the leader right before the kill and from the new
leader after it, and reports any message the new leader lacks as ``lost_writes`` (and a problem).
``replicated_acks`` tells the campaign that 0 is the expected figure here, unlike Redis, where a
fault that loses nothing did not exercise the refill from Salesforce's retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sfstream.relay._nats import DEFAULT_STREAM, REPLAY_ID_HEADER, encode_token
from tests.relay._nats_servers import NatsCluster

#: What the relays' sink creates (``make_sink`` with no ``--stream``).
STREAM = DEFAULT_STREAM
PREFIX = "sfstream"


async def _quiet(error: Exception) -> None:
    del error


def channel_filter(channel: str) -> str:
    """The subject of ``channel`` for any org (the relays use the org's id as its token)."""
    return ".".join([PREFIX, "*", *(encode_token(s) for s in channel[1:].split("/"))])


async def replay_ids(
    js: Any, channels: Sequence[str], stream: str = STREAM
) -> dict[str, list[int]]:
    """The replay id of every message per channel, in stream order ({} lists if no stream)."""
    import nats.js.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    try:
        await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        return {channel: [] for channel in channels}
    found: dict[str, list[int]] = {}
    for channel in channels:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            filter_subject=channel_filter(channel),
            inactive_threshold=30.0,
        )
        subscription = await js.pull_subscribe(
            channel_filter(channel), stream=stream, config=config
        )
        ids: list[int] = []
        try:
            wanted = (await subscription.consumer_info()).num_pending
            while len(ids) < wanted:
                with contextlib.suppress(TimeoutError):
                    for message in await subscription.fetch(1000, timeout=2):
                        ids.append(int((message.headers or {})[REPLAY_ID_HEADER]))
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        found[channel] = ids
    return found


class NatsEngine:
    """A 3-node JetStream cluster; the fault kills the node leading the events' stream."""

    name = "nats"
    #: JetStream acknowledges only what a quorum stored: a node fault loses no acknowledged write.
    replicated_acks = True

    def __init__(self) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="sfstream-nats-chaos-"))
        self.cluster = NatsCluster(self._directory, size=3, name="sfstream-chaos")
        self._nc: Any = None
        #: Acknowledged messages the last fault lost (measured: last sequences before and after).
        self.lost_writes: int | None = None

    def start(self) -> None:
        self.cluster.__enter__()

    def stop(self) -> None:
        self.cluster.stop()
        shutil.rmtree(self._directory, ignore_errors=True)

    def sink_url(self) -> str:
        return self.cluster.url

    async def _js(self) -> Any:
        import nats

        if self._nc is None or self._nc.is_closed:
            self._nc = await nats.connect(
                servers=self.cluster.urls,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.2,
                connect_timeout=2,
                error_cb=_quiet,  # a node killed on purpose: reconnecting is expected
            )
        return self._nc.jetstream(timeout=5)

    async def _retry(self, call: Any, attempts: int = 120) -> Any:
        for attempt in range(attempts):
            try:
                return await call(await self._js())
            except Exception:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.25)
        raise AssertionError("unreachable")

    async def entries(self, set_name: str, channels: Sequence[str]) -> dict[str, list[int]]:
        async def read(js: Any) -> dict[str, list[int]]:
            return await replay_ids(js, channels)

        result: dict[str, list[int]] = await self._retry(read, attempts=20)
        return result

    async def count(self, set_name: str, channels: Sequence[str]) -> int:
        async def total(js: Any) -> int:
            try:
                info = await js.stream_info(STREAM)
            except Exception as exc:
                if type(exc).__name__ == "NotFoundError":
                    return 0
                raise
            messages: int = info.state.messages
            return messages

        result: int = await self._retry(total)
        return result

    async def _last_sequences(self, channels: Sequence[str]) -> tuple[str | None, dict[str, int]]:
        """The stream leader's name and each channel's last stream sequence (0: none)."""

        async def read(js: Any) -> tuple[str | None, dict[str, int]]:
            info = await js.stream_info(STREAM)
            leader = info.cluster.leader if info.cluster else None
            last: dict[str, int] = {}
            for channel in channels:
                try:
                    message = await js.get_last_msg(STREAM, channel_filter(channel))
                except Exception as exc:
                    if type(exc).__name__ != "NotFoundError":
                        raise
                    last[channel] = 0
                else:
                    last[channel] = message.seq or 0
            return leader, last

        result: tuple[str | None, dict[str, int]] = await self._retry(read)
        return result

    async def fault(self, set_name: str, channels: Sequence[str]) -> str:
        leader, before = await self._last_sequences(channels)
        index = next(i for i, node in enumerate(self.cluster.nodes) if node.name == leader)
        node = self.cluster.nodes[index]
        node.kill()
        started = time.monotonic()
        while True:  # until another node leads the stream
            try:
                new_leader, after = await self._last_sequences(channels)
            except Exception:
                new_leader = None
            if new_leader is not None and new_leader != leader:
                break
            if time.monotonic() - started > 60:
                raise RuntimeError("JetStream elected no new stream leader within 60 s")
            await asyncio.sleep(0.1)
        took = time.monotonic() - started
        # Messages the old leader had that the new one lacks (sequences only grow otherwise).
        self.lost_writes = sum(max(0, before[c] - after[c]) for c in channels)
        await asyncio.to_thread(self.cluster.restart, index)
        return (
            f"NATS node {leader} (:{node.port}, leading stream {STREAM}) SIGKILLed, {new_leader} "
            f"leads it after {took:.1f} s; acknowledged writes lost: {self.lost_writes} "
            "(expected 0: JetStream acknowledges a publish once two of three replicas stored "
            f"it); {node.name} restarted and caught up"
        )

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
