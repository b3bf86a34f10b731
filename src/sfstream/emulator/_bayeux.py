"""``/cometd/<version>``: Salesforce's dialect of Bayeux over long-polling.

One POST carries one message or a batch; the reply is a JSON array. Replies echo the message
``id``. Held ``/meta/connect`` replies carry the events that arrived, *before* the connect reply
(as the CometD server Salesforce runs writes them). Errors use Salesforce's exact strings
(``403::Unknown client``, ``403::Handshake denied`` with ``ext.sfdc.failureReason``,
``401::Authentication invalid``, the replay-id and channel 400s, ...).

Replies list their fields in the order Salesforce's server writes them (see :func:`encode_reply`).

Per-event work is kept small: each stored event was encoded once when it was published, and a
reply is built by joining ``{"channel":<channel>,"data":`` + those bytes + ``}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from email.utils import formatdate
from typing import Any, Final

from aiohttp import web

from sfstream.emulator import _ids
from sfstream.emulator._config import (
    CURRENT_API_VERSION,
    MIN_COMETD_VERSION,
    Context,
    parse_version,
)
from sfstream.emulator._faults import Fault
from sfstream.emulator._http import BodyTooLarge, bearer_token, fault_response, read_limited
from sfstream.emulator._json import dumps, loads
from sfstream.emulator._log import (
    VARIANT_BEFORE_52,
    VARIANT_BEFORE_55,
    VARIANT_CURRENT,
    ChannelLog,
    StoredEvent,
)
from sfstream.emulator._soql import field_value
from sfstream.emulator._state import SubscriptionError

__all__ = ["BayeuxServer", "Session", "Subscription", "encode_reply"]

logger = logging.getLogger("sfstream.emulator")

COOKIE_NAME: Final = "BAYEUX_BROWSER"
#: The load balancer's cookie, seen on a ``403::Unknown client`` response (wire evidence E2).
STREAM_COOKIE: Final = "sfdc-stream"
UNKNOWN_CLIENT: Final = "403::Unknown client"
_HANDSHAKE_EXT: Final = {"replay": True, "payload.format": True}
_UNKNOWN_CLIENT_ADVICE: Final = {"interval": 0, "reconnect": "handshake"}
_AUTH_INVALID_ADVICE: Final = {"reconnect": "none", "interval": 0}
_META_CHANNELS: Final = frozenset(
    {"/meta/handshake", "/meta/connect", "/meta/subscribe", "/meta/unsubscribe", "/meta/disconnect"}
)


MISSING_VERSION: Final = "API version in the URI is mandatory."
UNSUPPORTED_VERSION: Final = (
    "Unsupported API version. Only API versions '37.0' and later are supported."
)


def _version_error(message: str, current: str = CURRENT_API_VERSION) -> str:
    """The exact 400 string; its URI example names the org's current version."""
    return f"400::{message} URI format: '/cometd/{current}'"


def _java_map(value: object) -> str:
    """A replay map as Salesforce prints it (Java's ``Map.toString``): ``{/a=1, /b=-1}``."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={_java_map(v)}" for k, v in value.items()) + "}"
    return str(value)


def _java_bucket(key: str) -> int:
    """The bucket of ``key`` in a 16-bucket ``java.util.HashMap``.

    Salesforce runs a CometD 3 server whose messages are HashMaps, so a reply's fields come
    out in bucket order (insertion order within a bucket), whatever order they were set in.
    That order matches every capture in the wire evidence: ``ext, minimumVersion, clientId,
    supportedConnectionTypes, advice, channel, id, subscription, error, version, successful``
    (E1-E6, E8, E12, E16) and ``createdDate, replayId, type`` in PushTopic events (E18).
    """
    value = 0
    for char in key:
        value = (31 * value + ord(char)) & 0xFFFFFFFF
    return (value ^ (value >> 16)) & 15


_BUCKETS: dict[str, int] = {}


def encode_reply(reply: Mapping[str, Any]) -> bytes:
    """A Bayeux reply as JSON, its fields in the order Salesforce's server writes them."""
    buckets = _BUCKETS
    for key in reply:
        if key not in buckets:
            buckets[key] = _java_bucket(key)
    return dumps({key: reply[key] for key in sorted(reply, key=buckets.__getitem__)})


def _filter_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Subscription:
    """One subscribed channel of one session and how far its delivery has gone."""

    __slots__ = ("channel", "cursor", "filters", "log", "plain", "prefix", "user_id", "variant")

    def __init__(
        self,
        channel: str,
        log: ChannelLog,
        cursor: int,
        filters: tuple[tuple[str, str], ...],
        variant: int,
        user_id: str,
    ) -> None:
        self.channel = channel
        self.log = log
        #: The replay id of the last event delivered (or skipped) to this subscription.
        self.cursor = cursor
        self.filters = filters
        self.variant = variant
        self.user_id = user_id
        # Deliveries carry the subscribed name, a PushTopic filter included, as Salesforce's
        # do (EMP-Connector listens on the filtered name and strips it to key its replay map).
        self.prefix = b'{"channel":' + dumps(channel) + b',"data":'
        # Plain subscriptions copy a slice of pre-encoded events with no per-event checks.
        self.plain = not filters and variant == VARIANT_CURRENT and not channel.startswith("/u/")

    def wants(self, event: StoredEvent) -> bool:
        if event.user_ids is not None and self.user_id not in event.user_ids:
            return False
        if self.filters:
            sobject = event.data.get("sobject", {})
            for name, value in self.filters:
                if _filter_text(field_value(sobject, name)) != value:
                    return False
        return True


class Session:
    """A Bayeux session (one clientId)."""

    __slots__ = (
        "alive",
        "api_version",
        "client_id",
        "connected",
        "holder",
        "kicks",
        "last_seen",
        "pending",
        "rotation",
        "subscriptions",
        "user_id",
        "waiter",
    )

    def __init__(self, client_id: str, user_id: str, api_version: float, now: float) -> None:
        self.client_id = client_id
        self.user_id = user_id
        self.api_version = api_version
        self.subscriptions: dict[str, Subscription] = {}
        #: True once the first /meta/connect was answered.
        self.connected = False
        #: Loop time of the last response to this session.
        self.last_seen = now
        #: The held connect in charge (a new connect replaces it).
        self.holder: object | None = None
        self.waiter: asyncio.Future[None] | None = None
        #: Bumped to make held connects return early (fault injection).
        self.kicks = 0
        #: Messages the server pushes on the next connect reply (``/meta/disconnect``).
        self.pending: list[bytes] = []
        self.alive = True
        self.rotation = 0

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __repr__(self) -> str:
        return (
            f"<Session {self.client_id[:6]}… subscriptions={list(self.subscriptions)} "
            f"alive={self.alive}>"
        )


class _Request:
    """The parts of one HTTP request the message handlers need."""

    __slots__ = ("cookie_ok", "new_cookie", "token", "version")

    def __init__(self, token: str | None, cookie_ok: bool, version: float) -> None:
        self.token = token
        self.cookie_ok = cookie_ok
        self.version = version
        self.new_cookie = False


class _Held:
    """A /meta/connect that may wait for events: built after the other messages ran."""

    __slots__ = ("hold", "index", "message", "session")

    def __init__(self, index: int, message: dict[str, Any], session: Session, hold: bool) -> None:
        self.index = index
        self.message = message
        self.session = session
        self.hold = hold


class BayeuxServer:
    """The CometD endpoint and its sessions."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.sessions: dict[str, Session] = {}
        #: Sessions that ended server-side with messages still to hand over (clientId → session).
        self._ghosts: dict[str, Session] = {}
        self._subscribers: dict[str, set[Session]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.context.state.events.listeners.append(self._on_event)
        interval = max(0.05, min(self.context.config.session_expiry / 2, 5.0))
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(interval))

    async def stop(self) -> None:
        listeners = self.context.state.events.listeners
        if self._on_event in listeners:
            listeners.remove(self._on_event)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for session in list(self.sessions.values()):
            self._end(session)

    async def _sweep(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def sweep(self) -> int:
        """Expire idle sessions and apply retention; returns how many sessions expired."""
        now = asyncio.get_running_loop().time()
        expired = [s for s in self.sessions.values() if self._is_expired(s, now)]
        for session in expired:
            logger.debug("Bayeux session %s… expired", session.client_id[:6])
            self._end(session)
        for client_id, ghost in list(self._ghosts.items()):
            if now - ghost.last_seen > self.context.config.session_expiry:
                del self._ghosts[client_id]
        self.context.state.events.purge(self.context.now())
        return len(expired)

    def _is_expired(self, session: Session, now: float) -> bool:
        return (
            session.holder is None and now - session.last_seen > self.context.config.session_expiry
        )

    def _on_event(self, log: ChannelLog, _event: StoredEvent) -> None:
        for session in self._subscribers.get(log.channel, ()):
            session.wake()

    def _end(self, session: Session, *, keep_pending: bool = False) -> None:
        session.alive = False
        self.sessions.pop(session.client_id, None)
        for subscription in session.subscriptions.values():
            self._unindex(session, subscription.log.channel)
        session.subscriptions.clear()
        if keep_pending and session.pending:
            self._ghosts[session.client_id] = session
        session.kicks += 1
        session.wake()

    def _unindex(self, session: Session, log_channel: str) -> None:
        if any(s.log.channel == log_channel for s in session.subscriptions.values()):
            return
        subscribers = self._subscribers.get(log_channel)
        if subscribers is not None:
            subscribers.discard(session)
            if not subscribers:
                del self._subscribers[log_channel]

    # -- faults and control from Python --------------------------------------------------------

    def expire(self, client_id: str | None = None) -> int:
        """Forget Bayeux sessions (all, or one): their next request gets 403::Unknown client."""
        targets = [
            s for s in self.sessions.values() if client_id is None or s.client_id == client_id
        ]
        for session in targets:
            self._end(session)
        return len(targets)

    def push_disconnect(self, client_id: str | None = None) -> int:
        """End sessions server-side, handing each a ``/meta/disconnect`` on its connect."""
        targets = [
            s for s in self.sessions.values() if client_id is None or s.client_id == client_id
        ]
        for session in targets:
            session.pending.append(
                encode_reply(
                    {
                        "channel": "/meta/disconnect",
                        "clientId": session.client_id,
                        "successful": True,
                    }
                )
            )
            self._end(session, keep_pending=True)
        return len(targets)

    def kick(self) -> None:
        """Make every held connect return now (so that newly armed faults apply at once)."""
        for session in self.sessions.values():
            session.kicks += 1
            session.wake()

    # -- HTTP --------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        config = self.context.config
        tail = request.match_info.get("tail", "")
        if request.method != "POST":
            # A WebSocket probe (jsforce/Faye try one first) or a stray GET: not 101, so
            # clients fall back to long-polling.
            return web.Response(status=400, text="Only long-polling is supported")
        try:
            body = await read_limited(request, config.max_request_size)
        except BodyTooLarge:
            return web.Response(status=413, text="Maximum Request Size Exceeded")
        messages = self._parse(request, body)
        if messages is None:
            return web.Response(status=400, text="Bad Request: the body is not a Bayeux message")
        fault = self.context.faults.take_http("cometd", _channels_of(messages))
        if fault is not None:
            response = await fault_response(request, fault)
            if response is not None:
                return response
        version_error, version = self._version(tail)
        if version_error is not None:
            error = _version_error(version_error, config.api_version)
            refusals = [self._reply(m, False, error=error) for m in messages]
            for refusal in refusals:
                refusal["advice"] = {"reconnect": "none"}
            return self._respond([], [encode_reply(r) for r in refusals])
        context = _Request(
            bearer_token(request),
            not config.require_cookie or bool(request.cookies.get(COOKIE_NAME)),
            version,
        )
        replies: list[bytes | None] = []
        held: _Held | None = None
        unknown_client = False

        def encode(reply: dict[str, Any]) -> bytes:
            nonlocal unknown_client
            unknown_client = unknown_client or reply.get("error") == UNKNOWN_CLIENT
            return encode_reply(reply)

        for index, message in enumerate(messages):
            if message.get("channel") == "/meta/connect" and held is None:
                outcome = self._connect(message, context)
                if isinstance(outcome, Session):
                    held = _Held(index, message, outcome, len(messages) == 1)
                    replies.append(None)
                    continue
                replies.append(encode(outcome))
                continue
            replies.append(encode(self._dispatch(message, context)))
        events: list[bytes] = []
        if held is not None:
            events, moved, connect_reply = await self._deliver(request, held, context)
            replies[held.index] = encode(connect_reply)
            transport = request.transport
            if moved and (transport is None or transport.is_closing()):
                # The client went away while we waited: keep the events for its next connect.
                for subscription, cursor in moved:
                    subscription.cursor = cursor
                held.session.wake()
            held.session.last_seen = asyncio.get_running_loop().time()
        response = self._respond(events, [r for r in replies if r is not None])
        # The org's own time (its clock may be skewed in tests), as Salesforce's replies carry.
        response.headers["Date"] = formatdate(self.context.now(), usegmt=True)
        if context.new_cookie:
            path = "/cometd/"
            response.set_cookie(COOKIE_NAME, _ids.random_cookie(), path=path, httponly=True)
            response.set_cookie("BrowserId", _ids.random_cookie(), path="/")
        if unknown_client:
            # Salesforce's load balancer sets its stickiness cookie on the 403 (E2); the
            # lifetime is a guess (the capture elides it).
            response.set_cookie(
                STREAM_COOKIE,
                _ids.random_cookie(),
                path="/",
                expires=formatdate(time.time() + 3600, usegmt=True),
                samesite="None",
                secure=True,
            )
        return response

    @staticmethod
    def _respond(events: list[bytes], replies: list[bytes]) -> web.Response:
        # One join: each ``+`` of multi-megabyte bytes would copy the whole reply again.
        body = b"".join([b"[", *events, b",".join(replies), b"]"])
        return web.Response(body=body, content_type="application/json", charset="UTF-8")

    @staticmethod
    def _parse(request: web.Request, body: bytes) -> list[dict[str, Any]] | None:
        if request.content_type == "application/x-www-form-urlencoded":
            from urllib.parse import parse_qs

            values = parse_qs(body.decode("utf-8", "replace")).get("message")
            if not values:
                return None
            body = values[0].encode()
        try:
            payload = loads(body)
        except ValueError:
            return None
        if isinstance(payload, dict):
            payload = [payload]
        if not isinstance(payload, list) or not payload:
            return None
        if not all(isinstance(m, dict) for m in payload):
            return None
        return payload

    @staticmethod
    def _version(tail: str) -> tuple[str | None, float]:
        parts = [p for p in tail.split("/") if p]
        if parts and parts[0] == "replay":
            parts = parts[1:]
        if not parts:
            return MISSING_VERSION, 0.0
        version = parse_version(parts[0])
        if version is None or version < MIN_COMETD_VERSION:
            return UNSUPPORTED_VERSION, 0.0
        return None, version

    @staticmethod
    def _reply(
        message: Mapping[str, Any],
        successful: bool,
        *,
        error: str | None = None,
        client_id: str | None = None,
    ) -> dict[str, Any]:
        reply: dict[str, Any] = {}
        if client_id is not None:
            reply["clientId"] = client_id
        channel = message.get("channel")
        reply["channel"] = channel if isinstance(channel, str) else "/meta/unknown"
        if "id" in message:
            reply["id"] = message["id"]
        if error is not None:
            reply["error"] = error
        reply["successful"] = successful
        return reply

    def _fault_reply(self, message: Mapping[str, Any], fault: Fault) -> dict[str, Any]:
        client_id = message.get("clientId")
        session = self.sessions.get(client_id) if isinstance(client_id, str) else None
        keep_id = isinstance(client_id, str) and (
            fault.keep_client_id or (session is not None and not fault.expire_session)
        )
        reply = self._reply(
            message, False, error=fault.error, client_id=client_id if keep_id else None
        )
        if message.get("channel") == "/meta/subscribe" and "subscription" in message:
            reply["subscription"] = message["subscription"]
        if fault.advice is not None:
            reply["advice"] = dict(fault.advice)
        if fault.ext is not None:
            reply["ext"] = dict(fault.ext)
        if fault.expire_session and session is not None:
            self._end(session)
        return reply

    # -- messages ----------------------------------------------------------------------------

    def _dispatch(self, message: dict[str, Any], request: _Request) -> dict[str, Any]:
        channel = message.get("channel")
        if not isinstance(channel, str):
            return self._reply(message, False, error="400::Channel name not specified")
        fault = self.context.faults.take_bayeux(channel)
        if fault is not None:
            return self._fault_reply(message, fault)
        if channel == "/meta/handshake":
            return self._handshake(message, request)
        session_or_error = self._session_for(message, request)
        if isinstance(session_or_error, dict):
            return session_or_error
        session = session_or_error
        if channel == "/meta/subscribe":
            return self._subscribe(message, session)
        if channel == "/meta/unsubscribe":
            return self._unsubscribe(message, session)
        if channel == "/meta/disconnect":
            self._end(session)
            return self._reply(message, True, client_id=session.client_id)
        if channel.startswith("/meta/"):
            return self._reply(
                message,
                False,
                error=f"400::Unknown meta channel {{{channel}}}",
                client_id=session.client_id,
            )
        # Salesforce takes no publishes over CometD: events come from the REST API.
        return self._reply(
            message,
            False,
            error=f"403::Publish is not allowed on channel {{{channel}}}",
            client_id=session.client_id,
        )

    def _handshake(self, message: dict[str, Any], request: _Request) -> dict[str, Any]:
        context = self.context
        if request.token is None:
            reply = self._reply(message, False, error="403::Handshake denied")
            reply["ext"] = {
                "sfdc": {"failureReason": "401::Request requires authentication"},
                **_HANDSHAKE_EXT,
            }
            return reply
        record = context.state.valid_access_token(
            request.token, context.now(), context.config.token_lifetime
        )
        if record is None:
            reply = self._reply(message, False, error="403::Handshake denied")
            reply["advice"] = {"reconnect": "none"}
            reply["ext"] = {
                "sfdc": {"failureReason": "401::Authentication invalid"},
                **_HANDSHAKE_EXT,
            }
            return reply
        offered = message.get("supportedConnectionTypes")
        if isinstance(offered, list) and offered and "long-polling" not in offered:
            return self._reply(
                message,
                False,
                error=f"400::Invalid connection type {{{', '.join(map(str, offered))}}}",
            )
        session = Session(
            _ids.client_id(),
            record.user_id,
            request.version,
            asyncio.get_running_loop().time(),
        )
        self.sessions[session.client_id] = session
        request.new_cookie = True
        welcome: dict[str, Any] = {
            "ext": dict(_HANDSHAKE_EXT),
            "minimumVersion": "1.0",
            "clientId": session.client_id,
            "supportedConnectionTypes": ["long-polling"],
            "channel": "/meta/handshake",
        }
        if "id" in message:
            welcome["id"] = message["id"]
        welcome["version"] = "1.0"
        welcome["successful"] = True
        logger.debug("Bayeux session %s… opened (API %s)", session.client_id[:6], request.version)
        return welcome

    def _session_for(self, message: dict[str, Any], request: _Request) -> Session | dict[str, Any]:
        """The live session a message belongs to, or the error reply that refuses it."""
        context = self.context
        client_id = message.get("clientId")
        if not context.state.valid_access_token(
            request.token, context.now(), context.config.token_lifetime
        ):
            reply = self._reply(
                message,
                False,
                error="401::Authentication invalid",
                client_id=client_id if isinstance(client_id, str) else None,
            )
            reply["advice"] = dict(_AUTH_INVALID_ADVICE)
            return reply
        if not isinstance(client_id, str) or not client_id:
            return self._reply(message, False, error="403::Client has not completed handshake")
        session = self.sessions.get(client_id)
        if session is not None and self._is_expired(session, asyncio.get_running_loop().time()):
            self._end(session)
            session = None
        if session is None:
            reply = self._reply(message, False, error=UNKNOWN_CLIENT)
            reply["advice"] = dict(_UNKNOWN_CLIENT_ADVICE)
            return reply
        session.last_seen = asyncio.get_running_loop().time()
        if not request.cookie_ok:
            return self._reply(
                message,
                False,
                client_id=client_id,
                error=f"400::Client {{{client_id}}} has established a session, "
                f"but no {COOKIE_NAME} cookie present",
            )
        return session

    def _subscribe(self, message: dict[str, Any], session: Session) -> dict[str, Any]:
        subscription = message.get("subscription")
        channels = subscription if isinstance(subscription, list) else [subscription]
        error = None
        for channel in channels:
            error = self._subscribe_one(channel, message.get("ext"), session)
            if error is not None:
                break
        reply = self._reply(message, error is None, error=error, client_id=session.client_id)
        if subscription is not None:
            reply["subscription"] = subscription
        return reply

    def _subscribe_one(self, channel: Any, ext: Any, session: Session) -> str | None:
        if not isinstance(channel, str) or not channel:
            return "400::Channel name not specified"
        if not channel.startswith("/"):
            return "400::Channel subscriptions must start with a leading '/'"
        state = self.context.state
        try:
            resolution = state.resolve(channel)
        except SubscriptionError as exc:
            return str(exc)
        log = state.events.channel(resolution.log_channel)
        log.purge(self.context.now())
        replay_map = ext.get("replay") if isinstance(ext, dict) else None
        replay: Any = -1
        if isinstance(replay_map, dict):
            # Salesforce looks a filtered subscription (/topic/X?F=v) up under the plain
            # topic only, and refuses a map keyed by the filtered name (wire evidence E15).
            base = channel.partition("?")[0]
            if base in replay_map:
                replay = replay_map[base]
            else:
                return (
                    f"400::The replayId for channel {{{base}}} wasn't found using the "
                    f"provided replay ID map {{{_java_map(replay_map)}}}. Ensure that the "
                    "channel name you provided in the replay map is valid and matches the "
                    "channel name used for subscribing."
                )
        if isinstance(replay, str) and replay.lstrip("-").isdigit():
            replay = int(replay)
        if not isinstance(replay, int) or isinstance(replay, bool):
            return _invalid_replay(replay)
        if replay == -1:
            cursor = log.last_id
        elif replay == -2:
            cursor = log.purged_through
        elif log.is_valid_replay_id(replay):
            cursor = replay
        else:
            return _invalid_replay(replay)
        variant = VARIANT_CURRENT
        if resolution.event_kind:
            if session.api_version < 52.0:
                variant = VARIANT_BEFORE_52
            elif resolution.event_kind == "chn" and session.api_version < 55.0:
                variant = VARIANT_BEFORE_55
        session.subscriptions[channel] = Subscription(
            channel, log, cursor, resolution.filters, variant, session.user_id
        )
        self._subscribers.setdefault(log.channel, set()).add(session)
        if log.last_id > cursor:
            session.wake()
        return None

    def _unsubscribe(self, message: dict[str, Any], session: Session) -> dict[str, Any]:
        subscription = message.get("subscription")
        channels = subscription if isinstance(subscription, list) else [subscription]
        if not all(isinstance(c, str) and c for c in channels):
            return self._reply(
                message, False, error="400::Channel name not specified", client_id=session.client_id
            )
        for channel in channels:
            removed = session.subscriptions.pop(str(channel), None)
            if removed is not None:
                self._unindex(session, removed.log.channel)
        reply = self._reply(message, True, client_id=session.client_id)
        reply["subscription"] = subscription
        return reply

    # -- /meta/connect -------------------------------------------------------------------------

    def _connect(self, message: dict[str, Any], request: _Request) -> Session | dict[str, Any]:
        """Check a connect: returns the session to answer from, or an immediate reply."""
        fault = self.context.faults.take_bayeux("/meta/connect")
        if fault is not None:
            client_id = message.get("clientId")
            ghost = self._ghosts.get(client_id) if isinstance(client_id, str) else None
            if ghost is not None:
                del self._ghosts[ghost.client_id]
            return self._fault_reply(message, fault)
        client_id = message.get("clientId")
        ghost = self._ghosts.pop(client_id, None) if isinstance(client_id, str) else None
        if ghost is not None:
            return ghost  # hand over its /meta/disconnect, then refuse it
        session_or_error = self._session_for(message, request)
        if isinstance(session_or_error, dict):
            return session_or_error
        connection_type = message.get("connectionType", "long-polling")
        if connection_type != "long-polling":
            return self._reply(
                message,
                False,
                error=f"400::Invalid connection type {{{connection_type}}}",
                client_id=session_or_error.client_id,
            )
        return session_or_error

    async def _deliver(
        self, request: web.Request, held: _Held, context: _Request
    ) -> tuple[list[bytes], list[tuple[Subscription, int]], dict[str, Any]]:
        session = held.session
        message = held.message
        config = self.context.config
        advice = message.get("advice")
        first = not session.connected or (isinstance(advice, dict) and advice.get("timeout") == 0)
        session.connected = True
        ticket = object()
        session.holder = ticket
        session.wake()  # a connect that was held before this one returns now
        kicks = session.kicks
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.hold_time
        events: list[bytes] = []
        moved: list[tuple[Subscription, int]] = []
        try:
            while True:
                if not session.alive:
                    return self._refused(session, message)
                if not self.context.state.valid_access_token(
                    context.token, self.context.now(), config.token_lifetime
                ):
                    reply = self._reply(
                        message,
                        False,
                        error="401::Authentication invalid",
                        client_id=session.client_id,
                    )
                    reply["advice"] = dict(_AUTH_INVALID_ADVICE)
                    return [], [], reply
                if session.holder is not ticket:
                    break  # a newer connect of this session took over: answer this one empty
                events, moved = self._collect(session, config.max_batch)
                remaining = deadline - loop.time()
                if events or first or not held.hold or session.kicks != kicks or remaining <= 0:
                    break
                waiter: asyncio.Future[None] = loop.create_future()
                session.waiter = waiter
                try:
                    async with asyncio.timeout(remaining):
                        await waiter
                except TimeoutError:
                    pass
                finally:
                    if session.waiter is waiter:
                        session.waiter = None
        finally:
            if session.holder is ticket:
                session.holder = None
        reply = self._reply(message, True, client_id=session.client_id)
        if first:
            reply["advice"] = {
                "interval": 0,
                "timeout": config.advice_timeout,
                "reconnect": "retry",
            }
        return events, moved, reply

    def _refused(
        self, session: Session, message: Mapping[str, Any]
    ) -> tuple[list[bytes], list[tuple[Subscription, int]], dict[str, Any]]:
        pending = [part + b"," for part in session.pending]
        session.pending = []
        self._ghosts.pop(session.client_id, None)
        reply = self._reply(message, False, error=UNKNOWN_CLIENT)
        reply["advice"] = dict(_UNKNOWN_CLIENT_ADVICE)
        return pending, [], reply

    def _collect(
        self, session: Session, budget: int
    ) -> tuple[list[bytes], list[tuple[Subscription, int]]]:
        """Take up to ``budget`` events for a session; returns the parts and the moved cursors."""
        parts: list[bytes] = []
        moved: list[tuple[Subscription, int]] = []
        subscriptions = list(session.subscriptions.values())
        if not subscriptions:
            return parts, moved
        start = session.rotation % len(subscriptions)
        session.rotation += 1
        for subscription in subscriptions[start:] + subscriptions[:start]:
            if budget <= 0:
                break
            log = subscription.log
            if log.last_id <= subscription.cursor:
                continue
            index = log.index_after(subscription.cursor)
            stored = log.events
            if index >= len(stored):
                continue
            before = subscription.cursor
            prefix = subscription.prefix
            if subscription.plain:
                end = min(len(stored), index + budget)
                for event in stored[index:end]:
                    parts += (prefix, event.encoded, b"},")
                budget -= end - index
                subscription.cursor = stored[end - 1].replay_id
            else:
                position = index
                while position < len(stored) and budget > 0:
                    event = stored[position]
                    position += 1
                    if subscription.wants(event):
                        parts += (prefix, event.encoded_for(subscription.variant), b"},")
                        budget -= 1
                subscription.cursor = stored[position - 1].replay_id
            moved.append((subscription, before))
        return parts, moved

    # -- introspection -------------------------------------------------------------------------

    def online_user_ids(self, channel: str) -> set[str]:
        """Users with a live session subscribed to ``channel`` (generic streaming push)."""
        return {session.user_id for session in self._subscribers.get(channel, ()) if session.alive}

    def describe(self) -> list[dict[str, Any]]:
        """The live sessions (clientId prefix, user, subscriptions), for the admin endpoint."""
        return [
            {
                "clientId": session.client_id,
                "userId": session.user_id,
                "apiVersion": session.api_version,
                "connected": session.connected,
                "holding": session.holder is not None,
                "subscriptions": {name: sub.cursor for name, sub in session.subscriptions.items()},
            }
            for session in self.sessions.values()
        ]


def _invalid_replay(replay: Any) -> str:
    return (
        # Two spaces after "invalid." (wire evidence E13).
        f"400::The replayId {{{replay}}} you provided was invalid.  Please provide a valid ID, "
        "-2 to replay all events, or -1 to replay only new events."
    )


def _channels_of(messages: Iterable[Mapping[str, Any]]) -> set[str]:
    return {m["channel"] for m in messages if isinstance(m.get("channel"), str)}
