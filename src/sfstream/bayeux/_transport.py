"""The transport seam: how a Bayeux client gets a batch of messages to the server and back.

A transport sends one :class:`~sfstream.bayeux.Request` (a batch with a timeout hint) and
returns the reply's messages, already decoded and validated. It raises only
:class:`~sfstream.exceptions.TransportError` subclasses. Everything above it (state, advice,
reconnects, extensions) is transport-agnostic.

A duplex transport (WebSocket) also carries messages the server sends outside any reply (a
delivery pushed while ``/meta/connect`` is held): it sets :attr:`Transport.duplex`, and the
driver reads them with :meth:`Transport.receive_pushed` whenever it has room for them, which is
how backpressure reaches the socket.
"""

from __future__ import annotations

import asyncio
import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from sfstream.bayeux._codec import decode, encode
from sfstream.bayeux._events import Request
from sfstream.bayeux._messages import Message
from sfstream.exceptions import TransportInvalidOperation

__all__ = ["MockTransport", "Transport"]


class Transport(ABC):
    """Base class of transports."""

    #: The Bayeux connection type this transport speaks.
    connection_type: str = "long-polling"
    #: True when the server may send messages outside replies (read with
    #: :meth:`receive_pushed`).
    duplex: bool = False

    @abstractmethod
    async def send(
        self, request: Request, headers: Mapping[str, str] | None = None
    ) -> list[Message]:
        """Send ``request`` and return the messages of the reply.

        ``headers`` are extra HTTP headers for this request (e.g. ``Authorization``).

        Raises:
            TransportTimeoutError: no reply within ``request.timeout`` seconds.
            TransportConnectionClosed: the connection dropped.
            HTTPStatusError: the reply had a non-2xx HTTP status.
            ProtocolError: the reply is not a valid Bayeux message batch.
            TransportError: any other failure to get a reply.
            TransportInvalidOperation: the transport is closed.
        """

    async def receive_pushed(self, limit: int | None = None) -> list[Message]:
        """Wait for the next messages the server sent outside any reply (duplex transports).

        A driver calls it only when it has room for more messages: a transport stops reading
        from the server while pushed messages wait unread. ``limit`` is that room: a transport
        may join what it already holds into one batch up to it (one message the server sent
        together may exceed it). A request-reply transport has none.

        Raises:
            TransportInvalidOperation: the transport is closed, or not duplex.
        """
        raise TransportInvalidOperation(f"{type(self).__name__} receives no pushed messages")

    def new_session(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Forget per-session state (cookies) before a new handshake. Optional."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release resources; ``send`` fails afterwards. Idempotent."""


Handler = Callable[[Request], Sequence[Message] | Awaitable[Sequence[Message]]]


class MockTransport(Transport):
    """A transport that calls a function instead of a server: for tests without sockets.

    ``handler`` receives each :class:`~sfstream.bayeux.Request` and returns the reply's
    messages (or an awaitable of them), or raises a
    :class:`~sfstream.exceptions.TransportError` to simulate a failure. Replies go through the
    real codec, so a malformed reply fails as it would on the wire, and the client gets copies,
    never the handler's own dicts. Every request is recorded in :attr:`requests` with the headers
    it carried in :attr:`headers`.

    With ``duplex=True`` it behaves like a WebSocket: :meth:`push` hands the client messages
    outside any reply (deliveries while a ``/meta/connect`` is held). ``connection_type`` is
    the name the client offers in its handshake.

    >>> def server(request):
    ...     message = request.messages[0]
    ...     return [{"channel": message["channel"], "id": message["id"], "successful": True}]
    >>> transport = MockTransport(server)
    """

    def __init__(
        self, handler: Handler, *, duplex: bool = False, connection_type: str = "long-polling"
    ) -> None:
        #: The function that answers each request.
        self.handler = handler
        self.duplex = duplex
        self.connection_type = connection_type
        self._pushed: asyncio.Queue[list[Message]] = asyncio.Queue()
        #: Every request sent, in order.
        self.requests: list[Request] = []
        #: The extra HTTP headers of each request (``Authorization``...), in the same order.
        self.headers: list[dict[str, str]] = []
        #: How many times a new session started (:meth:`new_session`, before each handshake).
        self.sessions = 0
        #: True once :meth:`close` was called.
        self.closed = False

    async def send(
        self, request: Request, headers: Mapping[str, str] | None = None
    ) -> list[Message]:
        if self.closed:
            raise TransportInvalidOperation("the transport is closed")
        self.requests.append(request)
        self.headers.append(dict(headers or {}))
        result: Any = self.handler(request)
        if inspect.isawaitable(result):
            result = await result
        return decode(encode(list(result)))

    def push(self, messages: Sequence[Message]) -> None:
        """Send ``messages`` to the client outside any reply (``duplex`` transports only)."""
        if not self.duplex:
            raise TransportInvalidOperation("only a duplex transport pushes messages")
        self._pushed.put_nowait(decode(encode(list(messages))))

    async def receive_pushed(self, limit: int | None = None) -> list[Message]:
        if self.closed or not self.duplex:
            return await super().receive_pushed(limit)
        return await self._pushed.get()

    def new_session(self) -> None:
        self.sessions += 1

    async def close(self) -> None:
        self.closed = True
