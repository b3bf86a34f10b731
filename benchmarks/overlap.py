"""Overlap: is the next long poll in flight while the consumer works?

The emulator (its own process) answers every ``/meta/connect`` only after ``--connect-delay``
seconds (a slow server, or a long round trip) and puts ``--overlap-batch`` events in a reply;
the sfstream client (its own process, ``max_pending_count`` = the batch) spends
``--work-us`` µs of CPU on each event without ever awaiting anything — the consumer that
starved the poller before #13. Per reply the server takes ``delay`` and the consumer
``batch * work``; if the two overlap, draining takes about the larger of the two per reply,
if not, their sum. The table gives the drain time against both.

``python -m benchmarks.overlap [--quick] [--compare-src NAME=DIR] [--json PATH]``
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from benchmarks._common import Table, fmt, machine_facts, median, run_alone
from benchmarks._harness import PLATFORM_CHANNEL, ClientSpec, Server, drain


def _specs(options: argparse.Namespace, work: float) -> list[ClientSpec]:
    specs = []
    extra = ["--work-us", str(work), "--max-pending-count", str(options.overlap_batch)]
    for entry in options.compare_src or []:
        name, _, source = entry.partition("=")
        specs.append(ClientSpec.sfstream("json", source, name))
    specs.append(ClientSpec.sfstream("json"))
    for spec in specs:
        spec.extra = list(extra)
    return specs


async def _drains(
    options: argparse.Namespace, delay: float, work: float
) -> dict[str, list[dict[str, Any]]]:
    events = options.overlap_events
    specs = _specs(options, work)
    server = await Server.start(
        platform_events=events, max_batch=options.overlap_batch, connect_delay=delay
    )
    runs: dict[str, list[dict[str, Any]]] = {s.key: [] for s in specs}
    try:
        for round_ in range(options.overlap_repeat):
            order = specs[round_ % len(specs) :] + specs[: round_ % len(specs)]
            for spec in order:
                runs[spec.key].append(await drain(server, spec, PLATFORM_CHANNEL, events, 60))
    finally:
        await server.stop()
    return runs


async def run(options: argparse.Namespace) -> dict[str, Any]:
    facts = machine_facts()
    delay, work = options.connect_delay, options.work_us
    cases = {"server": (delay, 0.0), "consumer": (0.0, work), "both": (delay, work)}
    clients: dict[str, Any] = {}
    for case, (case_delay, case_work) in cases.items():
        print(
            f"overlap: {case} (connect delay {case_delay * 1000:g} ms, work {case_work:g} µs)",
            flush=True,
        )
        runs = await _drains(options, case_delay, case_work)
        for spec in _specs(options, case_work):
            good = [r for r in runs[spec.key] if "error" not in r]
            entry = clients.setdefault(spec.key, {"label": spec.label, "errors": []})
            entry[case] = median([r["wall"] for r in good]) if good else None
            entry["errors"] += [r["error"] for r in runs[spec.key] if "error" in r]
            entry.setdefault("runs", {})[case] = runs[spec.key]
    return {
        "benchmark": "overlap",
        "machine": facts,
        "options": {
            "events": options.overlap_events,
            "batch": options.overlap_batch,
            "connect_delay": delay,
            "work_us": work,
            "repeat": options.overlap_repeat,
        },
        "clients": clients,
    }


def table(data: dict[str, Any]) -> Table:
    o = data["options"]
    t = Table(
        f"Overlap: {o['events']:,} events, {o['batch']} per reply, each connect answered after "
        f"{o['connect_delay'] * 1000:g} ms, the consumer busy {o['work_us']:g} µs per event "
        f"(medians of {o['repeat']})",
        [
            "client",
            "server alone s",
            "consumer alone s",
            "both s",
            "both ÷ larger",
            "both ÷ sum",
        ],
    )
    for r in data["clients"].values():
        server, consumer, both = r.get("server"), r.get("consumer"), r.get("both")
        if server is None or consumer is None or both is None:
            t.add(r["label"], "failed", "-", "-", "-", "-")
            t.notes.append(f"{r['label']}: {r['errors'][:1]}")
            continue
        t.add(
            r["label"],
            fmt(server, 2),
            fmt(consumer, 2),
            fmt(both, 2),
            fmt(both / max(server, consumer), 2),
            fmt(both / (server + consumer), 2),
        )
    t.notes.append(
        "server alone: the delayed connects, a consumer doing nothing; consumer alone: no "
        "delay, the busy consumer; both: the two together. Overlapping gives 'both' close to "
        "the larger of the two (÷ larger near 1); alternating gives their sum (÷ sum near 1)."
    )
    return t


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overlap-events", type=int, help="events drained (overlap)")
    parser.add_argument("--overlap-batch", type=int, help="events per reply (overlap)")
    parser.add_argument("--connect-delay", type=float, help="seconds before each connect reply")
    parser.add_argument("--work-us", type=float, help="consumer CPU per event, µs (overlap)")
    parser.add_argument("--overlap-repeat", type=int, help="rounds (overlap)")


def apply_defaults(options: argparse.Namespace) -> None:
    if options.overlap_events is None:
        options.overlap_events = 10_000 if options.quick else 30_000
    if options.overlap_batch is None:
        options.overlap_batch = 100
    if options.connect_delay is None:
        options.connect_delay = 0.005
    if options.work_us is None:
        options.work_us = 50.0
    if options.overlap_repeat is None:
        options.overlap_repeat = 3 if options.quick else 5
    if not hasattr(options, "compare_src"):
        options.compare_src = None


def _standalone_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compare-src", action="append", metavar="NAME=DIR")


def main() -> None:
    run_alone(sys.modules[__name__], _standalone_options)


if __name__ == "__main__":
    main()
