"""Recovery: how long a reply cut off mid-body, or a reset connection, stops the events.

An emulated org (in this process, ``hold_time`` 25 s) and a ``SalesforceStreamingClient``
subscribed to a platform-event channel. Each trial arms one fault on the next
``/meta/connect`` (``drop_connection(when="mid_response")``: half a reply, then the connection
closes; ``when="before_response"``: the connection is reset before any byte), publishes an
event A (the held connect answers it; the client's next connect then suffers the fault) and,
as soon as ``receive()`` returned A, publishes an event B. The figure is B's latency, from its
publish to ``receive()`` returning it: noticing the failure, the new session (the Salesforce
client handshakes after a failed connect), the resubscription from A's replay id and the
connect that carries B. The same without a fault is the baseline. Every event is checked
(B follows A, nothing lost, nothing twice).

``python -m benchmarks.recovery [--quick] [--trials N] [--json PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from benchmarks._common import (
    Table,
    fmt,
    machine_facts,
    percentile,
    run_alone,
)

CHANNEL = "/event/Recovery__e"
KINDS = ("none", "mid_response", "before_response")


async def trials(kind: str, count: int) -> dict[str, Any]:
    from sfstream import ReplayOption, SalesforceStreamingClient
    from sfstream.emulator import Emulator

    latencies: list[float] = []
    async with Emulator(events={"Recovery__e": ["Index__c"]}, hold_time=25.0) as org:
        client = SalesforceStreamingClient(
            consumer_key=org.consumer_key,
            consumer_secret=org.consumer_secret,
            username=org.username,
            password=org.password,
            login_url=org.login_url,
            replay=ReplayOption.NEW_EVENTS,
        )
        async with client:
            await client.subscribe(CHANNEL)
            await asyncio.sleep(0.05)  # the first held connect is out
            for index in range(count):
                if kind != "none":
                    org.drop_connection(1, when=kind, channel="/meta/connect")  # type: ignore[arg-type]
                await org.publish(CHANNEL, {"Index__c": 2 * index})
                async with asyncio.timeout(30):
                    first = await client.receive()
                assert first["data"]["payload"]["Index__c"] == 2 * index, first
                started = time.perf_counter()
                await org.publish(CHANNEL, {"Index__c": 2 * index + 1})
                async with asyncio.timeout(30):
                    second = await client.receive()
                latencies.append((time.perf_counter() - started) * 1000)
                assert second["data"]["payload"]["Index__c"] == 2 * index + 1, second
                await asyncio.sleep(0.02)  # the next connect is held again
    return {
        "trials": len(latencies),
        "p50_ms": percentile(latencies, 0.5),
        "p90_ms": percentile(latencies, 0.9),
        "max_ms": max(latencies),
        "latencies_ms": latencies,
    }


async def run(options: argparse.Namespace) -> dict[str, Any]:
    facts = machine_facts()
    results: dict[str, Any] = {}
    for kind in KINDS:
        print(f"recovery: {kind}, {options.trials} trials", flush=True)
        results[kind] = await trials(kind, options.trials)
    return {
        "benchmark": "recovery",
        "machine": facts,
        "options": {"trials": options.trials},
        "results": results,
    }


def table(data: dict[str, Any]) -> Table:
    t = Table(
        f"Recovery: event latency after a failed /meta/connect ({data['options']['trials']} "
        "trials each, emulator in process)",
        ["fault on the next connect", "p50 ms", "p90 ms", "max ms"],
    )
    labels = {
        "none": "none (baseline)",
        "mid_response": "reply cut off mid-body",
        "before_response": "connection reset before the reply",
    }
    for kind, r in data["results"].items():
        t.add(labels[kind], fmt(r["p50_ms"], 1), fmt(r["p90_ms"], 1), fmt(r["max_ms"], 1))
    t.notes.append(
        "Latency of an event published right after the client received the event whose "
        "next connect fails: detection, new session, resubscription from the last replay id, "
        "and the connect that carries it."
    )
    return t


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, help="faults per kind")


def apply_defaults(options: argparse.Namespace) -> None:
    if options.trials is None:
        options.trials = 10 if options.quick else 30


def main() -> None:
    run_alone(sys.modules[__name__])


if __name__ == "__main__":
    main()
