"""A raw HTTP/1.1 server on loopback that answers the way a hostile or broken server does.

:class:`HostileServer` reads each request (head and ``Content-Length`` body) and hands the
writer to a behaviour: a coroutine that writes whatever it likes (an endless body, endless
headers, a lie in ``Content-Length``, a redirect). aiohttp's own server would refuse to send
most of these. Requests are recorded (request line and headers) for the redirect tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

Behaviour = Callable[["Received", asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HostileServer:
    def __init__(self, behaviour: Behaviour, host: str = "127.0.0.1") -> None:
        self.behaviour = behaviour
        self.host = host
        self.port = 0
        self.requests: list[Received] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> HostileServer:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while not writer.is_closing():
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                received = Received(method, path, headers, body)
                self.requests.append(received)
                await self.behaviour(received, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # a handler never ends cancelled: asyncio 3.11 would log the cancellation
        finally:
            writer.transport.abort()
            self._tasks.discard(task)


def response(status: int, body: bytes, *headers: str, reason: str = "OK") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def endless_chunked_body(_request: Received, writer: asyncio.StreamWriter) -> None:
    """A 200 whose chunked body never ends (a JSON array that keeps growing)."""
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b'{"channel":"/x","data":"' + b"x" * 65_000 + b'"},'
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    writer.write(b"1\r\n[\r\n")
    while not writer.is_closing():
        writer.write(frame)
        await writer.drain()


async def endless_slow_body(_request: Received, writer: asyncio.StreamWriter) -> None:
    """A 200 whose chunked body drips one byte every 50 ms, for ever."""
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while not writer.is_closing():
        writer.write(b"1\r\n \r\n")
        await writer.drain()
        await asyncio.sleep(0.05)


async def endless_headers(_request: Received, writer: asyncio.StreamWriter) -> None:
    """A status line, then header lines for ever."""
    writer.write(b"HTTP/1.1 200 OK\r\n")
    n = 0
    while not writer.is_closing():
        writer.write(f"X-Header-{n}: {'v' * 100}\r\n".encode())
        n += 1
        await writer.drain()


def huge_declared_length(size: int) -> Behaviour:
    async def behave(_request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n[".encode())
        await writer.drain()
        await asyncio.sleep(5)

    return behave


def fixed(status: int, body: bytes, *headers: str, reason: str = "OK") -> Behaviour:
    async def behave(_request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(response(status, body, *headers, reason=reason))
        await writer.drain()

    return behave
