"""Latency: publish through the REST API, measure until ``receive()`` returns.

The emulator runs in its own process, the sfstream client in another (subscribed with
NEW_EVENTS, waiting in ``async for``), and this process publishes platform events at a steady
rate with ``POST /services/data/v67.0/sobjects/Latency__e/`` over a kept-alive connection.
Each payload carries ``time.monotonic_ns()`` taken just before its POST (``CLOCK_MONOTONIC``,
shared by the processes of a Linux machine); the client subtracts it from the moment
``receive()`` returned. The path measured: HTTP publish → emulator → the held
``/meta/connect`` answers → the client parses, queues and hands the event out.

``python -m benchmarks.latency [--quick] [--events N] [--rate R] [--json PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import aiohttp

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
from benchmarks._harness import Server

API_VERSION = "67.0"


async def publish(server: Server, count: int, rate: float) -> dict[str, Any]:
    """POST ``count`` events at ``rate`` per second on an absolute schedule."""
    ready = server.ready
    url = f"{ready['instance_url']}/services/data/v{API_VERSION}/sobjects/{ready['latency_event']}/"
    headers = {"Authorization": f"Bearer {ready['access_token']}"}
    late = 0
    failures = 0
    async with aiohttp.ClientSession() as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.2
        for index in range(count):
            delay = start + index / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late += 1
            body = {"Sent_Ns__c": time.monotonic_ns(), "Sequence__c": index}
            async with session.post(
                url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(10)
            ) as response:
                await response.read()
                if response.status != 201:
                    failures += 1
    return {"late": late, "failures": failures}


async def measure(server: Server, json_lib: str, count: int, rate: float) -> dict[str, Any]:
    argv = [
        bench_python(),
        "-m",
        "benchmarks._client_sfstream",
        "latency",
        *server.credentials(),
        "--channel",
        f"/event/{server.ready['latency_event']}",
        "--count",
        str(count),
        "--json",
        json_lib,
        "--stall",
        "20",
    ]
    child = await Child.start(f"sfstream ({json_lib})", argv, cwd=ROOT, env=python_child_env())
    try:
        await child.expect("ready", 60)
        await asyncio.sleep(0.5)  # let the first held connect settle
        published = await publish(server, count, rate)
        result = await child.expect("done", 60 + count / rate)
    except ChildError as exc:
        return {"error": str(exc).splitlines()[0][:300]}
    finally:
        await child.stop()
    values = [v / 1e6 for v in result["latencies_ns"]]  # ms
    return {
        "events": len(values),
        "rate": rate,
        "p50_ms": percentile(values, 0.50),
        "p90_ms": percentile(values, 0.90),
        "p99_ms": percentile(values, 0.99),
        "max_ms": max(values),
        "min_ms": min(values),
        "mean_ms": sum(values) / len(values),
        **published,
    }


async def run(options: argparse.Namespace) -> dict[str, Any]:
    facts = machine_facts()
    server = await Server.start(hold_time=25.0)
    results: dict[str, Any] = {}
    try:
        libs = ["json"]
        try:
            import orjson  # noqa: F401
        except ImportError:
            pass
        else:
            libs.append("orjson")
        for lib in libs:
            print(
                f"latency: sfstream ({lib}), {options.latency_events:,} events at "
                f"{options.rate:g}/s",
                flush=True,
            )
            results[f"sfstream-{lib}"] = await measure(
                server, lib, options.latency_events, options.rate
            )
    finally:
        await server.stop()
    return {
        "benchmark": "latency",
        "machine": facts,
        "options": {"events": options.latency_events, "rate": options.rate},
        "clients": results,
    }


def table(data: dict[str, Any]) -> Table:
    opts = data["options"]
    t = Table(
        f"Latency: REST publish → receive() returns ({opts['events']:,} events at "
        f"{opts['rate']:g}/s, loopback)",
        ["client", "events", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms", "late sends"],
    )
    for key, r in data["clients"].items():
        label = key.replace("sfstream-", "sfstream (") + ")"
        if "error" in r:
            t.add(label, "failed", "-", "-", "-", "-", "-", "-")
            t.notes.append(f"{label}: {r['error']}")
            continue
        t.add(
            label,
            fmt(r["events"]),
            fmt(r["p50_ms"], 2),
            fmt(r["p90_ms"], 2),
            fmt(r["p99_ms"], 2),
            fmt(r["max_ms"], 2),
            fmt(r["mean_ms"], 2),
            str(r["late"]),
        )
    t.notes.append(
        "Each latency: time.monotonic_ns() when receive() returned minus the value the "
        "publisher put in the payload just before its POST. Includes the REST request, the "
        "emulator, the long-poll reply, parsing and the queue."
    )
    return t


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--latency-events", type=int, help="events published (at least 1000)")
    parser.add_argument("--rate", type=float, help="events published per second")


def apply_defaults(options: argparse.Namespace) -> None:
    if options.latency_events is None:
        options.latency_events = 1000 if options.quick else 5000
    if options.rate is None:
        options.rate = 500.0 if options.quick else 200.0


def main() -> None:
    run_alone(sys.modules[__name__])


if __name__ == "__main__":
    main()
