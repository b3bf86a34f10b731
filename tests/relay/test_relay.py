"""The relay runner against the emulator and a real redis-server: batching, failover, stop."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from sfstream import Status
from sfstream.emulator import Emulator
from sfstream.relay import (
    ChannelSet,
    ClientFactory,
    EventRefused,
    Relay,
    Role,
    SinkError,
    SinkReplayStorage,
)
from sfstream.relay._redis import RedisSink, stream_key
from sfstream.salesforce import (
    Client,
    PasswordAuthenticator,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
)
from tests.relay._engines import RedisServer

ORDER = "/event/Order__e"
SHIP = "/event/Shipment__e"
SET = "orders"
WAIT = 15.0


@pytest.fixture
async def org() -> AsyncIterator[Emulator]:
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"], "Shipment__e": ["Amount__c", "N__c"]},
        hold_time=0.2,
        session_expiry=1.0,
    ) as emulator:
        yield emulator


def client_factory(org: Emulator) -> ClientFactory:
    def make(replay: ReplayMarkerStorage, on_status: Callable[[Status], None]) -> Client:
        auth = PasswordAuthenticator(
            org.consumer_key,
            org.consumer_secret,
            org.username,
            org.password,
            login_url=org.login_url,
        )
        return Client(
            auth,
            replay=replay,
            replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
            on_status=on_status,
            max_pending_count=1000,
        )

    return make


def make_relay(org: Emulator, server: RedisServer, holder: str, **options: Any) -> Relay:
    channel_set = ChannelSet(SET, (ORDER, SHIP), replay=int(ReplayOption.ALL_EVENTS))
    sink = RedisSink(server.url, channel_set=SET)
    options.setdefault("lease_ttl", 1.0)
    options.setdefault("poll_interval", 0.05)
    return Relay(channel_set, sink, client_factory(org), holder=holder, **options)


async def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` (a function or a coroutine function) until true; fail on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def stream_ids(raw: aioredis.Redis, channel: str) -> list[int]:
    found: Any = await raw.xrange(stream_key(SET, channel))
    return [int(fields[b"replay_id"]) for _id, fields in found or []]


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def publish(org: Emulator, channel: str, count: int, start: int = 0) -> list[int]:
    published = await org.publish_many(channel, [{"N__c": start + i} for i in range(count)])
    return [p.replay_id for p in published]


async def settle(raw: aioredis.Redis, expected: dict[str, list[int]]) -> None:
    async def done() -> bool:
        for channel, ids in expected.items():
            if (await stream_ids(raw, channel))[-1:] != ids[-1:]:
                return False
        return True

    try:
        await wait_until(done, "the engine to hold every event")
    except TimeoutError:
        got = {channel: len(await stream_ids(raw, channel)) for channel in expected}
        pytest.fail(
            f"the engine holds {got} events, expected {[len(v) for v in expected.values()]}"
        )


async def test_a_standby_takes_over_from_a_crashed_leader_and_nothing_is_lost(
    org: Emulator, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    first = make_relay(org, redis_server, "first")
    second = make_relay(org, redis_server, "second")
    expected: dict[str, list[int]] = {ORDER: [], SHIP: []}
    expected[ORDER] += await publish(org, ORDER, 300)
    first_task = asyncio.create_task(first.run())
    await wait_until(lambda: first.role is Role.LEADER, "first to lead")
    second_task = asyncio.create_task(second.run())
    await wait_until(lambda: second.role is Role.STANDBY, "second to stand by")
    expected[SHIP] += await publish(org, SHIP, 300)
    await wait_until(lambda: first.written >= 100, "first to write")
    # The leader crashes: no write finished, no lease released.
    first_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first_task
    expected[ORDER] += await publish(org, ORDER, 200, 300)
    await wait_until(lambda: second.role is Role.LEADER, "second to lead")
    expected[SHIP] += await publish(org, SHIP, 200, 300)
    await settle(raw, expected)
    second.stop()
    await second_task
    for channel, ids in expected.items():
        assert await stream_ids(raw, channel) == ids  # in order, none lost, none twice
    first_entries: Any = await raw.xrange(stream_key(SET, ORDER), count=1)
    entry = first_entries[0][1]
    message = json.loads(entry[b"event"])
    assert message["channel"] == ORDER
    assert entry[b"event_uuid"].decode() == message["data"]["event"]["EventUuid"]
    assert second.written > 0


async def test_stop_finishes_and_releases_the_lease_for_a_fast_takeover(
    org: Emulator, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    # A long TTL: the standby can only take over this fast if the lease was released.
    first = make_relay(org, redis_server, "first", lease_ttl=30.0)
    second = make_relay(org, redis_server, "second", lease_ttl=30.0)
    ids = await publish(org, ORDER, 50)
    first_task = asyncio.create_task(first.run())
    await wait_until(lambda: first.role is Role.LEADER, "first to lead")
    second_task = asyncio.create_task(second.run())
    await wait_until(lambda: second.role is Role.STANDBY, "second to stand by")
    first.stop()
    await asyncio.wait_for(first_task, WAIT)
    assert first.role is Role.STOPPED
    await wait_until(lambda: second.role is Role.LEADER, "second to lead", timeout=5.0)
    ids += await publish(org, ORDER, 50, 50)
    await settle(raw, {ORDER: ids})
    second.stop()
    await second_task
    assert await stream_ids(raw, ORDER) == ids


async def test_an_engine_that_lost_its_data_is_refilled_from_retention(
    org: Emulator, tmp_path: Any
) -> None:
    server = RedisServer(tmp_path / "r").start()
    try:
        relay = make_relay(org, server, "only", lease_ttl=2.0)
        task = asyncio.create_task(relay.run())
        ids = await publish(org, ORDER, 100)
        raw = aioredis.Redis.from_url(server.url)
        try:
            await settle(raw, {ORDER: ids})
        finally:
            await raw.aclose()
        # The engine dies and comes back empty (no persistence): positions are gone with
        # the entries, and the relay fetches everything again from Salesforce's retention.
        server.kill()
        server.start()
        ids += await publish(org, ORDER, 20, 100)
        raw = aioredis.Redis.from_url(server.url)
        try:
            await settle(raw, {ORDER: ids})
            assert await stream_ids(raw, ORDER) == ids
        finally:
            await raw.aclose()
        relay.stop()
        await asyncio.wait_for(task, WAIT)
    finally:
        server.stop()


def start_with(org: Emulator, sink: RedisSink) -> tuple[Relay, asyncio.Task[None]]:
    """A relay of both channels into ``sink``, running."""
    channel_set = ChannelSet(SET, (ORDER, SHIP), replay=int(ReplayOption.ALL_EVENTS))
    relay = Relay(channel_set, sink, client_factory(org), holder="only", lease_ttl=2.0)
    return relay, asyncio.create_task(relay.run())


class FailingSink(RedisSink):
    """A real Redis sink whose second write fails with ``error`` after ``delay`` seconds, and
    with ``times`` > 1 the writes after it too (an engine that failed, or refuses an event)."""

    def __init__(self, url: str, error: SinkError, *, delay: float = 0.0, times: int = 1) -> None:
        super().__init__(url, channel_set=SET)
        self.error, self.delay, self.times = error, delay, times
        self.writes = 0

    async def write(self, lease: Any, events: Any) -> None:
        self.writes += 1
        if 2 <= self.writes < 2 + self.times:
            await asyncio.sleep(self.delay)
            raise self.error
        await super().write(lease, events)


async def test_a_write_that_fails_while_the_channels_are_quiet_ends_the_term_at_once(
    org: Emulator, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    # The failed write's events must be written again from Salesforce's retention without
    # waiting for another event to arrive (on a quiet channel that may be never).
    # (the relay is idle, waiting for the next event, when the write fails)
    sink = FailingSink(redis_server.url, SinkError("the engine failed (injected)"), delay=0.2)
    relay, task = start_with(org, sink)
    ids = await publish(org, ORDER, 5)
    await settle(raw, {ORDER: ids})
    ids += await publish(org, ORDER, 5, 5)  # its write fails; nothing is published after it
    await settle(raw, {ORDER: ids})
    assert await stream_ids(raw, ORDER) == ids
    assert sink.writes >= 3
    relay.stop()
    await asyncio.wait_for(task, WAIT)


async def test_an_event_the_engine_refuses_for_good_stops_the_relay(
    org: Emulator, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    # Every new term would meet the same event again: the relay stops with the error (and
    # gives the lease up) instead of subscribing again for ever; skipping it would lose it.
    refused = EventRefused("an event is larger than the engine takes (injected)")
    sink = FailingSink(redis_server.url, refused, times=10)
    _relay, task = start_with(org, sink)
    ids = await publish(org, ORDER, 5)
    await settle(raw, {ORDER: ids})
    await publish(org, ORDER, 1, 5)
    with pytest.raises(EventRefused, match="larger than the engine takes"):
        await asyncio.wait_for(task, WAIT)
    assert sink.writes == 2
    assert await raw.exists(sink.lease_key) == 0  # released: no standby waits for a TTL
    assert await stream_ids(raw, ORDER) == ids


async def test_a_stop_during_the_renewal_after_an_engine_failure_releases_the_lease(
    org: Emulator, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    class StopWhileRenewing(FailingSink):
        relay: Relay

        async def renew(self, lease: Any) -> Any:
            if self.writes >= 2:  # after the failed write: the renewal of the recovery
                self.relay.stop()  # SIGTERM arrives while the engine answers
            return await super().renew(lease)

    sink = StopWhileRenewing(redis_server.url, SinkError("the engine failed (injected)"))
    relay, task = start_with(org, sink)
    sink.relay = relay
    await publish(org, ORDER, 1)
    await wait_until(lambda: sink.writes >= 1, "the first write")
    await publish(org, ORDER, 1, 1)  # its write fails: a new term after a renewal
    await asyncio.wait_for(task, WAIT)
    assert relay.role is Role.STOPPED
    assert await raw.exists(sink.lease_key) == 0  # released: a standby takes over at once


async def test_a_leader_whose_writes_keep_failing_is_not_healthy(
    org: Emulator, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    # Redis at maxmemory refuses every XADD, but still renews the lease (PEXPIRE takes no
    # memory): the leader keeps it and fails each new term's write. /healthz must say so.
    relay, task = start_with(org, RedisSink(redis_server.url, channel_set=SET))
    try:
        ids = await publish(org, ORDER, 5)
        await settle(raw, {ORDER: ids})
        assert relay.healthy()
        await raw.config_set("maxmemory", 1)
        ids += await publish(org, ORDER, 5, 5)
        await wait_until(lambda: not relay.healthy(), "the relay to report itself unhealthy")
        assert relay.role is Role.LEADER
        assert relay.status()["healthy"] is False
        await raw.config_set("maxmemory", 0)
        await settle(raw, {ORDER: ids})
        await wait_until(relay.healthy, "the relay to be healthy again once it writes")
        assert await stream_ids(raw, ORDER) == ids
    finally:
        await raw.config_set("maxmemory", 0)
        relay.stop()
        await asyncio.wait_for(task, WAIT)


async def test_sink_replay_storage_reads_the_engine(redis_server: RedisServer) -> None:
    async with RedisSink(redis_server.url, channel_set=SET) as sink:
        storage = SinkReplayStorage(sink, "default", int(ReplayOption.ALL_EVENTS))
        assert await storage.get_replay_id(ORDER) == -2
        lease = await sink.acquire(SET, "a", 5)
        assert lease is not None
        from tests.relay.test_redis_sink import event

        await sink.write(lease, [event(7)])
        assert await storage.get_replay_id(ORDER + "?x=1") == 7
        marker = await storage.get_replay_marker(ORDER)
        assert marker is not None
        await storage.set_replay_marker(ORDER, marker._replace(replay_id=99))
        assert await storage.get_replay_id(ORDER) == 7  # the write is what advances it


async def test_salesforce_failures_at_the_start_of_a_term_are_retried(
    org: Emulator, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    # Refused handshakes and failed connects end a term; the next term succeeds.
    org.concurrent_user_limit(2)
    org.http_error(502)
    relay = make_relay(org, redis_server, "only", lease_ttl=2.0)
    task = asyncio.create_task(relay.run())
    ids = await publish(org, ORDER, 20)
    await settle(raw, {ORDER: ids})
    assert relay.role is Role.LEADER
    relay.stop()
    await asyncio.wait_for(task, WAIT)
    assert await stream_ids(raw, ORDER) == ids


async def test_repeated_failures_hand_the_lease_over(
    org: Emulator, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    org.concurrent_user_limit(3)  # three terms in a row fail on this host
    roles: list[tuple[str, Role]] = []
    first = make_relay(
        org,
        redis_server,
        "first",
        max_failed_terms=3,
        on_role=lambda relay, role: roles.append((relay.holder, role)),
    )
    first_task = asyncio.create_task(first.run())
    await wait_until(lambda: ("first", Role.LEADER) in roles, "first to lead")
    second = make_relay(org, redis_server, "second")
    second_task = asyncio.create_task(second.run())
    await wait_until(lambda: second.role is Role.LEADER, "second to take over")
    assert ("first", Role.STANDBY) in roles
    ids = await publish(org, ORDER, 10)
    await settle(raw, {ORDER: ids})
    first.stop()
    second.stop()
    await asyncio.wait_for(asyncio.gather(first_task, second_task), WAIT)


async def test_wrong_credentials_at_the_first_login_end_the_relay(
    org: Emulator, redis_server: RedisServer
) -> None:
    from sfstream.exceptions import AuthenticationError

    channel_set = ChannelSet(SET, (ORDER,))

    def make(replay: ReplayMarkerStorage, on_status: Callable[[Status], None]) -> Client:
        auth = PasswordAuthenticator(
            org.consumer_key, org.consumer_secret, org.username, "wrong", login_url=org.login_url
        )
        return Client(auth, replay=replay, replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL)

    relay = Relay(channel_set, RedisSink(redis_server.url, channel_set=SET), make, lease_ttl=30)
    with pytest.raises(AuthenticationError):
        await asyncio.wait_for(relay.run(), WAIT)
    assert relay.role is Role.STOPPED
    async with RedisSink(redis_server.url, channel_set=SET) as sink:
        assert await sink.acquire(SET, "next", 5) is not None  # the lease was released
