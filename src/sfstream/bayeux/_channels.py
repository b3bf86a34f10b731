"""Channel names: validation, meta and service channels, wildcard matching.

A channel is ``/`` followed by segments; a subscription may end in ``*`` (exactly one more
segment) or ``**`` (one or more). Pure module: no IO.
"""

from __future__ import annotations

import re
from functools import lru_cache

from sfstream.exceptions import InvalidArgumentError

__all__ = [
    "is_meta",
    "is_service",
    "is_wildcard",
    "matches",
    "validate_channel",
    "validate_subscription",
]

# Bayeux allows alphanumerics and "- _ ! ~ ( ) $ @" in segments. Salesforce adds "." (API
# versions never appear in channels, but event names do not need it either) and PushTopic filter
# queries after "?" (``/topic/X?Type=Technology Partner``), which we accept after the path.
_SEGMENT = r"[A-Za-z0-9\-_!~()$@.]+"
_CHANNEL_RE = re.compile(rf"^(?:/{_SEGMENT})+(?:\?.*)?$", re.DOTALL)
_PATTERN_RE = re.compile(rf"^(?:/{_SEGMENT})*/(?:\*\*?)$")


def is_meta(channel: str) -> bool:
    """True for ``/meta/...`` protocol channels."""
    return channel.startswith("/meta/")


def is_service(channel: str) -> bool:
    """True for ``/service/...`` channels (request/response, never broadcast)."""
    return channel.startswith("/service/")


def is_wildcard(channel: str) -> bool:
    """True when the name ends in ``/*`` or ``/**``."""
    return channel.endswith(("/*", "/**"))


def validate_channel(channel: object) -> str:
    """Return ``channel`` if it is a valid concrete channel name.

    Raises:
        InvalidArgumentError: the name is not valid (a ValueError).
        TypeError: it is not a str.
    """
    if not isinstance(channel, str):
        raise TypeError(f"a channel name must be a str, not {type(channel).__name__}")
    if not _CHANNEL_RE.fullmatch(channel):
        raise InvalidArgumentError(
            f"invalid channel name {channel!r}: expected '/' followed by segments "
            "of letters, digits and - _ ! ~ ( ) $ @ ."
        )
    return channel


def validate_subscription(channel: object) -> str:
    """Return ``channel`` if it can be subscribed to (a channel or a trailing wildcard).

    Meta channels are refused: the protocol reserves them.

    Raises:
        InvalidArgumentError: the name is not valid, or is a meta channel (a ValueError).
        TypeError: it is not a str.
    """
    if not (isinstance(channel, str) and _PATTERN_RE.fullmatch(channel)):
        validate_channel(channel)
    assert isinstance(channel, str)
    if is_meta(channel):
        raise InvalidArgumentError(f"cannot subscribe to the meta channel {channel!r}")
    return channel


@lru_cache(maxsize=1024)
def _split(name: str) -> tuple[str, ...]:
    return tuple(name.split("/")[1:])


def matches(pattern: str, channel: str) -> bool:
    """True when ``channel`` is delivered to a subscription to ``pattern``.

    ``/foo/*`` matches ``/foo/bar`` only; ``/foo/**`` matches ``/foo/bar`` and ``/foo/bar/baz``;
    a name without a wildcard matches itself.
    """
    if pattern == channel:
        return True
    if not is_wildcard(pattern):
        return False
    parts = _split(pattern)
    target = _split(channel)
    prefix = parts[:-1]
    if target[: len(prefix)] != prefix:
        return False
    rest = len(target) - len(prefix)
    if parts[-1] == "**":
        return rest >= 1
    return rest == 1
