"""The admin endpoint (/_emulator): publishing, definitions, tokens, sessions, clock, faults."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from sfstream.emulator import Emulator

from .conftest import Bayeux, events_of


async def admin(
    http: aiohttp.ClientSession,
    org: Emulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    async with http.request(
        method, org.admin_url + path, json=body if raw is None else None, data=raw
    ) as response:
        return response.status, await response.json()


async def test_status(http: aiohttp.ClientSession, org: Emulator, bayeux: Bayeux) -> None:
    await bayeux.start("/event/Order__e")
    await org.publish("/event/Order__e", {"N__c": 1})
    org.unknown_client()
    status, body = await admin(http, org, "GET", "")
    assert status == 200
    assert body["loginUrl"] == org.login_url
    assert body["instanceUrl"] == org.instance_url
    assert body["userId"] == org.user_id
    assert body["platformEvents"] == ["Order__e"]
    assert body["channels"]["/event/Order__e"] == {
        "retained": 1,
        "lastReplayId": 1,
        "purgedThrough": 0,
    }
    [session] = body["sessions"]
    assert session["clientId"] == bayeux.client_id
    assert session["subscriptions"] == {"/event/Order__e": 0}
    assert body["faults"][0]["error"] == "403::Unknown client"
    text = str(body)
    assert org.password not in text
    assert org.consumer_secret not in text


async def test_publish(http: aiohttp.ClientSession, org: Emulator, bayeux: Bayeux) -> None:
    await bayeux.start("/event/Order__e")
    status, body = await admin(
        http, org, "POST", "/publish", {"channel": "/event/Order__e", "payload": {"N__c": 1}}
    )
    assert status == 200
    assert body["count"] == 1
    assert body["replayIds"] == [1]
    assert len(body["eventUuids"]) == 1
    status, body = await admin(
        http,
        org,
        "POST",
        "/publish",
        {"channel": "/event/Order__e", "payload": {"N__c": 2}, "count": 1500},
    )
    assert body == {"count": 1500, "firstReplayId": 2, "lastReplayId": 1501}
    status, body = await admin(
        http,
        org,
        "POST",
        "/publish",
        {"channel": "/event/Order__e", "payloads": [{"N__c": 3}, {"N__c": 4}]},
    )
    assert body["replayIds"] == [1502, 1503]
    assert len(events_of(await bayeux.connect())) == 1503
    status, body = await admin(
        http, org, "POST", "/publish", {"channel": "/event/Order__e", "payloads": []}
    )
    assert body == {"count": 0}


async def test_publish_options(http: aiohttp.ClientSession, org: Emulator) -> None:
    org.create_push_topic("T", "SELECT Id FROM Account")
    status, _ = await admin(
        http,
        org,
        "POST",
        "/publish",
        {"channel": "/topic/T", "payload": {"Id": "x"}, "eventType": "deleted"},
    )
    assert status == 200
    assert org.events("/topic/T")[0]["event"]["type"] == "deleted"
    status, body = await admin(
        http,
        org,
        "POST",
        "/publish",
        {"channel": "/u/news", "payload": "hi", "userIds": [org.user_id]},
    )
    assert status == 200
    assert "eventUuids" not in body
    status, _ = await admin(
        http,
        org,
        "POST",
        "/publish",
        {"channel": "/data/AccountChangeEvent", "payload": {"Name": "x"}, "changeType": "UPDATE"},
    )
    assert status == 200


@pytest.mark.parametrize(
    ("body", "raw"),
    [
        ({"payload": {}}, None),
        ({"channel": "/event/Order__e"}, None),
        ({"channel": 5, "payload": {}}, None),
        ({"channel": "/event/Order__e", "payload": {}, "count": True}, None),
        ({"channel": "/event/Order__e", "payload": "text"}, None),
        ({"channel": "/nowhere", "payload": {}}, None),
        (None, b"{bad json"),
        (None, b"[1]"),
    ],
)
async def test_publish_errors(
    http: aiohttp.ClientSession, org: Emulator, body: Any, raw: bytes | None
) -> None:
    status, answer = await admin(http, org, "POST", "/publish", body, raw=raw)
    assert status == 400
    assert "error" in answer


async def test_definitions(http: aiohttp.ClientSession, org: Emulator, bayeux: Bayeux) -> None:
    assert (await admin(http, org, "POST", "/events", {"name": "Ship__e", "fields": ["A__c"]}))[
        0
    ] == 200
    assert (
        await admin(
            http, org, "POST", "/channels", {"channel": "/event/All__chn", "members": ["Ship__e"]}
        )
    )[0] == 200
    status, body = await admin(
        http,
        org,
        "POST",
        "/push-topics",
        {"name": "Accts", "query": "SELECT Id FROM Account", "notifyForFields": "All"},
    )
    assert (status, body["channel"]) == (200, "/topic/Accts")
    status, body = await admin(http, org, "POST", "/streaming-channels", {"name": "/u/x"})
    assert (status, body["channel"]) == (200, "/u/x")
    assert (await admin(http, org, "POST", "/cdc", {"entity": "Employee__c"}))[0] == 200
    await bayeux.handshake()
    for channel in (
        "/event/Ship__e",
        "/event/All__chn",
        "/topic/Accts",
        "/u/x",
        "/data/Employee__ChangeEvent",
    ):
        assert (await bayeux.subscribe(channel))["successful"], channel
    status, body = await admin(
        http, org, "POST", "/records", {"sobject": "Account", "fields": {"Name": "A"}}
    )
    assert status == 200
    assert body["id"].startswith("001")
    # errors: duplicate topic (a REST error), bad event name (a ValueError), missing field
    status, body = await admin(
        http, org, "POST", "/push-topics", {"name": "Accts", "query": "SELECT Id FROM Account"}
    )
    assert (status, body["errorCode"]) == (400, "DUPLICATE_VALUE")
    status, _ = await admin(http, org, "POST", "/events", {"name": "bad name"})
    assert status == 400
    status, _ = await admin(http, org, "POST", "/streaming-channels", {})
    assert status == 400


async def test_tokens_sessions_and_clock(
    http: aiohttp.ClientSession, org: Emulator, bayeux: Bayeux
) -> None:
    status, body = await admin(http, org, "POST", "/tokens", {})
    assert status == 200
    assert body["instance_url"] == org.instance_url
    other = Bayeux(http, org, body["access_token"])
    assert (await other.handshake())["successful"]
    await bayeux.start()
    assert await admin(http, org, "POST", "/sessions/expire", {"clientId": other.client_id}) == (
        200,
        {"expired": 1},
    )
    assert await admin(http, org, "POST", "/sessions/disconnect", {}) == (200, {"disconnected": 1})
    replies = await bayeux.connect()
    assert replies[0]["channel"] == "/meta/disconnect"
    assert await admin(http, org, "POST", "/sessions/expire") == (200, {"expired": 0})
    before = org.clock.time()
    status, body = await admin(http, org, "POST", "/clock/advance", {"seconds": 3600})
    assert status == 200
    assert body["time"] == before + 3600
    assert body["purged"] == 0
    assert (await admin(http, org, "POST", "/clock/advance", {"seconds": -1}))[0] == 400
    assert (await admin(http, org, "POST", "/tokens/revoke", {"kind": "bogus"}))[0] == 400
    status, body = await admin(http, org, "POST", "/tokens/revoke", {"kind": "access"})
    assert status == 200
    assert body["revoked"] >= 2
    assert (await other.handshake())["error"] == "403::Handshake denied"


async def test_fault_routes(http: aiohttp.ClientSession, org: Emulator, bayeux: Bayeux) -> None:
    await bayeux.start()
    status, body = await admin(http, org, "POST", "/faults/unknown-client-none", {"count": 1})
    assert status == 200
    assert body["advice"] == {"interval": 0, "reconnect": "none"}
    [reply] = await bayeux.connect()
    assert reply["error"] == "403::Unknown client"
    for preset in (
        "unknown-client",
        "authentication-invalid",
        "server-busy",
        "daily-limit",
        "connection-limit",
        "concurrent-user-limit",
    ):
        status, body = await admin(http, org, "POST", f"/faults/{preset}")
        assert status == 200, preset
    status, listed = await admin(http, org, "GET", "/faults")
    assert len(listed) == 6
    assert await admin(http, org, "DELETE", "/faults") == (200, {"cleared": 6})
    status, body = await admin(http, org, "POST", "/faults/nope")
    assert status == 400
    assert "unknown-client" in body["error"]
    status, body = await admin(http, org, "POST", "/faults/server-busy", {"count": None})
    assert body["count"] is None
    await admin(http, org, "DELETE", "/faults")


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ({"kind": "status", "status": 502}, {"status": 502}),
        ({"kind": "delay", "seconds": 0.01, "target": "rest"}, {"seconds": 0.01, "target": "rest"}),
        ({"kind": "drop", "when": "before_response"}, {"when": "before_response"}),
        ({"kind": "invalid_json", "target": "any", "count": 3}, {"count": 3, "target": "any"}),
        (
            {
                "kind": "bayeux",
                "error": "403::Unknown client",
                "advice": {"reconnect": "none"},
                "failureReason": "x",
                "expireSession": True,
            },
            {
                "channel": "/meta/connect",
                "ext": {"sfdc": {"failureReason": "x"}},
                "expire_session": True,
            },
        ),
        (
            {"kind": "bayeux", "error": "e", "channel": "/meta/handshake", "ext": {"a": 1}},
            {"channel": "/meta/handshake", "ext": {"a": 1}},
        ),
    ],
)
async def test_add_fault(
    http: aiohttp.ClientSession, org: Emulator, fault: dict[str, Any], check: dict[str, Any]
) -> None:
    status, body = await admin(http, org, "POST", "/faults", fault)
    assert status == 200
    for key, value in check.items():
        assert body[key] == value


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "nope"},
        {"kind": "status", "target": "nowhere"},
        {"kind": "drop", "when": "later"},
        {"kind": "bayeux"},
        {"kind": "delay"},
        {"kind": "status", "count": 0},
        {"kind": "status", "count": "x"},
    ],
)
async def test_add_fault_errors(
    http: aiohttp.ClientSession, org: Emulator, fault: dict[str, Any]
) -> None:
    status, body = await admin(http, org, "POST", "/faults", fault)
    assert status == 400, body


async def test_admin_can_be_turned_off(http: aiohttp.ClientSession) -> None:
    async with Emulator(admin=False) as org, http.get(org.admin_url) as response:
        assert response.status == 404
