"""A Bayeux 1.0 (CometD) client for asyncio, usable against any Bayeux server.

The protocol itself is a sans-IO engine (:class:`BayeuxEngine`) with a state table, a codec and
one function that decides reconnects; :class:`BayeuxClient` drives it over a
:class:`Transport` (:class:`LongPollingTransport` or :class:`WebSocketTransport` on aiohttp, or
:class:`MockTransport` in tests). :class:`AckExtension` is CometD's message acknowledgement.
"""

from __future__ import annotations

from sfstream.bayeux._ack import AckExtension
from sfstream.bayeux._advice import (
    DEFAULT_ADVICE,
    Action,
    Advice,
    Connect,
    Handshake,
    Operation,
    Outcome,
    Reauthenticate,
    ReconnectPolicy,
    Stop,
    decide,
)
from sfstream.bayeux._aiohttp import LongPollingTransport
from sfstream.bayeux._backoff import Backoff, ConstantBackoff, ExponentialBackoff
from sfstream.bayeux._channels import (
    is_meta,
    is_service,
    is_wildcard,
    matches,
    validate_channel,
    validate_subscription,
)
from sfstream.bayeux._client import BayeuxClient
from sfstream.bayeux._codec import JSONDumps, JSONLoads, decode, encode
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
from sfstream.bayeux._messages import (
    AdviceDict,
    ConnectRequest,
    DisconnectRequest,
    EventMessage,
    HandshakeRequest,
    Message,
    MetaReply,
    PublishRequest,
    SubscribeRequest,
    UnsubscribeRequest,
)
from sfstream.bayeux._state import TRANSITIONS, Input, State, StateMachine
from sfstream.bayeux._status import Status, StatusCallback, StatusKind, StatusStats
from sfstream.bayeux._transport import MockTransport, Transport
from sfstream.bayeux._websocket import WebSocketTransport

__all__ = [
    "DEFAULT_ADVICE",
    "LONG_POLLING",
    "TRANSITIONS",
    "WEBSOCKET",
    "AckExtension",
    "Action",
    "Advice",
    "AdviceDict",
    "Backoff",
    "BayeuxClient",
    "BayeuxEngine",
    "Connect",
    "ConnectRequest",
    "ConstantBackoff",
    "Deliveries",
    "DisconnectRequest",
    "Event",
    "EventMessage",
    "ExponentialBackoff",
    "Extension",
    "Handshake",
    "HandshakeRequest",
    "HandshakeSucceeded",
    "Input",
    "JSONDumps",
    "JSONLoads",
    "LongPollingTransport",
    "Message",
    "MetaReply",
    "MockTransport",
    "Operation",
    "Outcome",
    "PublishReplied",
    "PublishRequest",
    "Reauthenticate",
    "ReconnectPolicy",
    "Request",
    "SessionLost",
    "State",
    "StateMachine",
    "Status",
    "StatusCallback",
    "StatusKind",
    "StatusStats",
    "Stop",
    "SubscribeFailed",
    "SubscribeRequest",
    "SubscribeSucceeded",
    "Transport",
    "UnsubscribeFailed",
    "UnsubscribeRequest",
    "UnsubscribeSucceeded",
    "WebSocketTransport",
    "decide",
    "decode",
    "encode",
    "is_meta",
    "is_service",
    "is_wildcard",
    "matches",
    "validate_channel",
    "validate_subscription",
]
