"""sfstream as a benchmark client: ``python -m benchmarks._client_sfstream MODE ...``.

Modes (one JSON line per step on stdout; the parent sends ``go`` on stdin to start timing):

- ``drain``: subscribe with ALL_EVENTS and receive ``--count`` events; report wall time,
  process CPU time (``time.process_time``: this process only), peak RSS.
- ``memory``: the same over many events, sampling RSS and ``pending_count``; ``--slow-every``
  and ``--slow-ms`` make a slow consumer (it sleeps, the queue fills, polling pauses).
- ``latency``: subscribe with NEW_EVENTS and receive ``--count`` events whose payload carries
  the publisher's ``time.monotonic_ns()`` (``Sent_Ns__c``); report each latency.

Every wait is bounded: no event for ``--stall`` seconds ends the run with an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sfstream import ReplayOption, SalesforceStreamingClient, StatusKind


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_rss() -> int:
    """The high-water mark of this process's RSS.

    ``VmHWM`` from /proc, not ``ru_maxrss``: Linux carries ``ru_maxrss`` over from the parent
    across fork and exec, so a child of a big benchmark process would report its parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def wait_for_go() -> None:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise SystemExit(0)


def json_functions(name: str) -> dict[str, Any]:
    if name == "orjson":
        import orjson

        return {"json_dumps": orjson.dumps, "json_loads": orjson.loads}
    if name == "msgspec":
        import msgspec

        return {"json_dumps": msgspec.json.encode, "json_loads": msgspec.json.decode}
    return {}


class Watchdog:
    """Cancels the main task when ``progress`` stops moving for ``stall`` seconds."""

    def __init__(self, stall: float) -> None:
        self.stall = stall
        self.progress = 0
        self.stalled = False

    async def watch(self, task: asyncio.Task[Any]) -> None:
        last = -1
        while True:
            await asyncio.sleep(self.stall)
            if self.progress == last:
                self.stalled = True
                task.cancel()
                return
            last = self.progress


async def guarded(stall: float, body: Callable[[Watchdog], Awaitable[dict[str, Any]]]) -> None:
    dog = Watchdog(stall)
    task = asyncio.ensure_future(body(dog))
    watcher = asyncio.ensure_future(dog.watch(task))
    try:
        result = await task
    except asyncio.CancelledError:
        if not dog.stalled:
            raise
        emit(event="error", error=f"stalled: no event for {stall:g} s after {dog.progress} events")
        return
    except Exception as exc:
        emit(event="error", error=f"{type(exc).__name__}: {exc}", received=dog.progress)
        return
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    emit(**result)


def make_client(args: argparse.Namespace, replay: ReplayOption) -> SalesforceStreamingClient:
    return SalesforceStreamingClient(
        consumer_key=args.consumer_key,
        consumer_secret=args.consumer_secret,
        username=args.username,
        password=args.password,
        login_url=args.login_url,
        replay=replay,
        max_pending_count=args.max_pending_count,
        **json_functions(args.json),
    )


async def drain(args: argparse.Namespace) -> None:
    client = make_client(args, ReplayOption.ALL_EVENTS)
    await client.open()
    try:
        emit(event="ready")
        await wait_for_go()

        async def body(dog: Watchdog) -> dict[str, Any]:
            profiler = None
            if args.profile:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0005, async_mode="enabled")
                profiler.start()
            count = args.count
            last = 0
            usage = resource.getrusage(resource.RUSAGE_SELF)
            collections = [generation["collections"] for generation in gc.get_stats()]
            cpu = time.process_time()
            wall = time.perf_counter()
            await client.subscribe(args.channel)
            received = 0
            work = args.work_us / 1e6
            clock = time.perf_counter
            if args.receive_many:
                while received < count:
                    for message in await client.receive_many(args.receive_many):
                        received += 1
                        last = message["data"]["event"]["replayId"]
                    dog.progress = received
            else:
                async for message in client:
                    received += 1
                    dog.progress = received
                    last = message["data"]["event"]["replayId"]
                    if work:
                        # the consumer's own work per event (CPU, never yielding): the overlap run
                        until = clock() + work
                        while clock() < until:
                            pass
                    if received >= count:
                        break
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            after = resource.getrusage(resource.RUSAGE_SELF)
            if profiler is not None:
                profiler.stop()
                with open(args.profile, "w") as out:  # noqa: ASYNC230 - after the timing
                    out.write(profiler.output_text(unicode=True, color=False, show_all=False))
            return {
                "event": "done",
                "received": received,
                "last_replay_id": last,
                "wall": wall,
                "cpu": cpu,
                # where the CPU time went: user and kernel, page faults (fresh memory the
                # kernel maps in), the collector's runs per generation
                "user": after.ru_utime - usage.ru_utime,
                "system": after.ru_stime - usage.ru_stime,
                "minor_faults": after.ru_minflt - usage.ru_minflt,
                "gc_collections": [
                    generation["collections"] - before
                    for generation, before in zip(gc.get_stats(), collections, strict=True)
                ],
                "peak_rss": peak_rss(),
            }

        await guarded(args.stall, body)
    finally:
        await client.close()


async def memory(args: argparse.Namespace) -> None:
    client = make_client(args, ReplayOption.ALL_EVENTS)
    await client.open()
    try:
        gc.collect()
        emit(event="ready", rss=rss())
        await wait_for_go()

        async def body(dog: Watchdog) -> dict[str, Any]:
            count = args.count
            every = args.sample_every
            slow_every = args.slow_every
            slow = args.slow_ms / 1000
            start_rss = rss()
            samples: list[tuple[int, int, int]] = [(0, start_rss, peak_rss())]
            max_pending = 0
            wall = time.perf_counter()
            cpu = time.process_time()
            await client.subscribe(args.channel)
            received = 0
            async for _message in client:
                received += 1
                dog.progress = received
                if received % 500 == 0:
                    # the message just received waited too: count it
                    max_pending = max(max_pending, client.pending_count + 1)
                if slow_every and received % slow_every == 0:
                    await asyncio.sleep(slow)
                if received % every == 0:
                    samples.append((received, rss(), peak_rss()))
                if received >= count:
                    break
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            samples.append((received, rss(), peak_rss()))
            return {
                "event": "done",
                "received": received,
                "wall": wall,
                "cpu": cpu,
                "start_rss": start_rss,
                "end_rss": samples[-1][1],
                "peak_rss": max([peak_rss(), *(s[1] for s in samples)]),
                "samples": samples,
                "max_pending_seen": max_pending,
                "paused": client.stats[StatusKind.PAUSED],
                "max_pending_count": client.max_pending_count,
            }

        await guarded(args.stall, body)
    finally:
        await client.close()


async def latency(args: argparse.Namespace) -> None:
    client = make_client(args, ReplayOption.NEW_EVENTS)
    await client.open()
    try:
        await client.subscribe(args.channel)
        emit(event="ready")

        async def body(dog: Watchdog) -> dict[str, Any]:
            latencies: list[int] = []
            now = time.monotonic_ns
            async for message in client:
                arrived = now()
                sent = message["data"]["payload"]["Sent_Ns__c"]
                latencies.append(arrived - int(sent))
                dog.progress += 1
                if len(latencies) >= args.count:
                    break
            return {"event": "done", "latencies_ns": latencies}

        await guarded(args.stall, body)
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["drain", "memory", "latency"])
    parser.add_argument("--login-url", required=True)
    parser.add_argument("--consumer-key", required=True)
    parser.add_argument("--consumer-secret", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--json", choices=["json", "orjson", "msgspec"], default="json")
    parser.add_argument("--stall", type=float, default=30.0)
    parser.add_argument("--sample-every", type=int, default=50_000)
    parser.add_argument("--slow-every", type=int, default=0)
    parser.add_argument("--slow-ms", type=float, default=0.0)
    parser.add_argument("--max-pending-count", type=int, default=100, help="the client's default")
    parser.add_argument(
        "--receive-many", type=int, default=0, help="drain with receive_many(N) instead"
    )
    parser.add_argument("--work-us", type=float, default=0.0, help="busy work per event (µs)")
    parser.add_argument("--profile", help="write a pyinstrument profile of the drain here")
    args = parser.parse_args()
    run = {"drain": drain, "memory": memory, "latency": latency}[args.mode]
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
