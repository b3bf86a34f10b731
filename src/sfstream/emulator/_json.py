"""JSON for the emulator: bytes out, compact, with orjson when it is installed.

Each stored event is encoded once, when it is published; replies are assembled by joining
those bytes, so the speed of ``dumps`` matters only at publish time. Request bodies are small
(32 KB at most) and parsed with the standard library, which keeps big integers exact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

__all__ = ["dumps", "loads"]


def _std_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


_fast_dumps: Callable[[Any], bytes] | None
try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    _fast_dumps = None
else:
    _fast_dumps = orjson.dumps


def dumps(value: Any) -> bytes:
    """Serialise ``value`` as compact UTF-8 JSON."""
    if _fast_dumps is not None:
        try:
            # orjson's result can sit in a larger allocation than its length; stored events
            # live long, so copy them into an exact-size object.
            return memoryview(_fast_dumps(value)).tobytes()
        except TypeError:  # e.g. an integer wider than 64 bits: let json decide
            pass
    return _std_dumps(value)


#: Where a lone UTF-16 surrogate may hide in a body: a \uD800-\uDFFF escape, or its bytes
#: (``json.loads`` decodes bytes with "surrogatepass")
_SURROGATE_HINT: Final = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def loads(body: str | bytes) -> Any:
    """Parse JSON; raises ValueError when the body is not JSON, or holds a string that is not
    valid Unicode (a lone surrogate, which could never be written out again: a stored event
    holding one would fail every reply that carries it)."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if _SURROGATE_HINT.search(raw):
        try:
            _std_dumps(value)
        except UnicodeEncodeError:
            raise ValueError("a string holds a lone UTF-16 surrogate (not valid Unicode)") from None
    return value
