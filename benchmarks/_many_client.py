"""Many clients in one process: ``python _many_client.py --package sfstream|aiosfstream_ng ...``.

Runs in sfstream's environment or in a peer's venv, so it imports nothing from the rest of
the benchmarks (and only the chosen package). Steps, one JSON line each on stdout:

1. ``{"event": "base", "rss": ...}``: the process with the package imported, no client;
2. opens ``--clients`` clients (NEW_EVENTS), each subscribed to every ``--channels`` channel,
   each consumed by its own task (``async for``); then ``{"event": "open", "rss": ...,
   "open_s": ...}``;
3. stays idle ``--idle`` seconds (every long poll held by the server) and reports
   ``{"event": "idle", "cpu": <CPU seconds while idle>, "rss": ...}``;
4. waits for a line on stdin (the parent then publishes), collects the latency of every
   delivery (``time.monotonic_ns()`` when the consumer got it minus the payload's
   ``Sent_Ns__c``) until ``--expect`` deliveries, and reports ``{"event": "done",
   "latencies_ns": [...], "cpu": ...}``, or ``{"event": "error", ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import sys
import time
import warnings
from typing import Any


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def make_client(args: argparse.Namespace) -> Any:
    if args.package == "sfstream":
        from sfstream import ReplayOption, SalesforceStreamingClient

        return SalesforceStreamingClient(
            consumer_key=args.consumer_key,
            consumer_secret=args.consumer_secret,
            username=args.username,
            password=args.password,
            login_url=args.login_url,
            replay=ReplayOption.NEW_EVENTS,
        )
    package = importlib.import_module(args.package)
    token_url = args.login_url.rstrip("/") + "/services/oauth2/token"

    class EmulatorAuthenticator(package.PasswordAuthenticator):  # type: ignore[misc,name-defined]
        @property
        def _token_url(self) -> str:
            return token_url

    auth = EmulatorAuthenticator(
        consumer_key=args.consumer_key,
        consumer_secret=args.consumer_secret,
        username=args.username,
        password=args.password,
    )
    return package.Client(auth, replay=package.ReplayOption.NEW_EVENTS)


async def run(args: argparse.Namespace) -> None:
    if args.package == "sfstream":
        import sfstream  # noqa: F401 - imported before the baseline
    else:
        importlib.import_module(args.package)
    channels = [c for c in args.channels.split(",") if c]
    gc.collect()
    emit(event="base", rss=rss())
    latencies: list[int] = []
    arrived = asyncio.Event()
    clients: list[Any] = []

    async def open_one() -> None:
        client = make_client(args)
        await client.open()
        clients.append(client)
        for channel in channels:
            await client.subscribe(channel)

    async def consume(client: Any) -> None:
        now = time.monotonic_ns
        async for message in client:
            latencies.append(now() - int(message["data"]["payload"]["Sent_Ns__c"]))
            if len(latencies) >= args.expect:
                arrived.set()

    started = time.perf_counter()
    for first in range(0, args.clients, 20):  # 20 at a time: no login storm
        await asyncio.gather(*(open_one() for _ in range(first, min(first + 20, args.clients))))
    tasks = [asyncio.ensure_future(consume(c)) for c in clients]
    opened = time.perf_counter() - started
    await asyncio.sleep(1.0)  # every first long poll is out and held
    gc.collect()
    emit(event="open", rss=rss(), open_s=opened)
    cpu = time.process_time()
    await asyncio.sleep(args.idle)
    emit(event="idle", cpu=time.process_time() - cpu, seconds=args.idle, rss=rss())
    loop = asyncio.get_event_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    cpu = time.process_time()
    try:
        await asyncio.wait_for(arrived.wait(), args.stall)
    except TimeoutError:
        emit(event="error", error=f"got {len(latencies)} of {args.expect} deliveries")
    else:
        emit(event="done", latencies_ns=latencies, cpu=time.process_time() - cpu, rss=rss())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for first in range(0, len(clients), 50):
        await asyncio.gather(
            *(asyncio.wait_for(c.close(), 10) for c in clients[first : first + 50]),
            return_exceptions=True,
        )


def main() -> None:
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--package", choices=["sfstream", "aiosfstream", "aiosfstream_ng"])
    parser.add_argument("--login-url", required=True)
    parser.add_argument("--consumer-key", required=True)
    parser.add_argument("--consumer-secret", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--channels", required=True)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--stall", type=float, default=60.0)
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(run(args))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
