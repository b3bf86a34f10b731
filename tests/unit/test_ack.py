"""CometD's acknowledgement extension, through the engine (no IO)."""

from __future__ import annotations

from typing import Any

import pytest

from sfstream.bayeux._ack import AckExtension
from sfstream.bayeux._engine import BayeuxEngine
from sfstream.bayeux._events import Deliveries
from sfstream.bayeux._messages import Message
from sfstream.exceptions import TransportTimeoutError
from tests.unit._helpers import connect_ok, handshake_ok, wire


def handshaken(ack: AckExtension, reply_ext: Any) -> BayeuxEngine:
    engine = BayeuxEngine(extensions=[ack])
    handshake = engine.handshake().messages[0]
    assert handshake["ext"]["ack"] is True
    reply = handshake_ok(handshake)
    if reply_ext is None:
        del reply["ext"]
    else:
        reply["ext"] = reply_ext
    engine.receive(wire([reply]))
    return engine


def test_the_handshake_asks_for_acks_and_keeps_its_other_ext() -> None:
    engine = BayeuxEngine(extensions=[AckExtension()], handshake_ext={"replay": True})
    assert engine.handshake().messages[0]["ext"] == {"replay": True, "ack": True}


@pytest.mark.parametrize(
    ("reply_ext", "enabled", "batch"),
    [
        ({"ack": True}, True, 0),
        ({"ack": {"enabled": True, "batch": 7}}, True, 7),
        ({"ack": {"enabled": True, "batch": "7"}}, True, 0),
        ({"ack": {"enabled": False}}, False, 0),
        ({"ack": False}, False, 0),
        ({"other": 1}, False, 0),
        (None, False, 0),
    ],
)
def test_the_handshake_reply_says_whether_the_server_acknowledges(
    reply_ext: Any, enabled: bool, batch: int
) -> None:
    ack = AckExtension()
    engine = handshaken(ack, reply_ext)
    assert (ack.enabled, ack.batch) == (enabled, batch)
    connect = engine.connect().messages[0]
    if enabled:
        assert connect["ext"] == {"ack": batch}
    else:
        assert "ext" not in connect


def test_a_refused_handshake_enables_nothing() -> None:
    ack = AckExtension()
    engine = BayeuxEngine(extensions=[ack])
    request = engine.handshake().messages[0]
    engine.receive(
        wire(
            [
                {
                    "channel": "/meta/handshake",
                    "id": request["id"],
                    "successful": False,
                    "ext": {"ack": True},
                }
            ]
        )
    )
    assert not ack.enabled


def test_connects_acknowledge_the_last_batch_received() -> None:
    ack = AckExtension()
    engine = handshaken(ack, {"ack": True})
    first = engine.connect().messages[0]
    assert first["ext"] == {"ack": 0}
    delivery: Message = {"channel": "/a", "data": {"n": 1}}
    reply = connect_ok(first)
    reply["ext"] = {"ack": 1}
    events = engine.receive(wire([reply, delivery]))
    assert isinstance(events[0], Deliveries)
    assert ack.batch == 1
    assert engine.connect().messages[0]["ext"] == {"ack": 1}
    assert repr(ack) == "<AckExtension enabled=True batch=1>"


@pytest.mark.parametrize("reply_ack", [True, "2", None])
def test_a_connect_reply_without_a_batch_number_keeps_the_last_one(reply_ack: Any) -> None:
    ack = AckExtension()
    engine = handshaken(ack, {"ack": True})
    reply = connect_ok(engine.connect().messages[0])
    if reply_ack is not None:
        reply["ext"] = {"ack": reply_ack}
    engine.receive(wire([reply]))
    assert ack.batch == 0


def test_a_lost_connect_reply_is_acknowledged_again_by_the_next_connect() -> None:
    ack = AckExtension()
    engine = handshaken(ack, {"ack": True})
    reply = connect_ok(engine.connect().messages[0])
    reply["ext"] = {"ack": 4}
    engine.receive(wire([reply]))
    lost = engine.connect()
    engine.request_failed(lost, TransportTimeoutError("lost"))
    assert engine.connect().messages[0]["ext"] == {"ack": 4}


def test_a_refused_connect_reply_does_not_move_the_batch() -> None:
    ack = AckExtension()
    engine = handshaken(ack, {"ack": True})
    request = engine.connect().messages[0]
    engine.receive(
        wire(
            [
                {
                    "channel": "/meta/connect",
                    "id": request["id"],
                    "successful": False,
                    "error": "402::Unknown client",
                    "ext": {"ack": 9},
                }
            ]
        )
    )
    assert ack.batch == 0


def test_a_new_handshake_starts_over() -> None:
    ack = AckExtension()
    engine = handshaken(ack, {"ack": {"enabled": True, "batch": 3}})
    assert ack.batch == 3
    engine.handshake()
    assert (ack.enabled, ack.batch) == (False, 0)
