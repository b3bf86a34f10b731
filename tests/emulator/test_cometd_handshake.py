"""``/cometd/<version>``: versions, authorization, cookies, the handshake reply, HTTP details."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sfstream.emulator import Emulator

from .conftest import Bayeux

MISSING = "400::API version in the URI is mandatory. URI format: '/cometd/67.0'"
UNSUPPORTED = (
    "400::Unsupported API version. Only API versions '37.0' and later are supported. "
    "URI format: '/cometd/67.0'"
)
HANDSHAKE = {
    "channel": "/meta/handshake",
    "version": "1.0",
    "id": "1",
    "supportedConnectionTypes": ["long-polling"],
}


async def post(
    http: aiohttp.ClientSession, url: str, body: object, headers: dict[str, str] | None = None
) -> tuple[int, object]:
    async with http.post(url, json=body, headers=headers) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def test_successful_handshake_reply(bayeux: Bayeux) -> None:
    reply = await bayeux.handshake()
    client_id = reply.pop("clientId")
    assert reply == {
        "ext": {"replay": True, "payload.format": True},
        "minimumVersion": "1.0",
        "supportedConnectionTypes": ["long-polling"],
        "channel": "/meta/handshake",
        "id": "1",
        "version": "1.0",
        "successful": True,
    }
    assert "advice" not in reply
    assert len(client_id) == 27
    assert client_id.isalnum()
    assert client_id == client_id.lower()


async def test_handshake_sets_the_bayeux_browser_cookie(
    http: aiohttp.ClientSession, org: Emulator, token: str
) -> None:
    async with http.post(
        org.cometd_url(), json=[HANDSHAKE], headers={"Authorization": f"Bearer {token}"}
    ) as response:
        cookies = response.cookies
    assert "BAYEUX_BROWSER" in cookies
    morsel = cookies["BAYEUX_BROWSER"]
    assert morsel["path"] == "/cometd/"
    assert morsel["httponly"]
    assert "BrowserId" in cookies


@pytest.mark.parametrize("scheme", ["Bearer", "OAuth", "bearer", "oauth"])
async def test_bearer_and_oauth_schemes(
    http: aiohttp.ClientSession, org: Emulator, token: str, scheme: str
) -> None:
    client = Bayeux(http, org, token, scheme=scheme)
    assert (await client.handshake())["successful"]


async def test_a_bare_token_is_accepted(
    http: aiohttp.ClientSession, org: Emulator, token: str
) -> None:
    # EMP-Connector sends the token with no scheme.
    status, body = await post(http, org.cometd_url(), [HANDSHAKE], {"Authorization": token})
    assert status == 200
    assert body[0]["successful"]  # type: ignore[index]


async def test_handshake_without_a_token(http: aiohttp.ClientSession, org: Emulator) -> None:
    status, body = await post(http, org.cometd_url(), [HANDSHAKE])
    assert status == 200
    assert body == [
        {
            "channel": "/meta/handshake",
            "id": "1",
            "error": "403::Handshake denied",
            "successful": False,
            "ext": {
                "sfdc": {"failureReason": "401::Request requires authentication"},
                "replay": True,
                "payload.format": True,
            },
        }
    ]


@pytest.mark.parametrize(
    ("header", "reason", "advice"),
    [
        ("Bearer not-a-token", "401::Authentication invalid", {"reconnect": "none"}),
        ("OAuth not-a-token", "401::Authentication invalid", {"reconnect": "none"}),
        ("not-a-token", "401::Authentication invalid", {"reconnect": "none"}),
        ("Basic abc def", "401::Request requires authentication", None),
    ],
)
async def test_handshake_with_an_invalid_token(
    http: aiohttp.ClientSession,
    org: Emulator,
    header: str,
    reason: str,
    advice: dict[str, str] | None,
) -> None:
    status, body = await post(http, org.cometd_url(), [HANDSHAKE], {"Authorization": header})
    assert status == 200
    assert isinstance(body, list)
    [reply] = body
    assert reply["error"] == "403::Handshake denied"
    assert reply["successful"] is False
    assert reply.get("advice") == advice
    assert reply["ext"] == {
        "sfdc": {"failureReason": reason},
        "replay": True,
        "payload.format": True,
    }
    assert "clientId" not in reply


async def test_handshake_with_a_revoked_token(bayeux: Bayeux, org: Emulator) -> None:
    org.revoke_tokens()
    reply = await bayeux.handshake()
    assert reply["error"] == "403::Handshake denied"
    assert reply["ext"]["sfdc"]["failureReason"] == "401::Authentication invalid"


@pytest.mark.parametrize("path", ["/cometd", "/cometd/", "/cometd//"])
async def test_missing_version(
    http: aiohttp.ClientSession, org: Emulator, token: str, path: str
) -> None:
    status, body = await post(
        http, org.base_url + path, [HANDSHAKE], {"Authorization": f"Bearer {token}"}
    )
    assert status == 200
    assert body == [
        {
            "channel": "/meta/handshake",
            "id": "1",
            "error": MISSING,
            "successful": False,
            "advice": {"reconnect": "none"},
        }
    ]


@pytest.mark.parametrize("version", ["36.0", "23.0", "replay/36.0", "abc", "36"])
async def test_unsupported_versions(
    http: aiohttp.ClientSession, org: Emulator, token: str, version: str
) -> None:
    status, body = await post(
        http, f"{org.base_url}/cometd/{version}", [HANDSHAKE], {"Authorization": f"Bearer {token}"}
    )
    assert status == 200
    assert body[0]["error"] == UNSUPPORTED  # type: ignore[index]


@pytest.mark.parametrize("version", ["37.0", "45.0", "50.0", "67.0", "replay/45.0", "45"])
async def test_supported_versions(
    http: aiohttp.ClientSession, org: Emulator, token: str, version: str
) -> None:
    status, body = await post(
        http, f"{org.base_url}/cometd/{version}", [HANDSHAKE], {"Authorization": f"Bearer {token}"}
    )
    assert status == 200
    assert body[0]["successful"]  # type: ignore[index]


@pytest.mark.parametrize("suffix", ["/", "/handshake", "/connect", "/disconnect"])
async def test_cometd_js_url_suffixes(bayeux: Bayeux, suffix: str) -> None:
    # The CometD JavaScript client appends the message type to the URL.
    [reply] = await bayeux.send(
        bayeux.message("/meta/handshake", version="1.0", supportedConnectionTypes=["long-polling"]),
        suffix=suffix,
    )
    assert reply["successful"]
    bayeux.client_id = reply["clientId"]
    replies = await bayeux.send(
        bayeux.message("/meta/connect", connectionType="long-polling"), suffix="/connect"
    )
    assert replies[-1]["successful"]


async def test_more_connection_types_offered_than_long_polling(bayeux: Bayeux) -> None:
    reply = await bayeux.handshake(
        supportedConnectionTypes=["websocket", "eventsource", "long-polling", "callback-polling"]
    )
    assert reply["successful"]
    assert reply["supportedConnectionTypes"] == ["long-polling"]


async def test_no_common_connection_type(bayeux: Bayeux) -> None:
    reply = await bayeux.handshake(supportedConnectionTypes=["websocket", "callback-polling"])
    assert reply["successful"] is False
    assert reply["error"] == "400::Invalid connection type {websocket, callback-polling}"


async def test_a_single_object_body_and_integer_ids(
    http: aiohttp.ClientSession, org: Emulator, token: str
) -> None:
    status, body = await post(
        http, org.cometd_url(), {**HANDSHAKE, "id": 7}, {"Authorization": f"Bearer {token}"}
    )
    assert status == 200
    assert body[0]["id"] == 7  # type: ignore[index]


async def test_form_encoded_message(http: aiohttp.ClientSession, org: Emulator, token: str) -> None:
    async with http.post(
        org.cometd_url(),
        data={"message": json.dumps([HANDSHAKE])},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 200
        assert (await response.json())[0]["successful"]
    async with http.post(
        org.cometd_url(), data={"other": "x"}, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 400


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 7):
        yield data[start : start + 7]


async def test_chunked_body_without_content_length(
    http: aiohttp.ClientSession, org: Emulator, token: str
) -> None:
    # The CometD Node adapter sends chunked bodies.
    async with http.post(
        org.cometd_url(),
        data=chunks(json.dumps([HANDSHAKE]).encode()),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    ) as response:
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert response.status == 200
        assert (await response.json())[0]["successful"]


async def test_request_body_limit(http: aiohttp.ClientSession, org: Emulator, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    padding = "x" * 32_768
    big = json.dumps([{**HANDSHAKE, "ext": {"pad": padding}}]).encode()
    async with http.post(org.cometd_url(), data=big, headers=headers) as response:
        assert response.status == 413
        assert await response.text() == "Maximum Request Size Exceeded"
    async with http.post(org.cometd_url(), data=chunks(big), headers=headers) as response:
        assert response.status == 413
    exact = json.dumps([{**HANDSHAKE, "ext": {"pad": ""}}]).encode()
    fill = 32_768 - len(exact)
    exact = json.dumps([{**HANDSHAKE, "ext": {"pad": "y" * fill}}]).encode()
    assert len(exact) == 32_768
    async with http.post(org.cometd_url(), data=exact, headers=headers) as response:
        assert response.status == 200


@pytest.mark.parametrize("body", [b"{not json", b"[]", b"[1, 2]", b'"text"', b""])
async def test_bodies_that_are_not_bayeux(
    http: aiohttp.ClientSession, org: Emulator, token: str, body: bytes
) -> None:
    async with http.post(
        org.cometd_url(),
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 400


async def test_websocket_probe_is_not_upgraded(
    http: aiohttp.ClientSession, org: Emulator, token: str
) -> None:
    # jsforce/Faye first try a WebSocket; anything but 101 makes them fall back.
    async with http.get(
        org.cometd_url(),
        headers={
            "Authorization": f"OAuth {token}",
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    ) as response:
        assert response.status != 101
        assert response.status == 400
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(org.cometd_url())


async def test_version_errors_name_the_configured_version(http: aiohttp.ClientSession) -> None:
    async with Emulator(api_version="62.0") as org:
        token = org.issue_access_token()
        status, body = await post(
            http, f"{org.base_url}/cometd/30.0", [HANDSHAKE], {"Authorization": f"Bearer {token}"}
        )
        assert status == 200
        assert body[0]["error"].endswith("URI format: '/cometd/62.0'")  # type: ignore[index]
