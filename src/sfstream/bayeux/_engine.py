"""The sans-IO Bayeux client engine.

:class:`BayeuxEngine` builds every request a Bayeux client sends and interprets every reply it
receives: message ids, ``clientId`` stamping, the handshake and connect cycle, subscriptions
(the wanted set survives new sessions and is made again after each handshake), publish and
disconnect, the extension pipeline and advice. The session state lives in
:mod:`sfstream.bayeux._state`; what to do after a handshake or connect is decided by
:func:`sfstream.bayeux._advice.decide`. No IO, no clock: a driver sends the
:class:`~sfstream.bayeux._events.Request` objects this engine returns, feeds the replies (or the
failure) back, and runs the action of :meth:`BayeuxEngine.next_action`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any, Final

from sfstream.bayeux._advice import (
    DEFAULT_ADVICE,
    Action,
    Advice,
    Operation,
    Outcome,
    ReconnectPolicy,
    Stop,
    decide,
)
from sfstream.bayeux._channels import matches, validate_channel, validate_subscription
from sfstream.bayeux._codec import CHANNEL_OF, RUN_MIN
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
    UnsubscribeSucceeded,
)
from sfstream.bayeux._extensions import Extension
from sfstream.bayeux._messages import (
    BAYEUX_VERSION,
    META_CONNECT,
    META_DISCONNECT,
    META_HANDSHAKE,
    META_SUBSCRIBE,
    META_UNSUBSCRIBE,
    Message,
)
from sfstream.bayeux._state import Input, State, StateMachine
from sfstream.exceptions import (
    ClientError,
    ClientInvalidOperation,
    InvalidArgumentError,
    ProtocolError,
    ServerError,
    SfstreamError,
    _reply_cause_code,
)

__all__ = ["LONG_POLLING", "WEBSOCKET", "BayeuxEngine"]

logger = logging.getLogger(__name__)

#: The Bayeux connection type of HTTP long polling (the default).
LONG_POLLING: Final = "long-polling"
#: The Bayeux connection type of WebSocket.
WEBSOCKET: Final = "websocket"

_SUBSCRIBE, _UNSUBSCRIBE, _PUBLISH = "subscribe", "unsubscribe", "publish"


def _is_transient(reply: Message) -> bool:
    """True when a refusal's cause (``failureReason`` first) is a 5xx: worth retrying."""
    code = _reply_cause_code(reply)
    return code is not None and code >= 500


def _strip_filter(channel: str) -> str:
    """``/topic/X?Field=value`` is delivered as ``/topic/X``: match on the path."""
    return channel.partition("?")[0]


class BayeuxEngine:
    """The Bayeux protocol for one client, without IO.

    Args:
        extensions: hooks run on every outgoing and incoming message (see
            :class:`~sfstream.bayeux.Extension` for the order).
        policy: backoff and thresholds for :func:`~sfstream.bayeux.decide`.
        can_reauthenticate: the driver can fetch new credentials when the server says 401.
        request_timeout: seconds to wait for any reply but a held connect.
        poll_margin: seconds added to ``advice.timeout`` to wait for a held connect.
        handshake_ext: an ``ext`` object sent with every handshake.
        connection_types: the connection types offered in the handshake, in order of
            preference; the first one the server also offers is used (see
            :attr:`connection_type`). The engine only names them: a driver carries the messages.
    """

    def __init__(
        self,
        *,
        extensions: Sequence[Extension] = (),
        policy: ReconnectPolicy | None = None,
        can_reauthenticate: bool = False,
        request_timeout: float = 30.0,
        poll_margin: float = 15.0,
        handshake_ext: dict[str, Any] | None = None,
        connection_types: Sequence[str] = (LONG_POLLING,),
    ) -> None:
        self._machine = StateMachine()
        self._connection_types: tuple[str, ...] = ()
        self._connection_type: str = LONG_POLLING
        self.offer_connection_types(connection_types)
        self._extensions = tuple(extensions)
        self._incoming_extensions = tuple(reversed(self._extensions))
        #: the incoming hooks, bound once (a lookup less per message and extension, #13)
        self._incoming_hooks = tuple(extension.incoming for extension in self._incoming_extensions)
        #: each extension's hook for a run of deliveries on one channel, and its per-message
        #: hook to fall back on, in the incoming order (#13)
        self._delivery_hooks = tuple(
            (extension.incoming_deliveries, extension.incoming)
            for extension in self._incoming_extensions
        )
        self._policy = policy if policy is not None else ReconnectPolicy()
        self._can_reauthenticate = can_reauthenticate
        self._request_timeout = request_timeout
        self._poll_margin = poll_margin
        self._handshake_ext = handshake_ext
        self._advice = DEFAULT_ADVICE
        self._next_id = 0
        self._client_id: str | None = None
        #: channels the user wants, in subscription order (a dict as an ordered set)
        self._wanted: dict[str, None] = {}
        #: channels the server confirmed in the current session
        self._confirmed: set[str] = set()
        #: channels given up by the user; late deliveries on them are dropped
        self._unsubscribed: set[str] = set()
        #: message id -> (kind, channel, automatic) of control requests awaiting a reply
        self._pending: dict[str, tuple[str, str, bool]] = {}
        self._handshake_id: str | None = None
        self._connect_id: str | None = None
        self._disconnect_id: str | None = None
        self._outcome: Outcome | None = None
        self._failures = 0
        #: how many of those failures were answers from the server (refusals, lost sessions)
        self._refusals = 0
        self._established = False
        self._reauthenticated = False

    # -- read-only views -------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The session state."""
        return self._machine.state

    @property
    def client_id(self) -> str | None:
        """The server's id for the current session, or None without a session."""
        return self._client_id

    @property
    def advice(self) -> Advice:
        """The advice in force."""
        return self._advice

    @property
    def subscriptions(self) -> frozenset[str]:
        """The channels the client wants to receive; made again after every new session."""
        return frozenset(self._wanted)

    @property
    def confirmed_subscriptions(self) -> frozenset[str]:
        """The channels the server confirmed in the current session."""
        return frozenset(self._confirmed)

    @property
    def has_session(self) -> bool:
        """True while the server knows a clientId for this client."""
        return self._machine.has_session

    @property
    def established(self) -> bool:
        """True once a connect has succeeded (``open()`` is complete)."""
        return self._established

    @property
    def failures(self) -> int:
        """Consecutive failed handshakes and connects since the last successful connect."""
        return self._failures

    @property
    def closed(self) -> bool:
        """True once the engine is disconnected or failed for good."""
        return self._machine.is_final

    @property
    def connection_types(self) -> tuple[str, ...]:
        """The connection types the next handshake offers, in order of preference."""
        return self._connection_types

    @property
    def connection_type(self) -> str:
        """The connection type named in ``/meta/connect``: the first of
        :attr:`connection_types` that the last successful handshake's reply offered (the
        first of them before any handshake, or when the reply named none)."""
        return self._connection_type

    def offer_connection_types(self, types: Sequence[str]) -> None:
        """Offer ``types`` (in order of preference) from the next handshake on, e.g. after a
        driver gave up on one of them.

        Raises:
            ValueError: ``types`` is empty or names a type twice.
        """
        offered = tuple(types)
        if not offered or len(set(offered)) != len(offered):
            raise InvalidArgumentError(
                f"connection types must be a non-empty list without repeats, not {list(offered)}"
            )
        self._connection_types = offered
        self._connection_type = offered[0]

    # -- building requests -----------------------------------------------------------------

    def _new_id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def _outgoing(self, message: Message) -> Message:
        for extension in self._extensions:
            extension.outgoing(message)
        return message

    def _control(self, message: Message) -> Request:
        return Request([self._outgoing(message)], self._request_timeout)

    def handshake(self) -> Request:
        """Begin a new session (abandoning the current one, if any)."""
        self._check_usable()
        if self._machine.has_session:
            self._machine.process(Input.SESSION_LOST)
        self._machine.process(Input.SEND_HANDSHAKE)
        self._client_id = None
        self._confirmed.clear()
        self._connect_id = None
        self._drop_pending()
        ident = self._new_id()
        self._handshake_id = ident
        message: Message = {
            "channel": META_HANDSHAKE,
            "version": BAYEUX_VERSION,
            "minimumVersion": BAYEUX_VERSION,
            "supportedConnectionTypes": list(self._connection_types),
            "id": ident,
        }
        if self._handshake_ext is not None:
            message["ext"] = dict(self._handshake_ext)
        return self._control(message)

    def connect(self) -> Request:
        """The next ``/meta/connect``.

        After a handshake or a failure it asks the server to answer at once
        (``advice.timeout = 0``); otherwise the server may hold it for ``advice.timeout``.
        """
        self._check_usable()
        first = self._machine.state is State.HANDSHAKEN
        self._machine.process(Input.SEND_CONNECT)
        assert self._client_id is not None
        ident = self._new_id()
        self._connect_id = ident
        message: Message = {
            "channel": META_CONNECT,
            "clientId": self._client_id,
            "connectionType": self._connection_type,
            "id": ident,
        }
        if first:
            message["advice"] = {"timeout": 0}
            timeout = self._request_timeout
        else:
            timeout = self._advice.timeout + self._poll_margin
        return Request([self._outgoing(message)], timeout, long_poll=True)

    def subscribe(self, channel: str) -> Request | None:
        """Want ``channel``; the request to send now, or None when there is no session yet.

        Without a session the channel is subscribed right after the next handshake.
        """
        validate_subscription(channel)
        self._check_usable()
        self._wanted[channel] = None
        self._unsubscribed.discard(channel)
        if not self._machine.has_session:
            return None
        return self._subscribe_request(channel, automatic=False)

    def resubscribe(self, channels: Iterable[str] | None = None) -> list[Request]:
        """Subscribe requests for every wanted channel (or those of ``channels`` still wanted)
        in the current session; to send after a new handshake.
        """
        if not self._machine.has_session:
            return []
        targets = self._wanted if channels is None else [c for c in channels if c in self._wanted]
        return [self._subscribe_request(channel, automatic=True) for channel in targets]

    def _subscribe_request(self, channel: str, *, automatic: bool) -> Request:
        assert self._client_id is not None
        ident = self._new_id()
        self._pending[ident] = (_SUBSCRIBE, channel, automatic)
        return self._control(
            {
                "channel": META_SUBSCRIBE,
                "clientId": self._client_id,
                "subscription": channel,
                "id": ident,
            }
        )

    def unsubscribe(self, channel: str) -> Request | None:
        """Stop wanting ``channel``; the request to send, or None without a session."""
        validate_subscription(channel)
        self._check_usable()
        self._wanted.pop(channel, None)
        self._unsubscribed.add(channel)
        if not self._machine.has_session:
            self._confirmed.discard(channel)
            return None
        assert self._client_id is not None
        ident = self._new_id()
        self._pending[ident] = (_UNSUBSCRIBE, channel, False)
        return self._control(
            {
                "channel": META_UNSUBSCRIBE,
                "clientId": self._client_id,
                "subscription": channel,
                "id": ident,
            }
        )

    def publish(self, channel: str, data: Any) -> Request:
        """A publish of ``data`` on ``channel``; the reply comes as :class:`PublishReplied`."""
        validate_channel(channel)
        if channel.startswith("/meta/"):
            raise InvalidArgumentError(f"cannot publish to the meta channel {channel!r}")
        self._check_usable()
        if self._client_id is None:
            raise ClientInvalidOperation("cannot publish without a session; open the client first")
        ident = self._new_id()
        self._pending[ident] = (_PUBLISH, channel, False)
        return self._control(
            {"channel": channel, "clientId": self._client_id, "data": data, "id": ident}
        )

    def disconnect(self) -> Request | None:
        """End the session: the disconnect request, or None when there is no session.

        Without a session the engine is closed at once.
        """
        if self._machine.is_final or self._machine.state is State.DISCONNECTING:
            return None
        if not self._machine.has_session:
            self._machine.process(Input.CLOSE)
            self._handshake_id = None  # a late handshake reply or failure is then ignored
            self._drop_pending()
            return None
        self._machine.process(Input.SEND_DISCONNECT)
        assert self._client_id is not None
        ident = self._new_id()
        self._disconnect_id = ident
        self._connect_id = None
        return self._control({"channel": META_DISCONNECT, "clientId": self._client_id, "id": ident})

    def _check_usable(self) -> None:
        if self._machine.is_final or self._machine.state is State.DISCONNECTING:
            raise ClientInvalidOperation(f"the client is {self._machine.state.value}")

    def _drop_pending(self) -> None:
        self._pending = {
            ident: entry for ident, entry in self._pending.items() if entry[0] == _PUBLISH
        }

    # -- receiving -------------------------------------------------------------------------

    def receive(self, messages: Iterable[Message], request: Request | None = None) -> list[Event]:
        """Process the messages of one reply; return what happened, deliveries first.

        ``request`` is the request this reply answers: a message of it that the reply leaves
        unanswered fails as if its request had failed (a :class:`ProtocolError`), so that no
        handshake, connect or subscription waits for an answer that will never come.

        Raises:
            ProtocolError: a reply breaks the protocol (a handshake without clientId, an
                illegal transition); the engine is then failed.
        """
        events = None
        if type(messages) is list and len(messages) >= RUN_MIN:
            events = self._receive_run(messages)
        if events is None:
            events = self._receive_each(messages)
        if request is not None and not self._machine.is_final:
            events += self._unanswered(request)
        return events

    def _receive_run(self, messages: list[Message]) -> list[Event] | None:
        """The usual busy reply in one pass per reply (#13), or None for the general way.

        The usual reply is a run of deliveries on one channel, maybe followed by the
        ``/meta/connect`` answer. Told apart without a Python step per message (the channels
        are read, counted and the ``data`` keys checked by C loops); each extension then gets
        the run at once (:meth:`Extension.incoming_deliveries`), and the connect answer goes
        the general way after it, as it would in reply order.
        """
        channels = list(map(CHANNEL_OF, messages))
        if channels[-1] == META_CONNECT:
            run = messages[:-1]
            tail = messages[-1:]
        else:
            run = messages
            tail = []
        channel = channels[0]
        if (
            channel[:6] == "/meta/"
            or channels.count(channel) != len(run)
            or not all(map(dict.__contains__, run, repeat("data")))
            or (self._unsubscribed and not self._is_wanted(channel))
        ):
            return None  # mixed channels, meta replies, publish replies, unwanted deliveries
        for batch, hook in self._delivery_hooks:
            kept = batch(channel, run)
            if kept is None:
                kept = [message for message in run if hook(message) is not False]
            run = kept
        events: list[Event] = [Deliveries(run)] if run else []
        if tail:
            events += self._receive_each(tail)
        return events

    def _receive_each(self, messages: Iterable[Message]) -> list[Event]:
        """Any reply, message by message: hooks, then meta replies, deliveries, publish
        replies (one pass over the reply)."""
        events: list[Event] = []
        deliveries: list[Message] = []
        deliver = deliveries.append
        hooks = self._incoming_hooks
        for message in messages:
            dropped = False
            for hook in hooks:
                if hook(message) is False:
                    dropped = True
                    break
            channel = message["channel"]
            if channel[:6] == "/meta/":
                try:
                    self._meta(message, events)
                except ProtocolError:
                    self.fail()
                    raise
            elif dropped:
                continue
            elif "data" in message:
                if not self._unsubscribed or self._is_wanted(channel):
                    deliver(message)
                elif logger.isEnabledFor(logging.DEBUG):
                    logger.debug("dropped a delivery on unsubscribed channel %s", channel)
            else:
                self._publish_reply(message, events)
        if deliveries:
            events.insert(0, Deliveries(deliveries))
        return events

    def _awaits(self, message: Message) -> bool:
        ident = message.get("id")
        if ident is None:
            return False
        channel = message["channel"]
        if channel == META_HANDSHAKE:
            return ident == self._handshake_id
        if channel == META_CONNECT:
            return ident == self._connect_id
        if channel == META_DISCONNECT:
            return ident == self._disconnect_id
        return ident in self._pending

    def _unanswered(self, request: Request) -> list[Event]:
        missing = [message for message in request.messages if self._awaits(message)]
        if not missing:
            return []
        error = ProtocolError(
            f"the server's reply has no answer to {missing[0]['channel']} "
            f"(id {missing[0].get('id')})"
        )
        events: list[Event] = []
        for message in missing:
            entry = self._pending.get(message.get("id", ""))
            if entry is not None and entry[0] == _SUBSCRIBE and not entry[2]:
                # the user's own subscribe: its caller gets the error now
                events.append(SubscribeFailed(entry[1], error, False))
        return (
            self.request_failed(Request(missing, request.timeout, request.long_poll), error)
            + events
        )

    def _is_wanted(self, channel: str) -> bool:
        """False for deliveries that only match channels the user unsubscribed from."""
        wanted = any(matches(_strip_filter(pattern), channel) for pattern in self._wanted)
        return wanted or not any(
            matches(_strip_filter(pattern), channel) for pattern in self._unsubscribed
        )

    def _meta(self, message: Message, events: list[Event]) -> None:
        channel = message["channel"]
        ident = message.get("id")
        if channel == META_CONNECT:
            if self._connect_id is not None and ident in (self._connect_id, None):
                self._take_advice(message)
                self._connect_reply(message, events)
        elif channel == META_HANDSHAKE:
            if self._handshake_id is not None and ident in (self._handshake_id, None):
                self._take_advice(message)
                self._handshake_reply(message, events)
        elif channel == META_DISCONNECT:
            self._take_advice(message)
            self._disconnect_message(message, events)
        elif channel in (META_SUBSCRIBE, META_UNSUBSCRIBE):
            entry = self._match_pending(message)
            if entry is not None:
                self._take_advice(message)
                self._subscription_reply(message, entry, events)
        # Other meta channels, and replies to requests of an abandoned session, carry nothing
        # for this client (not even advice).

    def _take_advice(self, message: Message) -> None:
        if "advice" in message:
            self._advice = self._advice.updated(message["advice"])

    def _handshake_reply(self, message: Message, events: list[Event]) -> None:
        self._handshake_id = None
        if message.get("successful") is not True:
            self._machine.process(Input.HANDSHAKE_FAILED)
            self._fail(Outcome(Operation.HANDSHAKE, reply=message))
            return
        client_id = message.get("clientId")
        if not isinstance(client_id, str) or not client_id:
            raise ProtocolError("the server accepted the handshake but sent no clientId")
        types = message.get("supportedConnectionTypes")
        chosen = self._connection_types[0]
        if types is not None:
            common = [kind for kind in self._connection_types if kind in types]
            if not common:
                self._machine.process(Input.HANDSHAKE_FAILED)
                error = ClientError(
                    f"the server offers none of the connection types this client supports "
                    f"(it offers {', '.join(map(str, types))}; this client speaks "
                    f"{', '.join(self._connection_types)})"
                )
                self._fail(Outcome(Operation.HANDSHAKE, error=error))
                return
            chosen = common[0]
        self._connection_type = chosen
        self._machine.process(Input.HANDSHAKE_OK)
        self._client_id = client_id
        # A successful handshake carries no advice on Salesforce: a stale "handshake" advice
        # left from the lost session must not send us into a handshake loop.
        if "advice" not in message or "reconnect" not in message["advice"]:
            self._advice = Advice(
                reconnect="retry",
                interval=self._advice.interval,
                timeout=self._advice.timeout,
                max_interval=self._advice.max_interval,
            )
        self._outcome = Outcome(Operation.HANDSHAKE, reply=message)
        events.append(HandshakeSucceeded(client_id, message))

    def _connect_reply(self, message: Message, events: list[Event]) -> None:
        self._connect_id = None
        if message.get("successful") is True:
            self._machine.process(Input.CONNECT_OK)
            self._outcome = Outcome(Operation.CONNECT, reply=message)
            self._failures = 0
            self._refusals = 0
            self._established = True
            self._reauthenticated = False
            return
        if self._advice.reconnect == "handshake":
            self._lose_session(Outcome(Operation.CONNECT, reply=message, session_lost=True), events)
        else:
            self._machine.process(Input.CONNECT_FAILED)
            self._fail(Outcome(Operation.CONNECT, reply=message))

    def _disconnect_message(self, message: Message, events: list[Event]) -> None:
        ident = message.get("id")
        if self._machine.state is State.DISCONNECTING and ident in (self._disconnect_id, None):
            self._disconnect_id = None
            self._machine.process(Input.DISCONNECT_DONE)
            return
        if self._machine.has_session:
            # Salesforce (API 64.0+) may end a session by itself: start a new one.
            self._lose_session(Outcome(Operation.CONNECT, reply=message, session_lost=True), events)

    def _subscription_reply(
        self, message: Message, entry: tuple[str, str, bool], events: list[Event]
    ) -> None:
        kind, channel, automatic = entry
        if message.get("successful") is True:
            if kind == _SUBSCRIBE:
                if channel in self._wanted:
                    self._confirmed.add(channel)
                events.append(SubscribeSucceeded(channel, automatic))
            else:
                if channel not in self._wanted:  # not subscribed again meanwhile
                    self._confirmed.discard(channel)
                events.append(UnsubscribeSucceeded(channel))
            return
        if self._advice.reconnect == "handshake" and self._machine.has_session:
            # The session is gone (e.g. 403::Unknown client): the channel stays wanted and is
            # subscribed again after the new handshake.
            self._lose_session(Outcome(Operation.CONNECT, reply=message, session_lost=True), events)
            return
        error = ServerError(f"{kind} to {channel} refused", message)
        if kind == _UNSUBSCRIBE:
            events.append(UnsubscribeFailed(channel, error))
            return
        if automatic and _is_transient(message) and self._machine.has_session:
            # e.g. 503::Server is too busy: keep the channel and make a new session later
            # (with backoff) rather than lose the subscription for good.
            self._lose_session(Outcome(Operation.CONNECT, error=error, session_lost=True), events)
            return
        # A refused channel is no longer wanted: it is not tried again at the next session.
        self._wanted.pop(channel, None)
        self._unsubscribed.add(channel)
        events.append(SubscribeFailed(channel, error, automatic))

    def _match_pending(self, message: Message) -> tuple[str, str, bool] | None:
        kind = _SUBSCRIBE if message["channel"] == META_SUBSCRIBE else _UNSUBSCRIBE
        ident = message.get("id")
        if ident is not None:
            entry = self._pending.get(ident)
            if entry is None or entry[0] != kind:
                return None
            return self._pending.pop(ident)
        # A server that does not echo ids: match on the subscription.
        subscription = message.get("subscription")
        for key, (pending_kind, channel, _) in self._pending.items():
            if pending_kind == kind and channel == subscription:
                return self._pending.pop(key)
        return None

    def _publish_reply(self, message: Message, events: list[Event]) -> None:
        ident = message.get("id")
        if ident is None or ident not in self._pending or self._pending[ident][0] != _PUBLISH:
            return
        del self._pending[ident]
        error = None
        if message.get("successful") is not True:
            error = ServerError(f"publish to {message['channel']} refused", message)
        events.append(PublishReplied(ident, message, error))

    def _lose_session(self, outcome: Outcome, events: list[Event]) -> None:
        self._machine.process(Input.SESSION_LOST)
        self._connect_id = None
        self._client_id = None
        self._confirmed.clear()
        self._drop_pending()
        self._fail(outcome)
        if outcome.reply is None:
            reason = f"a resubscription failed: {outcome.error}"
        elif outcome.reply["channel"] == META_DISCONNECT:
            reason = "the server ended the session (/meta/disconnect)"
        else:
            reason = str(ServerError("the server forgot the session", outcome.reply))
        events.append(SessionLost(reason))

    def _fail(self, outcome: Outcome) -> None:
        self._outcome = outcome
        self._failures += 1
        if outcome.reply is not None:
            self._refusals += 1

    # -- failed requests -------------------------------------------------------------------

    def request_failed(self, request: Request, error: SfstreamError) -> list[Event]:
        """The request got no usable reply (network, timeout, HTTP status, bad JSON).

        Returns the events that follow: a failed automatic resubscription forces a new
        session (the channel would otherwise stay silent); a user's own control request
        fails with ``error`` in its caller.
        """
        events: list[Event] = []
        for message in request.messages:
            channel = message["channel"]
            ident = message.get("id")
            if channel == META_HANDSHAKE and ident == self._handshake_id:
                self._handshake_id = None
                self._machine.process(Input.HANDSHAKE_FAILED)
                self._fail(Outcome(Operation.HANDSHAKE, error=error))
            elif channel == META_CONNECT and ident == self._connect_id:
                self._connect_id = None
                self._machine.process(Input.CONNECT_FAILED)
                self._fail(Outcome(Operation.CONNECT, error=error))
            elif channel == META_DISCONNECT and ident == self._disconnect_id:
                self._disconnect_id = None
                self._machine.process(Input.DISCONNECT_DONE)
            elif ident is not None and ident in self._pending:
                kind, target, automatic = self._pending.pop(ident)
                if automatic and self._machine.has_session:
                    # The subscription may be missing on the server: a new session makes
                    # every wanted subscription again.
                    self._lose_session(
                        Outcome(Operation.CONNECT, error=error, session_lost=True), events
                    )
                elif kind == _SUBSCRIBE and not automatic:
                    # The caller sees the error: the channel is not wanted (a late reply's
                    # deliveries are dropped).
                    self._wanted.pop(target, None)
                    self._unsubscribed.add(target)
        return events

    # -- deciding --------------------------------------------------------------------------

    def next_action(self) -> Action:
        """What to do after the last handshake or connect ended (or the session was lost)."""
        if self._outcome is None:
            raise ClientInvalidOperation("nothing happened yet: send a handshake first")
        action = decide(
            self._outcome,
            self._advice,
            failures=self._failures,
            refusals=self._refusals,
            established=self._established,
            can_reauthenticate=self._can_reauthenticate,
            reauthenticated=self._reauthenticated,
            policy=self._policy,
        )
        if isinstance(action, Stop):
            self.fail()
        return action

    def last_failure(self) -> str:
        """A description of the last failed handshake or connect ('' if none)."""
        outcome = self._outcome
        if outcome is None or outcome.successful:
            return ""
        if outcome.error is not None:
            return str(outcome.error)
        return str(ServerError(f"{outcome.operation.value} refused", outcome.reply))

    def reauthenticated(self) -> None:
        """Record that fresh credentials were fetched; a second 401 will then stop the client."""
        self._reauthenticated = True

    def fail(self) -> None:
        """Stop for good (an unrecoverable error outside the protocol, e.g. a refused login)."""
        if not self._machine.is_final:
            self._machine.process(Input.FAIL)
        self._handshake_id = self._connect_id = self._disconnect_id = None
        self._drop_pending()

    def __repr__(self) -> str:
        return (
            f"<BayeuxEngine {self._machine.state.value} clientId={self._client_id!r} "
            f"subscriptions={len(self._wanted)}>"
        )
