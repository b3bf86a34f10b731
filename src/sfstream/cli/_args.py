"""Argument types the commands share (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "seconds"]


def positive_int(text: str) -> int:
    """A whole number above 0 (``--count``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, not {value}")
    return value


def seconds(text: str) -> float:
    """A duration in seconds, 0 or more (``--timeout``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds (0 or more), not {text}")
    return value
