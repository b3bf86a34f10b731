"""Fault injection from Python: Bayeux errors and advice, session expiry, server disconnects,
revoked tokens, and HTTP-level faults (status, invalid JSON, dropped connections, delays)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from sfstream.emulator import Emulator, Fault, FaultKind
from sfstream.emulator._faults import FaultQueue

from .conftest import LONG_HOLD, Bayeux, events_of, password_token

DOS = (
    "403::To protect all customers from excessive use and Denial of Service attacks, we limit "
    "the number of simultaneous connections per server.  Your request has been denied because "
    "this limit has been exceeded.  Please try your request again later."
)


async def test_unknown_client_with_handshake_advice(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start()
    org.unknown_client()
    [reply] = await bayeux.connect()
    assert reply == {
        "channel": "/meta/connect",
        "id": "3",
        "error": "403::Unknown client",
        "successful": False,
        "advice": {"interval": 0, "reconnect": "handshake"},
    }
    assert org.session_count == 0
    [reply] = await bayeux.connect()
    assert reply["error"] == "403::Unknown client"


async def test_unknown_client_with_reconnect_none(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start()
    org.unknown_client(reconnect="none")
    [reply] = await bayeux.connect()
    assert reply["advice"] == {"interval": 0, "reconnect": "none"}


async def test_arming_a_fault_releases_held_connects(long_hold: tuple[Emulator, Bayeux]) -> None:
    org, bayeux = long_hold
    await bayeux.start()
    held = asyncio.create_task(bayeux.connect())
    await asyncio.sleep(0.05)
    started = time.monotonic()
    org.unknown_client()
    [released] = await held
    assert time.monotonic() - started < LONG_HOLD / 2
    assert released["successful"]
    [reply] = await bayeux.connect()
    assert reply["error"] == "403::Unknown client"


async def test_server_busy_hides_behind_a_401(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start()
    org.server_busy()
    [reply] = await bayeux.connect()
    assert reply == {
        "clientId": bayeux.client_id,
        "channel": "/meta/connect",
        "id": "3",
        "error": "401::Authentication invalid",
        "successful": False,
        "advice": {"reconnect": "none", "interval": 0},
        "ext": {
            "sfdc": {
                "failureReason": "503::Server is too busy.  Please try your request again later."
            }
        },
    }
    # the session and the token are untouched
    assert (await bayeux.connect())[-1]["successful"]


async def test_server_busy_on_handshake_and_subscribe(bayeux: Bayeux, org: Emulator) -> None:
    org.server_busy(channel="/meta/handshake")
    reply = await bayeux.handshake()
    assert reply["ext"]["sfdc"]["failureReason"].startswith("503::")
    await bayeux.handshake()
    org.server_busy(channel="/meta/subscribe")
    reply = await bayeux.subscribe("/event/Order__e")
    assert reply["error"] == "401::Authentication invalid"
    assert reply["subscription"] == "/event/Order__e"
    assert reply["clientId"] == bayeux.client_id


async def test_daily_limit(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start()
    org.daily_limit_exceeded()
    [reply] = await bayeux.connect()
    assert reply["error"] == "403::Organization total events daily limit exceeded"
    assert reply["advice"] == {"reconnect": "none", "interval": 0}
    org.daily_limit_exceeded(channel="/meta/subscribe", advice={"reconnect": "retry"})
    reply = await bayeux.subscribe("/event/Order__e")
    assert reply["error"] == "403::Organization total events daily limit exceeded"
    assert reply["advice"] == {"reconnect": "retry"}


async def test_connection_limit_denies_handshakes(bayeux: Bayeux, org: Emulator) -> None:
    org.connection_limit(count=2)
    for _ in range(2):
        reply = await bayeux.handshake()
        assert reply == {
            "channel": "/meta/handshake",
            "id": reply["id"],
            "error": "403::Handshake denied",
            "successful": False,
            "advice": {"reconnect": "none"},
            "ext": {"sfdc": {"failureReason": DOS}, "replay": True, "payload.format": True},
        }
    assert (await bayeux.handshake())["successful"]


async def test_concurrent_user_limit(bayeux: Bayeux, org: Emulator) -> None:
    org.concurrent_user_limit()
    reply = await bayeux.handshake()
    assert reply["ext"]["sfdc"]["failureReason"] == (
        "403::Organization concurrent user limit exceeded"
    )


async def test_authentication_invalid_without_revoking(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start()
    org.authentication_invalid()
    [reply] = await bayeux.connect()
    assert reply["error"] == "401::Authentication invalid"
    assert reply["advice"] == {"reconnect": "none", "interval": 0}
    assert (await bayeux.connect())[-1]["successful"]


async def test_fail_next_custom(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.handshake()
    fault = org.fail_next(
        "500::Internal",
        channel="/meta/subscribe",
        count=2,
        failure_reason="why",
        ext={"other": 1},
        advice={"reconnect": "retry", "interval": 500},
    )
    for _ in range(2):
        reply = await bayeux.subscribe("/event/Order__e")
        assert reply["error"] == "500::Internal"
        assert reply["ext"] == {"other": 1, "sfdc": {"failureReason": "why"}}
        assert reply["advice"] == {"reconnect": "retry", "interval": 500}
    assert (await bayeux.subscribe("/event/Order__e"))["successful"]
    assert fault.fired == 2
    assert len(org.faults) == 0


async def test_fail_until_cleared(bayeux: Bayeux, org: Emulator) -> None:
    org.fail_next("503::down", channel=None, count=None)
    for _ in range(3):
        assert (await bayeux.handshake())["error"] == "503::down"
    assert org.clear_faults() == 1
    assert (await bayeux.handshake())["successful"]


async def test_expire_sessions(bayeux: Bayeux, org: Emulator, http: aiohttp.ClientSession) -> None:
    await bayeux.start()
    held = asyncio.create_task(bayeux.connect())
    await asyncio.sleep(0.05)
    assert org.expire_sessions() == 1
    [reply] = await held
    assert reply["error"] == "403::Unknown client"
    assert reply["advice"] == {"interval": 0, "reconnect": "handshake"}
    await bayeux.start()
    other = Bayeux(http, org, bayeux.token)
    await other.start()
    assert org.expire_sessions("not-a-client") == 0
    assert org.expire_sessions(other.client_id) == 1
    assert (await bayeux.connect())[-1]["successful"]


async def test_push_disconnect_on_a_held_connect(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start()
    held = asyncio.create_task(bayeux.connect())
    await asyncio.sleep(0.05)
    assert org.push_disconnect() == 1
    replies = await held
    assert replies == [
        {"channel": "/meta/disconnect", "clientId": bayeux.client_id, "successful": True},
        {
            "channel": "/meta/connect",
            "id": "3",
            "error": "403::Unknown client",
            "successful": False,
            "advice": {"interval": 0, "reconnect": "handshake"},
        },
    ]
    [reply] = await bayeux.connect()
    assert reply["error"] == "403::Unknown client"


async def test_push_disconnect_between_connects(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start()
    assert org.push_disconnect(bayeux.client_id) == 1
    replies = await bayeux.connect()
    assert [m["channel"] for m in replies] == ["/meta/disconnect", "/meta/connect"]
    assert replies[-1]["error"] == "403::Unknown client"


async def test_a_fault_on_a_disconnected_client(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start()
    org.push_disconnect()
    org.unknown_client(reconnect="none")
    [reply] = await bayeux.connect()
    assert reply["advice"]["reconnect"] == "none"


async def test_forgotten_disconnects_expire(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start()
    org.push_disconnect()
    await asyncio.sleep(1.6)  # session expiry 1 s, sweep every 0.5 s
    [reply] = await bayeux.connect()
    assert reply["error"] == "403::Unknown client"  # no /meta/disconnect left to hand over


async def test_revoke_tokens(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start()
    assert org.revoke_tokens("refresh") == 1  # the configured refresh token
    assert (await bayeux.connect())[-1]["successful"]
    assert org.revoke_token(bayeux.token) == 1
    assert org.revoke_token(bayeux.token) == 0
    [reply] = await bayeux.connect()
    assert reply["error"] == "401::Authentication invalid"


async def test_http_error(bayeux: Bayeux, org: Emulator) -> None:
    org.http_error(502)
    status, body = await bayeux.raw([bayeux.message("/meta/handshake")])
    assert status == 502
    assert "502 Bad Gateway" in body
    org.http_error(418)
    status, _ = await bayeux.raw([bayeux.message("/meta/handshake")])
    assert status == 418
    assert (await bayeux.handshake())["successful"]


async def test_invalid_json(bayeux: Bayeux, org: Emulator) -> None:
    org.invalid_json()
    async with bayeux.http.post(bayeux.url, json=[], headers=bayeux.headers) as response:
        assert response.status == 400  # an empty batch is not a Bayeux request
    async with bayeux.http.post(
        bayeux.url, json=[bayeux.message("/meta/handshake")], headers=bayeux.headers
    ) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        with pytest.raises(ValueError, match=r"JSON|Expecting|Unterminated"):
            await response.json()


async def test_drop_connection_mid_response(bayeux: Bayeux, org: Emulator) -> None:
    org.drop_connection()
    with pytest.raises(aiohttp.ClientPayloadError):
        await bayeux.handshake()
    assert (await bayeux.handshake())["successful"]


async def test_drop_connection_before_response(bayeux: Bayeux, org: Emulator) -> None:
    org.drop_connection(when="before_response")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await bayeux.handshake()
    assert (await bayeux.handshake())["successful"]


async def test_faults_for_one_channel_only(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start()
    org.drop_connection(channel="/meta/subscribe")
    assert (await bayeux.connect())[-1]["successful"]
    with pytest.raises(aiohttp.ClientPayloadError):
        await bayeux.subscribe("/event/Order__e")


async def test_delay_responses(bayeux: Bayeux, org: Emulator) -> None:
    org.delay_responses(0.3)
    started = time.monotonic()
    assert (await bayeux.handshake())["successful"]
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    await bayeux.handshake()
    assert time.monotonic() - started < 0.3


async def test_faults_on_the_token_endpoint_and_rest(
    http: aiohttp.ClientSession, org: Emulator, token: str
) -> None:
    org.http_error(500, target="token")
    with pytest.raises(AssertionError):
        await password_token(http, org)
    await password_token(http, org)
    org.http_error(503, target="rest")
    url = f"{org.instance_url}/services/data/v62.0/"
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(url, headers=headers) as response:
        assert response.status == 503
    org.delay_responses(0.05, target="any", count=2)
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
    await password_token(http, org)
    async with http.get(url, headers=headers) as response:
        assert response.status == 200


async def test_events_still_flow_after_faults(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start("/event/Order__e")
    await org.publish("/event/Order__e", {"N__c": 1})
    org.http_error(500)
    status, _ = await bayeux.raw([bayeux.message("/meta/connect", connectionType="long-polling")])
    assert status == 500
    events = events_of(await bayeux.connect())
    assert [e["data"]["payload"]["N__c"] for e in events] == [1]


def test_fault_queue_validation() -> None:
    queue = FaultQueue()
    with pytest.raises(ValueError, match="target"):
        queue.add(Fault(FaultKind.STATUS, target="nowhere"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least once"):
        queue.add(Fault(FaultKind.STATUS, count=0))
    assert queue.take_http("rest") is None
    assert queue.take_bayeux("/meta/connect") is None


def test_fault_descriptions() -> None:
    assert Fault(FaultKind.STATUS, status=502).describe()["status"] == 502
    assert Fault(FaultKind.DELAY, seconds=1.5).describe()["seconds"] == 1.5
    assert Fault(FaultKind.DROP, when="before_response").describe()["when"] == "before_response"
    bayeux = Fault(FaultKind.BAYEUX, error="x", expire_session=True).describe()
    assert bayeux["error"] == "x"
    assert bayeux["expire_session"] is True
    assert set(Fault(FaultKind.INVALID_JSON).describe()) == {
        "kind",
        "count",
        "target",
        "channel",
        "fired",
    }


def test_fault_methods_work_before_start() -> None:
    org = Emulator()
    org.unknown_client()
    assert org.expire_sessions() == 0
    assert org.push_disconnect() == 0
    assert org.sessions() == []
    assert org.session_count == 0
    assert org.revoke_tokens() == 1
