"""Run the Node.js peers of ``tests/interop/peers/`` from asyncio: a Faye server and the CometD
JavaScript client.

Both scripts speak JSON lines on stdout (and the CometD client takes JSON-line commands on stdin);
both exit when their stdin closes, so a Node process never outlives the Python process that started
it. Their stderr is inherited: pytest captures it and shows it for a failing test (the Faye server
logs the wire traffic there when started verbose).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import itertools
import json
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol, TypeVar

import aiohttp

__all__ = [
    "NODE_PACKAGES",
    "PEERS_DIR",
    "CometdClient",
    "CometdServer",
    "FayeServer",
    "NodeProcess",
    "PeerError",
    "StartCometd",
    "missing_node_modules",
    "node_executable",
]

#: The folder holding package.json, the scripts and (after ``npm ci``) node_modules.
PEERS_DIR: Final = Path(__file__).resolve().parent / "peers"

#: The packages the scripts load; each must be in node_modules.
NODE_PACKAGES: Final = ("faye", "cometd", "cometd-nodejs-client", "cometd-nodejs-server")

#: Seconds to wait for a peer to start, to answer a command or to exit.
STARTUP_TIMEOUT: Final = 15.0
REPLY_TIMEOUT: Final = 10.0
EXIT_TIMEOUT: Final = 5.0

#: The longest JSON line a peer may print (a server event carries a message's whole data).
STDOUT_LINE_LIMIT: Final = 16 * 1024 * 1024

JSONObject = dict[str, Any]
_T = TypeVar("_T")

#: Processes started and not yet reaped: killed at interpreter exit as a last resort.
_LIVE: set[asyncio.subprocess.Process] = set()


@atexit.register
def _kill_leftovers() -> None:  # pragma: no cover - only when a teardown could not run
    for process in list(_LIVE):
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)


class PeerError(RuntimeError):
    """A peer did not start, answered something unexpected or died."""


def node_executable() -> str:
    """The ``node`` binary on PATH, or a :class:`PeerError` saying it is missing."""
    node = shutil.which("node")
    if node is None:
        raise PeerError("the interop tests need Node.js (`node` on PATH); none was found")
    return node


def missing_node_modules() -> str | None:
    """Why the peers cannot run (a message naming the fix), or None when they can."""
    missing = [name for name in NODE_PACKAGES if not (PEERS_DIR / "node_modules" / name).is_dir()]
    if not missing:
        return None
    return (
        f"Node packages {', '.join(missing)} are not installed in {PEERS_DIR}. "
        f"Run `npm ci` there first: cd {PEERS_DIR} && npm ci --no-audit --no-fund"
    )


class NodeProcess:
    """One Node.js script of the peers folder, run with cwd = that folder.

    Every JSON line it prints is appended to :attr:`lines` (and passed to :meth:`_on_line`);
    :meth:`wait_for` waits for a line matching a predicate.
    """

    script: ClassVar[str]

    def __init__(self) -> None:
        self.lines: list[JSONObject] = []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._exit_code: int | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def _spawn(self, *args: str) -> None:
        if self._process is not None:
            raise PeerError(f"{self.script} is already running")
        self.lines = []
        self._exit_code = None
        process = await asyncio.create_subprocess_exec(
            node_executable(),
            str(PEERS_DIR / self.script),
            *args,
            cwd=PEERS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # inherited: captured by pytest
            limit=STDOUT_LINE_LIMIT,
        )
        _LIVE.add(process)
        self._process = process
        self._reader = asyncio.create_task(self._read(process), name=f"read {self.script}")

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            raw = await process.stdout.readline()
            if not raw:
                break
            text = raw.decode("utf-8", "replace").strip()
            if not text:
                continue
            try:
                line = json.loads(text)
            except ValueError:
                print(f"[{self.script}] not JSON: {text}", file=sys.stderr)
                continue
            if not isinstance(line, dict):
                print(f"[{self.script}] not an object: {text}", file=sys.stderr)
                continue
            self.lines.append(line)
            self._on_line(line)
            async with self._changed:
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    def _on_line(self, line: JSONObject) -> None:
        """Hook for subclasses: called for each JSON line, in order."""

    async def _wait(self, find: Callable[[], _T | None], *, within: float, what: str) -> _T:
        """Evaluate ``find()`` now and after each new line until it returns something."""
        try:
            async with asyncio.timeout(within), self._changed:
                while True:
                    found = find()
                    if found is not None:
                        return found
                    if self._reader is None or self._reader.done():
                        raise PeerError(
                            f"{self.script} is not running (exit code {self.returncode}): "
                            f"no {what}; lines: {self.lines}"
                        )
                    await self._changed.wait()
        except TimeoutError:
            raise PeerError(
                f"{self.script}: no {what} within {within} s; lines so far: {self.lines}"
            ) from None

    async def wait_for(
        self,
        predicate: Callable[[JSONObject], bool],
        *,
        start: int = 0,
        within: float = REPLY_TIMEOUT,
        what: str = "a matching line",
    ) -> JSONObject:
        """The first line from index ``start`` on that matches ``predicate``, waiting for it
        ``within`` seconds at most (then :class:`PeerError`)."""
        return await self._wait(
            lambda: next((line for line in self.lines[start:] if predicate(line)), None),
            within=within,
            what=what,
        )

    async def wait_until(
        self, check: Callable[[], bool], *, within: float = REPLY_TIMEOUT, what: str
    ) -> None:
        """Wait until ``check()`` is true, evaluating it again after each new line."""
        await self._wait(lambda: True if check() else None, within=within, what=what)

    @property
    def returncode(self) -> int | None:
        """The exit code of the running process (None while it runs), else of the last one."""
        return self._exit_code if self._process is None else self._process.returncode

    async def _send(self, command: JSONObject) -> None:
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            raise PeerError(f"{self.script} is not running")
        process.stdin.write(json.dumps(command).encode() + b"\n")
        await process.stdin.drain()

    async def stop(self) -> None:
        """End the process (stdin closed, then SIGTERM, then SIGKILL) and reap it. Idempotent."""
        process, reader = self._process, self._reader
        self._process = self._reader = None
        if process is None:
            return
        try:
            if process.stdin is not None and not process.stdin.is_closing():
                process.stdin.close()
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
            try:
                async with asyncio.timeout(EXIT_TIMEOUT):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            self._exit_code = process.returncode
            if reader is not None:
                async with asyncio.timeout(EXIT_TIMEOUT):
                    await reader
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            if process.stdin is not None:
                with contextlib.suppress(Exception):
                    await process.stdin.wait_closed()
            _LIVE.discard(process)


class FayeServer(NodeProcess):
    """``peers/faye_server.mjs``: a Faye 1.4.3 server on 127.0.0.1.

    :attr:`lines` holds the server's events since the last start (``{"event": "subscribe",
    "clientId": ..., "channel": ...}`` and so on). :meth:`restart` comes back on the same port,
    so :attr:`url` stays valid; the new server knows none of the old clients.
    """

    script = "faye_server.mjs"

    #: The path of the Bayeux endpoint.
    mount = "/bayeux"

    def __init__(
        self, *, timeout: float = 5.0, verbose: bool = True, websocket: bool = True
    ) -> None:
        super().__init__()
        self.timeout = timeout
        self.verbose = verbose
        #: False: the server refuses every WebSocket upgrade (HTTP 400), as behind a proxy
        #: that does not pass them on.
        self.websocket = websocket
        self.port: int | None = None
        #: Whether the ``faye`` fixture fails a test whose clients overlapped connects.
        self.check_concurrent_connects = True
        self._concurrent_connects: list[JSONObject] = []

    def _on_line(self, line: JSONObject) -> None:
        if line.get("event") == "concurrent-connect":
            self._concurrent_connects.append(line)

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise PeerError("the Faye server has not been started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The Bayeux endpoint, e.g. ``http://127.0.0.1:PORT/bayeux``."""
        return f"{self.base_url}{self.mount}"

    def _args(self) -> list[str]:
        args = ["--port", str(self.port or 0), "--timeout", str(self.timeout)]
        if self.verbose:
            args.append("--verbose")
        if not self.websocket:
            args.append("--no-websocket")
        return args

    async def start(self) -> None:
        """Start the server: on a free port the first time, on the same port afterwards."""
        await self._spawn(*self._args())
        try:
            line = await self.wait_for(
                lambda line: "port" in line, within=STARTUP_TIMEOUT, what='{"port": N}'
            )
        except BaseException:
            await self.stop()
            raise
        port = int(line["port"])
        if self.port is not None and port != self.port:  # pragma: no cover - the script forbids it
            await self.stop()
            raise PeerError(f"the Faye server came back on port {port}, not {self.port}")
        self.port = port

    async def restart(self) -> None:
        """Stop the server and start a new one on the same port."""
        await self.stop()
        await self.start()

    async def publish(self, channel: str, data: Any) -> None:
        """Publish ``data`` on ``channel`` through Faye's server-side client (``POST /publish``)."""
        # A file-like body: aiohttp warns (ResourceWarning) about a bytes body over 1 MiB.
        request = io.BytesIO(json.dumps({"channel": channel, "data": data}).encode())
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.base_url}/publish",
                data=request,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=REPLY_TIMEOUT),
            ) as response,
        ):
            answer = await response.text()
            if response.status != 200:
                raise PeerError(
                    f"Faye refused the publish on {channel}: {response.status} {answer}"
                )

    def concurrent_connects(self) -> list[JSONObject]:
        """Every connect that arrived while the same client had one held, across restarts
        (Faye never answers the older one: a client must not do this)."""
        return list(self._concurrent_connects)

    def mark(self) -> int:
        """The index of the next server event, for :meth:`wait_for_subscription` ``start``."""
        return len(self.lines)

    def subscriptions(self, client_id: str | None = None) -> set[str]:
        """The channels the server has seen subscribed (and not unsubscribed) since its start."""
        channels: set[str] = set()
        for line in self.lines:
            if client_id is not None and line.get("clientId") != client_id:
                continue
            if line.get("event") == "subscribe":
                channels.add(line["channel"])
            elif line.get("event") == "unsubscribe":
                channels.discard(line["channel"])
        return channels

    async def wait_for_subscription(
        self,
        channel: str,
        *,
        client_id: str | None = None,
        start: int = 0,
        within: float = REPLY_TIMEOUT,
    ) -> str:
        """Wait until the server sees a subscription to ``channel``; returns the client id."""
        line = await self.wait_for(
            lambda line: (
                line.get("event") == "subscribe"
                and line.get("channel") == channel
                and (client_id is None or line.get("clientId") == client_id)
            ),
            start=start,
            within=within,
            what=f"subscription to {channel}",
        )
        return str(line["clientId"])

    async def wait_for_subscriptions(
        self, channels: set[str], *, client_id: str | None = None, within: float = REPLY_TIMEOUT
    ) -> None:
        """Wait until :meth:`subscriptions` is exactly ``channels``.

        The server reports its events on stdout, which may be read after the client got its
        reply: never compare :meth:`subscriptions` right after a (un)subscribe, wait for it.
        """
        await self.wait_until(
            lambda: self.subscriptions(client_id) == channels,
            within=within,
            what=f"subscriptions {sorted(channels)} of {client_id or 'all clients'}",
        )


class CometdServer(FayeServer):
    """``peers/cometd_server.mjs``: the CometD project's Node.js server (cometd-nodejs-server),
    long polling only, with the same events, ``publish()`` and ``restart()`` as
    :class:`FayeServer`. ``ack=True`` installs its acknowledgement extension."""

    script = "cometd_server.mjs"
    mount = "/cometd"

    def __init__(self, *, timeout: float = 5.0, verbose: bool = True, ack: bool = False) -> None:
        super().__init__(timeout=timeout, verbose=verbose)
        self.ack = ack

    def _args(self) -> list[str]:
        args = ["--port", str(self.port or 0), "--timeout", str(self.timeout)]
        if self.verbose:
            args.append("--verbose")
        if self.ack:
            args.append("--ack")
        return args


class CometdClient(NodeProcess):
    """``peers/cometd_client.mjs``: the CometD JavaScript client, driven by JSON-line commands.

    :meth:`start` returns once the first handshake succeeded. Messages delivered to its
    subscriptions are read with :meth:`receive`.
    """

    script = "cometd_client.mjs"

    def __init__(self, url: str, *, transport: str = "long-polling", log_level: str = "warn"):
        super().__init__()
        self.url = url
        self.transport = transport
        self.log_level = log_level
        self.client_id: str | None = None
        self.messages: asyncio.Queue[JSONObject] = asyncio.Queue()
        self._ids = itertools.count(1)

    def _on_line(self, line: JSONObject) -> None:
        if line.get("event") == "message":
            self.messages.put_nowait(line)
        elif line.get("event") == "handshake" and line.get("successful"):
            self.client_id = line.get("clientId")

    async def start(self) -> None:
        await self._spawn(
            "--url", self.url, "--transport", self.transport, "--log-level", self.log_level
        )
        try:
            line = await self.wait_for(
                lambda line: line.get("event") == "handshake",
                within=STARTUP_TIMEOUT,
                what="handshake",
            )
            if not line.get("successful"):
                raise PeerError(f"the CometD client's handshake failed: {line}")
        except BaseException:
            await self.stop()
            raise

    async def command(self, op: str, reply_event: str, **fields: Any) -> JSONObject:
        """Send one command and return its reply line (matched by id)."""
        ident = next(self._ids)
        start = len(self.lines)
        await self._send({"op": op, "id": ident, **fields})
        return await self.wait_for(
            lambda line: line.get("id") == ident and line.get("event") in (reply_event, "error"),
            start=start,
            what=f"reply to {op} #{ident}",
        )

    async def subscribe(self, channel: str) -> JSONObject:
        """Subscribe; the reply has ``successful`` (and ``error`` when refused)."""
        return await self.command("subscribe", "subscribed", channel=channel)

    async def unsubscribe(self, channel: str) -> JSONObject:
        return await self.command("unsubscribe", "unsubscribed", channel=channel)

    async def publish(self, channel: str, data: Any) -> JSONObject:
        return await self.command("publish", "published", channel=channel, data=data)

    async def receive(self, within: float = REPLY_TIMEOUT) -> JSONObject:
        """The next message delivered to a subscription: ``{"channel", "data", "subscription"}``;
        :class:`PeerError` if none comes ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                return await self.messages.get()
        except TimeoutError:
            raise PeerError(f"the CometD client received no message within {within} s") from None

    async def disconnect(self) -> JSONObject:
        """Send ``/meta/disconnect``, wait for its reply and for the process to exit."""
        reply = await self.command("disconnect", "disconnected")
        process = self._process
        if process is not None:
            async with asyncio.timeout(EXIT_TIMEOUT):
                await process.wait()
        await self.stop()
        return reply


class StartCometd(Protocol):
    """The ``cometd_client`` fixture: start a CometD JavaScript client, handshaken."""

    async def __call__(self, url: str, *, transport: str = "long-polling") -> CometdClient: ...
