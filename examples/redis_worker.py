"""A worker pool for events relayed into Redis Streams (``sfstream relay --sink redis://...``).

The relay writes each channel of a channel set into its own stream,
``sfstream:{<set>}:<channel>``; each entry has the fields ``replay_id``, ``channel``,
``event`` (the Bayeux message as received, JSON), ``date`` and, for platform events and CDC,
``event_uuid``. Workers share the stream through a consumer group: Redis hands each entry to
one worker (``XREADGROUP``), the worker acknowledges it once processed (``XACK``), and entries a
dead worker took but never acknowledged are claimed by another after ``--claim-after`` seconds
(``XAUTOCLAIM``). Start as many as you like, on any host::

    python examples/redis_worker.py --redis redis://127.0.0.1:6379/0 \\
        --set orders --channel /event/Order__e --group billing --consumer worker-1

Delivery is at least once: an entry is handed out again when its worker dies before ``XACK``
(and, rarely, after a relay failover, an event can be in the stream twice). Make the handler
idempotent with the replay id (or ``event_uuid``): here, a set of processed replay ids in Redis,
checked and updated in the same ``MULTI`` as the ``XACK``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

Handler = Callable[[dict[str, Any]], Awaitable[None]]


def stream_key(channel_set: str, channel: str) -> str:
    """The stream of ``channel`` (as ``sfstream.relay.RedisSink.stream_key`` names it)."""
    return f"sfstream:{{{channel_set}}}:{channel.partition('?')[0]}"


async def ensure_group(redis: aioredis.Redis, stream: str, group: str) -> None:
    """Create the consumer group (from the stream's beginning) unless it exists."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


async def print_event(event: dict[str, Any]) -> None:
    """The example's handler: one line per event. Put your processing here."""
    payload = event["data"].get("payload") or event["data"].get("sobject")
    print(f"{event['channel']} #{event['data']['event']['replayId']}: {payload}", flush=True)


async def work(
    redis: aioredis.Redis,
    stream: str,
    group: str,
    consumer: str,
    handle: Handler = print_event,
    *,
    claim_after: float = 60.0,
    count: int | None = None,
    block: float = 5.0,
) -> int:
    """Process entries of ``stream`` as ``consumer`` of ``group``; return how many were processed.

    Stops after ``count`` entries (None: never).
    """
    await ensure_group(redis, stream, group)
    done_key = f"{stream}:done:{group}"  # replay ids already processed (idempotence)
    processed = 0
    while count is None or processed < count:
        # Entries a dead worker took and never acknowledged, then new ones.
        _next, entries, _deleted = await redis.xautoclaim(
            stream, group, consumer, min_idle_time=int(claim_after * 1000), count=100
        )
        if not entries:
            found: Any = await redis.xreadgroup(
                group, consumer, {stream: ">"}, count=100, block=int(block * 1000)
            )
            entries = found[0][1] if found else []
        for entry_id, fields in entries:
            replay_id = fields[b"replay_id"].decode()
            if not await redis.sismember(done_key, replay_id):
                await handle(json.loads(fields[b"event"]))
            async with redis.pipeline(transaction=True) as pipe:  # MULTI ... EXEC
                pipe.sadd(done_key, replay_id)  # type: ignore[unused-awaitable]
                pipe.xack(stream, group, entry_id)  # type: ignore[unused-awaitable]
                await pipe.execute()
            processed += 1
            if count is not None and processed >= count:
                break
    return processed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--set", default="sfstream", help="the relay's channel set (--name)")
    parser.add_argument("--channel", required=True, help="e.g. /event/Order__e")
    parser.add_argument("--group", default="workers")
    parser.add_argument("--consumer", default=socket.gethostname())
    parser.add_argument("--claim-after", type=float, default=60.0, metavar="S")
    parser.add_argument("--count", type=int, help="stop after N events")
    args = parser.parse_args()
    redis = aioredis.Redis.from_url(args.redis)
    try:
        await work(
            redis,
            stream_key(args.set, args.channel),
            args.group,
            args.consumer,
            claim_after=args.claim_after,
            count=args.count,
        )
    finally:
        await redis.aclose()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        # Ctrl-C cancelled main(): the entry being processed was not acknowledged (another
        # worker gets it after --claim-after), and the connection was closed on the way out.
        print("stopped (Ctrl-C)", file=sys.stderr)
        sys.exit(130)
