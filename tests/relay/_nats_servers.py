"""Real ``nats-server`` processes for the NATS JetStream sink's tests (no mocks).

:class:`NatsServer` is one ``nats-server`` subprocess with JetStream, on free loopback ports,
with its own store directory. :class:`NatsCluster` is three of them routed into one JetStream
cluster (so that R3 streams can be created). Both wait until JetStream is ready (the monitoring
endpoint ``/healthz`` answers ``ok``, and a cluster has a meta leader), and are stopped even when
the test fails (use them as context managers, or through the fixtures in ``conftest.py``).

``cluster.kill(i)`` SIGKILLs one node (its store stays); ``cluster.restart(i)`` starts it again on
the same ports and store, and waits until it is healthy.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

#: The Debian package's binary (``.ci/run`` installs it on a fresh machine).
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
#: Starts of a server whose port was taken between picking it and binding it.
PORT_ATTEMPTS = 5

#: Seconds to wait for a server (or a cluster) to become ready.
READY_TIMEOUT = 60.0  # generous: a loaded 2-core CI machine elects slowly


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get_json(url: str) -> dict[str, Any] | None:
    """GET ``url`` (loopback monitoring endpoint); ``None`` when it cannot answer yet."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 (loopback http)
            body: dict[str, Any] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as error:  # /healthz answers 503 with a JSON body
        try:
            body = json.loads(error.read())
        except ValueError:
            return None
        return body
    except (OSError, ValueError):
        return None


class NatsServer:
    """One ``nats-server -js`` on loopback; optionally a member of a cluster (routes)."""

    def __init__(
        self,
        directory: Path,
        *,
        name: str = "n1",
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: list[int] | None = None,
        max_payload: int | None = None,
        jetstream: bool = True,
    ) -> None:
        self.name = name
        self.max_payload = max_payload
        self.jetstream = jetstream
        self.directory = directory
        self.port = free_port()
        self.http_port = free_port()
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.process: subprocess.Popen[bytes] | None = None
        self.store = directory / f"{name}-store"
        self.config = directory / f"{name}.conf"
        self.log = directory / f"{name}.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        lines = [
            f'server_name: "{self.name}"',
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.http_port}",
        ]
        if self.jetstream:
            lines.append(f'jetstream {{ store_dir: "{self.store}" }}')
        if self.max_payload is not None:
            lines.append(f"max_payload: {self.max_payload}")
        if self.cluster_name is not None:
            routes = ", ".join(f"nats-route://127.0.0.1:{port}" for port in self.routes)
            lines.append(
                f'cluster {{ name: "{self.cluster_name}", listen: 127.0.0.1:{self.cluster_port},'
                f" routes: [{routes}] }}"
            )
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start the process (does not wait; see :meth:`wait_ready`)."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self._write_config()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [NATS_SERVER, "-c", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def healthz(self) -> dict[str, Any] | None:
        return _get_json(f"http://127.0.0.1:{self.http_port}/healthz")

    def jsz(self) -> dict[str, Any] | None:
        return _get_json(f"http://127.0.0.1:{self.http_port}/jsz")

    def meta_leader(self) -> str | None:
        """The JetStream meta leader this node knows of (its own name when standalone)."""
        info = self.jsz()
        if info is None:
            return None
        meta = info.get("meta_cluster")
        if self.cluster_name is None:
            return self.name if info.get("config") is not None else None
        if isinstance(meta, dict):
            leader = meta.get("leader")
            return leader if isinstance(leader, str) and leader else None
        return None

    def ready(self) -> bool:
        health = self.healthz()
        return health is not None and health.get("status") == "ok"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not (self.ready() and (not self.jetstream or self.meta_leader() is not None)):
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"nats-server {self.name} exited: {self.log.read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nats-server {self.name} not ready in {timeout} s: "
                    f"{self.log.read_text()[-2000:]}"
                )
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL (a crash: no goodbye to the cluster); the store stays for a restart."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), or kill after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def start_bound(self, timeout: float = READY_TIMEOUT) -> None:
        """Start the process and wait until its ports are bound (its monitoring endpoint
        answers, healthy or not). A port picked free but taken before the server bound it
        (a client's connection got it as its local port, say) is picked again."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.start()
            deadline = time.monotonic() + timeout
            while self.healthz() is None:
                assert self.process is not None
                if self.process.poll() is not None:
                    tail = self.log.read_text()[-2000:]
                    if attempt < PORT_ATTEMPTS and self._lost_its_ports(tail):
                        self.port, self.http_port = free_port(), free_port()
                        break
                    raise RuntimeError(f"nats-server {self.name} exited: {tail}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nats-server {self.name} did not bind its ports")
                time.sleep(0.02)
            else:
                return
        raise AssertionError("unreachable")

    def _lost_its_ports(self, log_tail: str) -> bool:
        """Whether the server's log says its client or monitoring port was taken."""
        return "address already in use" in log_tail and any(
            f"127.0.0.1:{port}" in log_tail for port in (self.port, self.http_port)
        )

    def __enter__(self) -> Self:
        try:
            self.start_bound()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class NatsCluster:
    """Three JetStream nodes routed into one cluster (R3 streams possible)."""

    def __init__(self, directory: Path, size: int = 3, name: str = "sfstream-test") -> None:
        cluster_ports = [free_port() for _ in range(size)]
        self.nodes = [
            NatsServer(
                directory,
                name=f"n{index + 1}",
                cluster_name=name,
                cluster_port=cluster_ports[index],
                routes=[port for other, port in enumerate(cluster_ports) if other != index],
            )
            for index in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """All nodes as one comma-separated URL, as ``--sink`` takes it."""
        return ",".join(self.urls)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Every running node is healthy and they agree on a meta leader."""
        deadline = time.monotonic() + timeout
        running = [node for node in self.nodes if node.process and node.process.poll() is None]
        while True:
            leaders = {node.meta_leader() for node in running}
            if None not in leaders and len(leaders) == 1 and all(n.ready() for n in running):
                return
            if time.monotonic() > deadline:
                logs = "\n".join(node.log.read_text()[-1500:] for node in running)
                raise RuntimeError(f"cluster not ready in {timeout} s (leaders {leaders}):\n{logs}")
            time.sleep(0.1)

    def kill(self, index: int) -> None:
        self.nodes[index].kill()

    def restart(self, index: int) -> None:
        node = self.nodes[index]
        node.start()
        node.wait_ready()
        self.wait_ready()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        try:
            for node in self.nodes:
                node.start_bound()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ReplyDropper:
    """A loopback TCP proxy in front of a NATS server that can lose a server's reply.

    It forwards bytes both ways. After :meth:`drop_next` is given a marker, the first chunk
    from the server that contains it is discarded instead of forwarded: the request reached the
    server (and was carried out), but its answer never reaches the client, as when a connection
    or a node dies between the two. ``dropped`` counts the chunks lost so.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.dropped = 0
        self._marker: bytes | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def drop_next(self, marker: bytes) -> None:
        self._marker = marker

    def cut(self) -> None:
        """Close every connection through the proxy (a network failure); the client may
        connect again, through the proxy, to the same server."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]
        for task in (
            asyncio.create_task(self._pump(reader, up_writer, from_server=False)),
            asyncio.create_task(self._pump(up_reader, writer, from_server=True)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_server: bool
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if from_server and self._marker is not None and self._marker in chunk:
                    self._marker = None
                    self.dropped += 1
                    continue
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
