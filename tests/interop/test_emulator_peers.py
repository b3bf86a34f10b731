"""Third-party Salesforce clients against the emulator: jsforce 3 streaming and the CometD
JavaScript client connect with nothing changed but the URL and token, receive platform events,
PushTopic, generic and CDC events, and recover from an expired Bayeux session.

The Node scripts are ``peers/emu_jsforce.mjs`` and ``peers/emu_cometd.mjs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sfstream.emulator import Emulator

from ._peers import PEERS_DIR, JSONObject, NodeProcess, PeerError

pytestmark = pytest.mark.interop

STARTUP = 20.0
WAIT = 15.0


class _Peer(NodeProcess):
    async def start(self, *args: str) -> None:
        await self._spawn(*args)

    async def send(self, **command: Any) -> None:
        await self._send(command)

    def events(self, kind: str) -> list[JSONObject]:
        return [line for line in self.lines if line.get("event") == kind]

    def received(self, channel: str) -> list[dict[str, Any]]:
        return [m["data"] for m in self.events("message") if m["channel"] == channel]

    async def expect(self, kind: str, **fields: Any) -> JSONObject:
        return await self.wait_for(
            lambda line: (
                line.get("event") == kind and all(line.get(k) == v for k, v in fields.items())
            ),
            within=WAIT,
            what=f"{kind} {fields}",
        )

    async def expect_count(self, channel: str, count: int) -> list[dict[str, Any]]:
        await self.wait_until(
            lambda: len(self.received(channel)) >= count,
            within=WAIT,
            what=f"{count} messages on {channel}",
        )
        return self.received(channel)


class JsforcePeer(_Peer):
    script = "emu_jsforce.mjs"


class CometdPeer(_Peer):
    script = "emu_cometd.mjs"


@pytest.fixture
def jsforce_installed(node_peers: None) -> None:
    if not (PEERS_DIR / "node_modules" / "jsforce").is_dir():
        pytest.fail(
            f"jsforce is not installed in {PEERS_DIR}: "
            f"cd {PEERS_DIR} && npm ci --no-audit --no-fund",
            pytrace=False,
        )


@pytest.fixture
async def org() -> AsyncIterator[Emulator]:
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]},
        hold_time=1.0,
        session_expiry=5.0,
        push_topics={"Accounts": "SELECT Id, Name, Type FROM Account"},
        streaming_channels=["/u/news"],
    ) as emulator:
        yield emulator


@pytest.fixture
async def peers() -> AsyncIterator[Callable[[_Peer, list[str]], Awaitable[_Peer]]]:
    started: list[_Peer] = []

    async def start(peer: _Peer, args: list[str]) -> _Peer:
        started.append(peer)
        await peer.start(*args)
        return peer

    try:
        yield start
    finally:
        for peer in started:
            await peer.stop()


def order_numbers(messages: list[dict[str, Any]]) -> list[Any]:
    return [m["payload"]["N__c"] for m in messages]


# -- jsforce -----------------------------------------------------------------------------------


async def start_jsforce(peers: Any, org: Emulator, *, login: bool = False) -> JsforcePeer:
    if login:
        args = [
            "--login-url",
            org.login_url,
            "--client-id",
            org.consumer_key,
            "--client-secret",
            org.consumer_secret,
            "--username",
            org.username,
            "--password",
            org.password,
        ]
    else:
        args = ["--instance-url", org.instance_url, "--token", org.issue_access_token()]
    peer: JsforcePeer = await peers(JsforcePeer(), args)
    ready = await peer.wait_for(
        lambda line: line.get("event") in ("ready", "error"), within=STARTUP, what="ready"
    )
    if ready["event"] != "ready":
        raise PeerError(f"jsforce did not start: {ready}")
    return peer


async def test_jsforce_logs_in_and_replays_platform_events(
    jsforce_installed: None, org: Emulator, peers: Any
) -> None:
    for n in range(2):
        await org.publish("/event/Order__e", {"N__c": n})
    peer = await start_jsforce(peers, org, login=True)
    ready = peer.events("ready")[0]
    assert ready["instanceUrl"] == org.instance_url
    await peer.send(op="subscribe", channel="/event/Order__e", replay=-2)
    await peer.expect("subscribed", channel="/event/Order__e")
    assert order_numbers(await peer.expect_count("/event/Order__e", 2)) == [0, 1]
    await org.publish("/event/Order__e", {"N__c": 2})
    await peer.send(op="publish", sobject="Order__e", fields={"N__c": 3})
    published = await peer.expect("published")
    assert published["result"]["success"] is True
    messages = await peer.expect_count("/event/Order__e", 4)
    assert order_numbers(messages) == [0, 1, 2, 3]
    assert [m["event"]["replayId"] for m in messages] == [1, 2, 3, 4]
    # jsforce's default API version is 50.0: no EventUuid before 52.0
    assert all("EventUuid" not in m["event"] for m in messages)
    handshake = next(m for m in peer.events("meta") if m["channel"] == "/meta/handshake")
    assert handshake["ext"] == {"replay": True, "payload.format": True}


async def test_jsforce_push_topic_and_change_events(
    jsforce_installed: None, org: Emulator, peers: Any
) -> None:
    peer = await start_jsforce(peers, org)
    await peer.send(op="topic", name="Accounts")
    await peer.expect("subscribed", channel="/topic/Accounts")
    await peer.send(op="subscribe", channel="/data/AccountChangeEvent", replay=-1)
    await peer.expect("subscribed", channel="/data/AccountChangeEvent")
    record = org.create_record("Account", {"Name": "Acme", "Type": "Partner"})
    [topic] = await peer.expect_count("/topic/Accounts", 1)
    assert topic["event"]["type"] == "created"
    assert topic["sobject"] == {"Id": record, "Name": "Acme", "Type": "Partner"}
    [change] = await peer.expect_count("/data/AccountChangeEvent", 1)
    assert change["payload"]["ChangeEventHeader"]["recordIds"] == [record]
    assert change["payload"]["ChangeEventHeader"]["changeType"] == "CREATE"


async def test_jsforce_recovers_from_an_expired_session(
    jsforce_installed: None, org: Emulator, peers: Any
) -> None:
    peer = await start_jsforce(peers, org)
    await peer.send(op="subscribe", channel="/event/Order__e", replay=-2)
    await peer.expect("subscribed", channel="/event/Order__e")
    await org.publish("/event/Order__e", {"N__c": 0})
    await peer.expect_count("/event/Order__e", 1)
    org.expire_sessions()
    await org.publish("/event/Order__e", {"N__c": 1})  # while the client has no session
    await peer.wait_until(
        lambda: (
            sum(
                1
                for m in peer.events("meta")
                if m["channel"] == "/meta/handshake" and m["successful"]
            )
            >= 2
        ),
        within=WAIT,
        what="a second handshake",
    )
    unknown = [m for m in peer.events("meta") if m.get("error") == "403::Unknown client"]
    assert unknown
    assert unknown[0]["advice"] == {"interval": 0, "reconnect": "handshake"}
    await org.publish("/event/Order__e", {"N__c": 2})
    # Faye re-subscribes with the Replay extension's last replayId: nothing lost, no duplicate
    assert order_numbers(await peer.expect_count("/event/Order__e", 3)) == [0, 1, 2]


async def test_jsforce_auth_failure_on_a_revoked_token(
    jsforce_installed: None, org: Emulator, peers: Any
) -> None:
    peer = await start_jsforce(peers, org)
    await peer.send(op="subscribe", channel="/event/Order__e")
    await peer.expect("subscribed", channel="/event/Order__e")
    org.revoke_tokens()
    failure = await peer.expect("auth_failure")
    assert failure["message"]["channel"] == "/meta/connect"
    assert failure["message"]["error"] == "401::Authentication invalid"
    assert failure["message"]["advice"]["reconnect"] == "none"


async def test_jsforce_generic_streaming_push(
    jsforce_installed: None, org: Emulator, peers: Any
) -> None:
    peer = await start_jsforce(peers, org)
    await peer.send(op="subscribe", channel="/u/news")
    await peer.expect("subscribed", channel="/u/news")
    # channel(name).push() looks the StreamingChannel id up with a query, then pushes
    await peer.send(op="push", channel="/u/news", payload="hello world!")
    pushed = await peer.expect("pushed")
    assert pushed["result"] == {"fanoutCount": -1, "userOnlineStatus": {}}
    [message] = await peer.expect_count("/u/news", 1)
    assert message["payload"] == "hello world!"
    assert message["event"]["replayId"] == 1


# -- the CometD JavaScript client --------------------------------------------------------------


async def start_cometd(
    peers: Any, org: Emulator, *, token: str | None = None, scheme: str = "Bearer"
) -> CometdPeer:
    args = [
        "--url",
        org.cometd_url("62.0"),
        "--token",
        org.issue_access_token() if token is None else token,
        "--scheme",
        scheme,
    ]
    peer: CometdPeer = await peers(CometdPeer(), args)
    # The client tries WebSocket first: the emulator answers that GET with 400 (no 101), the
    # client reports a failed handshake without an error and falls back to long-polling.
    await peer.wait_for(
        lambda line: line.get("event") == "handshake" and ("error" in line or line["successful"]),
        within=STARTUP,
        what="a long-polling handshake",
    )
    return peer


def long_polling_handshakes(peer: _Peer) -> list[JSONObject]:
    return [h for h in peer.events("handshake") if h["successful"] or "error" in h]


async def test_cometd_receives_with_replay(org: Emulator, peers: Any, node_peers: None) -> None:
    for n in range(2):
        await org.publish("/event/Order__e", {"N__c": n})
    peer = await start_cometd(peers, org, scheme="OAuth")
    [handshake] = long_polling_handshakes(peer)
    assert handshake["successful"] is True
    assert handshake["ext"] == {"replay": True, "payload.format": True}
    await peer.send(op="subscribe", channel="/event/Order__e", replay=-2)
    await peer.expect("subscribed", channel="/event/Order__e", successful=True)
    assert order_numbers(await peer.expect_count("/event/Order__e", 2)) == [0, 1]
    await org.publish("/event/Order__e", {"N__c": 2})
    messages = await peer.expect_count("/event/Order__e", 3)
    assert order_numbers(messages) == [0, 1, 2]
    assert all("EventUuid" in m["event"] for m in messages)  # a 62.0 endpoint


async def test_cometd_push_topic(org: Emulator, peers: Any, node_peers: None) -> None:
    peer = await start_cometd(peers, org)
    # The CometD JavaScript client refuses a filtered channel name as invalid (client side).
    await peer.send(op="subscribe", channel="/topic/Accounts?Type=Partner")
    refused = await peer.expect("subscribed", channel="/topic/Accounts?Type=Partner")
    assert refused["successful"] is False
    await peer.send(op="subscribe", channel="/topic/Accounts")
    await peer.expect("subscribed", channel="/topic/Accounts", successful=True)
    record = org.create_record("Account", {"Name": "partner", "Type": "Partner"})
    [message] = await peer.expect_count("/topic/Accounts", 1)
    assert message["sobject"] == {"Id": record, "Name": "partner", "Type": "Partner"}
    assert message["event"]["type"] == "created"


async def test_cometd_recovers_from_an_expired_session(
    org: Emulator, peers: Any, node_peers: None
) -> None:
    peer = await start_cometd(peers, org)
    await peer.send(op="subscribe", channel="/event/Order__e", replay=-1)
    await peer.expect("subscribed", channel="/event/Order__e", successful=True)
    await org.publish("/event/Order__e", {"N__c": 0})
    await peer.expect_count("/event/Order__e", 1)
    org.expire_sessions()
    await org.publish("/event/Order__e", {"N__c": 1})
    await peer.wait_until(
        lambda: sum(1 for h in peer.events("handshake") if h["successful"]) >= 2,
        within=WAIT,
        what="a second handshake",
    )
    [failure] = peer.events("connect_failed")[:1]
    assert failure["error"] == "403::Unknown client"
    await org.publish("/event/Order__e", {"N__c": 2})
    assert order_numbers(await peer.expect_count("/event/Order__e", 3)) == [0, 1, 2]


async def test_cometd_after_a_server_disconnect(
    org: Emulator, peers: Any, node_peers: None
) -> None:
    peer = await start_cometd(peers, org)
    await peer.send(op="subscribe", channel="/data/ChangeEvents", replay=-1)
    await peer.expect("subscribed", channel="/data/ChangeEvents", successful=True)
    org.push_disconnect()
    await peer.wait_until(
        lambda: sum(1 for h in peer.events("handshake") if h["successful"]) >= 2,
        within=WAIT,
        what="a handshake after the server's /meta/disconnect",
    )
    await peer.wait_until(
        lambda: len(peer.events("subscribed")) >= 2, within=WAIT, what="the re-subscription"
    )
    record = org.create_record("Contact", {"LastName": "Lovelace"})
    [change] = await peer.expect_count("/data/ChangeEvents", 1)
    assert change["payload"]["ChangeEventHeader"]["recordIds"] == [record]


async def test_cometd_with_an_invalid_token(org: Emulator, peers: Any, node_peers: None) -> None:
    peer = await start_cometd(peers, org, token="not-a-token")
    handshake = long_polling_handshakes(peer)[0]
    assert handshake["successful"] is False
    assert handshake["error"] == "403::Handshake denied"
    assert handshake["ext"]["sfdc"] == {"failureReason": "401::Authentication invalid"}
    assert handshake["advice"]["reconnect"] == "none"
