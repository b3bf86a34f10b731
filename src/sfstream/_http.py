"""What every HTTP client path of sfstream shares: bounded reading and scrubbed error causes.

:func:`read_limited` reads a reply body while counting the *decoded* bytes (aiohttp inflates a
``Content-Encoding: gzip``/``deflate``/``br`` body as it is read, a little at a time), and stops
as soon as the count passes the limit: a small compressed body that inflates to gigabytes costs
no more memory than the limit. ``Content-Length`` (the compressed length) is only an early
refusal.

:func:`safe_cause` turns an exception of the HTTP stack into something that may be chained to
one of ours. aiohttp's ``ClientResponseError`` family carries ``request_info``, whose ``repr``
holds the request headers (``Authorization: Bearer ...``, HTTP Basic credentials); those are
replaced by a :class:`ScrubbedError` that keeps only the type name, the status and aiohttp's
message. Callers raise their own exception *outside* the ``except`` block, so that Python does
not chain the original as ``__context__`` either.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

import aiohttp

__all__ = ["READ_CHUNK", "ScrubbedError", "describe", "read_limited", "safe_cause"]

#: Bytes asked of the stream at a time.
READ_CHUNK: Final = 64 * 1024
#: Links of a cause chain inspected at most.
_MAX_CHAIN: Final = 16


class ScrubbedError(ConnectionError):
    """Stands in for an HTTP library error whose ``repr`` would show the request headers.

    Its message is the original's type name, HTTP status and message, nothing else.
    """


async def read_limited(
    response: aiohttp.ClientResponse,
    limit: int,
    too_large: Callable[[int | None], Exception],
) -> bytes:
    """The decoded body of ``response``, or ``too_large(declared_length)`` raised.

    ``too_large`` receives the ``Content-Length`` when that alone exceeds ``limit`` (nothing
    is read), and None when the decoded bytes passed the limit while reading.
    """
    declared = response.content_length
    if declared is not None and declared > limit:
        raise too_large(declared)
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if declared is not None and encoding == "identity":
        # Not compressed: the body is exactly the declared length, in one read.
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    content = response.content
    while True:
        # What is buffered, decoded: aiohttp inflates at most about READ_CHUNK bytes at a
        # time and stops reading the socket while its buffer is full.
        chunk = await content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise too_large(None)
        chunks.append(chunk)
    return b"".join(chunks)


def _unsafe(exc: BaseException) -> bool:
    """True if ``exc`` or an exception chained to it holds request details or a body."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(seen) < _MAX_CHAIN:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if (
            isinstance(current, aiohttp.ClientResponseError)
            or hasattr(current, "request_info")
            or isinstance(current, json.JSONDecodeError)
        ):
            return True
        todo += [link for link in (current.__cause__, current.__context__) if link is not None]
    return bool(todo)  # a chain too long to inspect is not trusted


def describe(exc: BaseException) -> str:
    """A one-line description of ``exc`` that holds no request header and no body."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{name}: {exc.status}, {exc.message}"
    if isinstance(exc, json.JSONDecodeError):
        return f"{name}: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, TimeoutError):
        return f"{name}: timed out"
    if _unsafe(exc):
        return name
    text = str(exc)
    return f"{name}: {text}" if text else name


def safe_cause(exc: BaseException) -> BaseException:
    """``exc`` itself when its chain holds nothing secret, else a scrubbed stand-in.

    The stand-in is a :class:`ScrubbedError` (a ``ConnectionError``) for network and HTTP
    errors and a plain ``ValueError`` for a body that could not be decoded, so code that
    tells network failures by their cause's type keeps working. It is never raised, so it
    has no ``__context__`` and no traceback.
    """
    if not _unsafe(exc):
        return exc
    if isinstance(exc, ValueError) and not isinstance(exc, aiohttp.ClientError):
        return ValueError(describe(exc))
    return ScrubbedError(describe(exc))
