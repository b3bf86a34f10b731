"""Memory: the client's RSS while it receives a million events.

The emulator (own process) holds a backlog of ``--memory-events`` platform events; the
sfstream client (own process, default ``max_pending_count``) subscribes with ALL_EVENTS and
receives all of them, sampling its RSS (psutil) every ``--sample-every`` events. A second run
is a slow consumer: it sleeps ``--slow-ms`` every ``--slow-every`` events, so the prefetch
queue fills and polling pauses (backpressure) again and again.

Reported: RSS after ``open()`` and before the first event (start), after the last event
(end), the peak, the growth end - start, the growth over the second half of the run (a leak
shows there), the most messages seen waiting, and how often polling paused.

``python -m benchmarks.memory [--quick] [--memory-events N] [--json PATH]``
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from benchmarks._common import (
    ROOT,
    Child,
    ChildError,
    Table,
    bench_python,
    fmt,
    machine_facts,
    python_child_env,
    run_alone,
)
from benchmarks._harness import PLATFORM_CHANNEL, Server

MB = 1024 * 1024


async def measure(
    server: Server, count: int, sample_every: int, slow_every: int, slow_ms: float, json_lib: str
) -> dict[str, Any]:
    argv = [
        bench_python(),
        "-m",
        "benchmarks._client_sfstream",
        "memory",
        *server.credentials(),
        "--channel",
        PLATFORM_CHANNEL,
        "--count",
        str(count),
        "--json",
        json_lib,
        "--sample-every",
        str(sample_every),
        "--slow-every",
        str(slow_every),
        "--slow-ms",
        str(slow_ms),
        "--stall",
        "30",
    ]
    child = await Child.start("sfstream memory", argv, cwd=ROOT, env=python_child_env())
    try:
        await child.expect("ready", 60)
        child.send({"op": "go"})
        budget = 120 + count * 20e-6 + (count // slow_every * slow_ms / 1000 if slow_every else 0)
        result = await child.expect("done", budget * 2)
    except ChildError as exc:
        return {"error": str(exc).splitlines()[0][:300]}
    finally:
        await child.stop()
    samples = result["samples"]
    half = [s for s in samples if s[0] >= count // 2]
    result["growth"] = result["end_rss"] - result["start_rss"]
    result["second_half_growth"] = half[-1][1] - half[0][1] if len(half) > 1 else 0
    result["peak_growth"] = result["peak_rss"] - result["start_rss"]
    return result


async def run(options: argparse.Namespace) -> dict[str, Any]:
    facts = machine_facts()
    count = options.memory_events
    print(f"starting the emulator with {count:,} platform events...", flush=True)
    server = await Server.start(platform_events=count)
    runs: dict[str, Any] = {}
    try:
        for label, slow_every in (("default consumer", 0), ("slow consumer", options.slow_every)):
            print(f"memory: {label}, {count:,} events", flush=True)
            runs[label] = await measure(
                server, count, options.sample_every, slow_every, options.slow_ms, "json"
            )
            runs[label]["slow_every"] = slow_every
    finally:
        await server.stop()
    return {
        "benchmark": "memory",
        "machine": facts,
        "options": {
            "events": count,
            "sample_every": options.sample_every,
            "slow_every": options.slow_every,
            "slow_ms": options.slow_ms,
            "max_batch": 10_000,
        },
        "runs": runs,
    }


def table(data: dict[str, Any]) -> Table:
    opts = data["options"]
    t = Table(
        f"Memory: client RSS over {opts['events']:,} events (sfstream, json, default "
        f"max_pending_count; emulator max batch {opts['max_batch']:,})",
        [
            "run",
            "events",
            "start MB",
            "peak MB",
            "end MB",
            "growth MB",
            "2nd-half growth MB",
            "max waiting",
            "pauses",
            "events/s",
        ],
    )
    for label, r in data["runs"].items():
        if "error" in r:
            t.add(label, "failed", *["-"] * 8)
            t.notes.append(f"{label}: {r['error']}")
            continue
        name = label
        if r["slow_every"]:
            name += f" ({opts['slow_ms']:g} ms every {r['slow_every']})"
        t.add(
            name,
            fmt(r["received"]),
            fmt(r["start_rss"] / MB),
            fmt(r["peak_rss"] / MB),
            fmt(r["end_rss"] / MB),
            fmt(r["growth"] / MB),
            fmt(r["second_half_growth"] / MB),
            str(r["max_pending_seen"]),
            str(r["paused"]),
            fmt(r["received"] / r["wall"]),
        )
    t.notes += [
        "start: after open(), before subscribing; growth = end - start; peak: the process's "
        "RSS high-water mark (VmHWM). max waiting: the most messages seen in the prefetch queue "
        "(one long-poll reply can carry up to the emulator's max batch); pauses: how often "
        "polling stopped because max_pending_count messages waited.",
    ]
    return t


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory-events", type=int, help="events received per run")
    parser.add_argument("--sample-every", type=int, default=50_000)
    parser.add_argument("--slow-every", type=int, default=100)
    parser.add_argument("--slow-ms", type=float, default=1.0)


def apply_defaults(options: argparse.Namespace) -> None:
    if options.memory_events is None:
        options.memory_events = 200_000 if options.quick else 1_000_000
    if options.quick:
        options.sample_every = min(options.sample_every, 20_000)


def main() -> None:
    run_alone(sys.modules[__name__])


if __name__ == "__main__":
    main()
