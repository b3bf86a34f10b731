"""The emulator in a process of its own, with a backlog: ``python -m benchmarks._server``.

It publishes ``--platform-events`` events on ``/event/Bench__e`` and ``--cdc-events`` change
events on ``/data/AccountChangeEvent`` before it listens (each event is encoded to JSON once,
when it is stored; a connect reply joins those bytes), then prints one JSON line::

    {"event": "ready", "login_url": ..., "instance_url": ..., "channels": {...}, ...}

and answers commands on stdin, one JSON object a line:

- ``{"op": "cpu"}`` → ``{"event": "cpu", "cpu": <process CPU seconds>, "rss": <bytes>}``, so
  that a benchmark can show what serving a drain cost the emulator;
- ``{"op": "stop"}`` (or end of input) → stops.

Only loopback: it binds 127.0.0.1 on a free port and names itself ``localhost``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from sfstream.emulator import Emulator

PLATFORM_CHANNEL = "/event/Bench__e"
CDC_CHANNEL = "/data/AccountChangeEvent"
LATENCY_EVENT = "Latency__e"
#: The custom fields every benchmark event declares (the backlog's and the latency probes').
BENCH_FIELDS = (
    "Order_Number__c",
    "Amount__c",
    "Currency__c",
    "Status__c",
    "Account_Id__c",
    "Description__c",
    "Sent_Ns__c",
    "Sequence__c",
)


def rss() -> int:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is in the bench group
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return int(psutil.Process().memory_info().rss)


def platform_payloads(count: int) -> list[dict[str, Any]]:
    """Order events of a typical size (six custom fields)."""
    return [
        {
            "Order_Number__c": f"ORD-{n:08d}",
            "Amount__c": 1000 + (n % 997) * 1.25,
            "Currency__c": "EUR",
            "Status__c": "Created",
            "Account_Id__c": "001Hs00003DGb2AIAT",
            "Description__c": "Order placed through the web shop, standard delivery",
        }
        for n in range(count)
    ]


def cdc_payloads(count: int) -> list[dict[str, Any]]:
    """Account CREATE changes with a few fields."""
    return [
        {
            "Name": f"Acme {n}",
            "Industry": "Manufacturing",
            "AnnualRevenue": 1_000_000 + n,
            "BillingCity": "Paris",
            "NumberOfEmployees": 250,
        }
        for n in range(count)
    ]


async def serve(args: argparse.Namespace) -> None:
    org = Emulator(
        events=dict.fromkeys(
            ["Bench__e", LATENCY_EVENT, *(e for e in args.extra_events.split(",") if e)],
            BENCH_FIELDS,
        ),
        cdc_entities=["Account"],
        hold_time=args.hold_time,
        session_expiry=args.session_expiry,
        max_batch=args.max_batch,
        public_host=args.public_host,
    )
    started = time.perf_counter()
    cpu = time.process_time()
    step = 50_000
    for first in range(0, args.platform_events, step):
        count = min(step, args.platform_events - first)
        await org.publish_many(PLATFORM_CHANNEL, platform_payloads(count))
    for first in range(0, args.cdc_events, step):
        count = min(step, args.cdc_events - first)
        await org.publish_many(CDC_CHANNEL, cdc_payloads(count), change_type="CREATE")
    publish_cpu = time.process_time() - cpu
    publish_wall = time.perf_counter() - started
    if args.connect_delay > 0:
        # every /meta/connect waits this long before it is answered: a slow server (overlap)
        org.delay_responses(args.connect_delay, count=None, channel="/meta/connect")
    await org.start()
    ready = {
        "event": "ready",
        "base_url": org.base_url,
        "login_url": org.login_url,
        "instance_url": org.instance_url,
        "token_url": org.token_url,
        "consumer_key": org.consumer_key,
        "consumer_secret": org.consumer_secret,
        "username": org.username,
        "password": org.password,
        "access_token": org.issue_access_token(),
        "channels": {PLATFORM_CHANNEL: args.platform_events, CDC_CHANNEL: args.cdc_events},
        "latency_event": LATENCY_EVENT,
        "max_batch": args.max_batch,
        "publish_cpu": publish_cpu,
        "publish_wall": publish_wall,
        "rss": rss(),
    }
    print(json.dumps(ready), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            try:
                command = json.loads(line)
            except ValueError:
                continue
            op = command.get("op")
            if op == "cpu":
                answer = {"event": "cpu", "cpu": time.process_time(), "rss": rss()}
                print(json.dumps(answer), flush=True)
            elif op == "stop":
                break
    finally:
        await org.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--platform-events", type=int, default=10_000)
    parser.add_argument("--cdc-events", type=int, default=0)
    parser.add_argument("--max-batch", type=int, default=10_000)
    parser.add_argument("--hold-time", type=float, default=25.0)
    parser.add_argument("--session-expiry", type=float, default=40.0)
    parser.add_argument("--extra-events", default="", help="more platform events, e.g. A__e,B__e")
    parser.add_argument(
        "--connect-delay", type=float, default=0.0, help="seconds every /meta/connect waits"
    )
    parser.add_argument(
        "--public-host",
        default="localhost",
        help="host name in the URLs handed out (aiohttp keeps no cookies from an IP address, "
        "and aiocometd needs Salesforce's session cookie)",
    )
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
