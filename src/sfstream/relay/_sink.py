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

The relay hands :meth:`Sink.write` a list of :class:`RelayEvent`; a sink that sets
:attr:`Sink.takes_batches` gets a :class:`RelayBatch` instead: the same events as a sequence,
kept column by column (channels, replay ids, dates, payloads, uuids), so that neither the relay
nor the sink makes an object per event (at tens of thousands of events per second, the objects
and the garbage collector's passes over them cost as much as the write).

The relay treats every :class:`SinkError` the same way: it closes its Salesforce client, renews
its lease as soon as the engine answers again, and subscribes anew from :meth:`Sink.position`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat
from types import TracebackType
from typing import Any, ClassVar, Self, overload

from sfstream.exceptions import InvalidArgumentError, SfstreamError

__all__ = ["EventRefused", "Lease", "LeaseLost", "RelayBatch", "RelayEvent", "Sink", "SinkError"]


class SinkError(SfstreamError):
    """The engine behind a sink failed or refused a request (connection lost, script error)."""


class EventRefused(SinkError):
    """The engine refuses an event for good (larger than it takes in a message, for one).

    Nothing of the write from that event on was stored. A new subscription would bring the same
    event again, and skipping it would lose it: the relay stops with this error (a standby
    would meet it too) until the engine's limit or the event's channel changes.
    """


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


def _event_maker() -> Callable[[str, str, int, str, bytes, str | None], RelayEvent]:
    """A :class:`RelayEvent` constructor about twice as fast as the class: it fills the slots
    through their descriptors, without the frozen dataclass's ``object.__setattr__`` per field
    (the result is the same frozen, equal, hashable object)."""
    new = object.__new__
    slots: Mapping[str, Any] = vars(RelayEvent)
    org, channel, replay_id, date, payload, uuid_ = (
        slots[name].__set__
        for name in ("org", "channel", "replay_id", "date", "payload", "event_uuid")
    )

    def make(o: str, c: str, r: int, d: str, p: bytes, u: str | None, /) -> RelayEvent:
        event: RelayEvent = new(RelayEvent)
        org(event, o)
        channel(event, c)
        replay_id(event, r)
        date(event, d)
        payload(event, p)
        uuid_(event, u)
        return event

    return make


_make_event = _event_maker()


class RelayBatch(Sequence[RelayEvent]):
    """Events of one org, in order, held column by column: a sequence of :class:`RelayEvent`
    that makes each one only when asked for it.

    The relay builds one per write. A sink that sets :attr:`Sink.takes_batches` reads the
    columns directly; iterating (or indexing) gives :class:`RelayEvent` objects as usual.
    The columns are lists of equal length and must not be changed. The payloads are given as a
    list, or ``joined``: all of them one after the other, with the length of each (what the
    relay makes: one buffer instead of an object per event); either form is made from the
    other when asked for.
    """

    __slots__ = (
        "_joined",
        "_payloads",
        "channels",
        "dates",
        "event_uuids",
        "org",
        "replay_ids",
    )

    def __init__(
        self,
        org: str,
        channels: list[str],
        replay_ids: list[int],
        dates: list[str],
        payloads: list[bytes] | None,
        event_uuids: list[str | None],
        *,
        joined: tuple[bytes, list[int]] | None = None,
    ) -> None:
        if (payloads is None) == (joined is None):
            raise InvalidArgumentError(
                "a RelayBatch takes its payloads as a list or joined, not both"
            )
        count = len(payloads) if payloads is not None else len(joined[1])  # type: ignore[index]
        if not len(channels) == len(replay_ids) == len(dates) == count == len(event_uuids):
            raise InvalidArgumentError("the columns of a RelayBatch must have the same length")
        self.org = org
        """The org of every event (:attr:`RelayEvent.org`)."""
        self.channels = channels
        """:attr:`RelayEvent.channel` of each event."""
        self.replay_ids = replay_ids
        """:attr:`RelayEvent.replay_id` of each event."""
        self.dates = dates
        """:attr:`RelayEvent.date` of each event."""
        self.event_uuids = event_uuids
        """:attr:`RelayEvent.event_uuid` of each event."""
        self._payloads = payloads
        self._joined = joined

    @property
    def payloads(self) -> list[bytes]:
        """:attr:`RelayEvent.payload` of each event."""
        if self._payloads is None:
            assert self._joined is not None
            blob, lengths = self._joined
            view = memoryview(blob)
            ends = list(accumulate(lengths))
            self._payloads = [
                bytes(view[end - length : end]) for end, length in zip(ends, lengths, strict=True)
            ]
        return self._payloads

    def joined(self) -> tuple[bytes, list[int]]:
        """The payloads one after the other, and the length of each."""
        if self._joined is None:
            assert self._payloads is not None
            self._joined = (b"".join(self._payloads), list(map(len, self._payloads)))
        return self._joined

    @classmethod
    def of(cls, org: str, events: Sequence[RelayEvent]) -> RelayBatch:
        """The batch of ``events`` (their own org is not kept: ``org`` is every event's)."""
        return cls(
            org,
            [event.channel for event in events],
            [event.replay_id for event in events],
            [event.date for event in events],
            [event.payload for event in events],
            [event.event_uuid for event in events],
        )

    def __len__(self) -> int:
        return len(self.replay_ids)

    def __iter__(self) -> Iterator[RelayEvent]:
        return map(
            _make_event,
            repeat(self.org),
            self.channels,
            self.replay_ids,
            self.dates,
            self.payloads,
            self.event_uuids,
        )

    @overload
    def __getitem__(self, index: int) -> RelayEvent: ...

    @overload
    def __getitem__(self, index: slice) -> RelayBatch: ...

    def __getitem__(self, index: int | slice) -> RelayEvent | RelayBatch:
        if isinstance(index, slice):
            columns = (
                self.org,
                self.channels[index],
                self.replay_ids[index],
                self.dates[index],
            )
            if self._payloads is None and index.step in (None, 1):
                blob, lengths = self.joined()
                start, stop, _ = index.indices(len(lengths))
                first = sum(lengths[:start])
                part = lengths[start:stop]
                return RelayBatch(
                    *columns,
                    None,
                    self.event_uuids[index],
                    joined=(blob[first : first + sum(part)], part),
                )
            return RelayBatch(*columns, self.payloads[index], self.event_uuids[index])
        return _make_event(
            self.org,
            self.channels[index],
            self.replay_ids[index],
            self.dates[index],
            self.payloads[index],
            self.event_uuids[index],
        )

    def __repr__(self) -> str:
        return f"<RelayBatch of {len(self)} events of {self.org!r}>"


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
    #: True when :meth:`write` takes a :class:`RelayBatch` as its ``events`` (and reads its
    #: columns): the relay then hands over its batch as is. False: a list of
    #: :class:`RelayEvent`.
    takes_batches: ClassVar[bool] = False
    #: How many :meth:`write` calls the relay may have in flight at once. A sink that allows
    #: more than one applies them in call order, and a write that follows a failed one writes
    #: nothing (it fails too), so that no event is written after one that was not.
    pipeline_depth: int = 1

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
        later event of the batch, nor of a later write, is written) and :class:`SinkError` when
        the engine fails. Up to :attr:`pipeline_depth` calls may be in flight at once.
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
