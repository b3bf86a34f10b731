"""What the engine hands its driver: requests to send and events that happened.

All are frozen dataclasses; do not subclass them. Pure module: no IO.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfstream.bayeux._messages import Message
from sfstream.exceptions import ServerError, SfstreamError

__all__ = [
    "Deliveries",
    "Event",
    "HandshakeSucceeded",
    "PublishReplied",
    "Request",
    "SessionLost",
    "SubscribeFailed",
    "SubscribeSucceeded",
    "UnsubscribeFailed",
    "UnsubscribeSucceeded",
]


@dataclass(frozen=True, slots=True)
class Request:
    """A batch of messages for one HTTP request.

    ``timeout`` is how long the transport should wait for the reply, in seconds.
    ``long_poll`` marks the held ``/meta/connect``; a transport keeps one lane for it and one for
    everything else, so a client never has more than two requests in flight.
    """

    messages: list[Message]
    timeout: float
    long_poll: bool = False


class Event:
    """Base class of engine events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Deliveries(Event):
    """Messages published on subscribed channels, in the order they arrived."""

    messages: list[Message]


@dataclass(frozen=True, slots=True)
class HandshakeSucceeded(Event):
    """A new session began; every wanted subscription must be made again."""

    client_id: str
    reply: Message


@dataclass(frozen=True, slots=True)
class SessionLost(Event):
    """The server forgot the session (unknown client, or it sent ``/meta/disconnect``)."""

    reason: str


@dataclass(frozen=True, slots=True)
class SubscribeSucceeded(Event):
    """The server confirmed a subscription. ``automatic`` marks a resubscription."""

    channel: str
    automatic: bool


@dataclass(frozen=True, slots=True)
class SubscribeFailed(Event):
    """The server refused a subscription, or its request failed.

    ``automatic`` marks a resubscription the engine made after a new handshake.
    """

    channel: str
    error: SfstreamError
    automatic: bool


@dataclass(frozen=True, slots=True)
class UnsubscribeSucceeded(Event):
    """The server confirmed an unsubscription."""

    channel: str


@dataclass(frozen=True, slots=True)
class UnsubscribeFailed(Event):
    """The server refused an unsubscription."""

    channel: str
    error: ServerError


@dataclass(frozen=True, slots=True)
class PublishReplied(Event):
    """The server answered a publish; ``error`` is set when it refused it."""

    message_id: str
    reply: Message
    error: ServerError | None
