"""Backoff strategies: how long to wait before the n-th retry.

Each strategy is a small frozen value with a pure ``compute(attempt)``. Randomness is injected as
a callable returning floats in ``[0, 1)``; without one the strategies are deterministic. Pure
module: no IO, no clock, no ``random``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sfstream.exceptions import InvalidArgumentError

__all__ = ["Backoff", "ConstantBackoff", "ExponentialBackoff"]


def _half() -> float:
    return 0.5


class Backoff(Protocol):
    """Anything that turns an attempt number into a delay in seconds."""

    def compute(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1 for the first retry; 0 means at once)."""
        ...


@dataclass(frozen=True, slots=True)
class ConstantBackoff:
    """The same delay before every retry (and none for attempt 0)."""

    delay: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.delay < float("inf"):
            raise InvalidArgumentError("delay must be a finite number of seconds, not negative")

    def compute(self, attempt: int) -> float:
        return 0.0 if attempt <= 0 else self.delay


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """Delays that grow by ``factor`` from ``initial`` up to ``maximum``, with jitter.

    The un-jittered delay for attempt ``n >= 1`` is ``min(maximum, initial * factor**(n-1))``.
    ``jitter`` is the fraction of it that is random: with ``jitter=0.5`` the delay lies in
    ``(d/2, d]``, which spreads the retries of many clients without ever retrying at once.
    ``random`` returns floats in ``[0, 1)`` (``random.random`` in production); the default
    always returns 0.5, so a strategy built without it is deterministic.
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.5
    random: Callable[[], float] = field(default=_half, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not (0 <= self.initial < float("inf") and 0 <= self.maximum < float("inf")):
            raise InvalidArgumentError("initial and maximum must be finite and not negative")
        if not 1 <= self.factor < float("inf"):
            raise InvalidArgumentError("factor must be a finite number, at least 1")
        if not 0 <= self.jitter <= 1:
            raise InvalidArgumentError("jitter must be between 0 and 1")

    def compute(self, attempt: int) -> float:
        if attempt <= 0:
            return 0.0
        try:
            delay = min(self.maximum, self.initial * self.factor ** (attempt - 1))
        except OverflowError:
            delay = self.maximum
        return delay * (1.0 - self.jitter * self.random())
