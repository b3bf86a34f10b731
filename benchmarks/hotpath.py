"""The receive path in one process, stage by stage, on synthetic replies (no network).

``python -m benchmarks.hotpath [--events-per-reply N] [--replies R] [--repeat K]``

A development aid for issue #13: it times, in ns per event (CPU time, the minimum of
``--repeat`` runs, the collector off for the parse as the transport does for large replies),

- ``json.loads`` of the reply bodies (the parse floor),
- ``decode()``: the parse and the codec's validation,
- the engine's ``receive()`` with the Salesforce replay extension, right after each decode
  (measured with it, less ``decode()``),
- the consumer: the driver's queue served to ``async for`` over a Salesforce ``Client``
  (replay ``ALL_EVENTS``, the AUTOMATIC policy: nothing to store), and the same with
  ``receive_many(100)``.

The replies look like the emulator's platform-event replies (about 440 bytes an event) and end
with the ``/meta/connect`` answer. The end-to-end figures are the throughput benchmark's; this
one shows which stage a change moved.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections.abc import Callable
from typing import Any

from benchmarks._server import platform_payloads
from sfstream import PasswordAuthenticator, ReplayOption
from sfstream.bayeux import BayeuxClient, MockTransport
from sfstream.bayeux._codec import decode
from sfstream.bayeux._engine import BayeuxEngine
from sfstream.salesforce._client import Client
from sfstream.salesforce._replay import ReplayExtension

CHANNEL = "/event/Bench__e"


def reply(first: int, count: int) -> bytes:
    fields = platform_payloads(count)
    messages: list[dict[str, Any]] = [
        {
            "channel": CHANNEL,
            "data": {
                "schema": "7Lt0z_xuqKnaHxjN0ZQpHw",
                "payload": {
                    **payload,
                    "CreatedDate": "2026-12-07T10:00:00.000Z",
                    "CreatedById": "005Hs00000ABCDEFGH",
                },
                "event": {
                    "EventUuid": "0b4ad5b8-8d43-4f4e-a3b1-2c6f2f0e5c11",
                    "replayId": n,
                    "EventApiName": "Bench__e",
                },
            },
        }
        for n, payload in enumerate(fields, first)
    ]
    messages.append(
        {
            "channel": "/meta/connect",
            "clientId": "4Q1abc",
            "id": "7",
            "successful": True,
            "advice": {"reconnect": "retry", "interval": 0, "timeout": 110000},
        }
    )
    return json.dumps(messages, separators=(",", ":")).encode()


def timed(repeat: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        cpu = time.process_time()
        run()
        best = min(best, time.process_time() - cpu)
    return best


def each(function: Callable[[bytes], object], bodies: list[bytes]) -> None:
    """``function`` on each body in turn, each result dropped before the next (as a drain)."""
    for body in bodies:
        function(body)


def without_gc(run: Callable[[], object]) -> Callable[[], object]:
    def wrapped() -> object:
        gc.disable()
        try:
            return run()
        finally:
            gc.enable()

    return wrapped


def engine_with_replay() -> BayeuxEngine:
    replay = ReplayExtension()
    replay.outgoing({"channel": "/meta/subscribe", "subscription": CHANNEL})
    return BayeuxEngine(extensions=[replay])


async def consume(bodies: list[bytes], events: int, repeat: int, batch: int) -> float:
    """CPU per event of serving decoded replies from the driver's queue to the consumer."""
    client = Client(
        PasswordAuthenticator("key", "secret", "user", "password"),
        replay=ReplayOption.ALL_EVENTS,
        max_pending_count=0,
    )
    bayeux = BayeuxClient("http://127.0.0.1:1/cometd", transport=MockTransport(lambda r: []))
    client._bayeux = bayeux  # the queue is filled by hand below: no server
    best = float("inf")
    for _ in range(repeat):
        replies = [decode(body) for body in bodies]
        gc.collect()
        cpu = time.process_time()
        received = 0
        for messages in replies:
            bayeux._queue.extend(messages[:-1])
            bayeux._until_yield = 1 << 30
            if batch:
                while bayeux._queue:
                    for message in await client.receive_many(batch):
                        received += 1
                        message["data"]["event"]["replayId"]
            else:
                async for message in client:
                    received += 1
                    message["data"]["event"]["replayId"]
                    if not bayeux._queue:
                        break
        best = min(best, time.process_time() - cpu)
        assert received == events, received
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events-per-reply", type=int, default=1000)
    parser.add_argument("--replies", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    options = parser.parse_args()
    per = options.events_per_reply
    bodies = [reply(i * per + 1, per) for i in range(options.replies)]
    events = per * options.replies
    repeat = options.repeat

    def ns(seconds: float) -> str:
        return f"{seconds / events * 1e9:7.0f} ns/event"

    floor = timed(repeat, without_gc(lambda: each(json.loads, bodies)))
    print(f"json.loads (gc off)          {ns(floor)}")
    parsed = timed(repeat, without_gc(lambda: each(decode, bodies)))
    print(f"decode() (gc off)            {ns(parsed)}  (+{ns(parsed - floor).strip()})")

    engine = engine_with_replay()

    def engine_run() -> None:
        # reply by reply, as the driver does: the engine meets messages the parse just made
        for body in bodies:
            engine.receive(decode(body))

    both = timed(repeat, without_gc(engine_run))
    print(f"engine.receive + replay ext  {ns(both - parsed)}  (after each decode)")
    for batch in (0, 100):
        spent = asyncio.run(consume(bodies, events, repeat, batch))
        label = "async for" if not batch else f"receive_many({batch})"
        print(f"consumer, {label:<19}{ns(spent)}")


if __name__ == "__main__":
    main()
