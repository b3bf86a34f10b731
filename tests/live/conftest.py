"""Fixtures for the tests against a real org (``-m live``, ``nox -s live``).

The org and the connected app come from ``SFSTREAM_LIVE_*`` (see ``_config.py`` and
docs/testing.md). Without them every test here is reported as not run, with the reason. The
tests talk to the org only through its public APIs (OAuth, the Streaming API, REST), so the
suite also runs against ``sfstream emulator`` (``tests/live/test_suite_on_the_emulator.py``
does that in the default run, to keep this code working).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from sfstream.bayeux import Message, Status
from sfstream.salesforce import (
    DEFAULT_API_VERSION,
    AuthenticatorBase,
    Client,
    PasswordAuthenticator,
    RefreshTokenAuthenticator,
)
from tests.live._config import LiveConfig, live_config, not_run_reason

#: Seconds to wait for an event a test made.
EVENT_WAIT = 60.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = not_run_reason()
    for item in items:
        if item.get_closest_marker("live") is not None and reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"not run: {reason}"))


@pytest.fixture
def live() -> LiveConfig:
    return live_config()


def make_authenticator(live: LiveConfig) -> AuthenticatorBase:
    """A renewable login: the refresh token flow when one is given, else the password flow."""
    if live.refresh_token:
        return RefreshTokenAuthenticator(
            live.consumer_key, live.consumer_secret, live.refresh_token, login_url=live.login_url
        )
    assert live.username is not None
    assert live.password is not None
    return PasswordAuthenticator(
        live.consumer_key,
        live.consumer_secret,
        live.username,
        live.password,
        login_url=live.login_url,
    )


class Org:
    """The org's REST API, logged in on its own (the client under test has its own token)."""

    def __init__(self, live: LiveConfig, session: aiohttp.ClientSession) -> None:
        self.live = live
        self.session = session
        self.auth = make_authenticator(live)
        self.api_version = live.api_version or DEFAULT_API_VERSION
        self.created: list[str] = []

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """``method`` on ``path`` of the REST API; its JSON reply.

        A 401 means a new login and one more try: Salesforce may hand this helper the same
        access token as the client under test (one user, one connected app), and the
        re-authentication test revokes that token.
        """
        if self.auth.access_token is None:
            await self.auth.authenticate()
        for attempt in (1, 2):
            base = f"{self.auth.instance_url}/services/data/v{self.api_version}"
            async with self.session.request(
                method,
                f"{base}/{path}",
                json=body,
                headers={"Authorization": self.auth.authorization_header()},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response:
                text = await response.text()
                status = response.status
                if status == 401 and attempt == 1:
                    await self.auth.authenticate()
                    continue
                assert status < 300, f"{method} {path}: HTTP {status} {text[:300]}"
                return await response.json() if text else None
        raise AssertionError("unreachable")  # pragma: no cover

    async def publish_event(self, text: str) -> str:
        """Publish the test platform event with ``text``; returns its id."""
        live = self.live
        reply = await self.request("POST", f"sobjects/{live.event}", {live.event_field: text})
        assert reply["success"], reply
        return str(reply["id"])

    async def create_account(self, name: str) -> str:
        reply = await self.request("POST", "sobjects/Account", {"Name": name})
        self.created.append(reply["id"])
        return str(reply["id"])

    async def push_generic(self, payload: str) -> None:
        name = self.live.generic
        query = f"SELECT Id FROM StreamingChannel WHERE Name = '{name}'"  # noqa: S608 - our config
        found = await self.request("GET", "query?q=" + query.replace(" ", "+"))
        assert found["records"], f"no StreamingChannel named {self.live.generic}"
        channel_id = found["records"][0]["Id"]
        body = {"pushEvents": [{"payload": payload, "userIds": []}]}
        await self.request("POST", f"sobjects/StreamingChannel/{channel_id}/push", body)

    async def revoke(self, token: str) -> None:
        """Revoke ``token`` (OAuth 2.0 token revocation), as a user or an admin would."""
        if self.auth.instance_url is None:
            await self.auth.authenticate()
        async with self.session.post(
            f"{self.auth.instance_url}/services/oauth2/revoke",
            data={"token": token},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            assert response.status == 200, f"revoke: HTTP {response.status}"

    async def clean_up(self) -> None:
        for record_id in self.created:
            await self.request("DELETE", f"sobjects/Account/{record_id}")


@pytest.fixture
async def org(live: LiveConfig) -> AsyncIterator[Org]:
    async with aiohttp.ClientSession() as session:
        helper = Org(live, session)
        try:
            yield helper
        finally:
            await helper.clean_up()


ClientFactory = Callable[..., Client]


@pytest.fixture
async def make_client(live: LiveConfig) -> AsyncIterator[ClientFactory]:
    """``make_client(**options)``: a client of the live org, closed at the end of the test."""
    clients: list[Client] = []

    def make(**options: Any) -> Client:
        client = Client(
            make_authenticator(live),
            api_version=live.api_version or DEFAULT_API_VERSION,
            **options,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def unique(prefix: str = "sfstream-live") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def receive_matching(
    client: Client, predicate: Callable[[Message], bool], count: int = 1
) -> list[Message]:
    """The next ``count`` messages for which ``predicate`` holds (others are skipped: a real
    org may have other traffic on the same channels)."""
    found: list[Message] = []
    async with asyncio.timeout(EVENT_WAIT):
        while len(found) < count:
            message = await client.receive()
            if predicate(message):
                found.append(message)
    return found


def contains(text: str) -> Callable[[Message], bool]:
    return lambda message: text in str(message.get("data"))


class StatusLog:
    """An ``on_status`` callback that keeps what it saw."""

    def __init__(self) -> None:
        self.seen: list[Status] = []

    def __call__(self, status: Status) -> None:
        self.seen.append(status)
