"""Hostile input for the engine: whole sessions against a server that answers anything.

A harness drives a :class:`~sfstream.bayeux.BayeuxEngine` (with the Salesforce replay
extension) exactly as the asyncio driver does: it runs the action ``next_action()`` returns
(handshake, connect, re-authenticate, stop), resubscribes after a new session, and interleaves
the user's subscribe, unsubscribe and publish. Every request gets a reply that hypothesis makes
up (any ``successful``, error, advice, ``ext``, clientId; extra deliveries, stray meta messages,
server disconnects) or fails on the transport. Replies cross the real codec.

Properties, for every session:

- only :class:`~sfstream.exceptions.SfstreamError` escapes (``ProtocolError`` from
  ``receive()``, and then the engine is closed);
- the engine never gets stuck: after the reply to a handshake or connect, ``next_action()``
  returns an action, or the engine is closed; a ``Stop`` closes it;
- memory stays bounded: the pending-request map never holds more than the requests in flight.

What a server that *leaves out* the reply to a request does is specified at the end
(``xfail(strict=True)``): today it leaves the engine without an outcome and leaks pending
entries.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sfstream.bayeux._advice import Connect, Handshake, Reauthenticate, Stop
from sfstream.bayeux._codec import decode
from sfstream.bayeux._engine import BayeuxEngine
from sfstream.bayeux._events import Request
from sfstream.bayeux._messages import Message
from sfstream.bayeux._state import State
from sfstream.exceptions import (
    ClientInvalidOperation,
    HTTPStatusError,
    ProtocolError,
    SfstreamError,
    TransportConnectionClosed,
    TransportTimeoutError,
)
from sfstream.salesforce import ReplayExtension

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ERRORS = [
    "403::Unknown client",
    "401::Authentication invalid",
    "403::Handshake denied",
    "403::Organization total events daily limit exceeded",
    "400::The replayId {5} you provided was invalid.",
    "401:abc:Unknown client",
    "503::Server is too busy",
    "nonsense",
    "",
]
REASONS = [
    "401::Authentication invalid",
    "503::Server is too busy. Please try your request again later.",
    "403::To protect all customers ...",
    "",
]
SUBSCRIBABLE = ["/event/Order__e", "/topic/T", "/topic/T?Name=a", "/data/**", "/u/x", "/a/*"]
DELIVERED = ["/event/Order__e", "/topic/T", "/data/AccountChangeEvent", "/u/x", "/a/b", "/zzz"]
#: Numbers a server may put in advice (huge ones are specified separately).
numbers = st.integers(-(10**6), 10**15) | st.floats(-1e6, 1e15, allow_nan=False)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=8)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
advice = st.fixed_dictionaries(
    {},
    optional={
        "reconnect": st.sampled_from(["retry", "handshake", "none", "other"]),
        "interval": numbers,
        "timeout": numbers,
        "maxInterval": numbers,
    },
)
ext = st.fixed_dictionaries(
    {},
    optional={
        "sfdc": st.fixed_dictionaries({}, optional={"failureReason": st.sampled_from(REASONS)}),
        "replay": st.booleans(),
    },
)
event_data = (
    st.fixed_dictionaries(
        {},
        optional={
            "event": st.fixed_dictionaries(
                {},
                optional={
                    "replayId": st.integers(-5, 10**12) | scalars,
                    "createdDate": st.sampled_from(
                        ["2026-01-01T00:00:00.000Z", "2019-01-01T00:00:00Z", "x"]
                    ),
                },
            ),
            "payload": values,
        },
    )
    | values
)


def reply_to(data: st.DataObject, message: Message, *, echo_id: bool = True) -> dict[str, Any]:
    """A made-up reply to ``message`` (it keeps the message's channel and, mostly, its id):
    a normal success, a refusal (error, advice, failureReason) or anything at all."""
    channel = message["channel"]
    reply: dict[str, Any] = {"channel": channel}
    if echo_id:
        if "id" in message and data.draw(st.integers(0, 9)) > 0:
            reply["id"] = message["id"]
    else:
        choice = data.draw(st.sampled_from(["omit", "other", "same"]))
        if choice == "other":
            reply["id"] = "not-" + message.get("id", "")
        elif choice == "same" and "id" in message:
            reply["id"] = message["id"]
    mode = data.draw(st.sampled_from(["success"] * 6 + ["refusal"] * 2 + ["anything"] * 2))
    if mode == "success":
        reply["successful"] = True
        if channel == "/meta/handshake":
            reply["clientId"] = data.draw(st.sampled_from(["c1", "c2"]))
        if data.draw(st.integers(0, 3)) == 0:
            reply["advice"] = data.draw(advice)
    elif mode == "refusal":
        reply["successful"] = False
        reply["error"] = data.draw(st.sampled_from(ERRORS))
        if data.draw(st.booleans()):
            reply["advice"] = data.draw(advice)
        if data.draw(st.booleans()):
            reply["ext"] = data.draw(ext)
    else:
        successful = data.draw(st.sampled_from([True, False, None]))
        if successful is not None:
            reply["successful"] = successful
        if channel == "/meta/handshake":
            client_id = data.draw(st.sampled_from(["c1", "", None]))
            if client_id is not None:
                reply["clientId"] = client_id
            types = data.draw(
                st.sampled_from([None, ["long-polling"], ["websocket"], [], ["x", 7]])
            )
            if types is not None:
                reply["supportedConnectionTypes"] = types
        if data.draw(st.booleans()):
            reply["error"] = data.draw(st.sampled_from(ERRORS) | st.text(max_size=10))
        if data.draw(st.booleans()):
            reply["advice"] = data.draw(advice)
        if data.draw(st.booleans()):
            reply["ext"] = data.draw(ext)
    if channel in ("/meta/subscribe", "/meta/unsubscribe") and data.draw(st.integers(0, 3)) == 0:
        reply["subscription"] = data.draw(
            st.sampled_from([message.get("subscription"), "/other", ["/a", "/b"]])
        )
    return reply


def extras(data: st.DataObject) -> list[dict[str, Any]]:
    """What else a reply may carry: deliveries, stray meta messages, a server disconnect."""
    messages: list[dict[str, Any]] = []
    for _ in range(data.draw(st.integers(0, 4))):
        kind = data.draw(st.sampled_from(["delivery", "delivery", "meta", "disconnect", "publish"]))
        if kind == "delivery":
            messages.append(
                {"channel": data.draw(st.sampled_from(DELIVERED)), "data": data.draw(event_data)}
            )
        elif kind == "meta":
            stray: Message = {
                "channel": data.draw(
                    st.sampled_from(
                        ["/meta/connect", "/meta/handshake", "/meta/subscribe", "/meta/x"]
                    )
                ),
                "id": data.draw(st.sampled_from(["1", "2", "3", "99"])),
            }
            messages.append({**stray, **reply_to(data, stray)})
        elif kind == "disconnect":
            messages.append({"channel": "/meta/disconnect", "successful": True})
        else:
            messages.append({"channel": "/event/Order__e", "id": "5", "successful": True})
    return messages


class Session:
    """Drives one engine the way BayeuxClient does, against hypothesis-made replies."""

    def __init__(self, data: st.DataObject, *, echo_id: bool = True) -> None:
        self.data = data
        self.echo_id = echo_id
        self.extension = ReplayExtension()
        self.engine = BayeuxEngine(
            extensions=[self.extension],
            can_reauthenticate=data.draw(st.sampled_from([True, True, True, False])),
        )
        self.max_pending = 0
        self.steps = 0
        self.stopped: SfstreamError | None = None

    def open(self) -> None:
        """What ``open()`` does with a well-behaved server: a session, subscriptions, a first
        connect. (Before that, any failure stops the client: not much to fuzz.)"""
        engine = self.engine
        for channel in self.data.draw(st.lists(st.sampled_from(SUBSCRIBABLE), max_size=3)):
            assert engine.subscribe(channel) is None
        request = engine.handshake()
        engine.receive(
            [
                {
                    "channel": "/meta/handshake",
                    "id": request.messages[0]["id"],
                    "successful": True,
                    "clientId": "c0",
                    "supportedConnectionTypes": ["long-polling"],
                }
            ]
        )
        for request in engine.resubscribe():
            message = request.messages[0]
            engine.receive([{**message, "successful": True}])
        assert isinstance(engine.next_action(), Connect)
        request = engine.connect()
        engine.receive([{**request.messages[0], "successful": True}])
        assert engine.established

    def exchange(self, request: Request) -> None:
        """Send ``request``: a made-up reply, or a transport failure."""
        data = self.data
        engine = self.engine
        if data.draw(st.integers(0, 7)) == 0:
            error = data.draw(
                st.sampled_from(
                    [
                        TransportTimeoutError("timeout"),
                        TransportConnectionClosed("reset"),
                        HTTPStatusError("HTTP 500", status=500),
                        HTTPStatusError("HTTP 401", status=401),
                        ProtocolError("not JSON"),
                    ]
                )
            )
            engine.request_failed(request, error)
            return
        replies = [reply_to(data, message, echo_id=self.echo_id) for message in request.messages]
        batch = extras(data) + replies + extras(data)
        try:
            messages = decode(json.dumps(batch))
        except ProtocolError as error:  # the transport refuses a malformed reply
            engine.request_failed(request, error)
            return
        try:
            engine.receive(messages)
        except ProtocolError:
            assert engine.closed
        self.max_pending = max(self.max_pending, len(engine._pending))

    def user_operation(self) -> None:
        data = self.data
        engine = self.engine
        operation = data.draw(st.sampled_from(["none", "subscribe", "unsubscribe", "publish"]))
        if operation == "none" or engine.closed:
            return
        channel = data.draw(st.sampled_from(SUBSCRIBABLE))
        try:
            if operation == "subscribe":
                self.extension.set_replay_id(channel, data.draw(st.sampled_from([-1, -2, 5])))
                request = engine.subscribe(channel)
            elif operation == "unsubscribe":
                request = engine.unsubscribe(channel)
            else:
                request = engine.publish("/event/Order__e", {"n": 1})
        except ClientInvalidOperation:
            return  # e.g. publishing without a session: refused at the call site
        if request is not None:
            self.exchange(request)

    def run(self, steps: int) -> None:
        engine = self.engine
        action: Connect | Handshake | Reauthenticate | Stop = Handshake()
        if self.data.draw(st.integers(0, 3)) > 0:
            self.open()
            action = engine.next_action()
        for _ in range(steps):
            self.steps += 1
            try:
                if isinstance(action, Stop):
                    assert engine.closed
                    return
                if isinstance(action, Reauthenticate):
                    engine.reauthenticated()
                if isinstance(action, Handshake | Reauthenticate):
                    self.exchange(engine.handshake())
                    if engine.has_session:
                        for request in engine.resubscribe():
                            if not engine.has_session:
                                break
                            self.exchange(request)
                elif engine.state in (State.HANDSHAKEN, State.CONNECTED):
                    self.exchange(engine.connect())
            except ProtocolError:
                # an illegal transition the driver turns into Stop (engine.fail())
                engine.fail()
                assert engine.closed
                return
            self.user_operation()
            if engine.closed:
                return
            action = engine.next_action()
            assert isinstance(action, Connect | Handshake | Reauthenticate | Stop)
            if isinstance(action, Stop):
                assert isinstance(action.error, SfstreamError)
                assert engine.closed
                self.stopped = action.error
            # bounded: only requests of this step can be pending (the user's one and the
            # resubscriptions of a new session), never an accumulation
            assert len(engine._pending) <= len(SUBSCRIBABLE) + 1


@FUZZ
@given(data=st.data(), steps=st.integers(1, 40))
def test_a_session_against_any_replies(data: st.DataObject, steps: int) -> None:
    session = Session(data)
    session.run(steps)
    event(f"steps: {min(session.steps, 40) // 10 * 10}+")
    event(f"ended {session.engine.state.value}")
    if session.stopped is not None:
        event(f"stopped: {type(session.stopped).__name__}")


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_long_session_keeps_memory_bounded(data: st.DataObject) -> None:
    session = Session(data)
    session.run(200)
    assert session.max_pending <= len(SUBSCRIBABLE) + 1
    assert len(session.extension._received) <= len(DELIVERED)


# -- specifications: replies that leave out the answer ------------------------------------------


def handshaken() -> BayeuxEngine:
    engine = BayeuxEngine()
    request = engine.handshake()
    engine.receive(
        [
            {
                "channel": "/meta/handshake",
                "id": request.messages[0]["id"],
                "successful": True,
                "clientId": "c1",
                "supportedConnectionTypes": ["long-polling"],
            }
        ]
    )
    return engine


@pytest.mark.parametrize(
    "reply",
    [[], [{"channel": "/meta/handshake", "id": "999", "successful": True, "clientId": "x"}]],
    ids=["empty", "wrong id"],
)
def test_a_handshake_reply_without_the_answer_fails_the_handshake(reply: list[Message]) -> None:
    engine = BayeuxEngine()
    request = engine.handshake()
    engine.receive(reply, request=request)
    action = engine.next_action()
    assert isinstance(action, Handshake | Stop)


def test_a_connect_reply_without_the_answer_fails_the_connect() -> None:
    engine = handshaken()
    engine.next_action()
    request = engine.connect()
    engine.receive([], request=request)
    assert engine.state is State.HANDSHAKEN
    assert engine.failures == 1


def test_unanswered_publishes_do_not_accumulate() -> None:
    engine = handshaken()
    for _ in range(100):
        request = engine.publish("/event/Order__e", {"n": 1})
        engine.receive(
            [{"channel": "/event/Order__e", "id": "other", "successful": True}],
            request=request,
        )
        assert request.messages
    assert len(engine._pending) <= 10
