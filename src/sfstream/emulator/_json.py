"""JSON for the emulator: bytes out, compact, with orjson when it is installed.

Each stored event is encoded once, when it is published; replies are assembled by joining
those bytes, so the speed of ``dumps`` matters only at publish time. Request bodies are small
(32 KB at most) and parsed with the standard library, which keeps big integers exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

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


def loads(body: str | bytes) -> Any:
    """Parse JSON; raises ValueError when the body is not JSON."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
