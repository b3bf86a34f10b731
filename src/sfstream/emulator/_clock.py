"""Clocks for the emulator: wall-clock time for event dates, retention and token lifetimes.

Everything in the org that depends on the date (``CreatedDate``, ``commitTimestamp``, what the
24 h / 72 h retention purges, JWT ``exp`` checks, token lifetimes) reads one injectable clock, so
a test can age events by days in microseconds. Long-poll holds and Bayeux session expiry are
network timings and use the event loop's monotonic clock instead.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What the emulator needs from a clock: the current time and a way to move it forward."""

    def time(self) -> float:
        """Seconds since the Unix epoch (UTC)."""
        ...

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward (events age, tokens and JWTs expire)."""
        ...


def _epoch(value: float | datetime) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a naive datetime is ambiguous: pass an aware datetime (UTC)")
        return value.timestamp()
    return float(value)


class SystemClock:
    """The real wall clock, plus an offset that :meth:`advance` adds to."""

    def __init__(self, offset: float = 0.0) -> None:
        self._offset = float(offset)

    def time(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._offset += seconds

    def __repr__(self) -> str:
        return f"SystemClock(offset={self._offset!r})"


class ManualClock:
    """A clock that only moves when told to: ``advance(seconds)`` or ``set(when)``.

    It starts at ``start`` (epoch seconds or an aware datetime), by default the current time.
    """

    def __init__(self, start: float | datetime | None = None) -> None:
        self._now = time.time() if start is None else _epoch(start)

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._now += seconds

    def set(self, when: float | datetime) -> None:
        """Jump to ``when``; it may not be earlier than the current time."""
        target = _epoch(when)
        if target < self._now:
            raise ValueError("a clock only moves forward")
        self._now = target

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"
