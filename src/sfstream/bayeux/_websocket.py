"""Bayeux over WebSocket, on aiohttp's client.

One socket carries every message both ways: each :class:`~sfstream.bayeux.Request` is one text
frame (a JSON array), and each frame the server sends is decoded with the same limits as a
long-polling reply. Replies are matched to their request by message id; the rest of a frame
that answers a request goes back with that reply (a CometD server with acknowledgements sends
deliveries with the ``/meta/connect`` reply), and frames that answer nothing are *pushed*
messages, read by the driver with :meth:`WebSocketTransport.receive_pushed`. While pushed
messages wait unread, the transport stops reading the socket: TCP then holds the server back
(backpressure, never dropping).

The socket opens on the first request and again after it dropped; the request headers (e.g.
``Authorization``) go with the upgrade request, and new headers open a new socket when no
request waits. A held ``/meta/connect`` that times out closes the socket (it may be half-open),
so a dead connection is found within the advice's timeout plus the engine's margin; aiohttp's
heartbeat (a ping every ``heartbeat`` seconds) finds it sooner. Errors map to the same
:class:`~sfstream.exceptions.TransportError` tree as long polling (the mapping is
:class:`~sfstream.bayeux.LongPollingTransport`'s own), and a refused upgrade is an
:class:`~sfstream.exceptions.HTTPStatusError` with the status the server answered.

A frame that is not valid Bayeux or over a size limit fails the requests waiting on the socket
with a :class:`~sfstream.exceptions.ProtocolError`; when none waits (the driver paused polling
for a slow consumer), the next ``/meta/connect`` fails with it instead, as the connect whose
reply was bad would over long polling: the frame is never dropped without a word.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl as ssl_module
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from yarl import URL

from sfstream.bayeux._aiohttp import (
    DEFAULT_MAX_RESPONSE_SIZE,
    LongPollingTransport,
    _decode_without_gc,
    map_error,
    with_authorization,
    without_credentials,
)
from sfstream.bayeux._codec import DEFAULT_MAX_MESSAGES, JSONDumps, JSONLoads, decode, encode
from sfstream.bayeux._events import Request
from sfstream.bayeux._messages import Message
from sfstream.bayeux._transport import Transport
from sfstream.exceptions import (
    HTTPStatusError,
    InvalidArgumentError,
    ProtocolError,
    TransportConnectionClosed,
    TransportError,
    TransportInvalidOperation,
)

__all__ = ["WebSocketTransport"]

logger = logging.getLogger(__name__)

#: Seconds to wait for the server's close frame when the client closes a socket.
_CLOSE_TIMEOUT: Final = 2.0
#: Frames of pushed messages read ahead of the driver before the transport stops reading.
_PUSH_BUFFER: Final = 8
#: Pushed messages handed over in one batch at most (when frames wait in the buffer).
_PUSH_BATCH: Final = 1000
#: WebSocket close code of a message over the receiver's limit (RFC 6455).
_MESSAGE_TOO_BIG: Final = 1009


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it to end; a cancellation of the caller itself (arriving
    meanwhile) still propagates."""
    current = asyncio.current_task()
    cancelling = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > cancelling:
            raise


@dataclass(eq=False)
class _Pending:
    """A request waiting for its replies."""

    future: asyncio.Future[list[Message]]
    waiting: int
    replies: list[Message] = field(default_factory=list)


class WebSocketTransport(Transport):
    """Sends Bayeux batches as WebSocket text frames to ``url`` (``http``/``ws`` or
    ``https``/``wss``).

    Takes the same arguments as :class:`~sfstream.bayeux.LongPollingTransport` (a user's
    ``session`` brings its cookies, TLS and proxy settings and is never closed here), and:

    Args:
        heartbeat: seconds between WebSocket pings; a missing pong closes the socket.
            None: no pings (the held connect's timeout still finds a dead socket).

    ``max_response_size`` is the largest frame accepted: a bigger one fails the requests
    waiting on the socket with :class:`~sfstream.exceptions.ProtocolError` and closes it.
    """

    connection_type = "websocket"
    duplex = True
    #: Frames above this size (bytes) are parsed with the cyclic garbage collector paused.
    pause_gc_over: int | None = LongPollingTransport.pause_gc_over

    def __init__(
        self,
        url: str | URL,
        *,
        session: aiohttp.ClientSession | None = None,
        json_dumps: JSONDumps = json.dumps,
        json_loads: JSONLoads = json.loads,
        headers: Mapping[str, str] | None = None,
        ssl: ssl_module.SSLContext | bool = True,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_message_size: int | None = None,
        max_depth: int | None = None,
        heartbeat: float | None = 30.0,
    ) -> None:
        self.url, self._basic = without_credentials(URL(url))
        if self.url.scheme not in ("http", "https", "ws", "wss") or not self.url.host:
            raise InvalidArgumentError(
                f"the Bayeux URL must be an absolute http(s) or ws(s) URL, not {str(self.url)!r}"
            )
        self._session = session
        self._owns_session = session is None
        self._dumps = json_dumps
        self._loads = json_loads
        ours = {"Authorization": self._basic} if self._basic else {}
        self._headers = with_authorization(ours, headers or {}, self._basic)
        self._ssl = ssl
        self.max_response_size = max_response_size
        self.max_messages = max_messages
        self.max_message_size = max_message_size
        self.max_depth = max_depth
        self.heartbeat = heartbeat
        #: How many sockets were opened so far.
        self.sockets_opened = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ws_headers: dict[str, str] = {}
        self._reader: asyncio.Task[None] | None = None
        self._open_lock: asyncio.Lock | None = None
        self._pending: dict[str, _Pending] = {}
        #: Frames of pushed messages not yet read; the reader waits while it is full.
        self._pushed: deque[list[Message]] = deque()
        self._pushed_ready = asyncio.Event()
        self._pushed_room = asyncio.Event()
        #: A frame refused while no request waited: the next held connect fails with it.
        self._refused: ProtocolError | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<WebSocketTransport {self.url}>"

    # -- the socket ----------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # A jar of our own, emptied for every new Bayeux session (unsafe: keep the cookies
            # of IP hosts too, as a server on 127.0.0.1 sets them).
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        return self._session

    def new_session(self) -> None:
        """Forget the cookies of the previous Bayeux session (an owned session's jar only)."""
        if self._owns_session and self._session is not None:
            self._session.cookie_jar.clear()

    async def _socket(self, headers: Mapping[str, str] | None) -> aiohttp.ClientWebSocketResponse:
        wanted = (
            with_authorization(self._headers, headers, self._basic) if headers else self._headers
        )
        ws = self._ws
        if ws is not None and not ws.closed:
            if wanted == self._ws_headers or self._pending:
                return ws
            logger.debug("new request headers: opening a new WebSocket to %s", self.url)
            await self._drop(ws)
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            ws = self._ws
            if ws is not None and not ws.closed:
                return ws
            ws = await self._get_session().ws_connect(
                self.url,
                headers=wanted,
                ssl=self._ssl,
                heartbeat=self.heartbeat,
                max_msg_size=self.max_response_size,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_CLOSE_TIMEOUT),
            )
            if self._closed:  # closed while the upgrade was on its way
                await ws.close()
                raise TransportInvalidOperation("the transport is closed")
            self.sockets_opened += 1
            self._ws, self._ws_headers = ws, dict(wanted)
            self._reader = asyncio.create_task(self._read(ws), name=f"read WebSocket {self.url}")
            logger.debug("WebSocket to %s open", self.url)
            return ws

    async def _drop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Close ``ws`` and wait for its reader, which fails the requests waiting on it."""
        reader = self._reader if self._ws is ws else None
        with contextlib.suppress(Exception):
            await ws.close()
        if reader is not None:
            await cancel_and_wait(reader)

    # -- sending -------------------------------------------------------------------------

    async def send(
        self, request: Request, headers: Mapping[str, str] | None = None
    ) -> list[Message]:
        if self._closed:
            raise TransportInvalidOperation("the transport is closed")
        refused = self._refused
        if refused is not None and request.long_poll:
            # Reported as the failure of this connect, as a bad long-polling reply is.
            self._refused = None
            raise refused
        text = encode(request.messages, self._dumps).decode()
        idents = [m["id"] for m in request.messages if "id" in m]
        loop = asyncio.get_running_loop()
        pending = _Pending(loop.create_future(), len(idents))
        try:
            error: TransportError | None = None
            try:
                async with asyncio.timeout(request.timeout):
                    ws = await self._socket(headers)
                    for ident in idents:
                        self._pending[ident] = pending
                    await ws.send_str(text)
                    if not idents:
                        return []
                    return await pending.future
            except TransportError:
                raise
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = self._map_error(exc, request.timeout)
            # Raised out of the except block, so the aiohttp error is not chained as
            # __context__ (its repr holds the request headers: Authorization, cookies).
            raise error
        except TransportError as exc:
            if request.long_poll and not isinstance(exc, HTTPStatusError | ProtocolError):
                # A held connect without a reply: the socket may be half-open. Drop it; the
                # next request opens a new one.
                current = self._ws
                if current is not None:
                    await self._drop(current)
            raise
        finally:
            for ident in idents:
                if self._pending.get(ident) is pending:
                    del self._pending[ident]
            if not pending.future.done():
                pending.future.cancel()

    def _map_error(self, exc: BaseException, timeout: float) -> TransportError:
        """Long polling's mapping, plus the refused upgrade as an HTTP status error."""
        if isinstance(exc, aiohttp.WSServerHandshakeError):
            # Never chained or repr'd: request_info holds the request headers.
            return HTTPStatusError(
                f"the server refused the WebSocket upgrade: HTTP {exc.status} "
                f"{exc.message}".rstrip(),
                status=exc.status,
                reason=exc.message,
            )
        return map_error(exc, self.url, timeout)

    # -- receiving -----------------------------------------------------------------------

    async def receive_pushed(self, limit: int | None = None) -> list[Message]:
        """The pushed messages of the next frame, with those of the frames already read after
        it while they fit in ``limit`` (one batch for the engine however the server split
        them)."""
        if self._closed:
            raise TransportInvalidOperation("the transport is closed")
        frames = self._pushed
        while not frames:
            self._pushed_ready.clear()
            await self._pushed_ready.wait()
        messages = frames.popleft()
        most = _PUSH_BATCH if limit is None else min(limit, _PUSH_BATCH)
        while frames and len(messages) + len(frames[0]) <= most:
            messages = messages + frames.popleft()
        self._pushed_room.set()
        return messages

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        where = f"{self.url.host}:{self.url.port}"
        error: TransportError | None = None
        try:
            while True:
                frame = await ws.receive()
                if frame.type is aiohttp.WSMsgType.TEXT or frame.type is aiohttp.WSMsgType.BINARY:
                    try:
                        messages = self._decode(frame.data)
                    except ProtocolError as exc:
                        self._fail_pending(exc)
                        continue
                    await self._route(messages)
                elif frame.type is aiohttp.WSMsgType.ERROR:
                    cause = frame.data
                    if getattr(cause, "code", None) == _MESSAGE_TOO_BIG:
                        error = ProtocolError(
                            f"a WebSocket frame from {where} is larger than the limit of "
                            f"{self.max_response_size} bytes"
                        )
                    else:
                        error = TransportConnectionClosed(
                            f"the WebSocket to {where} failed: {cause}"
                        )
                    break
                elif frame.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    break
        except asyncio.CancelledError:
            error = TransportConnectionClosed(f"the WebSocket to {where} was closed")
            raise
        except Exception as exc:  # a socket error surfacing from aiohttp: the socket is done
            error = TransportConnectionClosed(f"the WebSocket to {where} failed: {exc}")
        finally:
            if self._ws is ws:
                self._ws = None
            with contextlib.suppress(Exception):
                await asyncio.shield(ws.close())
            self._fail_pending(
                error
                or TransportConnectionClosed(
                    f"the server closed the WebSocket to {where} (code {ws.close_code})"
                )
            )

    def _decode(self, data: str | bytes) -> list[Message]:
        threshold = self.pause_gc_over
        if threshold is not None and len(data) > threshold:
            return _decode_without_gc(
                data.encode() if isinstance(data, str) else data,
                self._loads,
                self.max_messages,
                self.max_message_size,
                self.max_depth,
            )
        return decode(
            data,
            self._loads,
            max_messages=self.max_messages,
            max_message_size=self.max_message_size,
            max_depth=self.max_depth,
        )

    async def _route(self, messages: list[Message]) -> None:
        """Hand each reply to its request; the rest of a frame goes with the frame's first
        reply, or is pushed when the frame answers no request."""
        touched: list[_Pending] = []
        others: list[Message] = []
        for message in messages:
            ident = message.get("id")
            pending = None
            if ident is not None and (
                message["channel"].startswith("/meta/") or "data" not in message
            ):
                pending = self._pending.pop(ident, None)
            if pending is None or pending.future.done():
                others.append(message)
                continue
            pending.replies.append(message)
            pending.waiting -= 1
            if pending not in touched:
                touched.append(pending)
        if touched:
            touched[0].replies.extend(others)
            for pending in touched:
                if pending.waiting <= 0:
                    pending.future.set_result(pending.replies)
        elif others:
            # Queued before waiting for room: a reader cancelled meanwhile (the socket closed
            # for new headers) loses nothing it has read.
            self._pushed.append(others)
            self._pushed_ready.set()
            while len(self._pushed) > _PUSH_BUFFER:
                self._pushed_room.clear()
                await self._pushed_room.wait()

    def _fail_pending(self, error: TransportError) -> None:
        pendings = {id(p): p for p in self._pending.values()}.values()
        self._pending.clear()
        if isinstance(error, ProtocolError) and not any(not p.future.done() for p in pendings):
            logger.warning("refused a WebSocket frame from %s: %s", self.url, error)
            self._refused = error
        for pending in pendings:
            if not pending.future.done():
                pending.future.set_exception(error)

    async def close(self) -> None:
        """Close the socket, and the session if this transport created it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._fail_pending(TransportInvalidOperation("the transport is closed"))
        ws = self._ws
        if ws is not None:
            await self._drop(ws)
        if self._owns_session and self._session is not None:
            await self._session.close()
