"""HTTP plumbing shared by the endpoints: JSON responses, bearer tokens, bodies, HTTP faults."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web

from sfstream.emulator._faults import Fault, FaultKind
from sfstream.emulator._json import dumps

__all__ = [
    "JSON_TYPE",
    "bearer_token",
    "fault_response",
    "json_response",
    "read_limited",
]

JSON_TYPE: Final = "application/json"
_INVALID_JSON_BODY: Final = b'[{"channel":"/meta/connect","successful":tru'
_STATUS_TEXT: Final = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class BodyTooLarge(Exception):
    """The request body is larger than the configured limit."""


def json_response(value: Any, status: int = 200) -> web.Response:
    """A JSON response with Salesforce's content type."""
    return web.Response(body=dumps(value), status=status, content_type=JSON_TYPE, charset="UTF-8")


def bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer|OAuth <token>`` (or a bare token), if any."""
    header = request.headers.get("Authorization", "").strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    if rest and scheme.lower() in ("bearer", "oauth"):
        return rest.strip() or None
    return None if rest else header


async def read_limited(request: web.Request, limit: int) -> bytes:
    """Read the whole body (chunked or not), refusing more than ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def fault_response(request: web.Request, fault: Fault) -> web.StreamResponse | None:
    """Carry out an HTTP fault. None means "go on and answer normally" (after a delay)."""
    if fault.kind is FaultKind.DELAY:
        await asyncio.sleep(fault.seconds)
        return None
    if fault.kind is FaultKind.STATUS:
        reason = _STATUS_TEXT.get(fault.status, "Error")
        return web.Response(
            status=fault.status,
            text=f"<html><body><h1>{fault.status} {reason}</h1></body></html>",
            content_type="text/html",
        )
    if fault.kind is FaultKind.INVALID_JSON:
        return web.Response(body=_INVALID_JSON_BODY, content_type=JSON_TYPE)
    # DROP
    transport = request.transport
    if fault.when == "before_response":
        if transport is not None:
            transport.abort()
        return web.Response(status=500)  # never reaches the client
    response = web.StreamResponse(
        status=200, headers={"Content-Type": f"{JSON_TYPE};charset=UTF-8", "Content-Length": "200"}
    )
    await response.prepare(request)
    await response.write(b'[{"channel":"/meta/connect","clientId":"')
    if transport is not None:
        transport.close()
    return response
