"""``python -m benchmarks [NAME ...] [--quick] [--json PATH] ...``

Runs the named benchmarks (throughput, latency, memory, websocket, relay, overlap, recovery,
many; all by default) one after the other and prints a table for each; ``--json PATH`` writes
every figure (and the machine facts) to one file. ``--quick`` is a short run (a few minutes
with the peers' environments already made); the defaults are the full run that
``docs/performance.md`` reports. ``nox -s bench -- ARGS`` passes ARGS here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from benchmarks import latency, many, memory, overlap, recovery, relay, throughput, websocket
from benchmarks._common import facts_lines, write_json

BENCHMARKS = {
    "throughput": throughput,
    "latency": latency,
    "memory": memory,
    "websocket": websocket,
    "relay": relay,
    "overlap": overlap,
    "recovery": recovery,
    "many": many,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "benchmarks", nargs="*", choices=[*BENCHMARKS, []], help="which ones (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--json", dest="json_path", help="write all figures to this file")
    for module in BENCHMARKS.values():
        module.add_arguments(parser)
    options = parser.parse_args()
    chosen = options.benchmarks or list(BENCHMARKS)
    for module in BENCHMARKS.values():
        module.apply_defaults(options)
    report: dict[str, Any] = {"load_before": os.getloadavg()}
    started = time.perf_counter()
    tables = []
    for name in chosen:
        module = BENCHMARKS[name]
        data = asyncio.run(module.run(options))
        report[name] = data
        report.setdefault("machine", data["machine"])
        rendered = module.table(data).render(facts_lines(data["machine"]))
        tables.append(rendered)
        print(rendered, flush=True)
        print(flush=True)
    report["load_after"] = os.getloadavg()
    report["seconds"] = time.perf_counter() - started
    load = ", ".join(f"{a:.2f}" for a in report["load_before"])
    print(
        f"done in {report['seconds']:.0f} s; load average before the run {load}, after "
        + ", ".join(f"{a:.2f}" for a in report["load_after"])
    )
    write_json(options.json_path, report)


if __name__ == "__main__":
    main()
