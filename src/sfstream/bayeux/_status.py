"""Status events: what a client reports about its connection, for logging and alerting.

Pass ``on_status=callback`` to a client; the callback gets a :class:`Status` for every change
below, synchronously, from the client's own task (keep it quick; it must not raise). The
counts of each kind are also kept in ``client.stats``. Pure module: no IO.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

__all__ = ["Status", "StatusCallback", "StatusKind", "StatusStats"]


class StatusKind(Enum):
    """What happened."""

    #: The first session is up: ``open()`` succeeded.
    CONNECTED = "connected"
    #: A request failed or was refused: the client is retrying (``detail`` says why).
    CONNECTION_LOST = "connection lost"
    #: The server forgot the session (or ended it): a new handshake follows.
    SESSION_LOST = "session lost"
    #: The connection works again after it was lost (after a new session, every subscription
    #: was made again first).
    RECONNECTED = "reconnected"
    #: New credentials were fetched after the server refused the old ones.
    REAUTHENTICATED = "reauthenticated"
    #: ``max_pending_count`` messages wait: polling is paused.
    PAUSED = "paused"
    #: The consumer caught up: polling resumed.
    RESUMED = "resumed"
    #: A replay id was refused; the subscription fell back to another replay option.
    REPLAY_FALLBACK = "replay fallback"
    #: A received message carries no usable replay marker; it was delivered, not stored.
    REPLAY_MARKER_MISSING = "replay marker missing"
    #: The client left a connection type for the next one it prefers (``detail`` says which
    #: and why): a WebSocket upgrade or socket failed, or the server does not offer it.
    FALLBACK = "fallback"
    #: A subscription could not be made again after a new session.
    RESUBSCRIBE_FAILED = "resubscribe failed"
    #: A delivery on a channel nobody subscribed to was dropped (counted, never reported).
    DELIVERY_DROPPED = "delivery dropped"
    #: Events replayed by a gap-safe resubscription were skipped: they were created (by the
    #: server's clock) before the subscription took effect.
    EVENTS_SKIPPED = "events skipped"
    #: The client stopped for good; ``receive()`` raises the error.
    STOPPED = "stopped"
    #: The client was closed.
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Status:
    """One status change. ``channel`` is set for per-channel events."""

    kind: StatusKind
    detail: str = ""
    channel: str | None = None


#: The ``on_status`` callback: called with each :class:`Status` as it happens.
StatusCallback = Callable[[Status], None]


class StatusStats(Counter[StatusKind]):
    """How many times each :class:`StatusKind` happened (``stats[StatusKind.RECONNECTED]``)."""
