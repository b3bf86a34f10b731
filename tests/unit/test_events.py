"""What the engine emits: frozen, slotted values."""

from __future__ import annotations

import dataclasses

import pytest

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
from sfstream.exceptions import ServerError

ERROR = ServerError("refused", {"channel": "/meta/subscribe", "error": "403::x"})
EVENTS: list[Event] = [
    Deliveries([{"channel": "/a", "data": 1}]),
    HandshakeSucceeded("cid", {"channel": "/meta/handshake", "successful": True}),
    SessionLost("gone"),
    SubscribeSucceeded("/a", automatic=True),
    SubscribeFailed("/a", ERROR, automatic=False),
    UnsubscribeSucceeded("/a"),
    UnsubscribeFailed("/a", ERROR),
    PublishReplied("7", {"channel": "/a", "successful": True}, None),
]


@pytest.mark.parametrize("value", EVENTS, ids=lambda value: type(value).__name__)
def test_events_are_frozen_slotted_values(value: Event) -> None:
    assert isinstance(value, Event)
    assert not hasattr(value, "__dict__")
    field = dataclasses.fields(value)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, field, None)
    assert value == dataclasses.replace(value)  # type: ignore[type-var]


def test_request() -> None:
    request = Request([{"channel": "/meta/connect"}], 30.0)
    assert request.long_poll is False
    assert Request([], 1.0, long_poll=True).long_poll
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.timeout = 1.0  # type: ignore[misc]


def test_event_base_has_no_state() -> None:
    assert Event.__slots__ == ()
