"""The documented scenarios against a real org: each channel kind, replay, fallback,
re-authentication after a revoked token, and publishing from the command line.

Run with ``nox -s live`` (or ``pytest -m live tests/live``) once ``SFSTREAM_LIVE_*`` name an
org set up as docs/testing.md says; without them each test is reported as not run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from sfstream.bayeux import StatusKind
from sfstream.salesforce import ReplayMarker, ReplayOption, marker_from_message
from tests.live._config import LiveConfig
from tests.live.conftest import (
    EVENT_WAIT,
    ClientFactory,
    Org,
    StatusLog,
    contains,
    receive_matching,
    unique,
)

pytestmark = [pytest.mark.live, pytest.mark.timeout(240)]


async def test_platform_event(live: LiveConfig, org: Org, make_client: ClientFactory) -> None:
    channel = f"/event/{live.event}"
    text = unique()
    async with make_client() as client:
        await client.subscribe(channel)
        await org.publish_event(text)
        [message] = await receive_matching(client, contains(text))
    assert message["channel"] == channel
    assert message["data"]["payload"][live.event_field] == text
    assert isinstance(message["data"]["event"]["replayId"], int)


async def test_push_topic(live: LiveConfig, org: Org, make_client: ClientFactory) -> None:
    name = unique("Sfstream Live")
    async with make_client() as client:
        await client.subscribe(f"/topic/{live.push_topic}")
        record_id = await org.create_account(name)
        [message] = await receive_matching(client, contains(name))
    assert message["data"]["event"]["type"] == "created"
    assert message["data"]["sobject"]["Id"] == record_id


async def test_change_data_capture(live: LiveConfig, org: Org, make_client: ClientFactory) -> None:
    name = unique("Sfstream Live")
    async with make_client() as client:
        await client.subscribe(f"/data/{live.cdc_entity}ChangeEvent")
        record_id = await org.create_account(name)
        [message] = await receive_matching(client, contains(name))
    header = message["data"]["payload"]["ChangeEventHeader"]
    assert header["changeType"] == "CREATE"
    assert record_id in header["recordIds"]


async def test_generic_streaming(live: LiveConfig, org: Org, make_client: ClientFactory) -> None:
    text = unique()
    async with make_client() as client:
        await client.subscribe(live.generic)
        await asyncio.sleep(1)  # a push reaches the users subscribed at that moment
        await org.push_generic(text)
        [message] = await receive_matching(client, contains(text))
    assert message["data"]["payload"] == text


async def test_replay_resumes_after_a_stored_marker(
    live: LiveConfig, org: Org, make_client: ClientFactory
) -> None:
    channel = f"/event/{live.event}"
    first, second, third = unique(), unique(), unique()
    markers: dict[str, ReplayMarker] = {}
    async with make_client(replay=markers) as client:
        await client.subscribe(channel)
        await org.publish_event(first)
        await receive_matching(client, contains(first))
    assert channel in markers  # stored as the event was handed out
    # Published while nothing listens: a client with the markers gets them, in order.
    await org.publish_event(second)
    await org.publish_event(third)
    async with make_client(replay=markers) as client:
        await client.subscribe(channel)
        got = await receive_matching(
            client, lambda m: contains(second)(m) or contains(third)(m), count=2
        )
    assert [second in str(m["data"]) for m in got] == [True, False]
    assert markers[channel].replay_id == marker_from_message(got[-1]).replay_id


async def test_replay_fallback_when_the_id_is_refused(
    live: LiveConfig, org: Org, make_client: ClientFactory
) -> None:
    channel = f"/event/{live.event}"
    text = unique()
    statuses = StatusLog()
    never_issued = 9_000_000_000_000
    async with make_client(
        replay=never_issued, replay_fallback=ReplayOption.NEW_EVENTS, on_status=statuses
    ) as client:
        await client.subscribe(channel)  # refused, then subscribed to new events
        assert any(s.kind is StatusKind.REPLAY_FALLBACK for s in statuses.seen)
        await org.publish_event(text)
        await receive_matching(client, contains(text))


async def test_reauthentication_after_a_revoked_token(
    live: LiveConfig, org: Org, make_client: ClientFactory
) -> None:
    channel = f"/event/{live.event}"
    statuses = StatusLog()
    async with make_client(on_status=statuses) as client:
        await client.subscribe(channel)
        token = client.auth.access_token
        assert token is not None
        await org.revoke(token)
        # Events keep coming through a new login; none is lost on the way.
        sent: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * EVENT_WAIT
        while not any(s.kind is StatusKind.REAUTHENTICATED for s in statuses.seen):
            assert loop.time() < deadline, "the client never logged in again"
            sent.append(unique())
            await org.publish_event(sent[-1])
            await receive_matching(client, contains(sent[-1]))
        assert client.auth.access_token != token


def test_publish_from_the_command_line(live: LiveConfig) -> None:
    """``sfstream publish`` prints an EventUuid, and ``sfstream listen`` prints the event."""
    channel = f"/event/{live.event}"
    text = unique()
    env = {
        **os.environ,
        "SFSTREAM_LOGIN_URL": live.login_url,
        "SFSTREAM_CONSUMER_KEY": live.consumer_key,
        "SFSTREAM_CONSUMER_SECRET": live.consumer_secret,
    }
    if live.refresh_token:
        env["SFSTREAM_REFRESH_TOKEN"] = live.refresh_token
    else:
        env["SFSTREAM_USERNAME"] = live.username or ""
        env["SFSTREAM_PASSWORD"] = live.password or ""
    if live.api_version:
        env["SFSTREAM_API_VERSION"] = live.api_version
    listener = subprocess.Popen(
        [sys.executable, "-m", "sfstream", "listen", channel, "--json", "--count", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stderr is not None
        for line in listener.stderr:  # wait until it listens
            if "waiting for events" in line:
                break
        published = subprocess.run(
            [
                sys.executable,
                "-m",
                "sfstream",
                "publish",
                channel,
                json.dumps({live.event_field: text}),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=EVENT_WAIT,
            check=False,
        )
        assert published.returncode == 0, published.stderr
        out, _ = listener.communicate(timeout=EVENT_WAIT)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    [event] = [json.loads(line) for line in out.splitlines()]
    assert event["data"]["payload"][live.event_field] == text
    uuid = event["data"]["event"].get("EventUuid")  # API 52.0 and later
    if uuid is not None:
        assert published.stdout.strip() == uuid
    assert "receivedAt" in event
