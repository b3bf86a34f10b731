"""Fixtures that run the Node.js peers on 127.0.0.1 and always stop them.

``faye``: a running :class:`~._peers.FayeServer` (``.url``, ``publish()``, ``restart()``, ...).
``cometd_client``: a factory starting CometD JavaScript clients against a URL.

The peers need ``npm ci`` in ``tests/interop/peers``; without it every fixture fails (the tests are
never skipped). Set ``SFSTREAM_INTEROP_QUIET=1`` to turn off the Faye server's wire log on stderr.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from ._peers import (
    CometdClient,
    FayeServer,
    PeerError,
    StartCometd,
    missing_node_modules,
    node_executable,
)

#: Faye's long-poll hold in seconds: small, so that a held connect never slows a test for long.
FAYE_TIMEOUT = 5.0


@pytest.fixture(scope="session")
def node_peers() -> None:
    """Fail (never skip) with the fix when Node.js or the peers' node_modules are missing."""
    problem = missing_node_modules()
    if problem is None:
        try:
            node_executable()
        except PeerError as error:
            problem = str(error)
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
async def faye(node_peers: None) -> AsyncIterator[FayeServer]:
    """A Faye server on a free loopback port, stopped after the test whatever happened.

    The test then fails (in teardown) if any client overlapped two /meta/connect requests,
    unless it set ``faye.check_concurrent_connects = False``.
    """
    server = FayeServer(
        timeout=FAYE_TIMEOUT, verbose=os.environ.get("SFSTREAM_INTEROP_QUIET", "") in ("", "0")
    )
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
    overlapping = server.concurrent_connects()
    if server.check_concurrent_connects and overlapping:
        pytest.fail(
            "a client sent /meta/connect while its previous one was still held (Faye never "
            f"answers the older one): {overlapping}",
            pytrace=False,
        )


@pytest.fixture
async def cometd_client(node_peers: None) -> AsyncIterator[StartCometd]:
    """Start CometD JavaScript clients: ``client = await cometd_client(faye.url)``; all are
    stopped after the test. ``transport="websocket"`` makes the client use WebSocket."""
    clients: list[CometdClient] = []

    async def start(url: str, *, transport: str = "long-polling") -> CometdClient:
        client = CometdClient(url, transport=transport)
        clients.append(client)
        await client.start()
        return client

    try:
        yield start
    finally:
        for client in clients:
            await client.stop()
