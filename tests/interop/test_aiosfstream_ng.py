"""aiosfstream-ng (PyPI), a third-party Salesforce client, against the emulator.

It runs in its own virtual environment (it pins an old aiocometd), created on first use under
``.interop-venvs/`` and reused. Its token URL is pointed at the emulator by subclassing its
authenticator, as a migrating user would; everything else is the package as published.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sfstream.emulator import Emulator

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".interop-venvs" / "aiosfstream-ng-0.7.5"
SCRIPT = Path(__file__).parent / "peers" / "aiosfstream_ng_client.py"
EVENT, TOPIC, CDC = "/event/Order__e", "/topic/AccountUpdates", "/data/AccountChangeEvent"


def venv_python() -> Path:
    python = VENV / "bin" / "python"
    ready = VENV / ".installed"
    if not ready.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "aiosfstream-ng==0.7.5"],
            check=True,
        )
        ready.touch()
    return python


@pytest.fixture(scope="session")
def ng_python() -> Path:
    return venv_python()


class Peer:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def next_event(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            line = await self.process.stdout.readline()
        if not line:
            stderr = await self.process.stderr.read() if self.process.stderr else b""
            raise AssertionError(f"aiosfstream-ng exited: {stderr.decode()[-2000:]}")
        event: dict[str, Any] = json.loads(line)
        return event

    async def messages(self, count: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while len(found) < count:
            event = await self.next_event()
            if event["event"] == "message":
                found.append(event["message"])
        return found


@pytest.fixture
async def org() -> AsyncIterator[Emulator]:
    # aiohttp's default cookie jar (which aiosfstream-ng uses) ignores cookies from IP hosts:
    # serve under the name localhost so that BAYEUX_BROWSER is kept, as with a real org.
    async with Emulator(
        public_host="localhost",
        events={"Order__e": ["Amount__c", "N__c"]},
        hold_time=0.5,
        session_expiry=2.0,
    ) as emulator:
        emulator.create_push_topic("AccountUpdates", "SELECT Id, Name FROM Account")
        yield emulator


@pytest.fixture
async def peer(org: Emulator, ng_python: Path) -> AsyncIterator[Peer]:
    process = await asyncio.create_subprocess_exec(
        str(ng_python),
        str(SCRIPT),
        org.login_url,
        org.consumer_key,
        org.consumer_secret,
        org.username,
        org.password,
        EVENT,
        TOPIC,
        CDC,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    client = Peer(process)
    try:
        assert (await client.next_event(timeout=20))["event"] == "subscribed"
        yield client
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


def by_channel(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {message["channel"]: message["data"] for message in messages}


async def test_aiosfstream_ng_receives_every_channel_kind(org: Emulator, peer: Peer) -> None:
    await org.publish(EVENT, {"Amount__c": 5})
    record_id = org.create_record("Account", {"Name": "Acme"})
    got = by_channel(await peer.messages(3))
    assert got[EVENT]["payload"]["Amount__c"] == 5
    assert got[EVENT]["event"]["replayId"] >= 1
    assert got[TOPIC]["sobject"] == {"Id": record_id, "Name": "Acme"}
    assert got[CDC]["payload"]["ChangeEventHeader"]["recordIds"] == [record_id]


async def test_aiosfstream_ng_recovers_from_an_expired_session(org: Emulator, peer: Peer) -> None:
    await org.publish(EVENT, {"Amount__c": 1})
    assert (await peer.messages(1))[0]["data"]["payload"]["Amount__c"] == 1
    [old] = org.sessions()
    org.expire_sessions()
    # aiosfstream-ng resubscribes with -1: wait for its new session before publishing
    async with asyncio.timeout(15):
        while not any(  # noqa: ASYNC110 - polling the emulator's state, which has no event
            s["clientId"] != old["clientId"] and len(s["subscriptions"]) == 3
            for s in org.sessions()
        ):
            await asyncio.sleep(0.05)
    await org.publish(EVENT, {"Amount__c": 2})
    assert (await peer.messages(1))[0]["data"]["payload"]["Amount__c"] == 2
