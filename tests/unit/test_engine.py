"""BayeuxEngine driven against scripted replies and the in-memory FakeServer."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sfstream.bayeux._advice import (
    DEFAULT_ADVICE,
    Advice,
    Connect,
    Handshake,
    Reauthenticate,
    ReconnectPolicy,
    Stop,
)
from sfstream.bayeux._backoff import ExponentialBackoff
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
    UnsubscribeSucceeded,
)
from sfstream.bayeux._extensions import Extension
from sfstream.bayeux._messages import Message
from sfstream.bayeux._state import State
from sfstream.exceptions import (
    AuthenticationError,
    ClientError,
    ClientInvalidOperation,
    HTTPStatusError,
    InvalidArgumentError,
    ProtocolError,
    ServerError,
    TransportTimeoutError,
)
from tests.unit._helpers import (
    AUTH_INVALID,
    FIRST_CONNECT_ADVICE,
    HANDSHAKE_DENIED,
    REPLAY_INVALID,
    SERVER_BUSY,
    UNKNOWN_CLIENT,
    FakeServer,
    RecordingExtension,
    connect_ok,
    connect_refused,
    disconnect_ok,
    event,
    exchange,
    handshake_denied,
    handshake_ok,
    publish_ok,
    publish_refused,
    server_disconnect,
    subscribe_ok,
    subscribe_refused,
    unknown_client,
    unsubscribe_ok,
    unsubscribe_refused,
    wire,
)

#: backoff(n) = 2**(n-1) s without jitter, so delays are easy to check.
POLICY = ReconnectPolicy(
    backoff=ExponentialBackoff(initial=1.0, factor=2.0, maximum=60.0, jitter=0.0),
    handshake_after=3,
)
TIMEOUT = TransportTimeoutError("no reply in time")


def make(**kwargs: Any) -> BayeuxEngine:
    kwargs.setdefault("policy", POLICY)
    return BayeuxEngine(**kwargs)


def only(request: Request | None) -> Message:
    assert request is not None
    [message] = request.messages
    return message


def handshaken(engine: BayeuxEngine, client_id: str = "client-1") -> list[Event]:
    request = engine.handshake()
    return engine.receive(wire([handshake_ok(only(request), client_id)]))


def connected(engine: BayeuxEngine, client_id: str = "client-1") -> None:
    handshaken(engine, client_id)
    request = engine.connect()
    assert engine.receive(wire([connect_ok(only(request), FIRST_CONNECT_ADVICE)])) == []
    assert engine.state is State.CONNECTED


def polling(engine: BayeuxEngine) -> Message:
    """A connected engine with a held connect in flight; returns that connect."""
    connected(engine)
    return only(engine.connect())


def opened(engine: BayeuxEngine, server: FakeServer) -> None:
    events = exchange(engine, server, engine.handshake())
    assert isinstance(events[-1], HandshakeSucceeded)
    for request in engine.resubscribe():
        exchange(engine, server, request)
    assert engine.next_action() == Connect(0.0)
    exchange(engine, server, engine.connect())
    assert engine.established
    assert engine.next_action() == Connect(0.0)


# -- initial state -------------------------------------------------------------------------


def test_initial_state() -> None:
    engine = BayeuxEngine()
    assert engine.state is State.UNCONNECTED
    assert engine.client_id is None
    assert engine.advice is DEFAULT_ADVICE
    assert engine.subscriptions == frozenset()
    assert engine.confirmed_subscriptions == frozenset()
    assert not engine.has_session
    assert not engine.established
    assert engine.failures == 0
    assert not engine.closed
    assert repr(engine) == "<BayeuxEngine unconnected clientId=None subscriptions=0>"
    assert LONG_POLLING == "long-polling"


def test_next_action_before_anything_raises() -> None:
    with pytest.raises(ClientInvalidOperation, match="nothing happened yet"):
        BayeuxEngine().next_action()


def test_repr_with_a_session() -> None:
    engine = make()
    engine.subscribe("/a")
    engine.subscribe("/b")
    connected(engine, "abc")
    assert repr(engine) == "<BayeuxEngine connected clientId='abc' subscriptions=2>"


# -- building requests ---------------------------------------------------------------------


def test_handshake_shape() -> None:
    engine = make(request_timeout=12.5)
    request = engine.handshake()
    assert request.timeout == 12.5
    assert not request.long_poll
    assert request.messages == [
        {
            "channel": "/meta/handshake",
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": ["long-polling"],
            "id": "1",
        }
    ]
    assert engine.state is State.HANDSHAKING


def test_handshake_ext_is_copied_into_every_handshake() -> None:
    ext = {"replay": True}
    engine = make(handshake_ext=ext)
    first = only(engine.handshake())
    assert first["ext"] == {"replay": True}
    first["ext"]["replay"] = False  # an extension changing the sent message...
    assert ext == {"replay": True}  # ...does not change the configuration
    engine.receive(wire([handshake_denied(first)]))
    assert only(engine.handshake())["ext"] == {"replay": True}


def test_message_ids_increase_and_are_unique() -> None:
    engine = make()
    engine.subscribe("/early")
    requests = [engine.handshake()]
    engine.receive(wire([handshake_ok(requests[0].messages[0])]))
    requests += engine.resubscribe()
    requests.append(engine.connect())
    requests.append(engine.subscribe("/b") or Request([], 0))
    requests.append(engine.unsubscribe("/b") or Request([], 0))
    requests.append(engine.publish("/c", {"x": 1}))
    requests.append(engine.disconnect() or Request([], 0))
    ids = [int(message["id"]) for request in requests for message in request.messages]
    assert ids == list(range(1, 8))


def test_client_id_is_stamped_on_everything_but_the_handshake() -> None:
    engine = make()
    assert "clientId" not in only(engine.handshake())
    engine.subscribe("/a")
    engine.receive(wire([handshake_ok({"channel": "/meta/handshake", "id": "1"}, "cid")]))
    assert engine.client_id == "cid"
    messages = [
        *(only(request) for request in engine.resubscribe()),
        only(engine.connect()),
        only(engine.subscribe("/b")),
        only(engine.unsubscribe("/b")),
        only(engine.publish("/c", None)),
        only(engine.disconnect()),
    ]
    assert [message["clientId"] for message in messages] == ["cid"] * 6
    assert [message["channel"] for message in messages] == [
        "/meta/subscribe",
        "/meta/connect",
        "/meta/subscribe",
        "/meta/unsubscribe",
        "/c",
        "/meta/disconnect",
    ]


def test_control_request_shapes() -> None:
    engine = make(request_timeout=7.0)
    handshaken(engine, "cid")
    subscribe = engine.subscribe("/topic/X?Type=A")
    assert subscribe is not None
    assert (subscribe.timeout, subscribe.long_poll) == (7.0, False)
    assert subscribe.messages == [
        {
            "channel": "/meta/subscribe",
            "clientId": "cid",
            "subscription": "/topic/X?Type=A",
            "id": "2",
        }
    ]
    assert only(engine.unsubscribe("/topic/X?Type=A")) == {
        "channel": "/meta/unsubscribe",
        "clientId": "cid",
        "subscription": "/topic/X?Type=A",
        "id": "3",
    }
    publish = engine.publish("/foo", {"a": [1]})
    assert (publish.timeout, publish.long_poll) == (7.0, False)
    assert publish.messages == [
        {"channel": "/foo", "clientId": "cid", "data": {"a": [1]}, "id": "4"}
    ]
    disconnect = engine.disconnect()
    assert disconnect is not None
    assert (disconnect.timeout, disconnect.long_poll) == (7.0, False)
    assert disconnect.messages == [{"channel": "/meta/disconnect", "clientId": "cid", "id": "5"}]


def test_first_connect_asks_timeout_zero_and_later_ones_wait_for_the_advice() -> None:
    engine = make(request_timeout=10.0, poll_margin=15.0)
    handshaken(engine, "cid")
    first = engine.connect()
    assert first.long_poll
    assert first.timeout == 10.0
    assert first.messages == [
        {
            "channel": "/meta/connect",
            "clientId": "cid",
            "connectionType": "long-polling",
            "id": "2",
            "advice": {"timeout": 0},
        }
    ]
    assert engine.state is State.CONNECTING
    engine.receive(wire([connect_ok(first.messages[0], FIRST_CONNECT_ADVICE)]))
    assert engine.advice == Advice("retry", 0.0, 110.0, None)
    second = engine.connect()
    assert second.long_poll
    assert second.timeout == 110.0 + 15.0
    assert "advice" not in second.messages[0]
    assert engine.state is State.POLLING
    engine.receive(wire([connect_ok(second.messages[0])]))
    third = engine.connect()
    assert "advice" not in third.messages[0]
    assert third.timeout == 125.0


def test_default_connect_timeout_before_any_advice() -> None:
    engine = make()
    handshaken(engine)
    engine.receive(wire([connect_ok(only(engine.connect()))]))
    assert engine.connect().timeout == 60.0 + 15.0


def test_connect_after_a_refusal_asks_timeout_zero_again() -> None:
    engine = make(request_timeout=10.0)
    held = polling(engine)
    engine.receive(wire([connect_refused(held, "500::oops", advice={"reconnect": "retry"})]))
    assert engine.state is State.HANDSHAKEN
    retry = engine.connect()
    assert retry.messages[0]["advice"] == {"timeout": 0}
    assert retry.timeout == 10.0


def test_connect_after_a_failed_request_asks_timeout_zero_again() -> None:
    engine = make()
    connected(engine)
    held = engine.connect()
    assert engine.request_failed(held, TIMEOUT) == []
    assert engine.state is State.HANDSHAKEN
    assert engine.failures == 1
    assert engine.next_action() == Connect(0.0)  # the first retry at once (#13)
    assert only(engine.connect())["advice"] == {"timeout": 0}


# -- extensions ----------------------------------------------------------------------------


def test_extensions_outgoing_in_order_after_stamping_incoming_in_reverse() -> None:
    log: list[tuple[str, str, Message]] = []
    engine = make(extensions=[RecordingExtension("a", log), RecordingExtension("b", log)])
    request = engine.handshake()
    message = only(request)
    # "a" saw the message complete (id stamped) and first; "b" saw a's mark.
    assert [(name, way) for name, way, _ in log] == [("a", "out"), ("b", "out")]
    assert log[0][2]["id"] == "1"
    assert "ext" not in log[0][2]
    assert log[1][2]["ext"] == {"trail": ["a"]}
    assert message["ext"] == {"trail": ["a", "b"]}

    log.clear()
    engine.receive(wire([handshake_ok(message, "cid")]))
    subscribe = engine.subscribe("/foo")
    assert log[-2][2]["clientId"] == "cid"  # clientId stamped before the extensions ran
    assert only(subscribe)["ext"] == {"trail": ["a", "b"]}

    log.clear()
    reply = subscribe_ok(only(subscribe))
    delivery = event("/foo", {"n": 1})
    events = engine.receive(wire([reply, delivery]))
    # Incoming: reverse order, for the reply and for the delivery.
    assert [(name, way, seen["channel"]) for name, way, seen in log] == [
        ("b", "in", "/meta/subscribe"),
        ("a", "in", "/meta/subscribe"),
        ("b", "in", "/foo"),
        ("a", "in", "/foo"),
    ]
    assert events[0] == Deliveries(
        [{"channel": "/foo", "data": {"n": 1}, "ext": {"trail": ["b", "a"]}}]
    )
    assert events[1] == SubscribeSucceeded("/foo", automatic=False)


def test_extensions_see_every_kind_of_request() -> None:
    log: list[tuple[str, str, Message]] = []
    engine = make(extensions=[RecordingExtension("x", log)])
    engine.subscribe("/a")
    handshaken(engine)
    engine.resubscribe()
    engine.connect()
    engine.unsubscribe("/a")
    engine.publish("/p", 1)
    engine.disconnect()
    assert [seen["channel"] for _, way, seen in log if way == "out"] == [
        "/meta/handshake",
        "/meta/subscribe",
        "/meta/connect",
        "/meta/unsubscribe",
        "/p",
        "/meta/disconnect",
    ]


def test_extension_base_class_does_nothing() -> None:
    message: Message = {"channel": "/foo", "data": 1}
    extension = Extension()
    extension.outgoing(message)
    extension.incoming(message)
    assert message == {"channel": "/foo", "data": 1}


def test_an_incoming_extension_can_rewrite_a_reply_before_the_engine_reads_it() -> None:
    class Rewrite(Extension):
        def incoming(self, message: Message) -> None:
            if message["channel"] == "/meta/handshake":
                message["clientId"] = "rewritten"

    engine = make(extensions=[Rewrite()])
    handshaken(engine, "original")
    assert engine.client_id == "rewritten"


# -- handshake -----------------------------------------------------------------------------


def test_handshake_success() -> None:
    engine = make()
    request = engine.handshake()
    reply = handshake_ok(only(request), "cid")
    events = engine.receive(wire([reply]))
    assert events == [HandshakeSucceeded("cid", reply)]
    assert engine.state is State.HANDSHAKEN
    assert engine.client_id == "cid"
    assert engine.has_session
    assert not engine.established
    assert engine.next_action() == Connect(0.0)


@pytest.mark.parametrize("client_id", [None, ""])
def test_handshake_without_client_id_is_a_protocol_error(client_id: str | None) -> None:
    engine = make()
    reply = handshake_ok(only(engine.handshake()))
    if client_id is None:
        del reply["clientId"]
    else:
        reply["clientId"] = client_id
    with pytest.raises(ProtocolError, match="accepted the handshake but sent no clientId"):
        engine.receive(wire([reply]))
    assert engine.state is State.ERROR
    assert engine.closed


def test_handshake_without_long_polling_stops_with_client_error() -> None:
    engine = make()
    reply = handshake_ok(only(engine.handshake()), types=["websocket", "callback-polling"])
    assert engine.receive(wire([reply])) == []
    assert engine.state is State.UNCONNECTED
    assert engine.client_id is None
    assert engine.failures == 1
    action = engine.next_action()
    assert isinstance(action, Stop)
    assert type(action.error) is ClientError
    assert "websocket, callback-polling" in str(action.error)
    assert engine.state is State.ERROR


def test_connection_types_default_to_long_polling() -> None:
    engine = make()
    assert (engine.connection_types, engine.connection_type) == ((LONG_POLLING,), LONG_POLLING)
    assert only(engine.handshake())["supportedConnectionTypes"] == [LONG_POLLING]


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["long-polling", "websocket"], WEBSOCKET),
        (["long-polling", "callback-polling"], LONG_POLLING),
        (None, WEBSOCKET),
    ],
)
def test_the_first_preferred_connection_type_the_server_offers_is_used(
    offered: list[str] | None, chosen: str
) -> None:
    engine = make(connection_types=(WEBSOCKET, LONG_POLLING))
    handshake = only(engine.handshake())
    assert handshake["supportedConnectionTypes"] == [WEBSOCKET, LONG_POLLING]
    reply = handshake_ok(handshake)
    if offered is None:
        del reply["supportedConnectionTypes"]
    else:
        reply["supportedConnectionTypes"] = offered
    assert isinstance(engine.receive(wire([reply]))[0], HandshakeSucceeded)
    assert engine.connection_type == chosen
    assert only(engine.connect())["connectionType"] == chosen


def test_offering_other_connection_types_changes_the_next_handshake() -> None:
    engine = make(connection_types=(WEBSOCKET, LONG_POLLING))
    engine.offer_connection_types([LONG_POLLING])
    assert engine.connection_types == (LONG_POLLING,)
    assert engine.connection_type == LONG_POLLING
    assert only(engine.handshake())["supportedConnectionTypes"] == [LONG_POLLING]


@pytest.mark.parametrize("types", [(), ("websocket", "websocket")])
def test_connection_types_must_be_non_empty_and_distinct(types: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="connection types"):
        make(connection_types=types)


def test_no_common_connection_type_names_both_lists() -> None:
    engine = make(connection_types=(WEBSOCKET,))
    reply = handshake_ok(only(engine.handshake()), types=["long-polling"])
    assert engine.receive(wire([reply])) == []
    action = engine.next_action()
    assert isinstance(action, Stop)
    assert "it offers long-polling; this client speaks websocket" in str(action.error)


def test_handshake_reply_without_types_is_accepted() -> None:
    engine = make()
    reply = handshake_ok(only(engine.handshake()))
    del reply["supportedConnectionTypes"]
    assert isinstance(engine.receive(wire([reply]))[0], HandshakeSucceeded)


def test_handshake_refused_before_established_stops() -> None:
    engine = make()
    reply = handshake_denied(
        only(engine.handshake()), failure_reason="403::Organization concurrent user limit exceeded"
    )
    assert engine.receive(wire([reply])) == []
    assert engine.state is State.UNCONNECTED
    assert engine.failures == 1
    action = engine.next_action()
    assert isinstance(action, Stop)
    assert isinstance(action.error, ServerError)
    assert action.error.failure_reason == "403::Organization concurrent user limit exceeded"
    assert engine.state is State.ERROR
    assert engine.closed


def test_handshake_refused_after_established_retries_with_backoff() -> None:
    engine = make()
    held = polling(engine)
    engine.receive(wire([unknown_client(held)]))
    assert engine.next_action() == Handshake(0.0)
    engine.receive(wire([handshake_denied(only(engine.handshake()))]))
    assert engine.failures == 2
    # a refused handshake backs off by the failure count, whatever advice is kept
    assert engine.next_action() == Handshake(2.0)
    engine.receive(
        wire([handshake_denied(only(engine.handshake()), advice={"reconnect": "retry"})])
    )
    assert engine.next_action() == Handshake(4.0)


def test_successful_handshake_resets_stale_handshake_advice() -> None:
    engine = make()
    held = polling(engine)
    engine.receive(
        wire(
            [
                connect_refused(
                    held, UNKNOWN_CLIENT, advice={"reconnect": "handshake", "interval": 250}
                )
            ]
        )
    )
    assert engine.advice == Advice("handshake", 0.25, 110.0, None)
    handshaken(engine, "client-2")  # Salesforce's successful handshake carries no advice
    assert engine.advice == Advice("retry", 0.25, 110.0, None)
    assert engine.next_action() == Connect(0.0)
    engine.receive(wire([connect_ok(only(engine.connect()))]))
    # Not a handshake loop: the next action is a connect.
    assert engine.next_action() == Connect(0.25)


def test_successful_handshake_with_partial_advice_also_resets_reconnect() -> None:
    engine = make()
    held = polling(engine)
    engine.receive(wire([unknown_client(held)]))
    reply = handshake_ok(only(engine.handshake()), advice={"interval": 1000})
    engine.receive(wire([reply]))
    assert engine.advice.reconnect == "retry"
    assert engine.advice.interval == 1.0


def test_successful_handshake_keeps_an_explicit_reconnect_advice() -> None:
    engine = make()
    reply = handshake_ok(only(engine.handshake()), advice={"reconnect": "none"})
    engine.receive(wire([reply]))
    assert engine.advice.reconnect == "none"
    assert engine.next_action() == Connect(0.0)


def test_handshake_abandons_a_live_session() -> None:
    engine = make()
    engine.subscribe("/a")
    connected(engine)
    [subscribe] = engine.resubscribe()  # a subscribe in flight
    publish = engine.publish("/p", 1)  # and a publish
    held = engine.connect()
    engine.handshake()
    assert engine.state is State.HANDSHAKING
    assert engine.client_id is None
    assert engine.confirmed_subscriptions == frozenset()
    # the abandoned connect's reply and the subscribe reply are ignored...
    late = wire([connect_ok(only(held)), subscribe_ok(only(subscribe))])
    assert engine.receive(late) == []
    assert engine.state is State.HANDSHAKING
    assert engine.confirmed_subscriptions == frozenset()
    # ...but a publish reply is still reported
    [replied] = engine.receive(wire([publish_ok(only(publish))]))
    assert isinstance(replied, PublishReplied)


def test_stale_handshake_reply_is_ignored() -> None:
    engine = make()
    first = engine.handshake()
    engine.request_failed(first, TIMEOUT)
    engine.handshake()
    assert engine.receive(wire([handshake_ok(only(first), "stale")])) == []
    assert engine.state is State.HANDSHAKING
    assert engine.client_id is None


def test_unsolicited_handshake_reply_is_ignored() -> None:
    engine = make()
    connected(engine)
    reply = handshake_ok({"channel": "/meta/handshake"}, "other")
    assert engine.receive(wire([reply])) == []
    assert engine.client_id == "client-1"


def test_handshake_reply_without_id_is_accepted() -> None:
    engine = make()
    engine.handshake()
    reply = handshake_ok({"channel": "/meta/handshake"}, "cid")
    assert isinstance(engine.receive(wire([reply]))[0], HandshakeSucceeded)
    assert engine.client_id == "cid"


# -- connect -------------------------------------------------------------------------------


def test_connect_success_resets_failures_and_marks_established() -> None:
    engine = make()
    held = polling(engine)
    engine.receive(wire([connect_refused(held, "500::x")]))
    assert engine.failures == 1
    engine.receive(wire([connect_ok(only(engine.connect()))]))
    assert engine.failures == 0
    assert engine.established


def test_connect_refused_with_retry_advice() -> None:
    engine = make()
    held = polling(engine)
    reply = connect_refused(held, "500::x", advice={"reconnect": "retry", "interval": 3000})
    assert engine.receive(wire([reply])) == []
    assert engine.state is State.HANDSHAKEN
    assert engine.has_session
    assert engine.next_action() == Connect(3.0)


def test_connect_refused_before_established_stops() -> None:
    engine = make()
    handshaken(engine)
    engine.receive(wire([connect_refused(only(engine.connect()), "500::x")]))
    action = engine.next_action()
    assert isinstance(action, Stop)
    assert str(action.error) == "connect refused: 500::x"


def test_connect_success_with_handshake_advice() -> None:
    engine = make()
    held = polling(engine)
    engine.receive(wire([connect_ok(held, {"reconnect": "handshake", "interval": 500})]))
    assert engine.state is State.CONNECTED
    assert engine.next_action() == Handshake(0.5)
    engine.handshake()
    assert engine.state is State.HANDSHAKING


def test_stale_connect_replies_are_ignored() -> None:
    engine = make()
    held = polling(engine)
    assert engine.request_failed(Request([held], 1.0), TIMEOUT) == []
    retry = engine.connect()
    # the reply to the abandoned connect arrives after all
    assert engine.receive(wire([connect_refused(held, "500::late")])) == []
    assert engine.state is State.CONNECTING
    assert engine.failures == 1
    engine.receive(wire([connect_ok(only(retry))]))
    assert engine.state is State.CONNECTED
    assert engine.failures == 0


def test_connect_reply_without_id_is_accepted() -> None:
    engine = make()
    handshaken(engine)
    engine.connect()
    engine.receive(wire([{"channel": "/meta/connect", "successful": True}]))
    assert engine.state is State.CONNECTED


def test_connect_reply_without_a_connect_in_flight_is_ignored() -> None:
    engine = make()
    connected(engine)
    assert engine.receive(wire([{"channel": "/meta/connect", "successful": False}])) == []
    assert engine.state is State.CONNECTED


def test_other_meta_channels_and_their_advice_are_ignored() -> None:
    engine = make()
    connected(engine)
    message: Message = {"channel": "/meta/ping", "advice": {"interval": 2000}}
    assert engine.receive(wire([message])) == []
    assert engine.advice.interval == 0.0
    assert engine.state is State.CONNECTED


def test_three_failed_connects_switch_to_a_handshake() -> None:
    engine = make()
    connected(engine)
    actions = []
    for _ in range(3):
        request = engine.connect()
        engine.request_failed(request, TIMEOUT)
        actions.append(engine.next_action())
    assert actions == [Connect(0.0), Connect(1.0), Handshake(2.0)]  # the first at once (#13)


# -- session loss --------------------------------------------------------------------------


def test_unknown_client_on_connect_loses_the_session() -> None:
    engine = make()
    engine.subscribe("/a")
    connected(engine)
    [confirm] = engine.resubscribe()
    engine.receive(wire([subscribe_ok(only(confirm))]))
    assert engine.confirmed_subscriptions == {"/a"}
    held = engine.connect()
    events = engine.receive(wire([unknown_client(only(held))]))
    assert events == [SessionLost("the server forgot the session: 403::Unknown client")]
    assert engine.state is State.UNCONNECTED
    assert engine.client_id is None
    assert engine.confirmed_subscriptions == frozenset()
    assert engine.subscriptions == {"/a"}
    assert engine.failures == 1
    assert engine.next_action() == Handshake(0.0)


def test_session_lost_again_backs_off() -> None:
    engine = make()
    held = polling(engine)
    engine.receive(wire([unknown_client(held)]))
    assert engine.next_action() == Handshake(0.0)
    handshaken(engine, "client-2")
    engine.receive(wire([unknown_client(only(engine.connect()))]))
    assert engine.failures == 2
    assert engine.next_action() == Handshake(1.0)


def test_server_sent_disconnect_loses_the_session() -> None:
    engine = make()
    polling(engine)
    events = engine.receive(wire([server_disconnect()]))
    assert events == [SessionLost("the server ended the session (/meta/disconnect)")]
    assert engine.state is State.UNCONNECTED
    assert engine.next_action() == Handshake(0.0)


def test_server_sent_disconnect_without_a_session_is_ignored() -> None:
    engine = make()
    engine.handshake()
    assert engine.receive(wire([server_disconnect()])) == []
    assert engine.state is State.HANDSHAKING


def test_reconnect_none_on_unknown_client_still_handshakes() -> None:
    # Salesforce was seen answering 403::Unknown client with reconnect "none" and a clientId.
    engine = make()
    held = polling(engine)
    reply = connect_refused(held, UNKNOWN_CLIENT, advice={"reconnect": "none", "interval": 0})
    assert engine.receive(wire([reply])) == []
    assert engine.next_action() == Handshake(1.0)
    assert not engine.closed


def test_rehandshake_after_unknown_client_restores_every_subscription() -> None:
    server = FakeServer()
    engine = make()
    for channel in ("/topic/A", "/event/B__e", "/data/*", "/topic/C?Type=X"):
        assert engine.subscribe(channel) is None  # no session yet
    opened(engine, server)
    wanted = {"/topic/A", "/event/B__e", "/data/*", "/topic/C?Type=X"}
    assert engine.confirmed_subscriptions == wanted
    assert set(server.sessions["client-1"].subscriptions) == wanted

    server.expire("client-1")
    events = exchange(engine, server, engine.connect())
    assert [type(e) for e in events] == [SessionLost]
    assert engine.confirmed_subscriptions == frozenset()
    assert engine.subscriptions == wanted
    assert engine.next_action() == Handshake(0.0)

    events = exchange(engine, server, engine.handshake())
    [succeeded] = events
    assert isinstance(succeeded, HandshakeSucceeded)
    assert succeeded.client_id == "client-2"
    assert succeeded.reply["clientId"] == "client-2"
    resubscribed = []
    for request in engine.resubscribe():
        resubscribed += exchange(engine, server, request)
    assert resubscribed == [
        SubscribeSucceeded(channel, automatic=True)
        for channel in ("/topic/A", "/event/B__e", "/data/*", "/topic/C?Type=X")
    ]
    assert engine.confirmed_subscriptions == wanted
    assert set(server.sessions["client-2"].subscriptions) == wanted
    assert engine.next_action() == Connect(0.0)
    exchange(engine, server, engine.connect())
    assert engine.failures == 0

    server.broadcast("/data/AccountChangeEvent", {"n": 1})
    server.broadcast("/topic/C", {"n": 2})
    events = exchange(engine, server, engine.connect())
    assert events == [
        Deliveries(
            [
                {"channel": "/data/AccountChangeEvent", "data": {"n": 1}},
                {"channel": "/topic/C", "data": {"n": 2}},
            ]
        )
    ]


def test_unknown_client_on_subscribe_loses_the_session_and_keeps_the_channel() -> None:
    engine = make()
    connected(engine)
    request = engine.subscribe("/a")
    events = engine.receive(wire([unknown_client(only(request))]))
    assert events == [SessionLost("the server forgot the session: 403::Unknown client")]
    assert engine.subscriptions == {"/a"}
    assert engine.state is State.UNCONNECTED
    assert engine.next_action() == Handshake(0.0)


def test_session_lost_drops_pending_control_requests_but_not_publishes() -> None:
    engine = make()
    connected(engine)
    subscribe = engine.subscribe("/a")
    publish = engine.publish("/p", 1)
    engine.receive(wire([server_disconnect()]))
    assert engine.receive(wire([subscribe_ok(only(subscribe))])) == []
    assert engine.receive(wire([publish_ok(only(publish))])) == [
        PublishReplied(only(publish)["id"], publish_ok(only(publish)), None)
    ]


# -- subscriptions -------------------------------------------------------------------------


def test_subscribe_before_a_session_is_made_after_the_handshake() -> None:
    engine = make()
    assert engine.subscribe("/foo/**") is None
    assert engine.subscriptions == {"/foo/**"}
    assert engine.resubscribe() == []  # nothing to send without a session
    handshaken(engine)
    [request] = engine.resubscribe()
    message = only(request)
    assert (message["channel"], message["subscription"]) == ("/meta/subscribe", "/foo/**")
    assert engine.receive(wire([subscribe_ok(message)])) == [
        SubscribeSucceeded("/foo/**", automatic=True)
    ]
    assert engine.confirmed_subscriptions == {"/foo/**"}


def test_subscribe_while_handshaking_waits_for_the_session() -> None:
    engine = make()
    engine.handshake()
    assert engine.subscribe("/a") is None
    handshaken_events = engine.receive(
        wire([handshake_ok({"channel": "/meta/handshake", "id": "1"})])
    )
    assert isinstance(handshaken_events[0], HandshakeSucceeded)
    assert [only(r)["subscription"] for r in engine.resubscribe()] == ["/a"]


def test_resubscribe_named_channels_only_if_still_wanted() -> None:
    engine = make()
    engine.subscribe("/a")
    engine.subscribe("/b")
    handshaken(engine)
    requests = engine.resubscribe(["/b", "/never", "/a"])
    assert [only(r)["subscription"] for r in requests] == ["/b", "/a"]


def test_resubscribe_in_subscription_order() -> None:
    engine = make()
    for channel in ("/c", "/a", "/b"):
        engine.subscribe(channel)
    handshaken(engine)
    assert [only(r)["subscription"] for r in engine.resubscribe()] == ["/c", "/a", "/b"]


def test_subscribe_with_a_session() -> None:
    engine = make()
    connected(engine)
    request = engine.subscribe("/a")
    assert request is not None
    events = engine.receive(wire([subscribe_ok(only(request))]))
    assert events == [SubscribeSucceeded("/a", automatic=False)]
    assert engine.confirmed_subscriptions == {"/a"}


def test_subscribe_refused_with_an_invalid_replay_id() -> None:
    engine = make()
    connected(engine)
    request = engine.subscribe("/event/E__e")
    [failed] = engine.receive(wire([subscribe_refused(only(request))]))
    assert isinstance(failed, SubscribeFailed)
    assert failed.channel == "/event/E__e"
    assert not failed.automatic
    assert isinstance(failed.error, ServerError)
    assert failed.error.error_code == 400
    assert failed.error.error_message is not None
    assert failed.error.error_message.startswith("The replayId {5} you provided was invalid.")
    assert str(failed.error).startswith("subscribe to /event/E__e refused: 400::The replayId")
    assert engine.confirmed_subscriptions == frozenset()
    assert engine.state is State.CONNECTED  # a refusal does not end the session
    assert engine.subscriptions == frozenset()  # a refused channel is not retried


def test_automatic_resubscription_refused() -> None:
    engine = make()
    engine.subscribe("/event/E__e")
    handshaken(engine)
    [request] = engine.resubscribe()
    [failed] = engine.receive(wire([subscribe_refused(only(request))]))
    assert isinstance(failed, SubscribeFailed)
    assert failed.automatic
    assert engine.has_session


def test_subscription_replies_are_correlated_by_id_even_when_reordered() -> None:
    engine = make()
    connected(engine)
    a = only(engine.subscribe("/a"))
    b = only(engine.subscribe("/b"))
    c = only(engine.unsubscribe("/c"))
    held = only(engine.connect())
    events = engine.receive(
        wire(
            [
                unsubscribe_ok(c),
                subscribe_refused(b, "403:/b:Forbidden"),
                connect_ok(held),
                subscribe_ok(a),
            ]
        )
    )
    assert [type(e) for e in events] == [UnsubscribeSucceeded, SubscribeFailed, SubscribeSucceeded]
    assert events[0] == UnsubscribeSucceeded("/c")
    assert isinstance(events[1], SubscribeFailed)
    assert events[1].channel == "/b"
    assert events[2] == SubscribeSucceeded("/a", automatic=False)
    assert engine.state is State.CONNECTED
    assert engine.confirmed_subscriptions == {"/a"}


def test_subscription_replies_without_id_match_on_the_subscription() -> None:
    engine = make()
    connected(engine)
    engine.subscribe("/a")
    engine.subscribe("/b")
    engine.unsubscribe("/c")
    events = engine.receive(
        wire(
            [
                {"channel": "/meta/subscribe", "successful": True, "subscription": "/b"},
                {"channel": "/meta/unsubscribe", "successful": True, "subscription": "/c"},
                {"channel": "/meta/subscribe", "successful": True, "subscription": "/c"},
                {"channel": "/meta/subscribe", "successful": True, "subscription": ["/a"]},
                {"channel": "/meta/subscribe", "successful": True},
            ]
        )
    )
    assert events == [SubscribeSucceeded("/b", automatic=False), UnsubscribeSucceeded("/c")]


def test_subscription_reply_with_an_unknown_id_is_ignored() -> None:
    engine = make()
    connected(engine)
    reply: Message = {
        "channel": "/meta/subscribe",
        "id": "999",
        "successful": True,
        "subscription": "/a",
    }
    assert engine.receive(wire([reply])) == []


def test_subscribe_reply_after_unsubscribe_does_not_confirm() -> None:
    engine = make()
    connected(engine)
    request = engine.subscribe("/a")
    engine.unsubscribe("/a")
    events = engine.receive(wire([subscribe_ok(only(request))]))
    assert events == [SubscribeSucceeded("/a", automatic=False)]
    assert engine.confirmed_subscriptions == frozenset()


def test_unsubscribe_success_and_failure() -> None:
    engine = make()
    engine.subscribe("/a")
    engine.subscribe("/b")
    connected(engine)
    for request in engine.resubscribe():
        engine.receive(wire([subscribe_ok(only(request))]))
    assert engine.confirmed_subscriptions == {"/a", "/b"}
    a = engine.unsubscribe("/a")
    b = engine.unsubscribe("/b")
    assert engine.subscriptions == frozenset()
    assert engine.receive(wire([unsubscribe_ok(only(a))])) == [UnsubscribeSucceeded("/a")]
    [failed] = engine.receive(wire([unsubscribe_refused(only(b), "404:/b:Unknown channel")]))
    assert isinstance(failed, UnsubscribeFailed)
    assert failed.channel == "/b"
    assert failed.error.error_code == 404
    assert str(failed.error) == "unsubscribe to /b refused: 404:/b:Unknown channel"
    assert engine.confirmed_subscriptions == {"/b"}


def test_unsubscribe_without_a_session() -> None:
    engine = make()
    engine.subscribe("/a")
    assert engine.unsubscribe("/a") is None
    assert engine.subscriptions == frozenset()
    handshaken(engine)
    assert engine.resubscribe() == []


def test_subscribe_again_after_unsubscribe() -> None:
    engine = make()
    connected(engine)
    engine.unsubscribe("/a")
    engine.subscribe("/a")
    assert engine.receive(wire([event("/a", 1)])) == [Deliveries([{"channel": "/a", "data": 1}])]


@pytest.mark.parametrize("channel", ["/meta/connect", "/meta/*", "/**/x", "no-slash", "/a/*/b"])
def test_invalid_subscriptions_are_refused_before_anything(channel: str) -> None:
    engine = make()
    with pytest.raises(ValueError, match="channel"):
        engine.subscribe(channel)
    with pytest.raises(ValueError, match="channel"):
        engine.unsubscribe(channel)
    assert engine.subscriptions == frozenset()


# -- deliveries ----------------------------------------------------------------------------


def test_deliveries_come_first_and_in_arrival_order() -> None:
    engine = make()
    connected(engine)
    sub = only(engine.subscribe("/a"))
    held = only(engine.connect())
    batch = [
        subscribe_ok(sub),
        event("/a", 1, "x"),
        connect_ok(held),
        event("/b", 2),
        event("/a", 3),
    ]
    events = engine.receive(wire(batch))
    assert events == [
        Deliveries(
            [
                {"channel": "/a", "data": 1, "id": "x"},
                {"channel": "/b", "data": 2},
                {"channel": "/a", "data": 3},
            ]
        ),
        SubscribeSucceeded("/a", automatic=False),
    ]


def test_no_deliveries_event_without_deliveries() -> None:
    engine = make()
    connected(engine)
    assert engine.receive([]) == []


def test_delivery_with_null_data_is_a_delivery() -> None:
    engine = make()
    connected(engine)
    assert engine.receive(wire([event("/a", None)])) == [
        Deliveries([{"channel": "/a", "data": None}])
    ]


@pytest.mark.parametrize(
    ("wanted", "unsubscribed", "delivered", "dropped"),
    [
        pytest.param([], ["/a"], ["/b", "/a/x"], ["/a"], id="plain"),
        pytest.param(["/foo/bar"], ["/foo/*"], ["/foo/bar", "/other"], ["/foo/baz"], id="wildcard"),
        pytest.param(["/foo/*"], ["/foo/bar"], ["/foo/bar", "/foo/baz"], [], id="still-wildcard"),
        pytest.param([], ["/foo/**"], ["/foo"], ["/foo/a", "/foo/a/b"], id="deep-wildcard"),
        pytest.param([], ["/**"], [], ["/x", "/y/z"], id="everything"),
        pytest.param(
            ["/topic/X?Type=B"], ["/topic/X?Type=A"], ["/topic/X"], [], id="filter-still-wanted"
        ),
        pytest.param([], ["/topic/X?Type=A"], ["/topic/Y"], ["/topic/X"], id="filter-gone"),
    ],
)
def test_unsubscribe_drops_late_deliveries_only_for_unwanted_channels(
    wanted: list[str], unsubscribed: list[str], delivered: list[str], dropped: list[str]
) -> None:
    engine = make()
    for channel in wanted + unsubscribed:
        engine.subscribe(channel)
    connected(engine)
    for channel in unsubscribed:
        engine.unsubscribe(channel)
    batch = [event(channel, channel) for channel in dropped + delivered]
    events = engine.receive(wire(batch))
    if delivered:
        assert events == [Deliveries([event(channel, channel) for channel in delivered])]
    else:
        assert events == []


def test_dropped_deliveries_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    engine = make()
    connected(engine)
    engine.unsubscribe("/a")
    with caplog.at_level(logging.DEBUG, logger="sfstream.bayeux._engine"):
        assert engine.receive(wire([event("/a", 1)])) == []
    assert "dropped a delivery on unsubscribed channel /a" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sfstream.bayeux._engine"):
        assert engine.receive(wire([event("/a", 1)])) == []
    assert caplog.text == ""


# -- publish -------------------------------------------------------------------------------


def test_publish_replies() -> None:
    engine = make()
    connected(engine)
    first = only(engine.publish("/foo", {"n": 1}))
    second = only(engine.publish("/foo", {"n": 2}))
    refused = publish_refused(second)
    ok = publish_ok(first)
    events = engine.receive(wire([refused, ok]))
    assert events[1] == PublishReplied(first["id"], ok, None)
    failed = events[0]
    assert isinstance(failed, PublishReplied)
    assert failed.message_id == second["id"]
    assert failed.reply == refused
    assert isinstance(failed.error, ServerError)
    assert str(failed.error) == "publish to /foo refused: 407:/foo:Failed to publish"
    # answered once: a duplicate reply is ignored
    assert engine.receive(wire([ok])) == []


def test_publish_replies_that_match_nothing_are_ignored() -> None:
    engine = make()
    connected(engine)
    sub = only(engine.subscribe("/a"))
    messages: list[Message] = [
        {"channel": "/foo", "successful": True},
        {"channel": "/foo", "id": "999", "successful": True},
        {"channel": "/a", "id": sub["id"], "successful": True},
    ]
    assert engine.receive(wire(messages)) == []
    # the subscribe is still pending
    assert engine.receive(wire([subscribe_ok(sub)])) == [SubscribeSucceeded("/a", automatic=False)]


def test_publish_validation() -> None:
    engine = make()
    with pytest.raises(ClientInvalidOperation, match="cannot publish without a session"):
        engine.publish("/foo", 1)
    connected(engine)
    with pytest.raises(InvalidArgumentError, match="meta channel"):
        engine.publish("/meta/connect", 1)
    with pytest.raises(ValueError, match="invalid channel name"):
        engine.publish("/foo/*", 1)


def test_publish_round_trip_through_the_fake_server() -> None:
    server = FakeServer()
    engine = make()
    engine.subscribe("/chat/*")
    opened(engine, server)
    [replied] = exchange(engine, server, engine.publish("/chat/room", {"text": "hi"}))
    assert isinstance(replied, PublishReplied)
    assert replied.error is None
    events = exchange(engine, server, engine.connect())
    assert events == [Deliveries([{"channel": "/chat/room", "data": {"text": "hi"}}])]


# -- failed requests -----------------------------------------------------------------------


def test_handshake_request_failed() -> None:
    engine = make()
    request = engine.handshake()
    assert engine.request_failed(request, TIMEOUT) == []
    assert engine.state is State.UNCONNECTED
    assert engine.failures == 1
    assert engine.next_action() == Stop(TIMEOUT)


def test_handshake_request_failed_after_established() -> None:
    engine = make()
    held = polling(engine)
    engine.receive(wire([unknown_client(held)]))
    engine.next_action()
    request = engine.handshake()
    engine.request_failed(request, TIMEOUT)
    assert engine.state is State.UNCONNECTED
    assert engine.next_action() == Handshake(2.0)


def test_stale_handshake_request_failure_is_ignored() -> None:
    engine = make()
    first = engine.handshake()
    engine.request_failed(first, TIMEOUT)
    engine.handshake()
    assert engine.request_failed(first, TIMEOUT) == []
    assert engine.state is State.HANDSHAKING
    assert engine.failures == 1


def test_connect_request_failed() -> None:
    engine = make()
    connected(engine)
    request = engine.connect()
    assert engine.request_failed(request, TIMEOUT) == []
    assert engine.state is State.HANDSHAKEN
    assert engine.has_session
    # a second report for the same connect changes nothing
    assert engine.request_failed(request, TIMEOUT) == []
    assert engine.failures == 1


def test_disconnect_request_failed() -> None:
    engine = make()
    connected(engine)
    request = engine.disconnect()
    assert request is not None
    assert engine.request_failed(request, TIMEOUT) == []
    assert engine.state is State.DISCONNECTED
    assert engine.closed


def test_user_subscribe_request_failed() -> None:
    engine = make()
    connected(engine)
    request = engine.subscribe("/a")
    assert request is not None
    assert engine.request_failed(request, TIMEOUT) == []
    assert engine.state is State.CONNECTED  # the session lives on
    assert engine.subscriptions == frozenset()  # the caller got the error: not wanted
    # the late reply (if any) is ignored and its deliveries dropped
    assert engine.receive(wire([subscribe_ok(only(request)), event("/a", 1)])) == []


def test_user_unsubscribe_request_failed() -> None:
    engine = make()
    connected(engine)
    request = engine.unsubscribe("/a")
    assert request is not None
    assert engine.request_failed(request, TIMEOUT) == []
    assert engine.state is State.CONNECTED
    assert engine.receive(wire([unsubscribe_ok(only(request))])) == []


def test_automatic_resubscription_failure_forces_a_new_session() -> None:
    engine = make()
    engine.subscribe("/a")
    engine.subscribe("/b")
    connected(engine)
    first, second = engine.resubscribe()
    engine.receive(wire([subscribe_ok(only(first))]))
    events = engine.request_failed(second, TIMEOUT)
    assert events == [SessionLost("a resubscription failed: no reply in time")]
    assert engine.state is State.UNCONNECTED
    assert engine.subscriptions == {"/a", "/b"}
    assert engine.confirmed_subscriptions == frozenset()
    assert engine.next_action() == Handshake(0.0)


def test_automatic_resubscription_failure_without_a_session_does_nothing_more() -> None:
    engine = make()
    engine.subscribe("/a")
    engine.subscribe("/b")
    handshaken(engine)
    first, second = engine.resubscribe()
    assert len(engine.request_failed(first, TIMEOUT)) == 1
    # the second one was dropped with the session; even if it were not, no second loss
    assert engine.request_failed(second, TIMEOUT) == []
    assert engine.state is State.UNCONNECTED


def test_publish_request_failed() -> None:
    engine = make()
    connected(engine)
    request = engine.publish("/foo", 1)
    assert engine.request_failed(request, TIMEOUT) == []
    assert engine.receive(wire([publish_ok(only(request))])) == []  # no longer pending
    assert engine.state is State.CONNECTED


def test_request_failed_for_an_unknown_request() -> None:
    engine = make()
    connected(engine)
    unknown = Request([{"channel": "/foo", "id": "999"}, {"channel": "/bar"}], 1.0)
    assert engine.request_failed(unknown, TIMEOUT) == []
    assert engine.state is State.CONNECTED
    assert engine.failures == 0


def test_http_401_on_connect_reauthenticates() -> None:
    engine = make(can_reauthenticate=True)
    connected(engine)
    engine.request_failed(engine.connect(), HTTPStatusError("HTTP 401", status=401))
    assert engine.next_action() == Reauthenticate()


# -- authentication ------------------------------------------------------------------------


def test_reauthenticate_once_then_stop() -> None:
    engine = make(can_reauthenticate=True)
    held = polling(engine)
    reply = connect_refused(held, AUTH_INVALID, advice={"reconnect": "none", "interval": 0})
    engine.receive(wire([reply]))
    assert engine.next_action() == Reauthenticate()
    engine.reauthenticated()
    denied = handshake_denied(
        only(engine.handshake()), failure_reason=AUTH_INVALID, advice={"reconnect": "none"}
    )
    engine.receive(wire([denied]))
    action = engine.next_action()
    assert isinstance(action, Stop)
    assert isinstance(action.error, AuthenticationError)
    assert "403::Handshake denied; failureReason 401::Authentication invalid" in str(action.error)
    assert engine.state is State.ERROR
    assert engine.closed


def test_a_successful_connect_rearms_reauthentication() -> None:
    engine = make(can_reauthenticate=True)
    held = polling(engine)
    engine.receive(wire([connect_refused(held, AUTH_INVALID, advice={"reconnect": "none"})]))
    assert engine.next_action() == Reauthenticate()
    engine.reauthenticated()
    handshaken(engine, "client-2")
    engine.receive(wire([connect_ok(only(engine.connect()), {"reconnect": "retry"})]))
    held = only(engine.connect())
    engine.receive(wire([connect_refused(held, AUTH_INVALID, advice={"reconnect": "none"})]))
    assert engine.next_action() == Reauthenticate()


def test_auth_refusal_without_authenticator_stops() -> None:
    engine = make(can_reauthenticate=False)
    held = polling(engine)
    engine.receive(wire([connect_refused(held, AUTH_INVALID, advice={"reconnect": "none"})]))
    action = engine.next_action()
    assert isinstance(action, Stop)
    assert type(action.error) is ServerError
    assert engine.closed


def test_503_behind_401_handshakes_with_backoff() -> None:
    engine = make(can_reauthenticate=True)
    held = polling(engine)
    reply = connect_refused(
        held, AUTH_INVALID, advice={"reconnect": "none", "interval": 0}, failure_reason=SERVER_BUSY
    )
    engine.receive(wire([reply]))
    assert engine.next_action() == Handshake(1.0)
    assert not engine.closed


# -- disconnect and closing ----------------------------------------------------------------


def test_disconnect_with_a_session() -> None:
    engine = make()
    held = polling(engine)
    request = engine.disconnect()
    assert engine.state is State.DISCONNECTING
    assert not engine.has_session
    assert not engine.closed
    # the held connect's reply no longer matters
    assert engine.receive(wire([connect_ok(held)])) == []
    assert engine.receive(wire([disconnect_ok(only(request))])) == []
    assert engine.state is State.DISCONNECTED
    assert engine.closed
    assert engine.disconnect() is None


def test_disconnect_reply_without_id() -> None:
    engine = make()
    connected(engine)
    engine.disconnect()
    engine.receive(wire([{"channel": "/meta/disconnect", "successful": True}]))
    assert engine.state is State.DISCONNECTED


def test_disconnect_reply_with_another_id_is_ignored() -> None:
    engine = make()
    connected(engine)
    engine.disconnect()
    assert engine.receive(wire([{"channel": "/meta/disconnect", "id": "999"}])) == []
    assert engine.state is State.DISCONNECTING


@pytest.mark.parametrize("handshaking", [False, True])
def test_disconnect_without_a_session_closes_at_once(handshaking: bool) -> None:
    engine = make()
    engine.subscribe("/a")
    if handshaking:
        engine.handshake()
    assert engine.disconnect() is None
    assert engine.state is State.DISCONNECTED
    assert engine.closed
    assert engine.disconnect() is None


def test_subscription_replies_while_disconnecting_do_not_lose_a_session() -> None:
    engine = make()
    connected(engine)
    request = engine.subscribe("/a")
    engine.disconnect()
    [failed] = engine.receive(wire([unknown_client(only(request))]))
    assert isinstance(failed, SubscribeFailed)
    assert engine.state is State.DISCONNECTING


@pytest.mark.parametrize("how", ["disconnected", "disconnecting", "failed"])
def test_operations_after_close_raise(how: str) -> None:
    engine = make()
    connected(engine)
    if how == "failed":
        engine.fail()
    else:
        request = engine.disconnect()
        if how == "disconnected":
            engine.receive(wire([disconnect_ok(only(request))]))
    with pytest.raises(ClientInvalidOperation, match="the client is "):
        engine.subscribe("/a")
    with pytest.raises(ClientInvalidOperation, match="the client is "):
        engine.unsubscribe("/a")
    with pytest.raises(ClientInvalidOperation, match="the client is "):
        engine.publish("/a", 1)
    assert engine.subscriptions == frozenset()


def test_fail_is_final_and_idempotent() -> None:
    engine = make()
    connected(engine)
    engine.subscribe("/a")
    publish = engine.publish("/p", 1)
    engine.fail()
    assert engine.state is State.ERROR
    assert engine.closed
    assert not engine.has_session
    engine.fail()
    assert engine.state is State.ERROR
    assert engine.disconnect() is None
    # a pending publish is still reported to its caller
    assert len(engine.receive(wire([publish_ok(only(publish))]))) == 1


def test_a_late_reply_after_fail_is_ignored() -> None:
    engine = make()
    held = polling(engine)
    engine.fail()
    assert engine.receive(wire([connect_ok(held)])) == []
    assert engine.state is State.ERROR
    with pytest.raises(ClientInvalidOperation):
        engine.connect()
    with pytest.raises(ClientInvalidOperation):
        engine.handshake()


def test_a_protocol_error_in_a_batch_fails_the_engine() -> None:
    engine = make()
    reply = handshake_ok(only(engine.handshake()))
    del reply["clientId"]
    with pytest.raises(ProtocolError):
        engine.receive(wire([event("/a", 1), reply]))
    assert engine.state is State.ERROR
    with pytest.raises(ClientInvalidOperation):
        engine.subscribe("/a")


def test_state_properties_over_a_whole_life() -> None:
    server = FakeServer()
    engine = make()
    engine.subscribe("/x")
    opened(engine, server)
    assert engine.state is State.CONNECTED
    assert engine.has_session
    assert engine.established
    request = engine.disconnect()
    exchange(engine, server, request)
    assert engine.state is State.DISCONNECTED
    assert engine.closed
    assert engine.established
    assert server.sessions == {}
    channels = [message["channel"] for message in server.received]
    assert channels == [
        "/meta/handshake",
        "/meta/subscribe",
        "/meta/connect",
        "/meta/disconnect",
    ]


def test_denied_handshake_helper_shapes() -> None:
    # The fake server's replies are valid Bayeux (they survive the codec unchanged).
    request: Message = {"channel": "/meta/handshake", "id": "1"}
    denied = handshake_denied(request, HANDSHAKE_DENIED, failure_reason=AUTH_INVALID)
    assert wire([denied]) == [denied]
    assert denied["ext"]["sfdc"]["failureReason"] == AUTH_INVALID
    assert REPLAY_INVALID.startswith("400::")


def test_last_failure() -> None:
    engine = make()
    assert engine.last_failure() == ""
    request = engine.handshake()
    engine.request_failed(request, TIMEOUT)
    assert engine.last_failure() == "no reply in time"
    engine.receive(wire([handshake_denied(only(engine.handshake()), failure_reason=SERVER_BUSY)]))
    assert engine.last_failure() == (
        f"handshake refused: 403::Handshake denied: failureReason {SERVER_BUSY}"
    )
    handshaken(engine)
    assert engine.last_failure() == ""
    engine.receive(wire([connect_ok(only(engine.connect()))]))
    assert engine.last_failure() == ""
    engine.receive(wire([connect_refused(only(engine.connect()), "500::x")]))
    assert engine.last_failure() == "connect refused: 500::x"


def test_close_while_handshaking_ignores_the_late_handshake_reply() -> None:
    engine = make()
    request = engine.handshake()
    assert engine.disconnect() is None
    assert engine.receive(wire([handshake_ok(only(request))])) == []
    assert engine.state is State.DISCONNECTED
    assert engine.client_id is None


def test_close_while_handshaking_ignores_the_handshake_failure() -> None:
    engine = make()
    request = engine.handshake()
    assert engine.disconnect() is None
    assert engine.request_failed(request, TIMEOUT) == []
    assert engine.state is State.DISCONNECTED
    assert engine.failures == 0


def test_disconnect_twice_sends_one_disconnect() -> None:
    engine = make()
    connected(engine)
    request = engine.disconnect()
    assert request is not None
    assert engine.disconnect() is None
    assert engine.state is State.DISCONNECTING
    engine.receive(wire([disconnect_ok(only(request))]))
    assert engine.state is State.DISCONNECTED


def test_a_transient_refusal_of_a_resubscription_keeps_the_channel() -> None:
    engine = make()
    connected(engine)
    engine.subscribe("/a")
    [request] = engine.resubscribe()
    busy = subscribe_refused(
        only(request), "401::Authentication invalid"
    )  # Salesforce hides a 503 behind another error
    busy["ext"] = {"sfdc": {"failureReason": "503::Server is too busy. Please try later."}}
    events = engine.receive(wire([busy]))
    assert [type(e) for e in events] == [SessionLost]
    assert engine.state is State.UNCONNECTED
    assert engine.subscriptions == {"/a"}
    assert isinstance(engine.next_action(), Handshake)


def test_a_503_without_failure_reason_code_keeps_the_channel_too() -> None:
    # a failureReason that carries no code says nothing of the cause: the error's code counts
    engine = make()
    connected(engine)
    engine.subscribe("/a")
    [request] = engine.resubscribe()
    busy = subscribe_refused(only(request), "503::Server is too busy")
    busy["ext"] = {"sfdc": {"failureReason": "try again later"}}
    events = engine.receive(wire([busy]))
    assert [type(e) for e in events] == [SessionLost]
    assert engine.subscriptions == {"/a"}


def test_a_permanent_refusal_of_a_resubscription_drops_the_channel() -> None:
    engine = make()
    connected(engine)
    engine.subscribe("/a")
    [request] = engine.resubscribe()
    events = engine.receive(wire([subscribe_refused(only(request))]))
    [failed] = events
    assert isinstance(failed, SubscribeFailed)
    assert failed.automatic
    assert engine.subscriptions == frozenset()
    # late deliveries on the refused channel are dropped
    assert engine.receive(wire([event("/a", 1)])) == []


def test_a_reply_of_the_wrong_kind_is_ignored() -> None:
    engine = make()
    connected(engine)
    publish = only(engine.publish("/p", 1))
    reply: Message = {
        "channel": "/meta/unsubscribe",
        "id": publish["id"],
        "successful": True,
        "subscription": "/p",
    }
    assert engine.receive(wire([reply])) == []
    # the publish is still pending and gets its own reply
    [replied] = engine.receive(wire([publish_ok(publish)]))
    assert isinstance(replied, PublishReplied)


def test_a_late_unsubscribe_reply_keeps_a_channel_subscribed_again() -> None:
    engine = make()
    connected(engine)
    engine.receive(wire([subscribe_ok(only(engine.subscribe("/a")))]))
    unsubscribe = only(engine.unsubscribe("/a"))
    engine.receive(wire([subscribe_ok(only(engine.subscribe("/a")))]))
    reply: Message = {
        "channel": "/meta/unsubscribe",
        "id": unsubscribe["id"],
        "successful": True,
        "subscription": "/a",
    }
    engine.receive(wire([reply]))
    assert engine.confirmed_subscriptions == {"/a"}


def test_a_handshake_denied_with_a_401_reason_and_no_advice_reauthenticates() -> None:
    engine = make(can_reauthenticate=True)
    held = polling(engine)
    engine.receive(wire([unknown_client(held)]))
    engine.next_action()
    denied = handshake_denied(
        only(engine.handshake()), failure_reason="401::Request requires authentication"
    )
    denied.pop("advice", None)
    engine.receive(wire([denied]))
    assert isinstance(engine.next_action(), Reauthenticate)


def test_an_extension_can_drop_a_delivery_but_not_a_reply() -> None:
    class DropOdd(Extension):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def incoming(self, message: Message) -> bool | None:
            self.seen.append(message["channel"])
            return False if message["channel"] in ("/odd", "/meta/connect") else None

    later = DropOdd()
    dropper = DropOdd()
    engine = make(extensions=[later, dropper])  # incoming hooks run in reverse order
    connected(engine)
    engine.subscribe("/odd")
    engine.subscribe("/even")
    held = polling_connect(engine)
    events = engine.receive(wire([event("/odd", 1), event("/even", 2), connect_ok(held)]))
    [deliveries] = events
    assert isinstance(deliveries, Deliveries)
    assert [m["channel"] for m in deliveries.messages] == ["/even"]
    assert engine.state is State.CONNECTED  # the connect reply was still processed
    assert "/odd" not in later.seen  # a dropped message goes to no further hook


def polling_connect(engine: BayeuxEngine) -> Message:
    return only(engine.connect())


def test_the_first_unknown_client_after_an_outage_handshakes_at_once() -> None:
    engine = make()
    held = polling(engine)
    for _ in range(5):  # the network is down: connects fail, then handshakes do
        engine.request_failed(Request([held], 1.0, long_poll=True), TransportTimeoutError("x"))
        action = engine.next_action()
        if isinstance(action, Handshake):
            engine.request_failed(engine.handshake(), TransportTimeoutError("x"))
            break
        held = only(engine.connect())
    assert engine.failures >= 3
    # the server is back: it says the old session is gone
    events = exchange_handshake_then_unknown(engine)
    assert any(isinstance(e, SessionLost) for e in events)
    assert engine.next_action() == Handshake(0.0)


def exchange_handshake_then_unknown(engine: BayeuxEngine) -> list[Event]:
    engine.receive(wire([handshake_ok(only(engine.handshake()))]))
    return engine.receive(wire([unknown_client(only(engine.connect()))]))


def test_an_unanswered_handshake_fails_like_a_failed_request() -> None:
    engine = make()
    request = engine.handshake()
    assert engine.receive(wire([]), request) == []
    assert engine.state is State.UNCONNECTED
    assert engine.failures == 1


def test_an_unanswered_disconnect_closes() -> None:
    engine = make()
    connected(engine)
    request = engine.disconnect()
    assert request is not None
    engine.receive(wire([]), request)
    assert engine.state is State.DISCONNECTED


def test_an_unanswered_user_subscribe_fails_its_caller() -> None:
    engine = make()
    connected(engine)
    request = engine.subscribe("/a")
    assert request is not None
    events = engine.receive(wire([]), request)
    [failed] = [e for e in events if isinstance(e, SubscribeFailed)]
    assert failed.channel == "/a"
    assert not failed.automatic
    assert isinstance(failed.error, ProtocolError)
    assert engine.subscriptions == frozenset()


def test_messages_without_an_id_are_never_awaited() -> None:
    engine = make()
    connected(engine)
    assert engine.receive(wire([]), Request([{"channel": "/x", "data": 1}], 1.0)) == []
