"""Relay Salesforce events into an engine users already run (Redis Streams, NATS JetStream).

One active relay per channel set, a standby that takes over, the position kept in the engine
next to the events. Engines are optional extras, imported lazily: ``import sfstream.relay`` never
imports redis or nats.
"""

from __future__ import annotations

from sfstream.relay._sink import Lease, LeaseLost, RelayEvent, Sink, SinkError

__all__ = ["Lease", "LeaseLost", "RelayEvent", "Sink", "SinkError"]
