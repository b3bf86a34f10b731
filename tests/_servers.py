"""Real engine servers for tests: ``redis-server`` alone and as a Redis Cluster.

Every server is a subprocess of the test session, on a free loopback port, with its files in a
temporary directory; nothing is faked. Use the fixtures (register this module as a pytest plugin,
or import the fixtures into a ``conftest.py``):

``redis_server``
    a session-wide :class:`RedisServer` (``.url``, ``.port``); tests share it, so each should
    use keys of its own (a unique prefix) or ``FLUSHALL`` it.
``redis_cluster``
    a session-wide :class:`RedisClusterServers`: 3 masters and 3 replicas, ``cluster_state:ok``
    on every node before the first test uses it (``.url`` and ``.nodes``).

or the context managers :func:`running_redis` and :func:`running_redis_cluster` for a server of
a test's own (to stop or kill it). Servers are stopped when the session (or the ``with``) ends,
also after a failure. A missing ``redis-server`` fails the test with a message saying how to
install it; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = [
    "RedisClusterServers",
    "RedisServer",
    "free_port",
    "redis_cluster",
    "redis_command",
    "redis_server",
    "running_redis",
    "running_redis_cluster",
]

HOST = "127.0.0.1"
#: Seconds a server may take to answer PING, and a cluster to reach ``cluster_state:ok``.
START_TIMEOUT = 20.0


def server_binary(name: str, *fallbacks: str) -> str:
    """The path of an engine's server binary; fails the test (never skips) if it is missing."""
    found = shutil.which(name) or next(
        (path for path in fallbacks if os.access(path, os.X_OK)), None
    )
    if found is None:
        pytest.fail(
            f"{name} is not installed: the storage and relay tests run a real one. "
            f"`.ci/run` installs it (Debian: apt-get install {name})",
            pytrace=False,
        )
    return found


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _encode(args: Sequence[str | bytes]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def redis_command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one command to a Redis server and return its reply (simple types only).

    Raises:
        OSError: no server answers on ``port``.
        RuntimeError: the server replied with an error.
    """
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(_encode(args))
        reader = sock.makefile("rb")
        line = reader.readline()
        if not line.endswith(b"\r\n"):
            raise OSError(f"connection closed by the server on port {port}")
        kind, rest = line[:1], line[1:-2]
        if kind == b"-":
            raise RuntimeError(rest.decode(errors="replace"))
        if kind == b"$":
            size = int(rest)
            return b"" if size < 0 else reader.read(size + 2)[:-2]
        return rest


@dataclass
class RedisServer:
    """A ``redis-server`` subprocess."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{HOST}:{self.port}/0"

    def ping(self) -> bool:
        try:
            return redis_command(self.port, "PING", timeout=1.0) == b"PONG"
        except (OSError, RuntimeError):
            return False

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate the server (kill it if it does not end in 5 s) and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL the server and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def start_redis(directory: Path, *options: str, attempts: int = 3) -> RedisServer:
    """Start ``redis-server`` on a free loopback port and wait until it answers PING.

    ``options`` are extra ``--name value`` arguments. A port taken in the meantime by another
    process is retried with another port.

    Raises:
        pytest.fail: the binary is missing, or the server did not start.
    """
    binary = server_binary("redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server")
    directory.mkdir(parents=True, exist_ok=True)
    failure = ""
    for _ in range(attempts):
        port = free_port()
        log = directory / f"redis-{port}.log"
        process = subprocess.Popen(
            [
                binary,
                "--port", str(port),
                "--bind", HOST,
                "--dir", str(directory),
                "--logfile", str(log),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--protected-mode", "yes",
                *options,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        server = RedisServer(port, directory, process, log)
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if server.ping():
                return server
            time.sleep(0.02)
        server.stop()
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        failure = f"exit status {process.returncode}: {stderr}{server.log_text()}"
        if process.stderr is not None:
            process.stderr.close()
        if "Address already in use" not in failure:
            break
    pytest.fail(f"redis-server did not start: {failure}", pytrace=False)


@contextlib.contextmanager
def running_redis(directory: Path | None = None, *options: str) -> Iterator[RedisServer]:
    """A ``redis-server`` for the duration of the ``with`` block."""
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="redis-")))
        server = start_redis(directory, *options)
        try:
            yield server
        finally:
            server.stop()
            if server.process.stderr is not None:
                server.process.stderr.close()


@dataclass
class RedisClusterServers:
    """A Redis Cluster: the servers, masters first."""

    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The URL of one node (a cluster client discovers the others)."""
        return self.nodes[0].url

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, node.port) for node in self.nodes]

    def state_ok(self) -> bool:
        for node in self.nodes:
            try:
                info = redis_command(node.port, "CLUSTER", "INFO", timeout=1.0)
            except (OSError, RuntimeError):
                return False
            if b"cluster_state:ok" not in info:
                return False
        return True


@contextlib.contextmanager
def running_redis_cluster(
    directory: Path | None = None, masters: int = 3, replicas: int = 1
) -> Iterator[RedisClusterServers]:
    """A Redis Cluster (``masters`` masters with ``replicas`` replicas each) for the ``with``
    block, created with ``redis-cli --cluster create`` and ``cluster_state:ok`` on every node."""
    cli = server_binary("redis-cli", "/usr/bin/redis-cli", "/usr/local/bin/redis-cli")
    cluster = RedisClusterServers()
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cluster-")))
        try:
            for n in range(masters * (1 + replicas)):
                node_dir = directory / f"node-{n}"
                cluster.nodes.append(
                    start_redis(
                        node_dir,
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", str(node_dir / "nodes.conf"),
                        "--cluster-node-timeout", "5000",
                        # the bus port, explicitly: port + 10000 may be taken, or above 65535
                        "--cluster-port", str(free_port()),
                    )
                )  # fmt: skip
            created = subprocess.run(
                [
                    cli,
                    "--cluster", "create",
                    *(f"{HOST}:{node.port}" for node in cluster.nodes),
                    "--cluster-replicas", str(replicas),
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT,
                check=False,
            )  # fmt: skip
            if created.returncode != 0:
                pytest.fail(
                    f"redis-cli --cluster create failed: {created.stdout}{created.stderr}",
                    pytrace=False,
                )
            deadline = time.monotonic() + START_TIMEOUT
            while not cluster.state_ok():
                if time.monotonic() > deadline:
                    pytest.fail("the Redis Cluster did not reach cluster_state:ok", pytrace=False)
                time.sleep(0.05)
            yield cluster
        finally:
            for node in cluster.nodes:
                node.stop()
                if node.process.stderr is not None:
                    node.process.stderr.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One ``redis-server`` for the whole session."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """One Redis Cluster (3 masters, 3 replicas) for the whole session."""
    with running_redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster
