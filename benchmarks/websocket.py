"""WebSocket against long polling: delivery latency and throughput on the same Faye server.

One Faye 1.4.3 server (``tests/interop/peers/faye_server.mjs``, long-poll hold 25 s) serves
both transports on one endpoint. For each transport in turn, this process subscribes a
BayeuxClient with that transport, and a publisher in a child process (always a WebSocket
BayeuxClient, so that both runs are fed the same way) publishes through Faye:

- latency: events at a steady rate, each carrying ``time.monotonic_ns()`` taken just before
  its publish (``CLOCK_MONOTONIC`` is shared by the processes of a Linux machine); the
  subscriber subtracts it from the moment ``receive()`` returned. The path: Bayeux publish →
  Faye → the subscriber's transport → parse, queue, ``receive()``.
- throughput: a burst of events published as fast as the publisher can (16 publishes in
  flight), timed from the first to the last event received.

``python -m benchmarks.websocket [--quick] [--ws-events N] [--ws-rate R] [--ws-burst N]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from benchmarks._common import (
    ROOT,
    Child,
    ChildError,
    Table,
    bench_python,
    fmt,
    machine_facts,
    percentile,
    python_child_env,
    run_alone,
)
from sfstream.bayeux import BayeuxClient

CHANNEL = "/bench/ws"
TRANSPORTS = ("long-polling", "websocket")
#: Publishes in flight during the throughput burst.
IN_FLIGHT = 16


# -- the publisher (a child process) ------------------------------------------------------------


async def _publisher(url: str) -> None:
    """Reads commands on stdin: {"rate": R, "count": N} or {"burst": N}; prints "done"."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with BayeuxClient(url, connection_types=("websocket",)) as client:
        print(json.dumps({"event": "ready"}), flush=True)
        while line := await reader.readline():
            command = json.loads(line)
            late = 0
            if "rate" in command:
                start = loop.time() + 0.2
                for index in range(command["count"]):
                    delay = start + index / command["rate"] - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    else:
                        late += 1
                    await client.publish(CHANNEL, {"n": index, "sent_ns": time.monotonic_ns()})
            else:
                queue = iter(range(command["burst"]))
                await asyncio.gather(*(_publish_from(client, queue) for _ in range(IN_FLIGHT)))
            print(json.dumps({"event": "done", "late": late}), flush=True)


async def _publish_from(client: BayeuxClient, numbers: Iterator[int]) -> None:
    for index in numbers:
        await client.publish(CHANNEL, {"n": index, "sent_ns": 0})


# -- the subscriber (this process) --------------------------------------------------------------


async def _receive(client: BayeuxClient, count: int, stall: float) -> list[tuple[int, int]]:
    """``count`` messages as (now_ns, sent_ns), or fewer if none came for ``stall`` seconds."""
    got: list[tuple[int, int]] = []
    while len(got) < count:
        try:
            async with asyncio.timeout(stall):
                message = await client.receive()
        except TimeoutError:
            break
        got.append((time.monotonic_ns(), message["data"]["sent_ns"]))
    return got


async def measure(url: str, transport: str, options: argparse.Namespace) -> dict[str, Any]:
    argv = [bench_python(), "-m", "benchmarks.websocket", "--publisher", url]
    async with BayeuxClient(url, connection_types=(transport,), max_pending_count=0) as client:
        await client.subscribe(CHANNEL)
        child = await Child.start("publisher", argv, cwd=ROOT, env=python_child_env())
        try:
            await child.expect("ready", 30)
            await asyncio.sleep(0.5)  # let the held connect settle
            events, rate = options.ws_events, options.ws_rate
            receiving = asyncio.create_task(_receive(client, events, 10))
            child.send({"rate": rate, "count": events})
            published = await child.expect("done", 30 + events / rate)
            latencies = [(now - sent) / 1e6 for now, sent in await receiving]

            burst = options.ws_burst
            receiving = asyncio.create_task(_receive(client, burst, 10))
            child.send({"burst": burst})
            await child.expect("done", 120)
            times = [now for now, _ in await receiving]
        except ChildError as exc:
            return {"error": str(exc).splitlines()[0][:300]}
        finally:
            await child.stop()
    seconds = (times[-1] - times[0]) / 1e9 if len(times) > 1 else None
    return {
        "connection_type": client.connection_type or transport,
        "events": len(latencies),
        "p50_ms": percentile(latencies, 0.50) if latencies else None,
        "p99_ms": percentile(latencies, 0.99) if latencies else None,
        "max_ms": max(latencies) if latencies else None,
        "late": published.get("late", 0),
        "burst": len(times),
        "per_second": (len(times) - 1) / seconds if seconds else None,
    }


async def run(options: argparse.Namespace) -> dict[str, Any]:
    from tests.interop._peers import FayeServer, missing_node_modules

    facts = machine_facts()
    problem = missing_node_modules()
    if problem is not None:
        return {"benchmark": "websocket", "machine": facts, "error": problem, "transports": {}}
    server = FayeServer(timeout=25.0, verbose=False)
    server.check_concurrent_connects = False
    await server.start()
    results: dict[str, Any] = {}
    try:
        for transport in TRANSPORTS:
            print(
                f"websocket: {transport}, {options.ws_events:,} events at {options.ws_rate:g}/s, "
                f"then a burst of {options.ws_burst:,}",
                flush=True,
            )
            results[transport] = await measure(server.url, transport, options)
    finally:
        await server.stop()
    return {
        "benchmark": "websocket",
        "machine": facts,
        "options": {
            "events": options.ws_events,
            "rate": options.ws_rate,
            "burst": options.ws_burst,
        },
        "transports": results,
    }


def table(data: dict[str, Any]) -> Table:
    opts = data.get("options", {})
    t = Table(
        f"WebSocket vs long polling on one Faye 1.4.3 server ({opts.get('events', 0):,} events "
        f"at {opts.get('rate', 0):g}/s; a burst of {opts.get('burst', 0):,}; loopback)",
        ["transport", "events", "p50 ms", "p99 ms", "max ms", "burst msg/s"],
    )
    if "error" in data:
        t.notes.append(f"not run: {data['error']}")
    for name, r in data["transports"].items():
        if "error" in r:
            t.add(name, "failed", "-", "-", "-", "-")
            t.notes.append(f"{name}: {r['error']}")
            continue
        t.add(
            name,
            str(r["events"]),
            fmt(r["p50_ms"], 2),
            fmt(r["p99_ms"], 2),
            fmt(r["max_ms"], 2),
            fmt(r["per_second"], 0),
        )
    t.notes.append(
        "Latency: receive() returned minus time.monotonic_ns() taken before the publish (a "
        "WebSocket publisher in another process). Burst: events received per second from the "
        f"first to the last of a burst published {IN_FLIGHT} at a time."
    )
    return t


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ws-events", type=int, help="events published for latency")
    parser.add_argument("--ws-rate", type=float, help="events published per second")
    parser.add_argument("--ws-burst", type=int, help="events in the throughput burst")


def apply_defaults(options: argparse.Namespace) -> None:
    if options.ws_events is None:
        options.ws_events = 500 if options.quick else 3000
    if options.ws_rate is None:
        options.ws_rate = 200.0
    if options.ws_burst is None:
        options.ws_burst = 2000 if options.quick else 10000


def main() -> None:
    if sys.argv[1:2] == ["--publisher"]:
        asyncio.run(_publisher(sys.argv[2]))
        return
    run_alone(sys.modules[__name__])


if __name__ == "__main__":
    main()
