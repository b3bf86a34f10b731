"""Real engines for the relay tests: redis-server processes on free loopback ports.

:class:`RedisServer` is one ``redis-server``; :class:`RedisCluster` is three masters and three
replicas joined with ``redis-cli --cluster create`` (``cluster-node-timeout`` short, so that a
killed master fails over within about two seconds). Both run in a temporary directory, without
persistence, and are killed on :meth:`stop`. No fakes, no mocks of the engine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["REDIS_SERVER", "RedisCluster", "RedisServer", "free_port", "have_redis"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def have_redis() -> bool:
    return os.access(REDIS_SERVER, os.X_OK) and os.access(REDIS_CLI, os.X_OK)


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (and whose +10000 bus port is too)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _cli(port: int, *args: str, timeout: float = 10.0) -> str:
    done = subprocess.run(
        [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.stdout


@dataclass
class RedisServer:
    """One redis-server on ``127.0.0.1:port``."""

    directory: Path
    port: int = field(default_factory=free_port)
    cluster: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--protected-mode", "no",
        ]  # fmt: skip
        if self.cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{self.port}.conf",
                "--cluster-node-timeout", "1000",
                "--cluster-replica-validity-factor", "0",
            ]  # fmt: skip
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while _cli(self.port, "PING").strip() != "PONG":
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last replication."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        self.kill()
        self.process = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class RedisCluster:
    """Three masters and three replicas on loopback."""

    def __init__(self, directory: Path | None = None, size: int = 6) -> None:
        self._tmp = None if directory is not None else tempfile.mkdtemp(prefix="sfstream-rc-")
        base = directory if directory is not None else Path(self._tmp or ".")
        self.nodes = [RedisServer(base / f"n{i}", cluster=True) for i in range(size)]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        done = subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout} {done.stderr}")
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node reports ``cluster_state:ok``."""
        deadline = time.monotonic() + timeout
        while True:
            states = [
                "cluster_state:ok" in _cli(node.port, "CLUSTER", "INFO")
                for node in self.nodes
                if node.alive
            ]
            if all(states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis cluster did not become ok")
            time.sleep(0.1)

    def master_of(self, key: str) -> RedisServer:
        """The node that serves ``key``'s slot now."""
        slot = int(_cli(self.live_node().port, "CLUSTER", "KEYSLOT", key).strip())
        for line in _cli(self.live_node().port, "CLUSTER", "NODES").splitlines():
            parts = line.split()
            if "master" not in parts[2] or "fail" in parts[2]:
                continue
            for span in parts[8:]:
                if span.startswith("["):
                    continue
                low, _, high = span.partition("-")
                if int(low) <= slot <= int(high or low):
                    port = int(parts[1].split(":")[1].split("@")[0])
                    return next(node for node in self.nodes if node.port == port)
        raise RuntimeError(f"no master serves slot {slot}")

    def live_node(self) -> RedisServer:
        return next(node for node in self.nodes if node.alive)

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
            except (RuntimeError, ValueError, IndexError, StopIteration):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("no replica took over")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
