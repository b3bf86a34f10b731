"""Relay Salesforce events into an engine users already run (Redis Streams, NATS JetStream).

One active relay per channel set, a standby that takes over, the position kept in the engine
next to the events. Engines are optional extras, imported lazily: ``import sfstream.relay`` never
imports redis, nats or prometheus-client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sfstream.relay._runner import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LEASE_TTL,
    ChannelSet,
    ClientFactory,
    Relay,
    Role,
    SinkReplayStorage,
    run_relays,
    to_relay_event,
)
from sfstream.relay._sink import EventRefused, Lease, LeaseLost, RelayEvent, Sink, SinkError

if TYPE_CHECKING:
    from sfstream.relay._metrics import OpsServer, RelayMetrics
    from sfstream.relay._nats import NatsSink, channel_subject, subject_channel
    from sfstream.relay._redis import RedisSink

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_LEASE_TTL",
    "ChannelSet",
    "ClientFactory",
    "EventRefused",
    "Lease",
    "LeaseLost",
    "NatsSink",
    "OpsServer",
    "RedisSink",
    "Relay",
    "RelayEvent",
    "RelayMetrics",
    "Role",
    "Sink",
    "SinkError",
    "SinkReplayStorage",
    "channel_subject",
    "run_relays",
    "subject_channel",
    "to_relay_event",
]

_LAZY = {
    "NatsSink": "sfstream.relay._nats",
    "channel_subject": "sfstream.relay._nats",
    "subject_channel": "sfstream.relay._nats",
    "RedisSink": "sfstream.relay._redis",
    "RelayMetrics": "sfstream.relay._metrics",
    "OpsServer": "sfstream.relay._metrics",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
