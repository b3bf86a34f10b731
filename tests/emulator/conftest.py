"""Fixtures for the emulator tests: a running org with fast timings and raw HTTP helpers.

Every test talks to the emulator through plain aiohttp requests and checks the JSON on the
wire against the documented Salesforce format, not against our own client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sfstream.emulator import Emulator, ManualClock

HOLD = 0.3
EXPIRY = 1.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
async def org(clock: ManualClock) -> AsyncIterator[Emulator]:
    async with Emulator(
        events={
            "Order__e": [
                "Amount__c",
                "N__c",
                "A__c",
                "Serial__c",
                "Printer_Model__c",
                "Ink_Percentage__c",
            ]
        },
        hold_time=HOLD,
        session_expiry=EXPIRY,
        clock=clock,
    ) as emulator:
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # An IP-address host needs an "unsafe" jar to keep cookies (BAYEUX_BROWSER).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def password_token(http: aiohttp.ClientSession, org: Emulator) -> str:
    async with http.post(
        org.token_url,
        data={
            "grant_type": "password",
            "client_id": org.consumer_key,
            "client_secret": org.consumer_secret,
            "username": org.username,
            "password": org.password,
        },
    ) as response:
        assert response.status == 200
        body = await response.json()
    token: str = body["access_token"]
    return token


class Bayeux:
    """Raw Bayeux requests against the emulator's /cometd endpoint."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        org: Emulator,
        token: str,
        *,
        version: str = "62.0",
        scheme: str = "Bearer",
    ) -> None:
        self.http = http
        self.org = org
        self.token = token
        self.url = org.cometd_url(version)
        self.scheme = scheme
        self.client_id = ""
        self._next_id = 0

    def _id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"{self.scheme} {self.token}"} if self.token else {}

    async def raw(
        self, body: Any, *, suffix: str = "", headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.http.post(
            self.url + suffix, json=body, headers=self.headers if headers is None else headers
        ) as response:
            text = await response.text()
            try:
                import json

                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def send(self, *messages: dict[str, Any], suffix: str = "") -> list[dict[str, Any]]:
        status, body = await self.raw(list(messages), suffix=suffix)
        assert status == 200, body
        assert isinstance(body, list)
        return body

    def message(self, channel: str, **fields: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"channel": channel, "id": self._id()}
        if channel != "/meta/handshake":
            message["clientId"] = self.client_id
        message.update(fields)
        return message

    async def handshake(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("version", "1.0")
        fields.setdefault("supportedConnectionTypes", ["long-polling"])
        [reply] = await self.send(self.message("/meta/handshake", **fields))
        if reply.get("successful"):
            self.client_id = reply["clientId"]
        return reply

    async def subscribe(self, channel: str, replay: Any = None, **fields: Any) -> dict[str, Any]:
        if replay is not None:
            fields["ext"] = {"replay": {channel.partition("?")[0]: replay}}
        [reply] = await self.send(self.message("/meta/subscribe", subscription=channel, **fields))
        return reply

    async def connect(self, **fields: Any) -> list[dict[str, Any]]:
        fields.setdefault("connectionType", "long-polling")
        return await self.send(self.message("/meta/connect", **fields))

    async def start(self, *channels: str, replay: Any = None) -> list[dict[str, Any]]:
        """Handshake, subscribe to ``channels``, and do the first connect; returns its reply."""
        reply = await self.handshake()
        assert reply["successful"], reply
        for channel in channels:
            answer = await self.subscribe(channel, replay)
            assert answer["successful"], answer
        return await self.connect()


def events_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The event deliveries of a reply (everything not on a /meta channel)."""
    return [m for m in messages if not m["channel"].startswith("/meta/")]


def meta_of(messages: list[dict[str, Any]], channel: str) -> dict[str, Any]:
    [reply] = [m for m in messages if m["channel"] == channel]
    return reply


@pytest.fixture
async def token(http: aiohttp.ClientSession, org: Emulator) -> str:
    return await password_token(http, org)


@pytest.fixture
def bayeux(http: aiohttp.ClientSession, org: Emulator, token: str) -> Bayeux:
    return Bayeux(http, org, token)


LONG_HOLD = 3.0


@pytest.fixture
async def long_hold(
    http: aiohttp.ClientSession, clock: ManualClock
) -> AsyncIterator[tuple[Emulator, Bayeux]]:
    """An org whose connects are held for LONG_HOLD seconds, for "released early" checks that
    must not depend on how loaded the machine is."""
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]},
        hold_time=LONG_HOLD,
        session_expiry=10,
        clock=clock,
    ) as emulator:
        yield emulator, Bayeux(http, emulator, await password_token(http, emulator))
