"""aiosfstream 0.5.0 or aiosfstream-ng 0.7.5 as a benchmark client (runs in their own venvs).

``python _client_aiosfstream.py --package aiosfstream|aiosfstream_ng --login-url URL ...``

This file runs on Python 3.9 (aiosfstream 0.5.0 crashes on 3.10+), so it sticks to 3.9
syntax and imports nothing from sfstream or the rest of the benchmarks. Both packages take
their token URL from the authenticator; a subclass points it at the emulator, whose token
response names the emulator as ``instance_url`` (they then use ``instance_url/cometd/45.0``).

Protocol: prints ``{"event": "ready"}`` once open, waits for a line on stdin, then subscribes
with ALL_EVENTS and receives ``--count`` events, and prints ``{"event": "done", ...}`` with
the wall time and this process's CPU time; ``{"event": "error", ...}`` when it fails or stalls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import resource
import sys
import time
import warnings
from typing import Any


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def peak_rss() -> int:
    """VmHWM (ru_maxrss is inherited from the parent across fork and exec on Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_client(args: argparse.Namespace) -> Any:
    package = importlib.import_module(args.package)
    token_url = args.login_url.rstrip("/") + "/services/oauth2/token"

    class EmulatorAuthenticator(package.PasswordAuthenticator):
        @property
        def _token_url(self) -> str:
            return token_url

    auth = EmulatorAuthenticator(
        consumer_key=args.consumer_key,
        consumer_secret=args.consumer_secret,
        username=args.username,
        password=args.password,
    )
    return package.Client(auth, replay=package.ReplayOption.ALL_EVENTS)


async def drain(args: argparse.Namespace) -> None:
    client = make_client(args)
    await client.open()
    emit(event="ready")
    line = await asyncio.get_event_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        await client.close()
        return
    state = {"received": 0}

    async def body() -> dict[str, Any]:
        count = args.count
        last = 0
        cpu = time.process_time()
        wall = time.perf_counter()
        await client.subscribe(args.channel)
        received = 0
        async for message in client:
            received += 1
            state["received"] = received
            last = message["data"]["event"]["replayId"]
            if received >= count:
                break
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        return {
            "event": "done",
            "received": received,
            "last_replay_id": last,
            "wall": wall,
            "cpu": cpu,
            "peak_rss": peak_rss(),
        }

    task = asyncio.ensure_future(body())
    seen = -1
    try:
        while not task.done():
            done, _ = await asyncio.wait([task], timeout=args.stall)
            if done:
                break
            if state["received"] == seen:
                task.cancel()
                emit(
                    event="error",
                    error=f"stalled: no event for {args.stall:g} s after "
                    f"{state['received']} events",
                    received=state["received"],
                )
                return
            seen = state["received"]
        try:
            emit(**task.result())
        except Exception as exc:  # report any failure of the peer as data
            emit(
                event="error",
                error=f"{type(exc).__name__}: {exc}",
                received=state["received"],
            )
    finally:
        with contextlib.suppress(Exception):  # closing a failed peer may fail too
            await asyncio.wait_for(client.close(), 10)


def main() -> None:
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--package", choices=["aiosfstream", "aiosfstream_ng"], required=True)
    parser.add_argument("--login-url", required=True)
    parser.add_argument("--consumer-key", required=True)
    parser.add_argument("--consumer-secret", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--stall", type=float, default=30.0)
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(drain(args))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
