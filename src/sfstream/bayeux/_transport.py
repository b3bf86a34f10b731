"""The transport seam: how a Bayeux client gets a batch of messages to the server and back.

A transport sends one :class:`~sfstream.bayeux.Request` (a batch with a timeout hint) and
returns the reply's messages, already decoded and validated. It raises only
:class:`~sfstream.exceptions.TransportError` subclasses. Everything above it (state, advice,
reconnects, extensions) is transport-agnostic.
"""

from __future__ import annotations

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

    >>> def server(request):
    ...     message = request.messages[0]
    ...     return [{"channel": message["channel"], "id": message["id"], "successful": True}]
    >>> transport = MockTransport(server)
    """

    def __init__(self, handler: Handler) -> None:
        #: The function that answers each request.
        self.handler = handler
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

    def new_session(self) -> None:
        self.sessions += 1

    async def close(self) -> None:
        self.closed = True
