"""Relay throughput: the emulator's backlog into Redis Streams (and JetStream), next to a drain.

The emulator (its own process) holds a backlog of platform events. In this process, each round
runs, one after the other: a plain ``receive()`` drain of the backlog (the ceiling), the relay
writing the backlog into a real ``redis-server`` (:class:`~sfstream.relay.RedisSink`, batched:
one script per batch), and, when the NATS sink and ``nats-server`` are there, into JetStream.
Each reports events/s (wall) and this process's CPU µs per event (the client, plus the relay
and the engine's client library; the emulator and the engines run in their own processes). The
table gives medians, and each relay's rate as a share of the plain drain's (the median of the
rounds' shares; target: 50 % or more), with the machine's load average before and after.

The emulator answers each ``/meta/connect`` with up to ``--relay-reply`` events (1,000, as the
throughput benchmark's main figure; Salesforce's replies are smaller still).

``python -m benchmarks.relay [--quick] [--relay-events N] [--relay-repeat R]
[--relay-reply N] [--relay-engines redis,nats] [--json PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from benchmarks._common import Table, fmt, machine_facts, median, run_alone
from benchmarks._harness import PLATFORM_CHANNEL, Server
from sfstream.relay import ChannelSet, Relay, Sink
from sfstream.salesforce import (
    Client,
    PasswordAuthenticator,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
)


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def _server(argv: list[str], port: int) -> AsyncIterator[None]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or process.returncode is not None:
                raise RuntimeError(f"{argv[0]} did not start")
            await asyncio.sleep(0.05)
        yield
    finally:
        process.kill()
        await process.wait()


def _auth(server: Server) -> PasswordAuthenticator:
    r = server.ready
    return PasswordAuthenticator(
        r["consumer_key"], r["consumer_secret"], r["username"], r["password"],
        login_url=server.login_url,
    )  # fmt: skip


async def plain_drain(server: Server, count: int) -> dict[str, Any]:
    client = Client(_auth(server), replay=ReplayOption.ALL_EVENTS, max_pending_count=4000)
    async with client:
        await client.subscribe(PLATFORM_CHANNEL)
        cpu, started = time.process_time(), time.perf_counter()
        for _ in range(count):
            await client.receive()
        wall, used = time.perf_counter() - started, time.process_time() - cpu
    return {"wall": wall, "cpu": used}


async def relay_drain(server: Server, sink: Sink, name: str, count: int) -> dict[str, Any]:
    subscribed: list[tuple[float, float]] = []  # (process time, wall) once subscribed

    def make(replay: ReplayMarkerStorage, on_status: Any) -> Client:
        client = Client(
            _auth(server),
            replay=replay,
            replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
            on_status=on_status,
            max_pending_count=4000,
        )
        subscribe = client.subscribe

        async def timed(channel: str) -> None:
            await subscribe(channel)
            subscribed.append((time.process_time(), time.perf_counter()))

        client.subscribe = timed  # type: ignore[method-assign]
        return client

    channel_set = ChannelSet(name, (PLATFORM_CHANNEL,), replay=int(ReplayOption.ALL_EVENTS))
    relay = Relay(channel_set, sink, make, lease_ttl=30.0, batch_size=1000)
    task = asyncio.create_task(relay.run())
    try:
        while relay.written < count:
            if task.done():
                await task
                raise RuntimeError("the relay stopped")
            await asyncio.sleep(0.002)
        wall, used = time.perf_counter(), time.process_time()
    finally:
        relay.stop()
        await asyncio.wait_for(task, 30)
    # From the subscription (as the plain drain) to the last event written.
    cpu, started = subscribed[0]
    return {"wall": wall - started, "cpu": used - cpu, "events": count}


SinkFactory = Callable[[str], Sink]


@contextlib.asynccontextmanager
async def redis_engine() -> AsyncIterator[SinkFactory | str]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield "redis-server is not installed"
        return
    from sfstream.relay._redis import RedisSink

    port = _port()
    with tempfile.TemporaryDirectory() as folder:
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", folder]  # fmt: skip
        async with _server(argv, port):
            url = f"redis://127.0.0.1:{port}/0"
            yield lambda name: RedisSink(url, channel_set=name)


@contextlib.asynccontextmanager
async def nats_engine() -> AsyncIterator[SinkFactory | str]:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    try:
        module = importlib.import_module("sfstream.relay._nats")
    except ImportError as exc:
        yield f"the NATS sink is not available ({exc})"
        return
    if not shutil.which(binary):
        yield "nats-server is not installed"
        return
    port = _port()
    with tempfile.TemporaryDirectory() as folder:
        async with _server(
            [binary, "-js", "-sd", folder, "-p", str(port), "-a", "127.0.0.1"], port
        ):
            url = f"nats://127.0.0.1:{port}"
            # a stream and subjects per round (the position is each subject's last message)
            yield lambda name: module.NatsSink(url, stream=name, prefix=name)


ENGINES = {"Redis Streams": redis_engine, "NATS JetStream": nats_engine}
#: ``--relay-engines`` names -> the engines' labels.
ENGINE_NAMES = {"redis": "Redis Streams", "nats": "NATS JetStream"}


async def run(options: argparse.Namespace) -> dict[str, Any]:
    facts = machine_facts()
    count = options.relay_events
    load_before = os.getloadavg()
    print(f"relay: starting the emulator with {count:,} platform events...", flush=True)
    server = await Server.start(platform_events=count, max_batch=options.relay_reply)
    rounds: dict[str, list[dict[str, Any]]] = {"plain receive() drain": []}
    errors: dict[str, str] = {}
    try:
        async with contextlib.AsyncExitStack() as stack:
            sinks: dict[str, SinkFactory] = {}
            for label, engine in ENGINES.items():
                if label not in options.relay_engines:
                    continue
                made = await stack.enter_async_context(engine())
                if isinstance(made, str):
                    errors[label] = made
                else:
                    sinks[label] = made
                    rounds[f"relay into {label}"] = []
            for index in range(options.relay_repeat):
                print(f"relay: round {index + 1}/{options.relay_repeat}", flush=True)
                drained = await plain_drain(server, count)
                rounds["plain receive() drain"].append({**drained, "round": index})
                for label, factory in sinks.items():
                    name = f"bench{index}"
                    try:
                        result = await relay_drain(server, factory(name), name, count)
                    except Exception as exc:
                        errors[label] = f"{type(exc).__name__}: {exc}"
                        continue
                    rounds[f"relay into {label}"].append({**result, "round": index})
    finally:
        await server.stop()
    return {
        "benchmark": "relay",
        "machine": facts,
        "load": {"before": load_before, "after": os.getloadavg()},
        "options": {
            "events": count,
            "repeat": options.relay_repeat,
            "batch": 1000,
            "reply": options.relay_reply,
        },
        "rounds": rounds,
        "errors": errors,
    }


def table(data: dict[str, Any]) -> Table:
    opts = data["options"]
    t = Table(
        f"Relay: {opts['events']:,} platform events from the emulator into an engine "
        f"({opts.get('reply', 10_000):,} a reply, batches of {opts['batch']}; "
        f"median of {opts['repeat']})",
        ["run", "events/s", "CPU µs/event", "share of the drain"],
    )
    plain: dict[Any, float] | None = None  # the drain's rate per round
    for label, results in data["rounds"].items():
        if not results:
            continue
        rates = {
            r.get("round", i): r.get("events", opts["events"]) / r["wall"]
            for i, r in enumerate(results)
        }
        cpus = [r["cpu"] / r.get("events", opts["events"]) * 1e6 for r in results]
        if plain is None:
            plain = rates
            share = "100 %"
        else:
            # Each round's relay next to the drain of the same round (the machine's load
            # drifts between rounds), then the median.
            shares = [rate / plain[i] for i, rate in rates.items() if plain.get(i)]
            middle = median(shares)
            share = "-" if middle is None else f"{middle * 100:.0f} %"
            if len(shares) > 1:  # the spread shows the machine's noise
                share += f" ({min(shares) * 100:.0f} to {max(shares) * 100:.0f})"
        t.add(label, fmt(median(list(rates.values())), 0), fmt(median(cpus)), share)
    for label, error in data["errors"].items():
        t.notes.append(f"{label}: {error}")
    load = data.get("load")
    if load:
        t.notes.append(
            "load average (1, 5, 15 min) before: "
            + ", ".join(f"{x:.2f}" for x in load["before"])
            + "; after: "
            + ", ".join(f"{x:.2f}" for x in load["after"])
        )
    t.notes.append(
        "The relay's figures, as the drain's, start once it subscribed (after login) and end "
        "with the last event written; they include writing every event with its position "
        "(Redis: one script per batch, up to 8 in flight; JetStream: one message per event, a "
        "batch published at once and acknowledged together, up to 4 in flight). Share: the "
        "median over the rounds of each round's relay rate over the same round's drain rate (in "
        "brackets: the lowest and the highest round)."
    )
    return t


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--relay-events", type=int, help="backlog size for the relay benchmark")
    parser.add_argument("--relay-repeat", type=int, help="rounds of the relay benchmark")
    parser.add_argument(
        "--relay-reply",
        type=int,
        default=1000,
        metavar="N",
        help="events per /meta/connect reply in the relay benchmark (default 1000)",
    )
    parser.add_argument(
        "--relay-engines",
        type=_engines,
        default=tuple(ENGINES),
        metavar="redis,nats",
        help="the engines the relay benchmark writes into (default: both)",
    )


def _engines(text: str) -> tuple[str, ...]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ENGINE_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown engine {', '.join(unknown) or text!r} (choose from redis, nats)"
        )
    return tuple(ENGINE_NAMES[name] for name in names)


def apply_defaults(options: argparse.Namespace) -> None:
    if options.relay_events is None:
        options.relay_events = 20_000 if options.quick else 100_000
    if options.relay_repeat is None:
        options.relay_repeat = 2 if options.quick else 3


def main() -> None:
    run_alone(sys.modules[__name__])


if __name__ == "__main__":
    main()
