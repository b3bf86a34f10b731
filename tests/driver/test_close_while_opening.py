"""BayeuxClient.close() while open() runs (against the emulator, over HTTP long polling).

Before: a close() during the handshake raced the opening: open() hung, failed with the engine's
"nothing happened yet: send a handshake first", or left a session on the server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sfstream.bayeux import BayeuxClient
from sfstream.emulator import Emulator
from sfstream.exceptions import ClientInvalidOperation

WAIT = 10.0


def client_of(org: Emulator) -> BayeuxClient:
    return BayeuxClient(
        org.cometd_url(), headers={"Authorization": f"Bearer {org.issue_access_token()}"}
    )


def connect_loops() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if "bayeux" in task.get_name()]


async def test_close_during_the_handshake_ends_the_opening(sfstream_emulator: Emulator) -> None:
    sfstream_emulator.delay_responses(0.5, channel="/meta/handshake")
    client = client_of(sfstream_emulator)
    opening = asyncio.create_task(client.open())
    await asyncio.sleep(0.1)  # the handshake is in flight
    await asyncio.wait_for(client.close(), WAIT)
    with pytest.raises(ClientInvalidOperation, match="closed while it was opening"):
        await asyncio.wait_for(opening, WAIT)
    assert client.closed
    assert connect_loops() == []
    assert sfstream_emulator.session_count == 0  # the session the server made is ended
    await client.close()  # idempotent
    with pytest.raises(ClientInvalidOperation):
        await client.open()


@pytest.mark.parametrize("delay", [0.0, 0.0005, 0.001, 0.0015, 0.002, 0.003])
async def test_close_at_any_moment_of_the_opening_never_hangs(
    sfstream_emulator: Emulator, delay: float
) -> None:
    client = client_of(sfstream_emulator)
    opening = asyncio.create_task(client.open())
    await asyncio.sleep(delay)
    await asyncio.wait_for(client.close(), WAIT)
    (outcome,) = await asyncio.wait_for(asyncio.gather(opening, return_exceptions=True), WAIT)
    if outcome is not None:  # (None: it opened before the close, which then closed it)
        assert isinstance(outcome, ClientInvalidOperation), outcome
        assert "closed while it was opening" in str(outcome)
    assert client.closed
    assert connect_loops() == []
    await asyncio.sleep(0.05)
    assert sfstream_emulator.session_count == 0


async def test_open_cancelled_from_outside_is_still_a_cancellation(
    sfstream_emulator: Emulator,
) -> None:
    sfstream_emulator.delay_responses(0.5, channel="/meta/handshake")
    client = client_of(sfstream_emulator)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await client.open()
    assert client.closed
    assert connect_loops() == []
