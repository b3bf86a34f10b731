"""What the benchmarks share: machine facts, statistics, tables, JSON, child processes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
#: Where the benchmarks keep their virtual environments and captures (git-ignored).
WORK_DIR = ROOT / ".bench"


# -- machine facts ----------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def _node_version() -> str:
    node = shutil.which("node")
    if node is None:
        return "-"
    try:
        return subprocess.run(  # noqa: S603 - our own argv
            [node, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "-"


def machine_facts() -> dict[str, Any]:
    """The machine and the software the figures were measured with."""
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:
        physical = None
    facts: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "physical_cores": physical,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "node": _node_version(),
        "packages": {
            name: _version(name)
            for name in ("sfstream", "aiohttp", "yarl", "multidict", "orjson", "psutil")
        },
    }
    return facts


def facts_lines(facts: Mapping[str, Any], peers: Mapping[str, str] | None = None) -> list[str]:
    """The machine facts as the lines printed above a table."""
    packages = ", ".join(f"{k} {v}" for k, v in facts["packages"].items())
    lines = [
        f"machine: {facts['cpu']}, {facts['cores']} logical cores"
        + (f" ({facts['physical_cores']} physical)" if facts.get("physical_cores") else "")
        + f", {facts['os']}",
        f"python:  {facts['implementation']} {facts['python']}; node {facts['node']}",
        f"packages: {packages}",
    ]
    if peers:
        lines.append("peers:   " + "; ".join(f"{k}: {v}" for k, v in peers.items()))
    return lines


# -- statistics -------------------------------------------------------------------------------


def median(values: Sequence[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


# -- tables -----------------------------------------------------------------------------------


@dataclass
class Table:
    """A plain-text table: a title, facts lines, a header row and rows."""

    title: str
    header: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def render(self, facts: Sequence[str] = ()) -> str:
        widths = [len(h) for h in self.header]
        for row in self.rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))

        def line(cells: Sequence[str]) -> str:
            out = []
            for i, cell in enumerate(cells):
                out.append(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]))
            return "  ".join(out).rstrip()

        rule = "-" * len(line(["-" * w for w in widths]))
        parts = [f"== {self.title} ==", *facts, rule, line(self.header), rule]
        parts += [line(row) for row in self.rows]
        parts.append(rule)
        parts += self.notes
        return "\n".join(parts)


def write_json(path: str | os.PathLike[str] | None, data: Mapping[str, Any]) -> None:
    if path is None:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"wrote {target}")


# -- child processes speaking JSON lines ----------------------------------------------------------


class ChildError(RuntimeError):
    """A child process died, said something unexpected, or was too slow."""


class Child:
    """A child process that prints one JSON object per line and may read commands on stdin.

    Lines that are not JSON are kept (the last ones are shown when the child fails).
    """

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.noise: list[str] = []
        self._stderr_task = asyncio.get_running_loop().create_task(self._drain_stderr())

    @classmethod
    async def start(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Child:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
            limit=64 * 1024 * 1024,
        )
        return cls(name, process)

    async def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        while True:
            line = await self.process.stderr.readline()
            if not line:
                return
            self.noise.append(line.decode("utf-8", "replace").rstrip())
            del self.noise[:-40]

    def tail(self, lines: int = 12) -> str:
        return "\n".join(self.noise[-lines:])

    async def read(self, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """The next JSON line; raises ChildError on EOF or timeout."""
        assert self.process.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ChildError(f"{self.name}: no answer within {timeout:g} s")
            try:
                raw = await asyncio.wait_for(self.process.stdout.readline(), remaining)
            except TimeoutError:
                raise ChildError(f"{self.name}: no answer within {timeout:g} s") from None
            if not raw:
                await asyncio.sleep(0.2)  # let stderr be read
                code = self.process.returncode
                raise ChildError(f"{self.name}: exited (code {code})\n{self.tail()}")
            text = raw.decode("utf-8", "replace").strip()
            if not text:
                continue
            try:
                value = json.loads(text)
            except ValueError:
                self.noise.append(text)
                continue
            if isinstance(value, dict):
                return value
            self.noise.append(text)

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """Read lines until one with ``"event": event``; an ``error`` event raises."""
        while True:
            line = await self.read(timeout)
            if line.get("event") == event:
                return line
            if line.get("event") == "error":
                raise ChildError(f"{self.name}: {line.get('error')}\n{self.tail()}")

    def send(self, command: Mapping[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Close stdin (children exit on EOF), then terminate, then kill."""
        process = self.process
        if process.returncode is None:
            if process.stdin is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 5)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        self._stderr_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._stderr_task


def python_child_env() -> dict[str, str]:
    """Environment for Python children: unbuffered output, no bytecode writes in the tree."""
    return {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def bench_python() -> str:
    """The interpreter that runs sfstream's own clients and the emulator: this one."""
    return sys.executable


def run_alone(
    module: ModuleType, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> None:
    """``python -m benchmarks.NAME``: one benchmark module's arguments, run and table.

    ``module`` provides ``add_arguments``, ``apply_defaults``, ``run`` and ``table`` (as every
    benchmark does for ``python -m benchmarks``); ``extra`` adds options of its own.
    """
    parser = argparse.ArgumentParser(description=module.__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--json", dest="json_path", help="write the figures to this file")
    if extra is not None:
        extra(parser)
    module.add_arguments(parser)
    options = parser.parse_args()
    module.apply_defaults(options)
    data = asyncio.run(module.run(options))
    print(module.table(data).render(facts_lines(data["machine"])))
    write_json(options.json_path, data)
