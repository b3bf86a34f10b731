"""A scripted in-memory Bayeux server for the engine tests, and small helpers.

The reply builders are pure functions of the request message, shaped like Salesforce's (and
Faye's) real replies. :class:`FakeServer` strings them together into a tiny Bayeux server that
keeps sessions, subscriptions and queued events, so a test can drive a :class:`BayeuxEngine`
through whole lives (handshake, connect, expiry, re-handshake, resubscription) without IO.
Everything crosses the codec both ways, as on the wire.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from sfstream.bayeux._channels import matches
from sfstream.bayeux._codec import decode, encode
from sfstream.bayeux._engine import BayeuxEngine
from sfstream.bayeux._events import Event, Request
from sfstream.bayeux._extensions import Extension
from sfstream.bayeux._messages import AdviceDict, Message

UNKNOWN_CLIENT = "403::Unknown client"
HANDSHAKE_DENIED = "403::Handshake denied"
AUTH_INVALID = "401::Authentication invalid"
SERVER_BUSY = "503::Server is too busy. Please try your request again later."
REPLAY_INVALID = (
    "400::The replayId {5} you provided was invalid.  Please provide a valid ID, "
    "-2 to replay all events, or -1 to replay only new events."
)
#: What Salesforce answers the first connect of a session with.
FIRST_CONNECT_ADVICE: AdviceDict = {"interval": 0, "timeout": 110000, "reconnect": "retry"}


# -- reply builders (pure) -----------------------------------------------------------------


def _reply(request: Message, successful: bool, **fields: Any) -> Message:
    reply: Message = {"channel": request["channel"], "successful": successful}
    if "id" in request:
        reply["id"] = request["id"]
    reply.update(fields)  # type: ignore[typeddict-item]
    return reply


def handshake_ok(
    request: Message,
    client_id: str = "client-1",
    *,
    types: list[str] | None = None,
    advice: AdviceDict | None = None,
) -> Message:
    reply = _reply(
        request,
        True,
        clientId=client_id,
        version="1.0",
        minimumVersion="1.0",
        supportedConnectionTypes=["long-polling"] if types is None else types,
        ext={"replay": True, "payload.format": True},
    )
    if advice is not None:
        reply["advice"] = advice
    return reply


def handshake_denied(
    request: Message,
    error: str = HANDSHAKE_DENIED,
    *,
    failure_reason: str | None = None,
    advice: AdviceDict | None = None,
) -> Message:
    reply = _reply(request, False, error=error)
    if failure_reason is not None:
        reply["ext"] = {"sfdc": {"failureReason": failure_reason}, "replay": True}
    if advice is not None:
        reply["advice"] = advice
    return reply


def connect_ok(request: Message, advice: AdviceDict | None = None) -> Message:
    reply = _reply(request, True, clientId=request["clientId"])
    if advice is not None:
        reply["advice"] = advice
    return reply


def connect_refused(
    request: Message,
    error: str,
    *,
    advice: AdviceDict | None = None,
    failure_reason: str | None = None,
) -> Message:
    reply = _reply(request, False, error=error)
    if advice is not None:
        reply["advice"] = advice
    if failure_reason is not None:
        reply["ext"] = {"sfdc": {"failureReason": failure_reason}}
    return reply


def unknown_client(request: Message) -> Message:
    """Salesforce's answer to any request of an expired session."""
    reply = _reply(
        request, False, error=UNKNOWN_CLIENT, advice={"interval": 0, "reconnect": "handshake"}
    )
    if "subscription" in request:
        reply["subscription"] = request["subscription"]
    return reply


def subscribe_ok(request: Message) -> Message:
    return _reply(request, True, clientId=request["clientId"], subscription=request["subscription"])


def subscribe_refused(request: Message, error: str = REPLAY_INVALID) -> Message:
    return _reply(
        request,
        False,
        clientId=request["clientId"],
        subscription=request["subscription"],
        error=error,
    )


unsubscribe_ok = subscribe_ok
unsubscribe_refused = subscribe_refused


def publish_ok(request: Message) -> Message:
    return _reply(request, True)


def publish_refused(request: Message, error: str = "407:/foo:Failed to publish") -> Message:
    return _reply(request, False, error=error)


def disconnect_ok(request: Message) -> Message:
    return _reply(request, True, clientId=request["clientId"])


def server_disconnect() -> Message:
    """The ``/meta/disconnect`` Salesforce (API 64.0+) may push by itself."""
    return {"channel": "/meta/disconnect", "successful": True}


def event(channel: str, data: Any, ident: str | None = None) -> Message:
    message: Message = {"channel": channel, "data": data}
    if ident is not None:
        message["id"] = ident
    return message


def wire(messages: list[Message]) -> list[Message]:
    """``messages`` as they come out of the codec after a trip over the wire."""
    return decode(encode(messages))


# -- a tiny Bayeux server ------------------------------------------------------------------


@dataclass
class _Session:
    subscriptions: list[str] = field(default_factory=list)
    queue: list[Message] = field(default_factory=list)


class FakeServer:
    """Sessions, subscriptions and queued events; every reply built by the functions above."""

    def __init__(self) -> None:
        self.sessions: dict[str, _Session] = {}
        self.received: list[Message] = []
        self._count = 0

    def expire(self, client_id: str) -> None:
        """Forget a session, as Salesforce does 40 s after the last connect."""
        del self.sessions[client_id]

    def broadcast(self, channel: str, data: Any) -> None:
        """Queue an event for every session subscribed to a pattern matching ``channel``."""
        for session in self.sessions.values():
            if any(
                matches(pattern.partition("?")[0], channel) for pattern in session.subscriptions
            ):
                session.queue.append(event(channel, data))

    def handle(self, request: Request) -> list[Message]:
        messages = wire(request.messages)
        self.received.extend(copy.deepcopy(messages))
        replies: list[Message] = []
        events: list[Message] = []
        for message in messages:
            replies.append(self._answer(message, events))
        # The CometD server writes queued events before the replies.
        return wire(events + replies)

    def _answer(self, message: Message, events: list[Message]) -> Message:
        channel = message["channel"]
        if channel == "/meta/handshake":
            self._count += 1
            client_id = f"client-{self._count}"
            self.sessions[client_id] = _Session()
            return handshake_ok(message, client_id)
        session = self.sessions.get(message.get("clientId", ""))
        if session is None:
            return unknown_client(message)
        if channel == "/meta/connect":
            events.extend(session.queue)
            session.queue.clear()
            first = message.get("advice", {}).get("timeout") == 0
            return connect_ok(message, FIRST_CONNECT_ADVICE if first else None)
        if channel == "/meta/subscribe":
            session.subscriptions.append(str(message["subscription"]))
            return subscribe_ok(message)
        if channel == "/meta/unsubscribe":
            if message["subscription"] in session.subscriptions:
                session.subscriptions.remove(str(message["subscription"]))
            return unsubscribe_ok(message)
        if channel == "/meta/disconnect":
            del self.sessions[message["clientId"]]
            return disconnect_ok(message)
        self.broadcast(channel, message.get("data"))
        return publish_ok(message)


def exchange(engine: BayeuxEngine, server: FakeServer, request: Request | None) -> list[Event]:
    """Send ``request`` to ``server`` and feed the reply to ``engine``."""
    assert request is not None
    return engine.receive(server.handle(request))


# -- extensions ----------------------------------------------------------------------------


class RecordingExtension(Extension):
    """Records what it sees (a deep copy, as it was at its turn) and marks the message."""

    def __init__(self, name: str, log: list[tuple[str, str, Message]]) -> None:
        self.name = name
        self.log = log

    def outgoing(self, message: Message) -> None:
        self.log.append((self.name, "out", copy.deepcopy(message)))
        message.setdefault("ext", {}).setdefault("trail", []).append(self.name)

    def incoming(self, message: Message) -> None:
        self.log.append((self.name, "in", copy.deepcopy(message)))
        message.setdefault("ext", {}).setdefault("trail", []).append(self.name)
