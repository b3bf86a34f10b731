"""Wire shapes of Bayeux 1.0 messages, as TypedDicts.

Messages stay plain dicts from the codec to the user: they serialise directly and cost nothing
to build. The TypedDicts document and type-check them. Pure module: no IO.
"""

from __future__ import annotations

from typing import Any, Final, Literal, NotRequired, TypedDict

__all__ = [
    "BAYEUX_VERSION",
    "META_CONNECT",
    "META_DISCONNECT",
    "META_HANDSHAKE",
    "META_SUBSCRIBE",
    "META_UNSUBSCRIBE",
    "AdviceDict",
    "ConnectRequest",
    "DisconnectRequest",
    "EventMessage",
    "HandshakeRequest",
    "Message",
    "MetaReply",
    "PublishRequest",
    "Reconnect",
    "SubscribeRequest",
    "UnsubscribeRequest",
]

#: The protocol version every handshake names.
BAYEUX_VERSION: Final = "1.0"

META_HANDSHAKE: Final = "/meta/handshake"
META_CONNECT: Final = "/meta/connect"
META_SUBSCRIBE: Final = "/meta/subscribe"
META_UNSUBSCRIBE: Final = "/meta/unsubscribe"
META_DISCONNECT: Final = "/meta/disconnect"

#: Values of ``advice.reconnect``.
Reconnect = Literal["retry", "handshake", "none"]


class AdviceDict(TypedDict, total=False):
    """``advice``: how the server wants the client to go on."""

    reconnect: str
    """``retry``, ``handshake`` or ``none``."""
    interval: int
    """Milliseconds to wait after a connect reply before the next connect."""
    timeout: int
    """Milliseconds the server holds a connect (from the client: a request for that hold)."""
    maxInterval: int
    """Milliseconds the server keeps a session with no connect pending (CometD)."""
    hosts: list[str]
    """Alternative servers (rare)."""


class Message(TypedDict, total=False):
    """Any Bayeux message, sent or received. Only ``channel`` is always present."""

    channel: str
    id: str
    clientId: str
    successful: bool
    error: str
    advice: AdviceDict
    ext: dict[str, Any]
    data: Any
    subscription: str | list[str]
    connectionType: str
    supportedConnectionTypes: list[str]
    version: str
    minimumVersion: str
    timestamp: str


class HandshakeRequest(TypedDict):
    """``/meta/handshake`` as the client sends it."""

    channel: str
    id: str
    version: str
    supportedConnectionTypes: list[str]
    minimumVersion: NotRequired[str]
    advice: NotRequired[AdviceDict]
    ext: NotRequired[dict[str, Any]]


class ConnectRequest(TypedDict):
    """``/meta/connect`` as the client sends it."""

    channel: str
    id: str
    clientId: str
    connectionType: str
    advice: NotRequired[AdviceDict]
    ext: NotRequired[dict[str, Any]]


class SubscribeRequest(TypedDict):
    """``/meta/subscribe`` as the client sends it."""

    channel: str
    id: str
    clientId: str
    subscription: str
    ext: NotRequired[dict[str, Any]]


class UnsubscribeRequest(TypedDict):
    """``/meta/unsubscribe`` as the client sends it."""

    channel: str
    id: str
    clientId: str
    subscription: str
    ext: NotRequired[dict[str, Any]]


class DisconnectRequest(TypedDict):
    """``/meta/disconnect`` as the client sends it."""

    channel: str
    id: str
    clientId: str
    ext: NotRequired[dict[str, Any]]


class PublishRequest(TypedDict):
    """A publish as the client sends it."""

    channel: str
    id: str
    clientId: str
    data: Any
    ext: NotRequired[dict[str, Any]]


class MetaReply(TypedDict):
    """The server's reply to a meta request (or a publish)."""

    channel: str
    successful: bool
    id: NotRequired[str]
    clientId: NotRequired[str]
    error: NotRequired[str]
    advice: NotRequired[AdviceDict]
    ext: NotRequired[dict[str, Any]]
    subscription: NotRequired[str | list[str]]
    version: NotRequired[str]
    minimumVersion: NotRequired[str]
    supportedConnectionTypes: NotRequired[list[str]]


class EventMessage(TypedDict):
    """A delivered event: what ``receive()`` returns."""

    channel: str
    data: Any
    id: NotRequired[str]
    ext: NotRequired[dict[str, Any]]
