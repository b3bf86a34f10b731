"""``examples/redis_worker.py``: a consumer group shares the relayed entries; a dead worker's
entries are claimed by another; a duplicate entry is handled once."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis.asyncio as aioredis

from sfstream.relay import RelayEvent
from sfstream.relay._redis import RedisSink
from tests.relay._engines import RedisServer

ROOT = Path(__file__).resolve().parents[2]
ORDER = "/event/Order__e"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("redis_worker", ROOT / "examples/redis_worker.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["redis_worker"] = module
    spec.loader.exec_module(module)
    return module


worker = load_example()


def event(replay_id: int) -> RelayEvent:
    message = {
        "channel": ORDER,
        "data": {"event": {"replayId": replay_id}, "payload": {"N__c": replay_id}},
    }
    return RelayEvent(
        "default", ORDER, replay_id, "2026-01-01T00:00:00Z", json.dumps(message).encode()
    )


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def fill(redis_server: RedisServer, ids: range) -> None:
    async with RedisSink(redis_server.url, channel_set="orders") as sink:
        lease = await sink.acquire("orders", "relay", 5)
        assert lease is not None
        await sink.write(lease, [event(i) for i in ids])


async def test_workers_share_a_stream_and_reclaim_a_dead_workers_entries(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    await fill(redis_server, range(1, 101))
    stream = worker.stream_key("orders", ORDER)
    assert stream == RedisSink(redis_server.url, channel_set="orders").stream_key(ORDER)
    await worker.ensure_group(redis, stream, "billing")
    await worker.ensure_group(redis, stream, "billing")  # exists: fine
    # A worker takes 10 entries and dies before acknowledging them.
    taken: Any = await redis.xreadgroup("billing", "dead", {stream: ">"}, count=10)
    assert len(taken[0][1]) == 10
    seen: list[int] = []
    all_seen = asyncio.Event()

    async def handle(message: dict[str, Any]) -> None:
        seen.append(message["data"]["event"]["replayId"])
        if len(set(seen)) == 100:
            all_seen.set()
        await asyncio.sleep(0)

    await asyncio.sleep(0.3)  # the dead worker's entries are now idle for 0.3 s
    workers = [
        asyncio.create_task(
            worker.work(redis, stream, "billing", name, handle, claim_after=0.25, block=0.1)
        )
        for name in ("a", "b")
    ]
    try:
        async with asyncio.timeout(20):
            await all_seen.wait()
        await asyncio.sleep(0.1)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    assert sorted(seen) == list(range(1, 101))  # each once, the dead worker's included
    pending: Any = await redis.xpending(stream, "billing")
    assert pending["pending"] == 0


async def test_a_duplicate_entry_is_handled_once(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    await fill(redis_server, range(1, 4))
    stream = worker.stream_key("orders", ORDER)
    await redis.xadd(stream, {"replay_id": "2", "channel": ORDER, "event": "{}"})
    seen: list[int] = []

    async def handle(message: dict[str, Any]) -> None:
        seen.append(message["data"]["event"]["replayId"])

    assert await worker.work(redis, stream, "g", "a", handle, count=4, block=0.2) == 4
    assert seen == [1, 2, 3]


async def test_print_event(capsys: pytest.CaptureFixture[str]) -> None:
    await worker.print_event(json.loads(event(5).payload))
    assert "/event/Order__e #5: {'N__c': 5}" in capsys.readouterr().out
