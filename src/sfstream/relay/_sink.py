"""The sink seam of the relay: what an engine (Redis Streams, NATS JetStream, later Kafka) provides.

The relay owns the Salesforce subscription; a sink owns everything that lives in the engine: the
events, the position per channel and the lease that makes one relay the only writer of a channel
set. The relay never imports an engine; a sink never talks to Salesforce.

Rules every sink keeps:

* :meth:`Sink.write` stores each event **and** its channel's position in one atomic step in the
  engine, and only while the caller's lease (its fencing token) is still the current one. The
  position in the engine therefore advances if and only if the event is in the engine.
* :meth:`Sink.position` reads the position back from the engine (never from a local cache), so a
  standby that takes over resumes exactly after the last event the previous leader wrote.
* A write whose lease is no longer current raises :class:`LeaseLost` and writes nothing.
* A sink on an engine that can lose acknowledged writes (asynchronous replication) should
  refuse, with :class:`SinkError`, a write that finds a channel's position *below* the one it
  last read or wrote: the relay then subscribes again from the engine's position, and
  Salesforce sends the lost events again from its retention.

The relay treats every :class:`SinkError` the same way: it closes its Salesforce client, renews
its lease as soon as the engine answers again, and subscribes anew from :meth:`Sink.position`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from sfstream.exceptions import SfstreamError

__all__ = ["Lease", "LeaseLost", "RelayEvent", "Sink", "SinkError"]


class SinkError(SfstreamError):
    """The engine behind a sink failed or refused a request (connection lost, script error)."""


class LeaseLost(SinkError):
    """The caller's lease is no longer the current one: another relay holds the channel set.

    Nothing was written. The relay stops writing and goes back to standby.
    """


@dataclass(frozen=True, slots=True)
class RelayEvent:
    """One Salesforce event on its way into an engine."""

    org: str
    """Identifies the org (its id, or the configured name of the org) in keys and message ids."""
    channel: str
    """The subscribed channel, as the user wrote it (``/event/Order__e``, ``/topic/Acc?Type=X``)."""
    replay_id: int
    """The event's replay id (``data.event.replayId``)."""
    date: str
    """The event's own creation date, as in :class:`sfstream.ReplayMarker` (ISO or CDC epoch ms)."""
    payload: bytes
    """The whole Bayeux message as received, serialised as JSON (UTF-8)."""
    event_uuid: str | None = None
    """``data.event.EventUuid`` for platform events and CDC, when the message has one."""


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that the holder is, or was, the one active relay of a channel set."""

    name: str
    """The channel set the lease covers (its configured name)."""
    holder: str
    """Who holds it (host and process id, or a configured name): shown in metrics and logs."""
    token: int
    """The fencing token: strictly increasing each time the lease changes hands."""
    ttl: float
    """Seconds the lease stays valid after it was acquired or last renewed."""


class Sink(ABC):
    """An engine the relay writes into. Used as ``async with sink:`` (``open``/``close``)."""

    #: A short name for logs, metrics and the CLI (``"redis"``, ``"nats"``).
    kind: str = "sink"

    @abstractmethod
    async def open(self) -> None:
        """Connect to the engine and create what is missing (streams, buckets).

        Raises :class:`SinkError` with a clear message when the engine cannot be reached.
        """

    @abstractmethod
    async def close(self) -> None:
        """Close the connection. Idempotent. Does not release a lease (see :meth:`release`)."""

    @abstractmethod
    async def acquire(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Take the lease of channel set ``name`` if it is free or expired; ``None`` when another
        holder has it. A new lease always has a larger ``token`` than any earlier one."""

    @abstractmethod
    async def renew(self, lease: Lease) -> Lease:
        """Extend ``lease`` by its TTL. Raises :class:`LeaseLost` when it is no longer current."""

    @abstractmethod
    async def release(self, lease: Lease) -> None:
        """Give the lease up (graceful shutdown), only if it is still current; never raises
        :class:`LeaseLost`."""

    @abstractmethod
    async def position(self, org: str, channel: str) -> int | None:
        """The replay id of the last event written for ``channel`` of ``org``, read from the
        engine; ``None`` when nothing was written yet."""

    @abstractmethod
    async def write(self, lease: Lease, events: Sequence[RelayEvent]) -> None:
        """Append ``events`` (in order; they may span several channels) with their positions,
        each event and its position in one atomic step, all under ``lease``.

        An event whose replay id is not above its channel's stored position is skipped (it is
        already in the engine). Raises :class:`LeaseLost` if the lease is no longer current (no
        later event of the batch is written) and :class:`SinkError` when the engine fails.
        """

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
