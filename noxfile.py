"""Development sessions. Plain ``nox`` runs what CI runs: lint, typing, tests, interop, docs and
the (short) chaos runs; ``nox -s bench`` runs the benchmarks, ``nox -s live`` the tests against a
real org (when ``SFSTREAM_LIVE_*`` name one)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "typing", "tests", "interop", "docs", "chaos", "relay-chaos"]

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
PYTHONS = ["3.11", "3.12", "3.13"]
PEERS = ROOT / "tests" / "interop" / "peers"

#: The sans-IO Bayeux modules: held to 100 % branch coverage.
PURE_MODULES = [
    "*/sfstream/exceptions.py",
    "*/sfstream/bayeux/_advice.py",
    "*/sfstream/bayeux/_backoff.py",
    "*/sfstream/bayeux/_channels.py",
    "*/sfstream/bayeux/_codec.py",
    "*/sfstream/bayeux/_engine.py",
    "*/sfstream/bayeux/_events.py",
    "*/sfstream/bayeux/_extensions.py",
    "*/sfstream/bayeux/_messages.py",
    "*/sfstream/bayeux/_state.py",
    "*/sfstream/bayeux/_status.py",
    "*/sfstream/bayeux/_ack.py",
]


def _expose_pyenv_versions() -> None:
    """Let nox find python3.12 and python3.13 through pyenv's shims on a machine using pyenv."""
    pyenv = shutil.which("pyenv")
    if pyenv is None or os.environ.get("PYENV_VERSION"):
        return
    installed = subprocess.run(
        [pyenv, "versions", "--bare"], capture_output=True, text=True, check=False
    ).stdout.split()
    chosen = []
    for wanted in PYTHONS:
        matching = [v for v in installed if v.startswith(wanted + ".")]
        if matching:
            chosen.append(max(matching, key=lambda v: tuple(int(p) for p in v.split("."))))
    if chosen:
        os.environ["PYENV_VERSION"] = ":".join(chosen)


_expose_pyenv_versions()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Unit, driver, transport and integration tests with branch coverage gates."""
    session.install(".", *nox.project.dependency_groups(PYPROJECT, "test"))
    session.run(
        "coverage",
        "run",
        "-m",
        "pytest",
        "-m",
        "not interop and not live and not slow",
        *session.posargs,
    )
    session.run("coverage", "report", "--fail-under=90")
    session.run("coverage", "report", "--fail-under=100", "--include=" + ",".join(PURE_MODULES))


@nox.session(python="3.11")
def interop(session: nox.Session) -> None:
    """Against real third-party peers (Node.js): Faye, the CometD Node.js server and the CometD
    JavaScript client."""
    npm = shutil.which("npm")
    if npm is None:
        session.error("the interop session needs Node.js and npm on PATH")
    with session.chdir(PEERS):
        session.run(npm, "ci", "--no-audit", "--no-fund", external=True)
    session.install(".", *nox.project.dependency_groups(PYPROJECT, "test"))
    session.run("pytest", "-m", "interop", "tests/interop", *session.posargs)


@nox.session(python="3.11")
def live(session: nox.Session) -> None:
    """The documented scenarios against a real org named by ``SFSTREAM_LIVE_*`` (see
    docs/testing.md). Not part of plain ``nox``; without those variables it says why it did not
    run and succeeds."""
    sys.path.insert(0, str(ROOT))
    try:
        from tests.live._config import not_run_reason
    finally:
        sys.path.remove(str(ROOT))
    reason = not_run_reason()
    if reason is not None:
        session.log(f"not run: {reason}")
        return
    session.install(".", *nox.project.dependency_groups(PYPROJECT, "test"))
    session.run("pytest", "-m", "live", "-rs", "tests/live", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff format --check and ruff check."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")


@nox.session(python="3.11")
def typing(session: nox.Session) -> None:
    """mypy --strict on the package and the tests."""
    session.install(".", *nox.project.dependency_groups(PYPROJECT, "typing"))
    session.run("mypy")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation site into docs/_build/html; any warning fails the build."""
    session.install(".", *nox.project.dependency_groups(PYPROJECT, "docs"))
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-E",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        *session.posargs,
    )


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks (docs/performance.md): `nox -s bench`, `nox -s bench -- --quick`, or any
    `python -m benchmarks` arguments after `--`."""
    session.install(".[orjson]", *nox.project.dependency_groups(PYPROJECT, "bench"))
    npm = shutil.which("npm")
    if npm is not None and not (PEERS / "node_modules" / "jsforce").is_dir():
        with session.chdir(PEERS):
            session.run(npm, "ci", "--no-audit", "--no-fund", external=True)
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python="3.11")
def chaos(session: nox.Session) -> None:
    """Fault campaigns: the slow reliability tests, then the chaos run.

    ``nox -s chaos -- --long`` runs 100k events and 600 faults.
    """
    session.install(".", *nox.project.dependency_groups(PYPROJECT, "test"))
    session.run("pytest", "-m", "slow", "tests/reliability")
    session.run("python", "-m", "tests.reliability.chaos", *session.posargs)


@nox.session(name="relay-chaos", python="3.11")
def relay_chaos(session: nox.Session) -> None:
    """The relay's failover campaign against real engines, Redis Cluster, a single Redis server
    and a 3-node JetStream cluster: 50,000 events, 10 SIGKILLs of the active relay, an engine
    node killed, emulator faults, per engine. On CI (``CI`` set) and with ``-- --short`` it
    runs the short form.
    """
    for binary, package in (("redis-server", "redis-server"), ("nats-server", "nats-server")):
        if not shutil.which(binary) and not os.access(f"/usr/sbin/{binary}", os.X_OK):
            session.error(f"the relay-chaos session needs {binary} (apt-get install {package})")
    session.install(".", *nox.project.dependency_groups(PYPROJECT, "test"))
    args = list(session.posargs)
    if not args and os.environ.get("CI"):
        args = ["--short"]
    if not any(arg == "--engine" or arg.startswith("--engine=") for arg in args):
        # redis-single: one server, where the sink pipelines its writes (a cluster takes one
        # write at a time)
        args += ["--engine", "redis", "--engine", "redis-single", "--engine", "nats"]
    session.run("python", "-m", "tests.relay.chaos", *args)
