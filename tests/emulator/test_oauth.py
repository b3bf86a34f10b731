"""The OAuth 2.0 token, revoke and identity endpoints, through raw HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import aiohttp
import pytest

from sfstream.emulator import Emulator, ManualClock

from .conftest import password_token


async def post_token(
    http: aiohttp.ClientSession,
    org: Emulator,
    data: dict[str, str],
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    async with http.post(org.token_url, data=data, headers=headers) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


def password_form(org: Emulator, **changes: str) -> dict[str, str]:
    form = {
        "grant_type": "password",
        "client_id": org.consumer_key,
        "client_secret": org.consumer_secret,
        "username": org.username,
        "password": org.password,
    }
    form.update(changes)
    return form


async def test_password_grant_returns_salesforce_fields(
    http: aiohttp.ClientSession, org: Emulator, clock: ManualClock
) -> None:
    status, body = await post_token(http, org, password_form(org))
    assert status == 200
    assert set(body) == {
        "access_token",
        "signature",
        "scope",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
    }
    assert body["instance_url"] == org.instance_url
    assert body["token_type"] == "Bearer"
    assert body["id"] == f"{org.login_url}/id/{org.org_id}/{org.user_id}"
    assert body["issued_at"] == str(int(clock.time() * 1000))
    assert len(body["issued_at"]) == 13
    expected = hmac.new(
        org.consumer_secret.encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256
    ).digest()
    assert base64.b64decode(body["signature"]) == expected
    assert body["access_token"].startswith(org.org_id[:15] + "!")
    assert "refresh_token" not in body


@pytest.mark.parametrize(
    ("changes", "error", "description"),
    [
        ({"password": "wrong"}, "invalid_grant", "authentication failure"),
        ({"username": "nobody@example.com"}, "invalid_grant", "authentication failure"),
        ({"client_id": "wrong"}, "invalid_client_id", "client identifier invalid"),
        ({"client_secret": "wrong"}, "invalid_client", "invalid client credentials"),
        (
            {"grant_type": "authorization_code"},
            "unsupported_grant_type",
            "grant type not supported",
        ),
        ({"grant_type": ""}, "unsupported_grant_type", "grant type not supported"),
    ],
)
async def test_token_errors(
    http: aiohttp.ClientSession,
    org: Emulator,
    changes: dict[str, str],
    error: str,
    description: str,
) -> None:
    status, body = await post_token(http, org, password_form(org, **changes))
    assert status == 400
    assert body == {"error": error, "error_description": description}


async def test_token_requires_form_encoding(http: aiohttp.ClientSession, org: Emulator) -> None:
    async with http.post(org.token_url, json=password_form(org)) as response:
        assert response.status == 400
        assert await response.json() == {
            "error": "unsupported_grant_type",
            "error_description": "grant type not supported",
        }


async def test_parameters_in_the_query_string_are_accepted(
    http: aiohttp.ClientSession, org: Emulator
) -> None:
    async with http.post(
        org.token_url,
        params=password_form(org),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as response:
        assert response.status == 200


async def test_security_token_is_appended_to_the_password(http: aiohttp.ClientSession) -> None:
    async with Emulator(password="secret", security_token="TOKEN123") as org:
        assert org.password == "secretTOKEN123"
        status, _ = await post_token(http, org, password_form(org, password="secret"))
        assert status == 400
        status, _ = await post_token(http, org, password_form(org, password="secretWRONG"))
        assert status == 400
        status, _ = await post_token(http, org, password_form(org))
        assert status == 200


async def test_added_users_can_log_in(http: aiohttp.ClientSession, org: Emulator) -> None:
    user_id = org.add_user("second@example.com", "pw2")
    status, body = await post_token(
        http, org, password_form(org, username="second@example.com", password="pw2")
    )
    assert status == 200
    assert body["id"].endswith("/" + user_id)
    # a user without a password cannot use the password flow
    org.add_user("nopw@example.com")
    status, _ = await post_token(http, org, password_form(org, username="nopw@example.com"))
    assert status == 400


def refresh_form(org: Emulator, token: str | None = None, **changes: str) -> dict[str, str]:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": token or org.refresh_token or "",
        "client_id": org.consumer_key,
        "client_secret": org.consumer_secret,
    }
    form.update(changes)
    return form


async def test_refresh_token_grant(http: aiohttp.ClientSession, org: Emulator) -> None:
    status, body = await post_token(http, org, refresh_form(org))
    assert status == 200
    assert body["instance_url"] == org.instance_url
    assert "refresh_token" not in body
    assert body["scope"] == "refresh_token api"
    # the client secret is optional
    form = refresh_form(org)
    del form["client_secret"]
    status, _ = await post_token(http, org, form)
    assert status == 200


async def test_refresh_token_with_basic_client_authentication(
    http: aiohttp.ClientSession, org: Emulator
) -> None:
    credentials = base64.b64encode(f"{org.consumer_key}:{org.consumer_secret}".encode()).decode()
    status, _ = await post_token(
        http,
        org,
        {"grant_type": "refresh_token", "refresh_token": org.refresh_token or ""},
        headers={"Authorization": f"Basic {credentials}"},
    )
    assert status == 200
    bad = base64.b64encode(f"{org.consumer_key}:nope".encode()).decode()
    status, body = await post_token(
        http,
        org,
        {"grant_type": "refresh_token", "refresh_token": org.refresh_token or ""},
        headers={"Authorization": f"Basic {bad}"},
    )
    assert (status, body["error"]) == (400, "invalid_client")
    # undecodable Basic credentials fall back to the body (which has no client id here)
    status, body = await post_token(
        http,
        org,
        {"grant_type": "refresh_token", "refresh_token": org.refresh_token or ""},
        headers={"Authorization": "Basic %%%"},
    )
    assert (status, body["error"]) == (400, "invalid_client_id")


@pytest.mark.parametrize(
    ("changes", "error", "description"),
    [
        ({"refresh_token": "unknown"}, "invalid_grant", "expired access/refresh token"),
        ({"refresh_token": ""}, "invalid_grant", "expired access/refresh token"),
        ({"client_id": "wrong"}, "invalid_client_id", "client identifier invalid"),
        ({"client_secret": "wrong"}, "invalid_client", "invalid client credentials"),
    ],
)
async def test_refresh_token_errors(
    http: aiohttp.ClientSession,
    org: Emulator,
    changes: dict[str, str],
    error: str,
    description: str,
) -> None:
    status, body = await post_token(http, org, refresh_form(org, **changes))
    assert status == 400
    assert body == {"error": error, "error_description": description}


async def test_an_access_token_is_no_refresh_token(
    http: aiohttp.ClientSession, org: Emulator
) -> None:
    access = await password_token(http, org)
    status, body = await post_token(http, org, refresh_form(org, access))
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_refresh_token_rotation(http: aiohttp.ClientSession) -> None:
    async with Emulator(refresh_token_rotation=True) as org:
        first = org.refresh_token
        assert first is not None
        status, body = await post_token(http, org, refresh_form(org, first))
        assert status == 200
        second = body["refresh_token"]
        assert second != first
        access = body["access_token"]
        # the rotated-out token is refused ...
        status, body = await post_token(http, org, refresh_form(org, first))
        assert (status, body["error"]) == (400, "invalid_grant")
        # ... and reusing it revoked its successor and the successor's access tokens
        status, body = await post_token(http, org, refresh_form(org, second))
        assert (status, body["error"]) == (400, "invalid_grant")
        async with http.get(
            f"{org.instance_url}/services/data/v62.0/",
            headers={"Authorization": f"Bearer {access}"},
        ) as response:
            assert response.status == 401


async def test_rotation_chain_keeps_working(http: aiohttp.ClientSession) -> None:
    async with Emulator(refresh_token_rotation=True) as org:
        token = org.issue_refresh_token()
        for _ in range(3):
            status, body = await post_token(http, org, refresh_form(org, token))
            assert status == 200
            token = body["refresh_token"]


async def test_no_configured_refresh_token(http: aiohttp.ClientSession) -> None:
    async with Emulator(refresh_token=None) as org:
        assert org.refresh_token is None
        status, _ = await post_token(
            http, org, refresh_form(org, "5Aep861sfstreamEmulatorRefreshToken")
        )
        assert status == 400
        issued = org.issue_refresh_token()
        status, _ = await post_token(http, org, refresh_form(org, issued))
        assert status == 200


def client_credentials_form(org: Emulator, **changes: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": org.consumer_key,
        "client_secret": org.consumer_secret,
    }
    form.update(changes)
    return form


async def test_client_credentials_in_the_body(http: aiohttp.ClientSession, org: Emulator) -> None:
    status, body = await post_token(http, org, client_credentials_form(org))
    assert status == 200
    assert body["id"].endswith("/" + org.user_id)
    assert "signature" in body


async def test_client_credentials_in_basic(http: aiohttp.ClientSession, org: Emulator) -> None:
    credentials = base64.b64encode(f"{org.consumer_key}:{org.consumer_secret}".encode()).decode()
    status, _ = await post_token(
        http,
        org,
        {"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {credentials}"},
    )
    assert status == 200
    no_colon = base64.b64encode(b"just-an-id").decode()
    status, body = await post_token(
        http,
        org,
        {"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {no_colon}"},
    )
    assert (status, body["error"]) == (400, "invalid_client_id")


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"client_id": "wrong"}, "invalid_client_id"),
    ],
)
async def test_client_credentials_errors(
    http: aiohttp.ClientSession, org: Emulator, changes: dict[str, str], error: str
) -> None:
    status, body = await post_token(http, org, client_credentials_form(org, **changes))
    assert (status, body["error"]) == (400, error)


async def test_client_credentials_can_be_disabled(http: aiohttp.ClientSession) -> None:
    async with Emulator(client_credentials=False) as org:
        status, body = await post_token(http, org, client_credentials_form(org))
        assert status == 400
        assert body == {
            "error": "invalid_grant",
            "error_description": "no client credentials user enabled",
        }


async def test_revoke_an_access_token(http: aiohttp.ClientSession, org: Emulator) -> None:
    access = await password_token(http, org)
    rest = f"{org.instance_url}/services/data/v62.0/"
    headers = {"Authorization": f"Bearer {access}"}
    async with http.get(rest, headers=headers) as response:
        assert response.status == 200
    async with http.post(
        f"{org.login_url}/services/oauth2/revoke", data={"token": access}
    ) as response:
        assert response.status == 200
    async with http.get(rest, headers=headers) as response:
        assert response.status == 401
        assert await response.json() == [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]


async def test_revoke_a_refresh_token_takes_its_access_tokens(
    http: aiohttp.ClientSession, org: Emulator
) -> None:
    refresh = org.issue_refresh_token()
    _, body = await post_token(http, org, refresh_form(org, refresh))
    access = body["access_token"]
    async with http.get(
        f"{org.login_url}/services/oauth2/revoke", params={"token": refresh}
    ) as response:
        assert response.status == 200
    async with http.get(
        f"{org.instance_url}/services/data/v62.0/", headers={"Authorization": f"Bearer {access}"}
    ) as response:
        assert response.status == 401
    status, _ = await post_token(http, org, refresh_form(org, refresh))
    assert status == 400


async def test_revoke_an_unknown_token(http: aiohttp.ClientSession, org: Emulator) -> None:
    async with http.post(
        f"{org.login_url}/services/oauth2/revoke", data={"token": "nope"}
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "unsupported_token_type"
    async with http.post(f"{org.login_url}/services/oauth2/revoke", data={}) as response:
        assert response.status == 400


async def test_identity_url(http: aiohttp.ClientSession, org: Emulator) -> None:
    access = await password_token(http, org)
    _, body = await post_token(http, org, password_form(org))
    identity_url = body["id"]
    async with http.get(identity_url, headers={"Authorization": f"Bearer {access}"}) as response:
        assert response.status == 200
        identity = await response.json()
    assert identity["user_id"] == org.user_id
    assert identity["organization_id"] == org.org_id
    assert identity["username"] == org.username
    async with http.get(identity_url, headers={"Authorization": "Bearer nope"}) as response:
        assert response.status == 403
    async with http.get(
        f"{org.login_url}/id/{org.org_id}/005000000000099AAA",
        headers={"Authorization": f"Bearer {access}"},
    ) as response:
        assert response.status == 404


async def test_token_lifetime_on_the_org_clock(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with Emulator(token_lifetime=7200, clock=clock) as org:
        access = await password_token(http, org)
        rest = f"{org.instance_url}/services/data/v62.0/"
        headers = {"Authorization": f"Bearer {access}"}
        async with http.get(rest, headers=headers) as response:
            assert response.status == 200
        org.advance_clock(7201)
        async with http.get(rest, headers=headers) as response:
            assert response.status == 401


async def test_secrets_stay_out_of_reprs(org: Emulator, token: str) -> None:
    text = " ".join([repr(org), repr(org.config), repr(org.state), str(org.state.tokens)])
    for secret in (org.consumer_secret, org.password, org.refresh_token or "", token):
        assert secret not in text
