"""A TCP fault proxy on loopback: what the network does to HTTP between a client and a server.

:class:`FaultProxy` listens on ``127.0.0.1`` and forwards each client connection to an upstream
server (``upstream`` may change at any time, e.g. when an emulator restarts on another port).
It understands just enough HTTP/1.1 to know where each request and each response begins and
ends (``Content-Length``, chunked, or close-delimited bodies), so that faults hit exactly one
exchange, at a precise point:

==================  ============================================================================
``RESET_REQUEST``   half of the request reaches the server, then both connections are reset (RST)
``RESET_RESPONSE``  the server answers in full; the client gets the head and half of the body,
                    then a reset (the server believes it delivered: the reply is lost in transit)
``TRUNCATE``        as ``RESET_RESPONSE`` but the connection is closed cleanly (FIN) after a
                    truncated body (the ``Content-Length`` promised more)
``STALL``           the response is held ``seconds`` (or until the client gives up), then
                    forwarded intact
``STALL_RESET``     the response is held ``seconds``, then the connection is reset
``BLACKHOLE``       the response never comes; the connection stays open until the client
                    closes it
``DRIP``            the response is forwarded ``drip_bytes`` at a time, ``drip_delay`` apart
                    (in bigger pieces if it would take longer than ``seconds``)
``REFUSE``          a new connection is reset before any request is read
``REDIRECT``        the proxy answers ``307`` with ``Location: <location>`` itself
``GARBLE``          the response's status line is replaced by bytes that are not HTTP
``HUGE_HEADER``     a 64 KiB header line is added to the response head
==================  ============================================================================

A fault is armed for ``count`` exchanges (``None``: until disarmed) and may be limited to requests
whose path starts with ``path`` and whose body contains ``contains`` (e.g. ``b"/meta/connect"``).
:attr:`FaultProxy.fired` counts the faults that fired, by kind; :attr:`FaultProxy.offline`
resets every new connection (an outage). Pure asyncio streams; no third-party code.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl as ssl_module
import struct
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Final

__all__ = ["FaultKind", "FaultProxy", "ProxyFault"]

#: The largest request or response head the proxy reads.
_MAX_HEAD: Final = 256 * 1024
_CRLF: Final = b"\r\n"


class FaultKind(Enum):
    RESET_REQUEST = "reset mid-request"
    RESET_RESPONSE = "reset mid-response"
    TRUNCATE = "truncated body"
    STALL = "stall"
    STALL_RESET = "stall, then reset"
    BLACKHOLE = "blackhole"
    DRIP = "slow drip"
    REFUSE = "reset on connect"
    REDIRECT = "redirect"
    GARBLE = "garbled status line"
    HUGE_HEADER = "huge header"


@dataclass(eq=False)
class ProxyFault:
    """One armed fault (see the module docstring)."""

    kind: FaultKind
    count: int | None = 1
    path: str | None = None
    contains: bytes | None = None
    seconds: float = 1.0
    drip_bytes: int = 16
    drip_delay: float = 0.002
    location: str = ""
    fired: int = 0

    def matches(self, path: str, body: bytes) -> bool:
        if self.path is not None and not path.startswith(self.path):
            return False
        return self.contains is None or self.contains in body


class _Closed(Exception):
    """A peer went away; the connection pair is torn down."""


class _Stream:
    """A StreamReader with a push-back buffer and bounded reads of HTTP parts."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.buffer = b""

    async def _more(self) -> bytes:
        chunk = await self.reader.read(65536)
        if not chunk:
            raise _Closed
        return chunk

    async def head(self) -> bytes | None:
        """Everything up to and including the blank line; None on a clean EOF before it."""
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_HEAD:
                raise _Closed
            try:
                self.buffer += await self._more()
            except _Closed:
                if self.buffer:
                    raise
                return None
        end = self.buffer.index(b"\r\n\r\n") + 4
        head, self.buffer = self.buffer[:end], self.buffer[end:]
        return head

    async def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.buffer += await self._more()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def line(self) -> bytes:
        while _CRLF not in self.buffer:
            if len(self.buffer) > _MAX_HEAD:
                raise _Closed
            self.buffer += await self._more()
        end = self.buffer.index(_CRLF) + 2
        data, self.buffer = self.buffer[:end], self.buffer[end:]
        return data

    async def chunked(self) -> bytes:
        """A chunked body, raw (sizes, chunks and trailers), as it came."""
        parts: list[bytes] = []
        while True:
            size_line = await self.line()
            parts.append(size_line)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    trailer = await self.line()
                    parts.append(trailer)
                    if trailer == _CRLF:
                        return b"".join(parts)
            parts.append(await self.exactly(size + 2))

    async def until_eof(self) -> bytes:
        data = self.buffer
        self.buffer = b""
        while chunk := await self.reader.read(65536):
            data += chunk
        return data


def _headers(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    lines = head.split(_CRLF)
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return lines[0], fields


async def _body(
    stream: _Stream, fields: dict[bytes, bytes], *, response: bool
) -> tuple[bytes, bool]:
    """The raw body of a message and whether it ran to the end of the connection."""
    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        return await stream.chunked(), False
    length = fields.get(b"content-length")
    if length is not None:
        return await stream.exactly(int(length)), False
    if response:
        return await stream.until_eof(), True
    return b"", False


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _close(writer: asyncio.StreamWriter | None) -> None:
    """Close with a FIN after the buffered bytes went out."""
    if writer is None or writer.is_closing():
        return
    writer.close()
    with contextlib.suppress(OSError, ConnectionError):
        await writer.wait_closed()


class FaultProxy:
    """A fault-injecting HTTP/1.1 proxy on loopback (see the module docstring).

    Args:
        upstream: ``(host, port)`` of the server; may be set (or changed) later.
        host: where to listen (a loopback address).
        port: the port to listen on (0: a free one).
        ssl: serve TLS to the client with this context (the upstream stays plain HTTP): a
            TLS-terminating front for a plain-HTTP server.
    """

    def __init__(
        self,
        upstream: tuple[str, int] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.upstream = upstream
        self.host = host
        self.port = port
        self.ssl = ssl
        #: Reset every new connection (an outage of the network between client and server).
        self.offline = False
        #: How many faults fired, by kind.
        self.fired: Counter[FaultKind] = Counter()
        #: Exchanges (request and response) forwarded or faulted.
        self.exchanges = 0
        #: Connections accepted.
        self.connections = 0
        self._faults: list[ProxyFault] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and reset every open connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            _reset(writer)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://{self.host}:{self.port}"

    # -- faults ------------------------------------------------------------------------------

    def arm(
        self,
        kind: FaultKind,
        *,
        count: int | None = 1,
        path: str | None = None,
        contains: bytes | None = None,
        seconds: float = 1.0,
        drip_bytes: int = 16,
        drip_delay: float = 0.002,
        location: str = "",
    ) -> ProxyFault:
        """Arm a fault; see :class:`ProxyFault` for the options."""
        fault = ProxyFault(kind, count, path, contains, seconds, drip_bytes, drip_delay, location)
        self._faults.append(fault)
        return fault

    def reset_connections(self) -> int:
        """Reset every open connection (both sides); returns how many there were."""
        writers = list(self._writers)
        for writer in writers:
            _reset(writer)
        return len(writers)

    def clear(self) -> int:
        count = len(self._faults)
        self._faults.clear()
        return count

    @property
    def armed(self) -> list[ProxyFault]:
        return list(self._faults)

    def _take(self, path: str | None, body: bytes) -> ProxyFault | None:
        for fault in self._faults:
            if (fault.kind is FaultKind.REFUSE) != (path is None):
                continue
            if path is not None and not fault.matches(path, body):
                continue
            fault.fired += 1
            self.fired[fault.kind] += 1
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
            return fault
        return None

    # -- forwarding --------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            if self.offline or self._take(None, b"") is not None:
                _reset(writer)
                return
            client = _Stream(reader)
            server: _Stream | None = None
            while True:
                head = await client.head()
                if head is None:
                    break
                request_line, fields = _headers(head)
                body, _ = await _body(client, fields, response=False)
                parts = request_line.split(b" ")
                path = parts[1].decode("latin-1") if len(parts) > 1 else "/"
                fault = self._take(path, body)
                self.exchanges += 1
                if fault is not None and fault.kind is FaultKind.REDIRECT:
                    writer.write(
                        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: "
                        + fault.location.encode("latin-1")
                        + b"\r\nContent-Length: 0\r\n\r\n"
                    )
                    await writer.drain()
                    continue
                if upstream_writer is None or upstream_writer.is_closing():
                    if self.upstream is None or self.offline:
                        raise _Closed
                    try:
                        upstream_reader, upstream_writer = await asyncio.open_connection(
                            *self.upstream
                        )
                    except OSError:
                        raise _Closed from None
                    self._writers.add(upstream_writer)
                    server = _Stream(upstream_reader)
                assert server is not None
                if fault is not None and fault.kind is FaultKind.RESET_REQUEST:
                    upstream_writer.write(head + body[: len(body) // 2])
                    with contextlib.suppress(OSError, ConnectionError):
                        await upstream_writer.drain()
                    await asyncio.sleep(0.01)
                    _reset(upstream_writer)
                    _reset(writer)
                    return
                upstream_writer.write(head + body)
                await upstream_writer.drain()
                response_head = await server.head()
                if response_head is None:
                    raise _Closed
                status_line, response_fields = _headers(response_head)
                status = status_line.split(b" ")
                code = int(status[1]) if len(status) > 1 and status[1].isdigit() else 0
                until_eof = False
                try:
                    if code in (204, 304) or 100 <= code < 200:
                        response_body = b""
                    else:
                        response_body, until_eof = await _body(
                            server, response_fields, response=True
                        )
                except _Closed:
                    # The server dropped the connection mid-body: pass on what came, then close.
                    response_body = server.buffer
                    writer.write(response_head + response_body)
                    await _close(writer)
                    return
                if fault is not None and not await self._respond_with_fault(
                    fault, client, writer, response_head, response_body
                ):
                    return
                if fault is None:
                    writer.write(response_head + response_body)
                    await writer.drain()
                connection = response_fields.get(b"connection", b"").lower()
                if until_eof or connection == b"close" or server.reader.at_eof():
                    await _close(upstream_writer)
                    upstream_writer = None
                    if until_eof or connection == b"close":
                        break
        except (_Closed, OSError, ConnectionError, ValueError, IndexError, asyncio.CancelledError):
            # (never end cancelled: asyncio 3.11's start_server callback would log it)
            _reset(writer)
        finally:
            if not writer.is_closing():
                writer.close()
            if upstream_writer is not None:
                _reset(upstream_writer)
                self._writers.discard(upstream_writer)
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _respond_with_fault(
        self,
        fault: ProxyFault,
        client: _Stream,
        writer: asyncio.StreamWriter,
        head: bytes,
        body: bytes,
    ) -> bool:
        """Deliver a response the way ``fault`` says; False when the connection is done."""
        kind = fault.kind
        if kind is FaultKind.GARBLE:
            writer.write(b"SSH-2.0-OpenSSH_9.6\r\n" + head.partition(b"\r\n")[2] + body)
            await writer.drain()
            return False
        if kind is FaultKind.HUGE_HEADER:
            status, _, rest = head.partition(b"\r\n")
            writer.write(status + b"\r\nX-Padding: " + b"p" * 65536 + b"\r\n" + rest + body)
            await writer.drain()
            return False
        if kind in (FaultKind.RESET_RESPONSE, FaultKind.TRUNCATE):
            writer.write(head + body[: len(body) // 2])
            await writer.drain()
            await asyncio.sleep(0.01)
            if kind is FaultKind.RESET_RESPONSE:
                _reset(writer)
            else:
                await _close(writer)
            return False
        if kind in (FaultKind.STALL, FaultKind.STALL_RESET, FaultKind.BLACKHOLE):
            seconds = None if kind is FaultKind.BLACKHOLE else fault.seconds
            if await self._client_left(client, seconds):
                return False
            if kind is not FaultKind.STALL:
                _reset(writer)
                return False
            writer.write(head + body)
            await writer.drain()
            return True
        assert kind is FaultKind.DRIP
        data = head + body
        # drip_bytes at a time, or bigger pieces so that the whole takes about ``seconds``
        # (at most 200 pauses: a busy event loop stretches each one)
        pieces = max(1, min(200, int(fault.seconds / fault.drip_delay)))
        size = max(fault.drip_bytes, -(-len(data) // pieces))
        for start in range(0, len(data), size):
            if writer.is_closing():
                return False
            writer.write(data[start : start + size])
            await writer.drain()
            await asyncio.sleep(fault.drip_delay)
        return True

    @staticmethod
    async def _client_left(client: _Stream, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: forever); True if the client closed its side meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        try:
            async with asyncio.timeout_at(deadline):
                while chunk := await client.reader.read(65536):
                    client.buffer += chunk  # a pipelined request: keep it for later
        except TimeoutError:
            return False
        return True
