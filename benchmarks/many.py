"""Many clients in one process: memory, idle CPU and fan-out latency.

A multi-tenant service runs one client per org. Here ``--many-clients`` clients (200 by
default) live in one process (:mod:`benchmarks._many_client`), each with its own login, session
and aiohttp connection, each subscribed to ``--many-channels`` platform-event channels (5):
1,000 subscriptions. They all talk to one emulator process (it has no per-org cap on
concurrent clients; one org or many makes no difference to the client side). Measured:

- RSS per client: the process's RSS with every client open, subscribed and its long poll held,
  minus the RSS with the package imported and no client, over the number of clients;
- idle CPU: the process's CPU time over ``--idle`` seconds while every long poll is held;
- fan-out latency: this process publishes one event on each channel through the REST API
  (``Sent_Ns__c`` = ``time.monotonic_ns()`` just before the POST), ``--many-rounds`` rounds
  a second apart; every subscription of every client must receive each event, and each
  delivery's latency is its arrival in the consumer's ``async for`` minus ``Sent_Ns__c``.

The same with aiosfstream-ng in its own venv, in the same run.

``python -m benchmarks.many [--quick] [--many-clients N] [--many-channels N] [--json PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

import aiohttp

from benchmarks import _peers
from benchmarks._common import (
    BENCH_DIR,
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


def _events(count: int) -> list[str]:
    return [f"Many{n}__e" for n in range(1, count + 1)]


async def publish_round(server: Server, session: aiohttp.ClientSession, events: list[str]) -> int:
    """One event on every channel, back to back; return how many POSTs failed."""
    ready = server.ready
    headers = {"Authorization": f"Bearer {ready['access_token']}"}
    failures = 0
    for event in events:
        url = f"{ready['instance_url']}/services/data/v{API_VERSION}/sobjects/{event}/"
        body = {"Sent_Ns__c": time.monotonic_ns()}
        async with session.post(
            url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(10)
        ) as response:
            await response.read()
            failures += response.status != 201
    return failures


def process_cpu(pid: int) -> float | None:
    """The CPU seconds (user + system) process ``pid`` used so far; None off Linux."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    server: Server, label: str, argv: list[str], options: argparse.Namespace
) -> dict[str, Any]:
    events = _events(options.many_channels)
    expect = options.many_clients * len(events) * options.many_rounds
    full = [
        *argv,
        *server.credentials(),
        "--clients",
        str(options.many_clients),
        "--channels",
        ",".join(f"/event/{e}" for e in events),
        "--idle",
        str(options.idle),
        "--expect",
        str(expect),
    ]
    env = python_child_env() if argv[0] == bench_python() else None
    child = await Child.start(label, full, cwd=BENCH_DIR.parent, env=env)
    try:
        base = await child.expect("base", 60)
        opened = await child.expect("open", 60 + options.many_clients)
        idle = await child.expect("idle", options.idle + 30)
        child.send({"op": "go"})
        server_cpu = process_cpu(server.child.process.pid)
        failures = 0
        async with aiohttp.ClientSession() as session:
            for _ in range(options.many_rounds):
                failures += await publish_round(server, session, events)
                await asyncio.sleep(1.0)
        done = await child.expect("done", 90)
        server_end = process_cpu(server.child.process.pid)
    except ChildError as exc:
        return {"error": str(exc).splitlines()[0][:300]}
    finally:
        await child.stop()
    latencies = [v / 1e6 for v in done["latencies_ns"]]
    clients = options.many_clients
    return {
        "clients": clients,
        "subscriptions": clients * len(events),
        "deliveries": len(latencies),
        "expected": expect,
        "publish_failures": failures,
        "base_rss": base["rss"],
        "open_rss": opened["rss"],
        "rss_per_client": (opened["rss"] - base["rss"]) / clients,
        "open_s": opened["open_s"],
        "idle_cpu_s": idle["cpu"],
        "idle_s": idle["seconds"],
        "idle_cpu_percent": idle["cpu"] / idle["seconds"] * 100,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
        "fanout_cpu_s": done["cpu"],
        # the emulator's CPU from the first publish to the last delivery (REST included)
        "server_cpu_s": (
            None if server_cpu is None or server_end is None else server_end - server_cpu
        ),
    }


async def run(options: argparse.Namespace) -> dict[str, Any]:
    facts = machine_facts()
    wanted = "aiosfstream-ng" in getattr(options, "peers", ["aiosfstream-ng"])
    peer_names = ["aiosfstream-ng"] if wanted and not options.no_peers else []
    peers = _peers.prepare(peer_names, None, options.python311)
    server = await Server.start(hold_time=25.0, extra_events=tuple(_events(options.many_channels)))
    results: dict[str, Any] = {}
    try:
        kinds: list[tuple[str, str, list[str]]] = [
            (
                "sfstream",
                "sfstream",
                [bench_python(), str(BENCH_DIR / "_many_client.py"), "--package", "sfstream"],
            )
        ]
        for peer in peers:
            if peer.error:
                results[peer.name] = {"label": peer.label, "error": peer.error}
                continue
            package = peer.argv[-1]
            kinds.append(
                (
                    peer.name,
                    peer.label,
                    [peer.argv[0], str(BENCH_DIR / "_many_client.py"), "--package", package],
                )
            )
        for key, label, argv in kinds:
            print(
                f"many: {label}, {options.many_clients} clients x {options.many_channels} channels",
                flush=True,
            )
            result = await measure(server, label, argv, options)
            result["label"] = label
            results[key] = result
    finally:
        await server.stop()
    return {
        "benchmark": "many",
        "machine": facts,
        "options": {
            "clients": options.many_clients,
            "channels": options.many_channels,
            "rounds": options.many_rounds,
            "idle": options.idle,
        },
        "clients": results,
    }


def table(data: dict[str, Any]) -> Table:
    o = data["options"]
    t = Table(
        f"Many clients in one process: {o['clients']} clients x {o['channels']} channels "
        f"({o['clients'] * o['channels']:,} subscriptions), {o['rounds']} fan-out rounds",
        [
            "client",
            "RSS/client KB",
            "idle CPU %",
            "deliveries",
            "p50 ms",
            "p99 ms",
            "max ms",
            "CPU µs/delivery",
            "emulator µs/delivery",
            "open s",
        ],
    )
    for r in data["clients"].values():
        if "error" in r:
            t.add(r["label"], "failed", "-", "-", "-", "-", "-", "-", "-", "-")
            t.notes.append(f"{r['label']}: {r['error']}")
            continue
        t.add(
            r["label"],
            fmt(r["rss_per_client"] / 1024, 0),
            fmt(r["idle_cpu_percent"], 2),
            f"{r['deliveries']:,}/{r['expected']:,}",
            fmt(r["p50_ms"], 1),
            fmt(r["p99_ms"], 1),
            fmt(r["max_ms"], 1),
            fmt(r["fanout_cpu_s"] / max(r["deliveries"], 1) * 1e6, 0),
            "-"
            if r.get("server_cpu_s") is None
            else fmt(r["server_cpu_s"] / max(r["deliveries"], 1) * 1e6, 0),
            fmt(r["open_s"], 1),
        )
    t.notes.append(
        "RSS/client: (RSS with every client open and polling - RSS with the package imported) "
        f"/ clients. idle CPU: the process's CPU over {o['idle']:g} s with every long poll "
        "held, as a share of one core. Latency: REST publish -> the consumer's async for, "
        "for every subscription of every client. CPU µs/delivery: the clients' process CPU "
        "from the first publish to the last delivery, per delivery (each delivery is one "
        "long-poll reply and a new request). emulator µs/delivery: the same for the emulator's "
        "process (Linux only), REST publishes included: both sides work through every round "
        "at once, on the same cores."
    )
    return t


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--many-clients", type=int, help="clients in one process (many)")
    parser.add_argument("--many-channels", type=int, help="channels per client (many)")
    parser.add_argument("--many-rounds", type=int, help="fan-out rounds (many)")
    parser.add_argument("--idle", type=float, help="seconds of idle CPU measurement (many)")


def apply_defaults(options: argparse.Namespace) -> None:
    if options.many_clients is None:
        options.many_clients = 200
    if options.many_channels is None:
        options.many_channels = 5
    if options.many_rounds is None:
        options.many_rounds = 3 if options.quick else 10
    if options.idle is None:
        options.idle = 3.0 if options.quick else 10.0
    for name, default in (("no_peers", False), ("python311", None)):
        if not hasattr(options, name):
            setattr(options, name, default)


def _standalone_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--python311")


def main() -> None:
    run_alone(sys.modules[__name__], _standalone_options)


if __name__ == "__main__":
    main()
