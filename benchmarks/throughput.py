"""Throughput: drain a backlog, against the parse floor and the peers, side by side.

The emulator (its own process) holds a backlog of platform events and of Change Data Capture
events. Each client, in a process of its own, subscribes with ALL_EVENTS and receives the
whole backlog; it reports its wall time and its own CPU time, and the emulator reports what
serving the drain cost it. In the same run, the reply bodies of the same backlog are fetched
with bare aiohttp and decoded with ``json.loads`` (and ``orjson.loads``): the parse floor.
Rounds interleave the clients (in a rotating order) so that a noisy machine hits them all
alike; the table gives medians.

``python -m benchmarks.throughput [--quick] [--events N] [--cdc-events N] [--repeat R]
[--peers aiosfstream,aiosfstream-ng,jsforce | --no-peers] [--json PATH]``
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks import _peers
from benchmarks._common import Table, fmt, machine_facts, median, run_alone
from benchmarks._harness import CDC_CHANNEL, PLATFORM_CHANNEL, ClientSpec, Server, capture, drain

ALL_PEERS = ["aiosfstream", "aiosfstream-ng", "jsforce"]
BACKLOGS = {PLATFORM_CHANNEL: "platform events", CDC_CHANNEL: "CDC events"}


def _loaders() -> dict[str, Callable[[bytes], Any]]:
    loaders: dict[str, Callable[[bytes], Any]] = {"json": json.loads}
    try:
        import orjson
    except ImportError:
        pass
    else:
        loaders["orjson"] = orjson.loads
    try:
        import msgspec
    except ImportError:
        pass
    else:
        loaders["msgspec"] = msgspec.json.decode
    return loaders


def parse_floor(bodies: list[bytes], events: int, repeat: int) -> dict[str, float]:
    """CPU µs per event to decode ``bodies`` with each JSON library (median of ``repeat``).

    Each library twice: with the cyclic garbage collector on (as any code runs by default;
    key ``LIB``) and off for the whole loop (key ``LIB-nogc``). The parsed replies are kept
    until the loop ends, as a client keeps a reply's messages until they are consumed.
    """
    floors = {}
    for name, loads in _loaders().items():
        for collector in (True, False):
            times = []
            for _ in range(repeat):
                gc.collect()
                if not collector:
                    gc.disable()
                try:
                    cpu = time.process_time()
                    for body in bodies:
                        loads(body)
                    times.append(time.process_time() - cpu)
                finally:
                    gc.enable()
            key = name if collector else f"{name}-nogc"
            floors[key] = median(times) / events * 1e6  # type: ignore[operator]
    return floors


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r]
    errors = [r["error"] for r in runs if "error" in r]
    if not good:
        return {"runs": runs, "errors": errors, "count": max((r["count"] for r in runs), default=0)}
    count = good[0]["count"]
    wall = median([r["wall"] for r in good])
    cpu = median([r["cpu"] for r in good])
    server = median([r["server_cpu"] for r in good])
    assert wall is not None
    assert cpu is not None
    assert server is not None
    return {
        "runs": runs,
        "errors": errors,
        "count": count,
        "wall": wall,
        "cpu": cpu,
        "events_per_s": count / wall,
        "cpu_us_per_event": cpu / count * 1e6,
        "server_cpu_us_per_event": server / count * 1e6,
        "server_busy": median([r["server_cpu"] / r["wall"] for r in good]),
        "peak_rss": max(r.get("peak_rss", 0) for r in good),
    }


async def run(options: argparse.Namespace) -> dict[str, Any]:
    facts = machine_facts()
    peer_names = [] if options.no_peers else options.peers
    peers = _peers.prepare(peer_names, options.python39, options.python311)
    batches = {}
    for batch in options.max_batch:
        batches[str(batch)] = await run_batch(options, peers, batch)
    return {
        "benchmark": "throughput",
        "machine": facts,
        "options": {
            "events": options.events,
            "cdc_events": options.cdc_events,
            "repeat": options.repeat,
            "max_batch": options.max_batch,
            "peers": peer_names,
        },
        "peers": {
            p.name: {"label": p.label, "runtime": p.runtime, "error": p.error} for p in peers
        },
        "batches": batches,
    }


async def run_batch(
    options: argparse.Namespace, peers: list[_peers.Peer], batch: int
) -> dict[str, Any]:
    """Every client drains both backlogs from an emulator that puts ``batch`` events a reply."""
    libs = [lib for lib in _loaders() if lib in (options.json_libs or _loaders())]
    specs = [ClientSpec.sfstream(lib) for lib in libs]
    if options.receive_many:
        many = ClientSpec.sfstream("json", name="receive_many")
        many.env = {}
        many.extra = ["--receive-many", str(options.receive_many)]
        specs.append(many)
    for entry in options.compare_src or []:
        name, _, source = entry.rpartition("=")
        for lib in libs:
            specs.append(ClientSpec.sfstream(lib, source, name or "other"))
    specs += [ClientSpec.peer(p) for p in peers]
    counts = {PLATFORM_CHANNEL: options.events, CDC_CHANNEL: options.cdc_events}
    channels = [c for c in counts if counts[c] > 0]
    print(
        f"starting the emulator with {options.events:,} platform events and "
        f"{options.cdc_events:,} CDC events, {batch:,} per reply...",
        flush=True,
    )
    server = await Server.start(
        platform_events=options.events, cdc_events=options.cdc_events, max_batch=batch
    )
    results: dict[str, Any] = {"floor": {}, "serve": {}, "clients": {}}
    try:
        for channel in channels:
            print(f"capturing the reply bodies of {channel}...", flush=True)
            captured = await capture(server, channel, counts[channel])
            floors = parse_floor(captured["bodies"], captured["events"], max(5, options.repeat))
            results["floor"][channel] = floors
            results["serve"][channel] = {
                "events_per_s": captured["events"] / captured["wall"],
                "bytes_per_event": sum(map(len, captured["bodies"])) / captured["events"],
                "replies": len(captured["bodies"]),
                "fetch_cpu_us_per_event": captured["cpu"] / captured["events"] * 1e6,
            }
            del captured
        # Peers that fail on the whole backlog try a quarter of it, down to `floor_count`.
        limits = {(s.key, c): counts[c] for s in specs for c in channels}
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {
            (s.key, c): [] for s in specs for c in channels
        }
        usable = [s for s in specs if s.error is None]
        for round_index in range(options.repeat):
            order = usable[round_index % len(usable) :] + usable[: round_index % len(usable)]
            for channel in channels:
                for spec in order:
                    while True:
                        count = limits[(spec.key, channel)]
                        print(
                            f"round {round_index + 1}/{options.repeat}: {spec.label} drains "
                            f"{count:,} {BACKLOGS[channel]} ({batch:,} a reply)",
                            flush=True,
                        )
                        result = await drain(server, spec, channel, count, options.stall)
                        runs[(spec.key, channel)].append(result)
                        if "error" not in result:
                            break
                        print(f"  failed: {result['error']}", flush=True)
                        smaller = count // 4
                        if smaller < options.min_count:
                            break
                        limits[(spec.key, channel)] = smaller
        for spec in specs:
            for channel in channels:
                summary = (
                    _summarise(runs[(spec.key, channel)])
                    if spec.error is None
                    else {"runs": [], "errors": [spec.error], "count": 0}
                )
                summary.update(label=spec.label, runtime=spec.runtime)
                results["clients"].setdefault(spec.key, {})[channel] = summary
    finally:
        await server.stop()
    return results


FLOOR_NAMES = {"json": "json.loads", "orjson": "orjson.loads", "msgspec": "msgspec.json.decode"}


class Tables:
    """Several tables rendered one after the other (one per batch size)."""

    def __init__(self, tables: list[Table]) -> None:
        self.tables = tables

    def render(self, facts: list[str] | None = None) -> str:
        return "\n\n".join(t.render(facts or []) for t in self.tables)


def table(data: dict[str, Any]) -> Tables:
    return Tables(
        [
            batch_table(data["options"], int(batch), results)
            for batch, results in data["batches"].items()
        ]
    )


def batch_table(opts: dict[str, Any], batch: int, data: dict[str, Any]) -> Table:
    clients = data["clients"]
    libs = [lib for lib in FLOOR_NAMES if f"sfstream-{lib}" in clients]
    t = Table(
        f"Throughput: drain a backlog with ALL_EVENTS, {batch:,} events per reply "
        f"({opts['repeat']} rounds, medians)",
        [
            "client",
            "runtime",
            "backlog",
            "N",
            "events/s",
            "CPU µs/event",
            "x json floor",
            "x floor gc off",
            "emulator µs/event",
            "emulator busy",
            *(f"sfstream {lib} x" for lib in libs),
        ],
    )
    dashes = ["-"] * len(libs)
    for channel, name in BACKLOGS.items():
        if channel not in data["floor"]:
            continue
        floors = data["floor"][channel]
        serve = data["serve"][channel]
        for lib, floor in floors.items():
            base, _, nogc = lib.partition("-")
            t.add(
                f"parse floor: {FLOOR_NAMES[base]}{', gc off' if nogc else ''}",
                "this process",
                name,
                "-",
                "-",
                fmt(floor, 2),
                fmt(floor / floors["json"], 2),
                fmt(floor / floors["json-nogc"], 2),
                "-",
                "-",
                *dashes,
            )
        t.add(
            "emulator alone (raw fetch)",
            "aiohttp",
            name,
            "-",
            fmt(serve["events_per_s"]),
            fmt(serve["fetch_cpu_us_per_event"], 2),
            "-",
            "-",
            "-",
            "-",
            *dashes,
        )
        reference = {
            lib: clients.get(f"sfstream-{lib}", {}).get(channel, {}).get("events_per_s")
            for lib in libs
        }
        for key, per_channel in clients.items():
            s = per_channel.get(channel)
            if s is None:
                continue
            if "events_per_s" not in s:
                t.add(
                    s["label"],
                    s["runtime"] or "-",
                    name,
                    fmt(s["count"]),
                    "failed",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    *dashes,
                )
                continue
            ratios = []
            for lib in libs:
                ref = reference[lib]
                same = key == f"sfstream-{lib}"
                ratios.append("-" if ref is None or same else fmt(ref / s["events_per_s"], 2))
            t.add(
                s["label"],
                s["runtime"],
                name,
                fmt(s["count"]),
                fmt(s["events_per_s"]),
                fmt(s["cpu_us_per_event"], 2),
                fmt(s["cpu_us_per_event"] / floors["json"], 2),
                fmt(s["cpu_us_per_event"] / floors["json-nogc"], 2),
                fmt(s["server_cpu_us_per_event"], 2),
                f"{s['server_busy'] * 100:.0f} %",
                *ratios,
            )
    for per_channel in clients.values():
        for channel, s in per_channel.items():
            for error in dict.fromkeys(s.get("errors", [])):
                t.notes.append(f"{s['label']} on {BACKLOGS[channel]}: {error}")
    t.notes += [
        "CPU µs/event: the client process's own CPU time (user + system) while it drains, per "
        "event; the emulator runs in another process.",
        "x json floor: that CPU time over json.loads of the same reply bodies (captured with "
        "bare aiohttp in this run), with the garbage collector on; x floor gc off: over the "
        "same loop with the collector disabled. Peers ask for API 45.0/50.0 and get events without "
        "EventUuid (a few bytes less than sfstream's 67.0).",
        "emulator busy: the emulator's CPU time over the client's wall time during the drain "
        "(100 % would mean the emulator is the bottleneck). 'sfstream LIB x': how many times "
        "more events/s sfstream with that JSON library drains than the row's client.",
    ]
    return t


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, help="platform events in the backlog")
    parser.add_argument("--cdc-events", type=int, help="CDC events in the backlog")
    parser.add_argument("--repeat", type=int, help="rounds (each client drains once a round)")
    parser.add_argument(
        "--max-batch",
        type=lambda s: [int(b) for b in s.split(",") if b],
        default=[1000, 100],
        help="emulator events per reply, comma-separated: one table each (default 1000,100)",
    )
    parser.add_argument("--peers", type=lambda s: [p for p in s.split(",") if p], default=ALL_PEERS)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--python39", help="the Python 3.9 interpreter for aiosfstream 0.5.0")
    parser.add_argument("--python311", help="the Python 3.11 interpreter for aiosfstream-ng")
    parser.add_argument(
        "--stall", type=float, default=30.0, help="seconds without an event = stall"
    )
    parser.add_argument("--min-count", type=int, default=1000, help="smallest N tried for a peer")
    parser.add_argument(
        "--receive-many",
        type=int,
        default=0,
        metavar="N",
        help="also drain with sfstream (json) calling receive_many(N) instead of async for",
    )
    parser.add_argument(
        "--json-libs",
        type=lambda s: [lib for lib in s.split(",") if lib],
        metavar="LIB[,LIB...]",
        help="the JSON libraries sfstream drains with (default: json, orjson, msgspec)",
    )
    parser.add_argument(
        "--compare-src",
        action="append",
        metavar="NAME=SRC_DIR",
        help="also run sfstream imported from another source tree (e.g. a checkout of an older "
        "commit's src/), for before/after figures in one run; repeatable",
    )


def apply_defaults(options: argparse.Namespace) -> None:
    quick = options.quick
    if options.events is None:
        options.events = 20_000 if quick else 200_000
    if options.cdc_events is None:
        options.cdc_events = 10_000 if quick else 100_000
    if options.repeat is None:
        options.repeat = 3 if quick else 5


def main() -> None:
    run_alone(sys.modules[__name__])


if __name__ == "__main__":
    main()
