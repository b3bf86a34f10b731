"""The peers the benchmarks compare with, each in an environment of its own.

- aiosfstream 0.5.0 on Python 3.9 (it crashes on 3.10+): ``.bench/aiosfstream-py39``
- aiosfstream-ng 0.7.5 on Python 3.11: ``.bench/aiosfstream-ng-py311``
- jsforce 3.10.16 on Node.js, from ``tests/interop/peers`` (``npm ci`` there when needed)

Virtual environments are created on first use and reused while their marker file matches;
they pin an old aiocometd and never touch the project's environment. A peer that cannot be
prepared (no Python 3.9, no Node.js, no registry) is reported with the reason instead.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._common import BENCH_DIR, ROOT, WORK_DIR

PEERS_DIR = ROOT / "tests" / "interop" / "peers"


@dataclass
class Peer:
    """How to start one peer's benchmark client (or why it cannot run)."""

    name: str
    label: str
    runtime: str = ""
    argv: list[str] = field(default_factory=list)
    cwd: Path | None = None
    error: str | None = None

    @property
    def usable(self) -> bool:
        return self.error is None


def _run(argv: list[str], *, cwd: Path | None = None, timeout: float = 600) -> str:
    done = subprocess.run(  # noqa: S603 - our own argv
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(argv[:4])}... failed: " + " | ".join(tail))
    return done.stdout


def find_python(version: str, explicit: str | None = None) -> str | None:
    """An interpreter for ``version`` ("3.9"): explicit path, PATH, then pyenv's versions."""
    if explicit:
        return explicit
    if sys.version_info[:2] == tuple(int(p) for p in version.split(".")):
        return sys.executable
    candidates = []
    roots = [os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")]
    for root in filter(None, roots):
        candidates += sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"))[::-1]
    found = shutil.which(f"python{version}")
    if found:
        candidates.append(found)  # may be a pyenv shim that only works when selected
    for candidate in candidates:
        try:
            probe = subprocess.run(  # noqa: S603 - our own argv
                [candidate, "-c", "import sys; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return candidate
    return None


def _venv(name: str, python: str, requirement: str) -> Path:
    """``.bench/<name>`` with ``requirement`` installed (reused while the marker matches)."""
    target = WORK_DIR / name
    marker = target / "sfstream-bench.json"
    wanted = {"python": python, "requirement": requirement, "extras": ["psutil"]}
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == wanted:
                return target
        except ValueError:
            pass
    if target.exists():
        shutil.rmtree(target)
    WORK_DIR.mkdir(exist_ok=True)
    _run([python, "-m", "venv", str(target)])
    pip = [str(target / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "-q", requirement, "psutil"])
    marker.write_text(json.dumps(wanted))
    return target


def _python_peer(
    name: str, label: str, version: str, requirement: str, package: str, explicit: str | None
) -> Peer:
    peer = Peer(name, label)
    python = find_python(version, explicit)
    if python is None:
        peer.error = f"no Python {version} found (pyenv install {version}, or pass its path)"
        return peer
    try:
        venv = _venv(name, python, requirement)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        peer.error = f"cannot prepare its environment: {exc}"
        return peer
    interpreter = str(venv / "bin" / "python")
    peer.runtime = (
        "Python "
        + _run([interpreter, "-c", "import platform; print(platform.python_version())"]).strip()
    )
    peer.argv = [interpreter, str(BENCH_DIR / "_client_aiosfstream.py"), "--package", package]
    return peer


def _jsforce() -> Peer:
    peer = Peer("jsforce", "jsforce 3.10.16")
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        peer.error = "Node.js and npm are not on PATH"
        return peer
    installed = PEERS_DIR / "node_modules" / "jsforce" / "package.json"
    try:
        if not installed.exists():
            _run([npm, "ci", "--no-audit", "--no-fund"], cwd=PEERS_DIR)
        version = json.loads(installed.read_text())["version"]
        peer.runtime = "Node.js " + _run([node, "--version"]).strip().lstrip("v")
    except (OSError, RuntimeError, ValueError, KeyError, subprocess.TimeoutExpired) as exc:
        peer.error = f"cannot install the Node packages: {exc}"
        return peer
    peer.label = f"jsforce {version}"
    peer.argv = [node, str(BENCH_DIR / "jsforce_drain.mjs")]
    peer.cwd = PEERS_DIR
    return peer


def prepare(
    names: list[str], python39: str | None = None, python311: str | None = None
) -> list[Peer]:
    """The peers in ``names`` (aiosfstream, aiosfstream-ng, jsforce), ready or with a reason."""
    peers = []
    for name in names:
        print(f"preparing peer {name}...", flush=True)
        if name == "aiosfstream":
            peers.append(
                _python_peer(
                    "aiosfstream-py39",
                    "aiosfstream 0.5.0",
                    "3.9",
                    "aiosfstream==0.5.0",
                    "aiosfstream",
                    python39,
                )
            )
        elif name == "aiosfstream-ng":
            peers.append(
                _python_peer(
                    "aiosfstream-ng-py311",
                    "aiosfstream-ng 0.7.5",
                    "3.11",
                    "aiosfstream-ng==0.7.5",
                    "aiosfstream_ng",
                    python311,
                )
            )
        elif name == "jsforce":
            peers.append(_jsforce())
        else:
            raise ValueError(f"unknown peer {name!r}")
    for peer in peers:
        if peer.error:
            print(f"  {peer.label}: not available: {peer.error}", flush=True)
    return peers
