"""BayeuxClient: the asyncio driver of the sans-IO engine.

The driver owns one background task, the connect loop, which executes the actions that
:func:`~sfstream.bayeux.decide` returns (via :meth:`BayeuxEngine.next_action`): handshake,
connect, re-authenticate, stop. It never reads advice itself. Subscribe, unsubscribe and publish
go out on the control lane beside the held connect. Delivered messages wait in a prefetch queue
for :meth:`BayeuxClient.receive`; when ``max_pending_count`` of them wait, the loop stops polling
until the consumer catches up (backpressure, never dropping).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import ssl as ssl_module
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from enum import Enum
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
from yarl import URL

from sfstream.bayeux._advice import (
    Action,
    Connect,
    Handshake,
    Reauthenticate,
    ReconnectPolicy,
    Stop,
)
from sfstream.bayeux._aiohttp import (
    DEFAULT_MAX_RESPONSE_SIZE,
    LongPollingTransport,
    without_credentials,
)
from sfstream.bayeux._backoff import Backoff, ExponentialBackoff
from sfstream.bayeux._codec import DEFAULT_MAX_MESSAGES, JSONDumps, JSONLoads, check_json
from sfstream.bayeux._engine import LONG_POLLING, WEBSOCKET, BayeuxEngine
from sfstream.bayeux._events import (
    Deliveries,
    Event,
    HandshakeSucceeded,
    PublishReplied,
    Request,
    SessionLost,
    SubscribeFailed,
    SubscribeSucceeded,
    UnsubscribeFailed,
)
from sfstream.bayeux._extensions import Extension
from sfstream.bayeux._messages import Message
from sfstream.bayeux._state import State
from sfstream.bayeux._status import Status, StatusCallback, StatusKind, StatusStats
from sfstream.bayeux._transport import Transport
from sfstream.bayeux._websocket import WebSocketTransport, cancel_and_wait
from sfstream.exceptions import (
    AuthenticationError,
    ClientError,
    ClientInvalidOperation,
    InvalidArgumentError,
    ProtocolError,
    ServerError,
    SfstreamError,
    TransportError,
    TransportInvalidOperation,
    TransportTimeoutError,
)

__all__ = ["BayeuxClient"]

logger = logging.getLogger(__name__)

HeadersProvider = Callable[[], Mapping[str, str]]
#: Called when an automatic resubscription is refused; return True to subscribe once more
#: (after preparing a fallback, e.g. another replay id), False to report the error.
ResubscribeHook = Callable[[str, ServerError], bool]

#: Seconds ``close()`` waits for the server to answer the disconnect.
_DISCONNECT_TIMEOUT: Final = 2.0
#: ``receive()`` lets the connect loop run at least once every this many messages (#13).
_YIELD_EVERY: Final = 16

#: The connection types a BayeuxClient can carry its messages over.
CONNECTION_TYPES: Final = (WEBSOCKET, LONG_POLLING)
#: Transports whose replies always come from the network: awaiting one always yields to the
#: event loop (a user's transport may answer without yielding; its connects are spaced out).
_NETWORK_TRANSPORTS: Final = (LongPollingTransport, WebSocketTransport)


def _auth_refused(error: SfstreamError) -> bool:
    """A subscribe refused for its credentials (``401::Authentication invalid``), read from
    Salesforce's ``failureReason`` first (a 503 can hide behind a 401 ``error``)."""
    return isinstance(error, ServerError) and error.cause_code == 401


def _transient(error: AuthenticationError) -> bool:
    """A token request that got no answer (network, timeout) or a 5xx/429: worth retrying.
    A refusal (4xx, ``invalid_grant``) or an authenticator that cannot refresh is not."""
    if error.status is not None:
        return error.status >= 500 or error.status == 429
    cause: BaseException | None = error.__cause__
    while isinstance(cause, AuthenticationError):
        cause = cause.__cause__
    return isinstance(cause, aiohttp.ClientError | TimeoutError | OSError)


def check_limits(connection_timeout: object, max_pending_count: object) -> None:
    """``connection_timeout`` and ``max_pending_count`` checked where they are given (the
    connect loop uses them much later, deep inside), for this client and the Salesforce one.

    Raises:
        TypeError: not a number (``connection_timeout`` may also be None; a bool is no number).
        InvalidArgumentError: NaN, or an infinite ``max_pending_count`` (``<= 0`` means no
            limit).
    """
    if connection_timeout is not None and (
        not isinstance(connection_timeout, int | float) or isinstance(connection_timeout, bool)
    ):
        raise TypeError(
            f"connection_timeout must be a number or None, not {type(connection_timeout).__name__}"
        )
    if isinstance(connection_timeout, float) and math.isnan(connection_timeout):
        raise InvalidArgumentError("connection_timeout must be a number of seconds, not NaN")
    if not isinstance(max_pending_count, int | float) or isinstance(max_pending_count, bool):
        raise TypeError(
            f"max_pending_count must be a number, not {type(max_pending_count).__name__}"
        )
    if isinstance(max_pending_count, float) and not math.isfinite(max_pending_count):
        raise InvalidArgumentError(
            f"max_pending_count must be a finite number (<= 0 means no limit), "
            f"not {max_pending_count}"
        )


def check_count(name: str, value: object) -> None:
    """A count given to a public method: an int (not a bool) of at least 1."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise InvalidArgumentError(f"{name} must be at least 1, not {value}")


def check_reply_limits(max_response_size: object, max_messages: object) -> None:
    """The limits on a reply, checked where they are given (the transport reads them at
    each reply, deep inside): each an int (not a bool) of at least 1."""
    check_count("max_response_size", max_response_size)
    check_count("max_messages", max_messages)


def _check_request_timeout(value: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"request_timeout must be a number of seconds, not {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise InvalidArgumentError(
            f"request_timeout must be a positive, finite number of seconds, not {value}"
        )


class Opening:
    """The task running an ``open()``, which ``close()`` stops by cancelling it, as
    :func:`asyncio.timeout` does: a ``close()`` during the handshake (or the token request)
    then ends the opening instead of being overtaken by it. A cancellation from anyone else
    stays one. Shared by this client and the Salesforce one.

    In ``open()``: create it first and run the opening in ``with opening:``, which turns the
    cancellation :meth:`stop` made into :class:`~sfstream.exceptions.ClientInvalidOperation`
    and sets :attr:`ended`. In ``close()``: :meth:`stop`, then wait for :attr:`ended`.
    """

    def __init__(self) -> None:
        self.task = asyncio.current_task()
        self._cancelling = self.task.cancelling() if self.task is not None else 0
        #: set when ``open()`` has ended
        self.ended = asyncio.Event()
        #: True while a cancellation made by stop() has not been taken back
        self._cancelled = False

    def stop(self) -> bool:
        """Cancel the opening task (once); False, and nothing done, when called by that task
        itself (there is no opening to wait for then)."""
        task = self.task
        if task is None or task is asyncio.current_task():
            return False
        if not self._cancelled:
            self._cancelled = True
            task.cancel()
        return True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """``open()`` has ended: take back the cancellation :meth:`stop` made (raising
        ClientInvalidOperation instead when it is what ended the opening, and no other
        cancellation is pending), and wake the ``close()`` waiting for :attr:`ended`."""
        closed = False
        if self._cancelled and self.task is not None:
            self._cancelled = False
            # absorbed on the way, or what ended the opening
            closed = self.task.uncancel() <= self._cancelling
        self.ended.set()
        if closed and isinstance(exc, asyncio.CancelledError):
            raise ClientInvalidOperation("the client was closed while it was opening") from None


class _Lifecycle(Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def _shown(url: str | URL) -> str | URL:
    """``url`` without the user and password it may carry (unchanged if it carries none)."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return url  # the transport says what is wrong with it
    if parsed.user is None and parsed.password is None:
        return url
    shown = without_credentials(parsed)[0]
    return shown if isinstance(url, URL) else str(shown)


class BayeuxClient:
    """A Bayeux (CometD) client for asyncio.

    >>> async def main():  # doctest: +SKIP
    ...     async with BayeuxClient("http://127.0.0.1:8000/bayeux") as client:
    ...         await client.subscribe("/chat/*")
    ...         async for message in client:
    ...             print(message["channel"], message["data"])

    Args:
        url: the Bayeux endpoint.
        connection_timeout: seconds without a working connection after which ``receive()``
            raises :class:`~sfstream.exceptions.TransportTimeoutError` (the client keeps
            trying in the background). ``None`` (or ``<= 0``) waits forever.
        max_pending_count: how many received messages may wait for ``receive()`` before the
            client stops polling the server until the consumer catches up. ``<= 0``: no limit.
        json_dumps: serialiser for requests (e.g. ``orjson.dumps``).
        json_loads: parser for replies (e.g. ``orjson.loads``).
        extensions: :class:`~sfstream.bayeux.Extension` objects applied to every message.
        session: an aiohttp session for the default transport (never closed by the client).
        transport: a :class:`~sfstream.bayeux.Transport` to use instead of long polling over
            aiohttp (e.g. a :class:`~sfstream.bayeux.MockTransport` in tests).
        headers: extra HTTP headers, or a function returning them, called for every request.
        backoff: the retry delays; by default exponential from 0.5 s to 30 s with jitter.
        handshake_after: consecutive failed connect requests before a new session is started.
        request_timeout: seconds to wait for a reply to anything but a held connect.
        reauthenticate: a coroutine function fetching new credentials, called once when the
            server answers 401 (see :func:`~sfstream.bayeux.decide`).
        on_resubscribe_failed: see :data:`ResubscribeHook`.
        handshake_ext: an ``ext`` object sent with every handshake.
        on_status: called with a :class:`~sfstream.bayeux.Status` for every connection change
            (handshakes, lost connections, pauses...); counts are in :attr:`stats`.
        connection_types: ``"websocket"`` and/or ``"long-polling"``, in order of preference
            (default: long polling only). The handshake offers them all and the first one the
            server also offers is used; when a connection type fails before it ever carried a
            reply (a refused WebSocket upgrade, a socket that drops at once), the client falls
            back to the next one, as CometD's clients do, and reports
            :attr:`~sfstream.bayeux.StatusKind.FALLBACK`. Not with ``transport``.

    Raises:
        TypeError: ``connection_timeout``, ``max_pending_count`` or ``request_timeout`` is not
            a number, or ``handshake_after``, ``max_response_size`` or ``max_messages`` not an
            int (a bool is neither).
        InvalidArgumentError: ``connection_timeout`` is NaN, ``max_pending_count`` is NaN or
            infinite, ``request_timeout`` is not positive and finite, ``handshake_after``,
            ``max_response_size`` or ``max_messages`` is below 1, or ``connection_types`` is
            not a list of known names.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        connection_timeout: float | None = 10.0,
        max_pending_count: int = 100,
        json_dumps: JSONDumps = json.dumps,
        json_loads: JSONLoads = json.loads,
        extensions: Iterable[Extension] = (),
        session: aiohttp.ClientSession | None = None,
        transport: Transport | None = None,
        headers: Mapping[str, str] | HeadersProvider | None = None,
        backoff: Backoff | None = None,
        handshake_after: int = 3,
        request_timeout: float = 30.0,
        reauthenticate: Callable[[], Awaitable[None]] | None = None,
        on_resubscribe_failed: ResubscribeHook | None = None,
        handshake_ext: dict[str, Any] | None = None,
        on_status: StatusCallback | None = None,
        ssl: ssl_module.SSLContext | bool = True,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        connection_types: Sequence[str] | None = None,
    ) -> None:
        if connection_types is None:
            types: tuple[str, ...] = (
                (LONG_POLLING,) if transport is None else (transport.connection_type,)
            )
        elif transport is not None:
            raise InvalidArgumentError("give connection_types or a transport, not both")
        else:
            types = tuple(connection_types)
            unknown = [kind for kind in types if kind not in CONNECTION_TYPES]
            if unknown or not types or len(set(types)) != len(types):
                raise InvalidArgumentError(
                    f"connection_types must be distinct names among "
                    f"{', '.join(CONNECTION_TYPES)}, not {list(types)}"
                )
        self._connection_types = types
        check_limits(connection_timeout, max_pending_count)
        check_reply_limits(max_response_size, max_messages)
        check_json(json_dumps, json_loads)
        check_count("handshake_after", handshake_after)
        _check_request_timeout(request_timeout)
        if connection_timeout is not None and connection_timeout <= 0:
            connection_timeout = None
        # a whole number: the queue's length is compared with it, and batches are cut by it
        max_pending_count = math.ceil(max_pending_count)
        # The transports get the URL as given; what is shown (repr, logs, task names) carries
        # no user and password.
        self._url = url
        self.url: str | URL = _shown(url)
        self.connection_timeout = connection_timeout
        self.max_pending_count = max_pending_count
        self._json_dumps = json_dumps
        self._json_loads = json_loads
        self._extensions = list(extensions)
        self._session = session
        self._transport = transport
        self._owns_transport = transport is None
        # told apart once, not on every request (an ABC isinstance check costs ~0.5 µs)
        self._fixed_headers: Mapping[str, str] | None = None
        self._headers_provider: HeadersProvider | None = None
        if isinstance(headers, Mapping):
            self._fixed_headers = headers
        elif headers is not None:
            self._headers_provider = headers
        self._policy = ReconnectPolicy(
            backoff=backoff if backoff is not None else ExponentialBackoff(random=random.random),
            handshake_after=handshake_after,
        )
        self._request_timeout = request_timeout
        self._reauthenticate = reauthenticate
        self._on_resubscribe_failed = on_resubscribe_failed
        self._handshake_ext = handshake_ext
        self._on_status = on_status
        self._ssl = ssl
        self._max_response_size = max_response_size
        self._max_messages = max_messages
        #: How many times each kind of status change happened.
        self.stats = StatusStats()
        self._lifecycle = _Lifecycle.UNOPENED
        self._engine = self._new_engine()
        self._queue: deque[Message] = deque()
        self._errors: deque[SfstreamError] = deque()
        self._fatal: SfstreamError | None = None
        self._task: asyncio.Task[None] | None = None
        # While open() runs: its task, which close() cancels to stop the opening
        self._opening: Opening | None = None
        # Created in open(), inside the running loop.
        self._activity: asyncio.Event | None = None
        self._capacity: asyncio.Event | None = None
        #: True while ``_capacity`` is cleared (polling paused for backpressure): read per
        #: message, where ``Event.is_set()`` would be a call
        self._paused = False
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._retry_channels: list[str] = []
        #: automatic resubscriptions refused with a 401: re-authenticate, then subscribe again
        self._reauth_channels: list[str] = []
        self._down_since: float | None = None
        self._reauth_failures = 0
        self._push_task: asyncio.Task[None] | None = None
        #: True once the transport in use carried a reply (no fallback after that).
        self._transport_worked = False
        #: Set when a fallback happened during the current step: handshake again at once.
        self._fell_back = False
        #: messages ``receive()`` may still return before it yields to the loop (#13)
        self._until_yield = 0
        #: True after a connect that got its reply from the network (see ``_connect``)
        self._polled = False
        #: replies received (the transport did not fail), counted by ``_exchange``
        self._replies = 0

    def _new_engine(self) -> BayeuxEngine:
        return BayeuxEngine(
            extensions=self._extensions,
            policy=self._policy,
            can_reauthenticate=self._reauthenticate is not None,
            request_timeout=self._request_timeout,
            handshake_ext=self._handshake_ext,
            connection_types=self._connection_types,
        )

    # -- properties ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True unless the client is open."""
        return self._lifecycle is not _Lifecycle.OPEN

    @property
    def state(self) -> State:
        """The Bayeux session state (see :class:`~sfstream.bayeux.State`)."""
        return self._engine.state

    @property
    def client_id(self) -> str | None:
        """The server's id for the current session."""
        return self._engine.client_id

    @property
    def subscriptions(self) -> set[str]:
        """The channels this client is subscribed to (made again after every new session)."""
        return set(self._engine.subscriptions)

    @property
    def server_date(self) -> tuple[str, float] | None:
        """The HTTP ``Date`` of the server's last reply and the event loop's time when it
        arrived, if the transport reports it (the long-polling transport does)."""
        date: tuple[str, float] | None = getattr(self._transport, "server_date", None)
        return date

    @property
    def connection_type(self) -> str | None:
        """The connection type in use while open (``long-polling`` or ``websocket``), else
        None."""
        if self.closed or self._transport is None:
            return None
        return self._transport.connection_type

    @property
    def pending_count(self) -> int:
        """How many received messages wait for ``receive()``."""
        return len(self._queue)

    @property
    def has_pending_messages(self) -> bool:
        """True when ``receive()`` would return at once."""
        return bool(self._queue)

    def __repr__(self) -> str:
        return (
            f"<BayeuxClient {self.url} {self._lifecycle.value} state={self._engine.state.value} "
            f"subscriptions={len(self._engine.subscriptions)} pending={len(self._queue)}>"
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Handshake and make the first connect, then keep connecting in the background.

        Raises:
            ClientInvalidOperation: the client is already open, or closed.
            ClientError: the server offers no connection type this client speaks.
            TransportError: a network, HTTP or framing error.
            ServerError: the server refused the handshake or the first connect.
            AuthenticationError: re-authentication failed.
        """
        if self._lifecycle is not _Lifecycle.UNOPENED:
            raise ClientInvalidOperation(
                "the client is already open"
                if self._lifecycle is _Lifecycle.OPEN
                else "a closed client cannot be opened again; create a new one"
            )
        self._lifecycle = _Lifecycle.OPEN
        self._activity = asyncio.Event()
        self._capacity = asyncio.Event()
        self._capacity.set()  # cleared only while polling is paused for backpressure
        if self._transport is None:
            self._transport = self._new_transport(self._connection_types[0])
        self._start_push_reader()
        # close() cancels the task running open() to stop it (see Opening): a close() during
        # the handshake then ends the opening (and the session the server may have made)
        # instead of racing it.
        opening = self._opening = Opening()
        try:
            with opening:
                action: Action = Handshake()
                try:
                    while not self._engine.established:
                        action = await self._step(action)
                        if isinstance(action, Stop):
                            raise action.error
                except BaseException:
                    # Cancelled (or failed) after the handshake: end the session on the
                    # server too, best-effort and within _DISCONNECT_TIMEOUT, as close() does.
                    await self._shutdown(disconnect=self._engine.has_session, report=False)
                    raise
        finally:
            self._opening = None
        logger.info("connected to %s (clientId %s)", self.url, self._engine.client_id)
        self.report_status(StatusKind.CONNECTED, f"clientId {self._engine.client_id}")
        self._task = asyncio.create_task(self._run(action), name=f"bayeux connect loop {self.url}")

    async def close(self) -> None:
        """Disconnect and stop the background task. Idempotent.

        Messages already received stay available to ``receive()``. Called while :meth:`open`
        runs, it stops the opening (which then raises
        :class:`~sfstream.exceptions.ClientInvalidOperation`) and ends the session the server
        may have made.
        """
        if self._lifecycle is _Lifecycle.CLOSED:
            return
        if self._lifecycle is _Lifecycle.UNOPENED:
            self._lifecycle = _Lifecycle.CLOSED
            return
        opening = self._opening
        if opening is not None and opening.stop():
            # open() is running: it stops (it ends its own session); wait for it to end
            await opening.ended.wait()
            if self.closed:  # (open() ended its own session)
                return
        await self._shutdown(disconnect=True)

    async def _shutdown(self, *, disconnect: bool, report: bool = True) -> None:
        self._lifecycle = _Lifecycle.CLOSED
        current = asyncio.current_task()
        # The caller may itself be a cancelled task (a service stopping its consumer inside
        # ``async with client``): close anyway, and re-raise only a cancellation of close().
        cancelling = current.cancelling() if current is not None else 0
        transport = self._transport
        try:
            push, self._push_task = self._push_task, None
            if push is not None:
                push.cancel()  # awaited below, once the connect loop has ended too
            task, self._task = self._task, None
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    if current is not None and current.cancelling() > cancelling:
                        raise
            if push is not None:
                await cancel_and_wait(push)
            request = self._engine.disconnect() if disconnect else None
            if request is not None and transport is not None:
                try:
                    replies = await asyncio.wait_for(
                        transport.send(request, self._request_headers()), _DISCONNECT_TIMEOUT
                    )
                    self._engine.receive(replies)
                except (SfstreamError, TimeoutError) as exc:
                    logger.debug("the disconnect got no reply: %s", exc)
        finally:
            if not self._engine.closed:
                self._engine.fail()
            if transport is not None and self._owns_transport:
                await transport.close()
            for waiters in self._waiters.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(ClientInvalidOperation("the client was closed"))
            self._waiters.clear()
            self._wake()
        if disconnect and report:
            self.report_status(StatusKind.CLOSED)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- transports ------------------------------------------------------------------------

    def _new_transport(self, kind: str) -> Transport:
        if kind == WEBSOCKET:
            return WebSocketTransport(
                self._url,
                session=self._session,
                json_dumps=self._json_dumps,
                json_loads=self._json_loads,
                ssl=self._ssl,
                max_response_size=self._max_response_size,
                max_messages=self._max_messages,
            )
        return LongPollingTransport(
            self._url,
            session=self._session,
            json_dumps=self._json_dumps,
            json_loads=self._json_loads,
            ssl=self._ssl,
            max_response_size=self._max_response_size,
            max_messages=self._max_messages,
        )

    async def _switch_transport(self, kind: str, why: str) -> None:
        """Carry the session over ``kind`` from now on (the engine keeps it)."""
        old = self._transport
        assert old is not None
        logger.warning("%s: falling back from %s to %s", why, old.connection_type, kind)
        push, self._push_task = self._push_task, None
        if push is not None:
            await cancel_and_wait(push)
        self._transport = self._new_transport(kind)
        self._transport_worked = False
        self._start_push_reader()
        self.report_status(StatusKind.FALLBACK, f"{old.connection_type} -> {kind}: {why}")
        await old.close()

    async def _fall_back(self, exc: TransportError) -> bool:
        """After ``exc`` on a connection type that never worked: move to the next one."""
        transport = self._transport
        if not self._owns_transport or self._transport_worked or transport is None:
            return False
        offered = self._engine.connection_types
        if transport.connection_type not in offered:
            return False
        rest = offered[offered.index(transport.connection_type) + 1 :]
        if not rest:
            return False
        self._engine.offer_connection_types(rest)
        await self._switch_transport(rest[0], str(exc))
        self._fell_back = True
        return True

    def _start_push_reader(self) -> None:
        transport = self._transport
        if transport is not None and transport.duplex:
            self._push_task = asyncio.create_task(
                self._read_pushed(transport), name=f"bayeux pushed messages {self.url}"
            )

    async def _read_pushed(self, transport: Transport) -> None:
        """Feed the messages a duplex transport receives outside replies to the engine,
        whenever the queue has room (backpressure reaches the socket)."""
        assert self._capacity is not None
        try:
            while True:
                limit = self.max_pending_count
                while limit > 0 and len(self._queue) >= limit:
                    self._paused = True
                    self._capacity.clear()
                    await self._capacity.wait()
                room = limit - len(self._queue) if limit > 0 else None
                messages = await transport.receive_pushed(room)
                if self._engine.closed:
                    continue
                self._dispatch(self._engine.receive(messages))
        except TransportInvalidOperation:
            return
        except ProtocolError as exc:
            task = self._task
            if task is not None:
                task.cancel()
            self._stop(exc)
        except Exception as exc:  # a bug: never let the reader die silently
            logger.exception("reading pushed messages failed")
            self._stop(ClientError(f"reading pushed messages failed unexpectedly: {exc!r}"))

    # -- the connect loop ------------------------------------------------------------------

    async def _run(self, action: Action) -> None:
        try:
            while not isinstance(action, Stop):
                action = await self._step(action)
            self._stop(action.error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: never let the loop die silently
            logger.exception("the Bayeux connect loop failed")
            self._stop(ClientError(f"the connect loop failed unexpectedly: {exc!r}"))

    async def _step(self, action: Action) -> Action:
        """Execute ``action`` and return what should follow."""
        try:
            if isinstance(action, Handshake):
                await self._sleep(action.delay)
                await self._handshake()
            elif isinstance(action, Connect):
                if action.delay > 0 or not self._polled:
                    await self._sleep(action.delay)
                await self._wait_for_capacity()
                await self._connect()
            else:
                assert isinstance(action, Reauthenticate)
                assert self._reauthenticate is not None
                logger.info("the server refused the credentials: re-authenticating")
                try:
                    await self._reauthenticate()
                except AuthenticationError as exc:
                    if _transient(exc):
                        self._reauth_failures += 1
                        logger.info("re-authentication failed, retrying: %s", exc)
                        await self._sleep(self._policy.backoff.compute(self._reauth_failures))
                        return Reauthenticate()
                    self._engine.fail()
                    return Stop(exc)
                self._reauth_failures = 0
                self._engine.reauthenticated()
                self.report_status(StatusKind.REAUTHENTICATED)
                await self._handshake()
        except ProtocolError as exc:
            self._engine.fail()
            return Stop(exc)
        if self._fell_back:
            # The failure belongs to the connection type just left: start over on the next.
            self._fell_back = False
            return Handshake()
        return self._engine.next_action()

    async def _sleep(self, delay: float) -> None:
        # Always yield, even for 0: an action that sends nothing must not spin the loop.
        await asyncio.sleep(max(delay, 0.0))

    async def _wait_for_capacity(self) -> None:
        limit = self.max_pending_count
        if limit <= 0 or len(self._queue) < limit:
            return
        assert self._capacity is not None
        logger.info("%d messages wait for the consumer: polling paused", len(self._queue))
        self.report_status(StatusKind.PAUSED, f"{len(self._queue)} messages wait")
        while len(self._queue) >= limit:
            self._paused = True
            self._capacity.clear()
            await self._capacity.wait()
        logger.info("the consumer caught up: polling resumed")
        self.report_status(StatusKind.RESUMED)

    async def _handshake(self) -> None:
        assert self._transport is not None
        self._transport.new_session()
        request = self._engine.handshake()
        logger.debug("handshake with %s", self.url)
        exchange = asyncio.ensure_future(self._exchange(request, raise_errors=False))
        try:
            events = await asyncio.shield(exchange)
        except asyncio.CancelledError:
            # Cancelled with the handshake in flight (open() or close() cancelled): the server
            # may have made the session already. Read its reply (within _DISCONNECT_TIMEOUT)
            # so that the clientId is known and the shutdown can end that session.
            try:
                await asyncio.wait_for(exchange, _DISCONNECT_TIMEOUT)
            except (Exception, asyncio.CancelledError) as exc:
                logger.debug("the handshake reply did not come after a cancellation: %r", exc)
            raise
        if any(isinstance(event, HandshakeSucceeded) for event in events):
            chosen = self._engine.connection_type
            if chosen != self._transport.connection_type and self._owns_transport:
                await self._switch_transport(
                    chosen, f"the server does not offer {self._transport.connection_type}"
                )
            await self._resubscribe(None)

    async def _resubscribe(self, channels: list[str] | None) -> None:
        for request in self._engine.resubscribe(channels):
            if not self._engine.has_session:
                return
            await self._exchange(request, raise_errors=False)
        if self._retry_channels and self._engine.has_session:
            retry, self._retry_channels = self._retry_channels, []
            for channel in retry:
                again = self._engine.subscribe(channel)
                if again is not None:
                    await self._exchange(again, raise_errors=False)
        if self._reauth_channels:
            refused, self._reauth_channels = self._reauth_channels, []
            await self._subscribe_after_reauthentication(refused)

    async def _subscribe_after_reauthentication(self, channels: list[str]) -> None:
        """A resubscription was refused with a 401: one new token, then subscribe again (a
        second refusal is reported as usual). The channels stay wanted meanwhile."""
        assert self._reauthenticate is not None
        logger.info("a resubscription was refused for its credentials: re-authenticating")
        try:
            await self._reauthenticate()
        except AuthenticationError as exc:
            for channel in channels:
                logger.warning("resubscription to %s failed: %s", channel, exc)
                self.report_status(StatusKind.RESUBSCRIBE_FAILED, str(exc), channel)
            self._errors.append(exc)
            self._wake()
            return
        self.report_status(StatusKind.REAUTHENTICATED)
        for channel in channels:
            if self._engine.closed:
                return
            again = self._engine.subscribe(channel)  # wanted again, even without a session
            if again is not None:
                await self._exchange(again, raise_errors=False)

    async def _connect(self) -> None:
        self._polled = False
        if self._engine.state not in (State.HANDSHAKEN, State.CONNECTED):
            return  # the session was lost meanwhile; the next action says what to do
        request = self._engine.connect()
        if self._until_yield <= 0:
            # The consumer need not yield for this loop (#13): it sends now, before any
            # other task runs (the consumer woken by the last reply among them).
            self._until_yield = _YIELD_EVERY
        transport = self._transport
        replies = self._replies
        await self._exchange(request, raise_errors=False)
        # A reply that came over the network: this task waited for it in the event loop,
        # so the next connect needs no extra turn of the loop before it goes out (#13).
        self._polled = self._replies != replies and type(transport) in _NETWORK_TRANSPORTS

    # -- exchanging messages ---------------------------------------------------------------

    def _request_headers(self) -> Mapping[str, str] | None:
        provider = self._headers_provider
        if provider is None:
            return self._fixed_headers
        return provider()

    async def _exchange(self, request: Request, *, raise_errors: bool) -> list[Event]:
        """Send ``request``, feed the reply (or the failure) to the engine, act on the events."""
        assert self._transport is not None
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("sending %s", [m["channel"] for m in request.messages])
        try:
            replies = await self._transport.send(request, self._request_headers())
        except TransportError as exc:
            events = self._engine.request_failed(request, exc)
            self._note_failure(request, exc)
            self._dispatch(events)
            await self._fall_back(exc)
            if raise_errors:
                raise
            return events
        self._transport_worked = True
        self._replies += 1
        events = self._engine.receive(replies, request)
        self._dispatch(events)
        return events

    def _note_failure(self, request: Request, exc: TransportError) -> None:
        if request.long_poll or request.messages[0]["channel"] == "/meta/handshake":
            logger.info("request to %s failed: %s", self.url, exc)

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Deliveries):
                self._queue.extend(event.messages)
                self._until_yield = 0  # #13: receive() yields first, so this loop polls again
                self._wake()
            elif isinstance(event, SubscribeSucceeded):
                self._resolve(event.channel, None)
            elif isinstance(event, SubscribeFailed):
                self._subscribe_failed(event)
            elif isinstance(event, SessionLost):
                logger.info("session lost: %s", event.reason)
                self.report_status(StatusKind.SESSION_LOST, event.reason)
            elif isinstance(event, HandshakeSucceeded):
                logger.debug("handshake accepted, clientId %s", event.client_id)
        state = self._engine.state
        if state is State.CONNECTED:
            if self._down_since is not None:
                self._down_since = None
                self.report_status(StatusKind.RECONNECTED)
        elif (
            self._down_since is None
            and self._engine.established
            and self._engine.failures
            and not self._engine.closed
        ):
            self._down_since = asyncio.get_running_loop().time()
            self.report_status(StatusKind.CONNECTION_LOST, self._engine.last_failure())
            self._wake()

    def _subscribe_failed(self, event: SubscribeFailed) -> None:
        if event.automatic and self._reauthenticate is not None and _auth_refused(event.error):
            self._reauth_channels.append(event.channel)
            return
        if (
            event.automatic
            and self._on_resubscribe_failed is not None
            and isinstance(event.error, ServerError)
            and self._on_resubscribe_failed(event.channel, event.error)
        ):
            self._retry_channels.append(event.channel)
            return
        if self._waiters.get(event.channel):
            self._resolve(event.channel, event.error)
            return
        logger.warning("resubscription to %s failed: %s", event.channel, event.error)
        self.report_status(StatusKind.RESUBSCRIBE_FAILED, str(event.error), event.channel)
        self._errors.append(event.error)
        self._wake()

    def _resolve(self, channel: str, error: SfstreamError | None) -> None:
        for waiter in self._waiters.pop(channel, []):
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    def _stop(self, error: SfstreamError) -> None:
        logger.error("the Bayeux client stopped: %s", error)
        self._fatal = error
        self.report_status(StatusKind.STOPPED, str(error))
        for channel in list(self._waiters):
            self._resolve(channel, error)
        self._wake()

    def report_status(self, kind: StatusKind, detail: str = "", channel: str | None = None) -> None:
        """Count a status change and pass it to ``on_status`` (for layers built on this client)."""
        self.stats[kind] += 1
        if self._on_status is not None:
            try:
                self._on_status(Status(kind, detail, channel))
            except Exception:
                logger.exception("the on_status callback failed")

    def _wake(self) -> None:
        if self._activity is not None:
            self._activity.set()

    # -- operations ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._lifecycle is not _Lifecycle.OPEN:
            raise ClientInvalidOperation(
                "the client is not open"
                if self._lifecycle is _Lifecycle.UNOPENED
                else "the client is closed"
            )
        if self._fatal is not None:
            raise ClientInvalidOperation(f"the client has stopped: {self._fatal}")

    async def subscribe(self, channel: str) -> None:
        """Subscribe to ``channel`` (wildcards ``/foo/*`` and ``/foo/**`` allowed).

        The subscription is made again after every new session.

        Raises:
            ClientInvalidOperation: the client is not open.
            ValueError: ``channel`` is not a valid channel name.
            ServerError: the server refused the subscription.
            TransportError: the request failed.
            TransportTimeoutError: no session could be established within
                ``connection_timeout``.
        """
        self._check_open()
        try:
            await self._subscribe_once(channel)
        except ServerError as error:
            if self._reauthenticate is None or not _auth_refused(error):
                raise
            # A 401 on a subscribe: one new token, then subscribe again.
            logger.info(
                "the subscribe to %s was refused for its credentials: re-authenticating", channel
            )
            await self._reauthenticate()
            self.report_status(StatusKind.REAUTHENTICATED)
            self._check_open()
            await self._subscribe_once(channel)

    async def _subscribe_once(self, channel: str) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        request = self._engine.subscribe(channel)
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            if request is not None:
                await self._exchange(request, raise_errors=True)
            async with asyncio.timeout(self.connection_timeout):
                await waiter
        except TimeoutError:
            raise TransportTimeoutError(
                f"could not subscribe to {channel} within {self.connection_timeout} s: "
                "no session with the server"
            ) from None
        finally:
            if not waiter.done():
                waiter.cancel()
            waiters = self._waiters.get(channel)
            if waiters and waiter in waiters:
                waiters.remove(waiter)

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe from ``channel``; later deliveries on it are dropped.

        Raises:
            ClientInvalidOperation: the client is not open.
            ServerError: the server refused.
            TransportError: the request failed.
        """
        self._check_open()
        request = self._engine.unsubscribe(channel)
        if request is None:
            return
        for event in await self._exchange(request, raise_errors=True):
            if isinstance(event, UnsubscribeFailed):
                raise event.error

    async def publish(self, channel: str, data: Any) -> Message:
        """Publish ``data`` on ``channel`` and return the server's reply.

        Raises:
            ClientInvalidOperation: the client is not open.
            ServerError: the server refused the publish.
            TransportError: the request failed.
        """
        self._check_open()
        request = self._engine.publish(channel, data)
        ident = request.messages[0]["id"]
        for event in await self._exchange(request, raise_errors=True):
            if isinstance(event, PublishReplied) and event.message_id == ident:
                if event.error is not None:
                    raise event.error
                return event.reply
        raise ProtocolError(f"the server did not answer the publish to {channel}")

    async def receive(self) -> Message:
        """Wait for the next message on a subscribed channel.

        Raises:
            ClientInvalidOperation: the client is closed (or was never opened) and no message
                is pending.
            ServerError: a subscription was refused when it was made again, or the server
                ended the session for good.
            TransportTimeoutError: no working connection for ``connection_timeout`` seconds.
            AuthenticationError: the server refused the credentials, even fresh ones.
        """
        while True:
            if self._errors:
                raise self._errors.popleft()
            queue = self._queue
            if queue:
                # Overlap (#13): a consumer taking queued messages never awaits anything, so
                # the connect loop would get the event loop only once the queue is empty and
                # the server's time and ours would add up. Yield at least every _YIELD_EVERY
                # messages, and at once after a reply was queued or the paused poller woken;
                # always *before* taking a message (a cancellation then loses nothing).
                if self._until_yield <= 0:
                    self._until_yield = _YIELD_EVERY
                    if not self._paused:
                        # (while polling is paused for backpressure, nothing waits for the
                        # loop: no yield then)
                        await asyncio.sleep(0)
                        continue
                return self._take()
            if self._fatal is not None:
                raise self._fatal
            if self._lifecycle is not _Lifecycle.OPEN:
                raise ClientInvalidOperation(
                    "the client is closed and has no pending messages"
                    if self._lifecycle is _Lifecycle.CLOSED
                    else "the client is not open"
                )
            timeout = self._time_left()
            if timeout is not None and timeout <= 0:
                # The next call waits a whole connection_timeout again, not zero seconds.
                self._down_since = asyncio.get_running_loop().time()
                raise TransportTimeoutError(
                    f"lost the connection with the server and could not re-establish it within "
                    f"{self.connection_timeout} s"
                )
            activity = self._activity
            assert activity is not None
            activity.clear()
            if timeout is None:
                # connected (or no connection_timeout): no deadline to arm, the usual case
                await activity.wait()
                continue
            try:
                async with asyncio.timeout(timeout):
                    await activity.wait()
            except TimeoutError:
                continue

    async def receive_many(self, max_count: int = 100) -> list[Message]:
        """Wait for the next message; return it with the ones already waiting (#13).

        At most ``max_count`` messages, in order, at least one. A batch ends early when it is
        the connect loop's turn to run or an error is pending (the next call raises it), so
        batches are often shorter than ``max_count``. Raises what :meth:`receive` raises,
        :class:`TypeError` for a ``max_count`` that is not an int (a bool is not one) and
        :class:`~sfstream.exceptions.InvalidArgumentError` for ``max_count < 1``.
        """
        if type(max_count) is not int or max_count < 1:
            check_count("max_count", max_count)  # raises (unless an int subclass >= 1)
        messages = [await self.receive()]
        if max_count > 1:
            messages += self._take_waiting(max_count - 1)
        return messages

    def _take_waiting(self, count: int) -> list[Message]:
        """At most ``count`` messages, those :meth:`receive_nowait` would return one after
        the other, taken at once (#13)."""
        queue = self._queue
        count = min(count, self._until_yield, len(queue))
        if count <= 0 or self._errors:
            return []
        paused = self._paused
        if paused:
            # the message that brings the queue under the limit resumes polling: the batch
            # ends with it, as it would message by message
            count = min(count, max(len(queue) - self.max_pending_count + 1, 1))
        popleft = queue.popleft
        messages = [popleft() for _ in range(count)]
        self._until_yield -= count
        if paused and len(queue) < self.max_pending_count:
            self._resume_polling()
        return messages

    def receive_nowait(self) -> Message | None:
        """The next message if :meth:`receive` would return it at once, else None.

        None also when messages wait but an error is pending or it is the connect loop's
        turn to run (the queue is served in slices, so that the next long poll goes out while
        the consumer works): then ``await receive()``. Never raises.
        """
        # _take() inlined (#13): this is the per-message path of ``async for`` and batches
        queue = self._queue
        if self._until_yield <= 0 or self._errors or not queue:
            return None
        self._until_yield -= 1
        message = queue.popleft()
        if self._paused and len(queue) < self.max_pending_count:
            self._resume_polling()
        return message

    def _take(self) -> Message:
        self._until_yield -= 1
        queue = self._queue
        message = queue.popleft()
        if self._paused and len(queue) < self.max_pending_count:
            self._resume_polling()
        return message

    def _resume_polling(self) -> None:
        """The consumer caught up: wake the paused poller; the next receive() lets it send
        first (#13)."""
        assert self._capacity is not None
        self._paused = False
        self._capacity.set()
        self._until_yield = 0

    def _time_left(self) -> float | None:
        if self._down_since is None or self.connection_timeout is None:
            return None
        elapsed = asyncio.get_running_loop().time() - self._down_since
        return self.connection_timeout - elapsed

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        # the usual case first: a message waits and nothing else is due (#13)
        if self._until_yield > 0 and self._queue and not self._errors:
            return self._take()
        try:
            return await self.receive()
        except ClientInvalidOperation:
            if self._lifecycle is _Lifecycle.CLOSED and not self._queue:
                raise StopAsyncIteration from None
            raise
