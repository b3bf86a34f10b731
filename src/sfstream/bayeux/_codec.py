"""The one place where untrusted bytes become Bayeux messages, and messages become bytes.

A reply that is not a JSON array of objects with a string ``channel`` and correctly typed
fields is refused with a :class:`~sfstream.exceptions.ProtocolError` that names what was wrong:
a malformed reply never surfaces as a ``KeyError`` or ``TypeError`` deeper down. Pure module:
no IO.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any, Final, cast

from sfstream.bayeux._messages import Message
from sfstream.exceptions import ProtocolError

__all__ = [
    "CHANNEL_OF",
    "DEFAULT_MAX_MESSAGES",
    "RUN_MIN",
    "JSONDumps",
    "JSONLoads",
    "check_json",
    "decode",
    "encode",
]

#: A JSON serialiser: ``json.dumps`` (returns str) or ``orjson.dumps`` (returns bytes).
JSONDumps = Callable[[Any], str | bytes]
#: A JSON parser taking the reply body.
JSONLoads = Callable[[str | bytes], Any]


def check_json(json_dumps: object, json_loads: object) -> None:
    """Raise :class:`TypeError` where a client or an authenticator is built with a JSON
    serialiser or parser that cannot be called (``json_loads=None`` failed much later, at the
    first reply, as a reply that is not JSON)."""
    for name, function in (("json_dumps", json_dumps), ("json_loads", json_loads)):
        if not callable(function):
            raise TypeError(f"{name} must be callable, not {type(function).__name__}")


#: How many messages one reply may carry before it is refused.
DEFAULT_MAX_MESSAGES: Final = 100_000

# Optional fields and the types they must have when present. ``id`` is normalised to str.
_FIELD_TYPES: Final[tuple[tuple[str, type | tuple[type, ...]], ...]] = (
    ("clientId", str),
    ("successful", bool),
    ("error", str),
    ("advice", dict),
    ("ext", dict),
    ("subscription", (str, list)),
    ("version", str),
    ("supportedConnectionTypes", list),
)
#: A message with only these keys has nothing more to check (the usual event delivery).
_PLAIN_DELIVERY_KEYS: Final = frozenset({"channel", "data", "id"})
_ADVICE_TYPES: Final[tuple[tuple[str, type | tuple[type, ...]], ...]] = (
    ("reconnect", str),
    ("interval", (int, float)),
    ("timeout", (int, float)),
    ("maxInterval", (int, float)),
)


#: Replies of at least this many messages are first checked for the usual busy shape (#13);
#: shorter ones (a long poll answered with an event or two) cost less message by message.
RUN_MIN: Final = 8

#: Advice numbers are milliseconds: anything beyond 2**53 is not a number a server means.
_MAX_ADVICE_NUMBER: Final = 2**53


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def encode(messages: Sequence[Message], dumps: JSONDumps = json.dumps) -> bytes:
    """Serialise a batch of messages as the JSON array Bayeux expects."""
    body = dumps(list(messages))
    return body.encode() if isinstance(body, str) else body


def decode(
    body: str | bytes,
    loads: JSONLoads = json.loads,
    *,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    max_message_size: int | None = None,
    max_depth: int | None = None,
) -> list[Message]:
    """Parse and validate a reply body into a list of messages.

    A single JSON object is accepted as a batch of one (Bayeux allows it). Raises
    ProtocolError when the body is not JSON, not an array of objects, carries more than
    ``max_messages`` messages, a message lacks a string ``channel`` or has a field of the
    wrong type, a message serialises to more than ``max_message_size`` bytes, or nests
    deeper than ``max_depth`` levels (both unchecked when None).
    """
    if _native_stack_at_risk() and _deeper_than_text(body, _SAFE_PARSE_DEPTH):
        # Python 3.11 with a raised recursion limit: the C parser would overflow the stack.
        raise ProtocolError("the reply is nested too deeply to parse")
    try:
        payload = loads(body)
    except RecursionError:
        raise ProtocolError("the reply is nested too deeply to parse") from None
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"the reply is not valid JSON: {exc}") from None
    if isinstance(payload, dict):
        payload = [payload]
    elif not isinstance(payload, list):
        raise ProtocolError(f"the reply is a JSON {_type_name(payload)}, not an array of messages")
    if len(payload) > max_messages:
        raise ProtocolError(
            f"the reply carries {len(payload)} messages, more than the limit of {max_messages}"
        )
    checked = _plain_run(payload) if len(payload) >= RUN_MIN else 0
    for index, message in enumerate(payload[checked:] if checked else payload, checked):
        # The usual event delivery is exactly {"channel": "/x/y", "data": ...}: nothing more
        # to check. Everything else takes the full check.
        if type(message) is dict and len(message) == 2 and "data" in message:
            channel = message.get("channel")
            if type(channel) is str and channel[:1] == "/" and channel[:6] != "/meta/":
                continue
        _check_message(index, message)
    if max_message_size is not None and len(body) > max_message_size:
        for index, message in enumerate(payload):
            size = len(json.dumps(message, separators=(",", ":")))
            if size > max_message_size:
                raise ProtocolError(
                    f"message {index} of the reply is {size} bytes, larger than the limit of "
                    f"{max_message_size} bytes"
                )
    if max_depth is not None:
        for index, message in enumerate(payload):
            if _deeper_than(message, max_depth):
                raise ProtocolError(
                    f"message {index} of the reply is nested deeper than {max_depth} levels"
                )
    return cast("list[Message]", payload)


#: A message's channel (raises for a message without one, or that is no object).
CHANNEL_OF: Final = itemgetter("channel")

#: The sizes of plain deliveries (``channel`` and ``data``).
_TWO_KEYS: Final = frozenset({2})


def _plain_run(payload: list[Any]) -> int:
    """How many messages the usual busy reply starts with that need no further check (#13).

    The usual reply is a run of plain deliveries, each exactly ``{"channel": "/x/y", "data":
    ...}`` on one channel, then maybe one other message (the ``/meta/connect`` answer). The
    run is checked by C loops (the channels read and counted, the sizes and ``data`` keys
    checked), not a Python step per message; 0 when the reply is not of that shape (each
    message is then checked on its own).
    """
    try:
        channels = list(map(CHANNEL_OF, payload))
    except (KeyError, TypeError):
        return 0  # a message that is no object or has no channel: the full check names it
    first = channels[0]
    if type(first) is not str or first[:1] != "/" or first[:6] == "/meta/":
        return 0
    count = channels.count(first)
    if count == len(payload):
        run = payload
    elif count == len(payload) - 1 and channels[-1] != first:
        run = payload[:-1]  # the last one is checked on its own
    else:
        return 0
    if set(map(len, run)) != _TWO_KEYS or not all(map(dict.__contains__, run, repeat("data"))):
        return 0
    return count


def _deeper_than(value: object, limit: int) -> bool:
    """True if ``value`` nests containers more than ``limit`` levels deep (iterative)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in item.values())
        elif type(item) is list:
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in item)
    return False


#: Nesting the C JSON parser survives on the default 8 MiB stack with a wide margin.
_SAFE_PARSE_DEPTH: Final = 5000
_JSON_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")


def _native_stack_at_risk() -> bool:
    """Python 3.11 bounds the C parser's recursion by ``sys.getrecursionlimit()`` only (3.12
    and later have a separate C limit): an application that raised it can be crashed."""
    return sys.version_info < (3, 12) and sys.getrecursionlimit() > _SAFE_PARSE_DEPTH


def _deeper_than_text(body: str | bytes, limit: int) -> bool:
    """Nesting of raw JSON text, without parsing it (only used where the stack is at risk)."""
    raw = body.encode() if isinstance(body, str) else body
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        if depth > limit:
            return True
    return False


def _check_message(index: int, message: object) -> None:
    if not isinstance(message, dict):
        raise ProtocolError(
            f"message {index} of the reply is a {_type_name(message)}, not an object"
        )
    channel = message.get("channel")
    if not isinstance(channel, str) or not channel.startswith("/"):
        if channel is None:
            raise ProtocolError(f"message {index} of the reply has no channel")
        raise ProtocolError(f"message {index} of the reply has an invalid channel {channel!r}")
    if "id" in message:
        ident = message["id"]
        if isinstance(ident, int) and not isinstance(ident, bool):
            message["id"] = str(ident)
        elif not isinstance(ident, str):
            raise ProtocolError(
                f"message {index} ({channel}) has an id of type {_type_name(ident)}"
            )
    if not channel.startswith("/meta/") and message.keys() <= _PLAIN_DELIVERY_KEYS:
        return  # a plain delivery: nothing else to check
    for key, expected in _FIELD_TYPES:
        if key in message and not isinstance(message[key], expected):
            raise ProtocolError(
                f"message {index} ({channel}) has a field {key!r} of type "
                f"{_type_name(message[key])}"
            )
    advice = message.get("advice")
    if advice is not None:
        for key, expected in _ADVICE_TYPES:
            value = advice.get(key)
            if value is not None and (
                not isinstance(value, expected)
                or isinstance(value, bool)
                or (isinstance(value, float) and not math.isfinite(value))
            ):
                raise ProtocolError(
                    f"message {index} ({channel}) has advice.{key} of type {_type_name(value)}"
                )
            if isinstance(value, int | float) and abs(value) > _MAX_ADVICE_NUMBER:
                raise ProtocolError(f"message {index} ({channel}) has advice.{key} out of range")
