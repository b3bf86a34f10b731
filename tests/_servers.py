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
from pathlib import Path
from typing import Self

import pytest

__all__ = [
    "RedisCluster",
    "RedisClusterServers",
    "RedisServer",
    "free_port",
    "redis_cluster",
    "redis_command",
    "redis_server",
    "running_redis",
    "running_redis_cluster",
    "start_redis",
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


class RedisServer:
    """A ``redis-server`` subprocess on ``127.0.0.1:port`` (no persistence).

    ``RedisServer(directory).start()`` starts it and waits for PING; after :meth:`kill` or
    :meth:`stop`, :meth:`start` runs it again on the same port with the same directory (a cluster
    node rejoins with its ``nodes.conf``). ``cluster=True`` makes it a cluster node with a short
    node timeout (a killed master fails over within about two seconds).
    """

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        cluster: bool = False,
        options: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.cluster = cluster
        self.options = tuple(options)
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, alive={self.alive})"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / f"redis-{self.port}.log"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

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

    def _arguments(self, binary: str) -> list[str]:
        args = [
            binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--dir", str(self.directory),
            "--logfile", str(self.log),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip
        if self.cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{self.port}.conf",
                "--cluster-node-timeout", "1000",
                "--cluster-replica-validity-factor", "0",
                # the bus port, explicitly: port + 10000 may be taken, or above 65535
                "--cluster-port", str(self._bus_port()),
            ]  # fmt: skip
        return [*args, *self.options]

    def _bus_port(self) -> int:
        path = self.directory / f"bus-{self.port}"
        if not path.exists():  # the same bus port on a restart (nodes.conf remembers it)
            path.write_text(str(free_port()))
        return int(path.read_text())

    def start(self, attempts: int = 3) -> RedisServer:
        """Start the server and wait until it answers PING (a port taken meanwhile by another
        process is retried with another one, unless the port was given or this is a restart).

        Raises:
            pytest.fail: the binary is missing, or the server did not start.
        """
        assert not self.alive, "already running"
        binary = server_binary(
            "redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server"
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        failure = ""
        for _ in range(attempts):
            process = subprocess.Popen(
                self._arguments(binary),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            self.process = process
            deadline = time.monotonic() + START_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                if self.ping():
                    self._fixed_port = True  # a restart keeps the port (cluster peers know it)
                    return self
                time.sleep(0.02)
            self.stop()
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            failure = f"exit status {process.returncode}: {stderr}{self.log_text()}"
            if "Address already in use" not in failure or self._fixed_port:
                break
            self.port = free_port()
        pytest.fail(f"redis-server did not start: {failure}", pytrace=False)

    def stop(self) -> None:
        """Terminate the server (kill it if it does not end in 5 s) and wait for it."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no last replication) and wait for it."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
        if process.stderr is not None:
            process.stderr.close()


def start_redis(directory: Path, *options: str, attempts: int = 3) -> RedisServer:
    """Start ``redis-server`` on a free loopback port and wait until it answers PING.

    ``options`` are extra ``--name value`` arguments.

    Raises:
        pytest.fail: the binary is missing, or the server did not start.
    """
    return RedisServer(directory, options=options).start(attempts)


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


class RedisCluster:
    """A Redis Cluster on loopback: ``masters`` masters with ``replicas`` replicas each, created
    with ``redis-cli --cluster create``; ``cluster_state:ok`` on every node after :meth:`start`.

    ``url`` is the relay's sink URL (``redis+cluster://``); :meth:`master_of`, :meth:`fail_over`
    and :meth:`fail_over_wait` serve failover tests (a killed node restarts with ``start()``).
    """

    def __init__(self, directory: Path | None = None, masters: int = 3, replicas: int = 1) -> None:
        self._tmp = None if directory is not None else tempfile.mkdtemp(prefix="sfstream-rc-")
        base = directory if directory is not None else Path(self._tmp or ".")
        self.replicas = replicas
        size = masters * (1 + replicas)
        self.nodes = [RedisServer(base / f"node-{n}", cluster=True) for n in range(size)]

    @property
    def url(self) -> str:
        """The relay's sink URL: ``redis+cluster://`` and one node (the client finds the rest)."""
        return f"redis+cluster://{HOST}:{self.nodes[0].port}"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, node.port) for node in self.nodes]

    def start(self) -> Self:
        cli = server_binary("redis-cli", "/usr/bin/redis-cli", "/usr/local/bin/redis-cli")
        try:
            for node in self.nodes:
                node.start()
            created = subprocess.run(
                [
                    cli,
                    "--cluster", "create",
                    *(f"{HOST}:{node.port}" for node in self.nodes),
                    "--cluster-replicas", str(self.replicas),
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )  # fmt: skip
            if created.returncode != 0:
                pytest.fail(
                    f"redis-cli --cluster create failed: {created.stdout}{created.stderr}",
                    pytrace=False,
                )
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def state_ok(self) -> bool:
        """Every live node reports ``cluster_state:ok``."""
        for node in self.nodes:
            if not node.alive:
                continue
            try:
                info = redis_command(node.port, "CLUSTER", "INFO", timeout=1.0)
            except (OSError, RuntimeError):
                return False
            if b"cluster_state:ok" not in info:
                return False
        return True

    def wait_ok(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.state_ok():
            if time.monotonic() > deadline:
                pytest.fail("the Redis Cluster did not reach cluster_state:ok", pytrace=False)
            time.sleep(0.05)

    def live_node(self) -> RedisServer:
        return next(node for node in self.nodes if node.alive)

    def master_of(self, key: str) -> RedisServer:
        """The node that serves ``key``'s slot now."""
        port = self.live_node().port
        slot = int(redis_command(port, "CLUSTER", "KEYSLOT", key))
        for line in redis_command(port, "CLUSTER", "NODES").decode().splitlines():
            parts = line.split()
            if "master" not in parts[2] or "fail" in parts[2]:
                continue
            for span in parts[8:]:
                if span.startswith("["):
                    continue
                low, _, high = span.partition("-")
                if int(low) <= slot <= int(high or low):
                    owner = int(parts[1].split(":")[1].split("@")[0])
                    return next(node for node in self.nodes if node.port == owner)
        raise RuntimeError(f"no master serves slot {slot}")

    def fail_over(self, key: str, timeout: float = 30.0) -> RedisServer:
        """SIGKILL the master of ``key``; wait until a replica took its slots; return it."""
        master = self.master_of(key)
        master.kill()
        return self.fail_over_wait(key, master, timeout)

    def fail_over_wait(self, key: str, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """After ``old`` (the master of ``key``) died: wait for the replica that took over."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                new = self.master_of(key)
                if new is not old:
                    self.wait_ok(timeout)
                    return new
            except (OSError, RuntimeError, ValueError, IndexError, StopIteration):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("no replica took over")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


class RedisClusterServers(RedisCluster):
    """A :class:`RedisCluster` whose ``url`` is one node's ``redis://`` URL (what
    :class:`sfstream.replay.RedisStorage` takes with ``cluster=True``)."""

    @property
    def url(self) -> str:
        return self.nodes[0].url


@contextlib.contextmanager
def running_redis_cluster(
    directory: Path | None = None, masters: int = 3, replicas: int = 1
) -> Iterator[RedisClusterServers]:
    """A Redis Cluster (``masters`` masters with ``replicas`` replicas each) for the ``with``
    block, ``cluster_state:ok`` on every node."""
    cluster = RedisClusterServers(directory, masters, replicas).start()
    try:
        yield cluster
    finally:
        cluster.stop()


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
