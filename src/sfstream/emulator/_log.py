"""The org's event log: every durable event, per channel, with its replay id and date.

Each channel keeps its events in replay-id order with parallel lists of ids, so "the events
after replay id N" is a bisection. An event's ``data`` is encoded to JSON once, when it is
stored; a connect reply is assembled by joining those bytes. Events older than the channel's
retention (24 h for PushTopic and generic streaming, 72 h for platform events and Change Data
Capture) are purged lazily against the injectable clock. The log outlives an
:class:`~sfstream.emulator.Emulator`: pass the same :class:`~sfstream.emulator.OrgState` (which
holds it) to a new one, or let a state file carry it across processes.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import Any, Final

from sfstream.emulator._json import dumps, loads

__all__ = [
    "DAY",
    "ChannelLog",
    "EventLog",
    "StoredEvent",
    "is_high_volume",
]

DAY: Final = 24 * 3600.0

#: Encoding variants of an event for older API versions (see :meth:`StoredEvent.encoded_for`).
VARIANT_CURRENT: Final = 0
VARIANT_BEFORE_52: Final = 1  # no data.event.EventUuid, no EventApiName
VARIANT_BEFORE_55: Final = 2  # no EventApiName


def is_high_volume(channel: str) -> bool:
    """Platform events, custom channels and CDC are kept 72 h; PushTopic and generic 24 h."""
    return not channel.startswith(("/topic/", "/u/"))


class StoredEvent:
    """One stored event: its replay id, its date, and its ``data`` as JSON bytes.

    Only the bytes are kept (a backlog of a million events must fit in memory); ``data``
    decodes them again when asked, unless ``keep`` holds on to the dict (PushTopic events do,
    for subscription filters). ``user_ids`` restricts a generic-streaming event to some users
    (``None`` = everybody).
    """

    __slots__ = ("_data", "_variants", "encoded", "replay_id", "time", "user_ids")

    def __init__(
        self,
        replay_id: int,
        time: float,
        data: dict[str, Any],
        user_ids: frozenset[str] | None = None,
        *,
        keep: bool = False,
    ) -> None:
        self.replay_id = replay_id
        self.time = time
        self.user_ids = user_ids
        self.encoded = dumps(data)
        self._data = data if keep else None
        self._variants: dict[int, bytes] | None = None

    @property
    def data(self) -> dict[str, Any]:
        """The event's ``data`` (a fresh copy unless the event keeps its dict)."""
        if self._data is not None:
            return self._data
        value: dict[str, Any] = loads(self.encoded)
        return value

    def encoded_for(self, variant: int) -> bytes:
        """The JSON of ``data`` as an endpoint of an older API version sends it."""
        if variant == VARIANT_CURRENT:
            return self.encoded
        if self._variants is None:
            self._variants = {}
        cached = self._variants.get(variant)
        if cached is None:
            data = self.data
            event = dict(data.get("event", {}))
            event.pop("EventApiName", None)
            if variant == VARIANT_BEFORE_52:
                event.pop("EventUuid", None)
            cached = dumps({**data, "event": event})
            self._variants[variant] = cached
        return cached

    def __repr__(self) -> str:
        return f"StoredEvent(replay_id={self.replay_id}, time={self.time!r})"


class ChannelLog:
    """The retained events of one channel, oldest first."""

    __slots__ = (
        "channel",
        "events",
        "ids",
        "keep_data",
        "last_id",
        "purged_through",
        "retention",
    )

    def __init__(self, channel: str, retention: float) -> None:
        self.channel = channel
        self.retention = retention
        #: PushTopic events keep their dicts: filtered subscriptions read ``sobject``.
        self.keep_data = channel.startswith("/topic/")
        self.ids: list[int] = []
        self.events: list[StoredEvent] = []
        #: The replay id given to the newest event ever stored (0 before the first).
        self.last_id = 0
        #: The newest replay id that retention has purged (0 when nothing was purged).
        self.purged_through = 0

    def append(
        self, now: float, data: dict[str, Any], user_ids: frozenset[str] | None = None
    ) -> StoredEvent:
        """Store ``data`` as the next event; ``data["event"]["replayId"]`` is filled in."""
        replay_id = self.last_id + 1
        event = dict(data.get("event", {}))
        event["replayId"] = replay_id
        stored = StoredEvent(
            replay_id, now, {**data, "event": event}, user_ids, keep=self.keep_data
        )
        self.ids.append(replay_id)
        self.events.append(stored)
        self.last_id = replay_id
        return stored

    def restore(self, stored: StoredEvent) -> None:
        """Put back an event read from a state file (ids must arrive in increasing order)."""
        if self.ids and stored.replay_id <= self.ids[-1]:
            return
        self.ids.append(stored.replay_id)
        self.events.append(stored)
        self.last_id = max(self.last_id, stored.replay_id)

    def purge(self, now: float) -> int:
        """Drop events older than the retention; returns how many were dropped."""
        cutoff = now - self.retention
        events = self.events
        count = 0
        while count < len(events) and events[count].time < cutoff:
            count += 1
        if count:
            self.purged_through = max(self.purged_through, self.ids[count - 1])
            del self.ids[:count]
            del self.events[:count]
        return count

    def index_after(self, replay_id: int) -> int:
        """Position of the first retained event with a replay id greater than ``replay_id``."""
        return bisect_right(self.ids, replay_id)

    def is_valid_replay_id(self, replay_id: int) -> bool:
        """True when "the events after ``replay_id``" can be served without a gap.

        The id must name an event this channel gave out that is still retained, or the newest
        id given out (which may have been purged only if nothing came after it; then it is
        not valid either).
        """
        return self.purged_through < replay_id <= self.last_id

    def __len__(self) -> int:
        return len(self.events)

    def __repr__(self) -> str:
        return (
            f"ChannelLog({self.channel!r}, retained={len(self.events)}, "
            f"last_id={self.last_id}, purged_through={self.purged_through})"
        )


class EventLog:
    """Every channel's log, created on first use with the retention its kind calls for."""

    def __init__(self, *, retention: float = DAY, high_volume_retention: float = 3 * DAY) -> None:
        self.retention = retention
        self.high_volume_retention = high_volume_retention
        self._logs: dict[str, ChannelLog] = {}
        #: Called with the log and the event after every append (the server wakes subscribers;
        #: the state file journals it).
        self.listeners: list[Callable[[ChannelLog, StoredEvent], None]] = []

    def configure(self, *, retention: float, high_volume_retention: float) -> None:
        """Set the retentions (an emulator does this when it starts with this log)."""
        self.retention = retention
        self.high_volume_retention = high_volume_retention
        for log in self._logs.values():
            log.retention = self._retention_for(log.channel)

    def _retention_for(self, channel: str) -> float:
        return self.high_volume_retention if is_high_volume(channel) else self.retention

    def channel(self, name: str) -> ChannelLog:
        """The log of ``name``, created empty if it has none yet."""
        log = self._logs.get(name)
        if log is None:
            log = self._logs[name] = ChannelLog(name, self._retention_for(name))
        return log

    def get(self, name: str) -> ChannelLog | None:
        """The log of ``name`` if it has one."""
        return self._logs.get(name)

    def append(
        self,
        channel: str,
        now: float,
        data: dict[str, Any],
        user_ids: frozenset[str] | None = None,
    ) -> StoredEvent:
        """Store an event on ``channel`` and tell the listeners."""
        log = self.channel(channel)
        stored = log.append(now, data, user_ids)
        for listener in self.listeners:
            listener(log, stored)
        return stored

    def purge(self, now: float) -> int:
        """Apply retention to every channel; returns how many events were dropped."""
        return sum(log.purge(now) for log in self._logs.values())

    def __iter__(self) -> Iterator[ChannelLog]:
        return iter(list(self._logs.values()))

    def __len__(self) -> int:
        return sum(len(log) for log in self._logs.values())

    def __repr__(self) -> str:
        return f"EventLog(channels={len(self._logs)}, events={len(self)})"
