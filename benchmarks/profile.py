"""Profile sfstream's hot path: one drain of a backlog under pyinstrument or py-spy.

``python -m benchmarks.profile [--events N] [--json-lib json|orjson] [--tool pyinstrument|py-spy]``

pyinstrument runs inside the client (statistical, async-aware) and prints its call tree;
py-spy samples the client process from outside (no overhead in the client) and prints the
functions that were on CPU most, by own time and by inclusive time. Both come with the
``bench`` dependency group. The emulator runs in its own process, as in the benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks._common import ROOT, Child, bench_python, python_child_env
from benchmarks._harness import PLATFORM_CHANNEL, Server


def summarise_py_spy(raw: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        # only what ran on behalf of the drain (the connect loop or the consumer)
        if not any(f.startswith(("drain.<locals>.body", "BayeuxClient._run")) for f in frames):
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"py-spy: {total} samples in the drain", "", "own time:"]
    lines += [f"  {n / total * 100:5.1f} %  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [
        f"  {n / total * 100:5.1f} %  {f}" for f, n in inclusive.most_common(top + 12) if n < total
    ][:top]
    return "\n".join(lines)


async def run(options: argparse.Namespace) -> None:
    server = await Server.start(platform_events=options.events, max_batch=options.max_batch)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "profile.txt"
            argv = [
                bench_python(),
                "-m",
                "benchmarks._client_sfstream",
                "drain",
                *server.credentials(),
                "--channel",
                PLATFORM_CHANNEL,
                "--count",
                str(options.events),
                "--json",
                options.json_lib,
            ]
            if options.tool == "pyinstrument":
                argv += ["--profile", str(out)]
            else:
                spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                argv = [spy, "record", "-r", "1000", "-f", "raw", "-o", str(out), "--", *argv]
            child = await Child.start("profiled client", argv, cwd=ROOT, env=python_child_env())
            try:
                await child.expect("ready", 60)
                child.send({"op": "go"})
                done = await child.expect("done", 600)
            finally:
                await child.stop()
            print(
                f"drained {done['received']:,} events in {done['wall']:.3f} s "
                f"({done['cpu'] / done['received'] * 1e6:.2f} µs CPU per event, "
                f"with the profiler's overhead)"
            )
            for _ in range(50):  # py-spy writes its file after the child exits
                if out.exists():
                    break
                await asyncio.sleep(0.1)
            if options.tool == "pyinstrument":
                print(out.read_text())
            else:
                print(summarise_py_spy(out, options.top))
                if options.keep:
                    shutil.copy(out, options.keep)
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--json-lib", choices=["json", "orjson"], default="json")
    parser.add_argument("--tool", choices=["pyinstrument", "py-spy"], default="py-spy")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--max-batch", type=int, default=1000, help="events per reply")
    parser.add_argument("--keep", help="copy py-spy's raw samples (every stack) to this file")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
