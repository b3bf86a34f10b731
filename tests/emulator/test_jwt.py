"""The JWT bearer grant: RS256 signatures, iss/sub/aud/exp, as Salesforce checks them."""

from __future__ import annotations

import datetime
import time
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from sfstream.emulator import Emulator, ManualClock

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


async def jwt_token(
    http: aiohttp.ClientSession, org: Emulator, assertion: str
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        org.token_url, data={"grant_type": GRANT, "assertion": assertion}
    ) as response:
        return response.status, await response.json()


def claims(org: Emulator, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": org.consumer_key,
        "sub": org.username,
        "aud": "https://login.salesforce.com",
        "exp": int(org.clock.time()) + 170,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
async def jwt_org(clock: ManualClock) -> Any:
    async with Emulator(clock=clock) as org:
        yield org, org.generate_jwt_key()


async def test_jwt_bearer_success(http: aiohttp.ClientSession, jwt_org: Any) -> None:
    org, key = jwt_org
    status, body = await jwt_token(http, org, jwt.encode(claims(org), key, algorithm="RS256"))
    assert status == 200, body
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == org.instance_url
    assert "refresh_token" not in body
    async with http.get(
        f"{org.instance_url}/services/data/v62.0/",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    ) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "audience", ["https://test.salesforce.com", "https://login.salesforce.com/", "self"]
)
async def test_jwt_audiences(http: aiohttp.ClientSession, jwt_org: Any, audience: str) -> None:
    org, key = jwt_org
    aud = org.login_url if audience == "self" else audience
    status, _ = await jwt_token(http, org, jwt.encode(claims(org, aud=aud), key, algorithm="RS256"))
    assert status == 200
    status, _ = await jwt_token(
        http, org, jwt.encode(claims(org, aud=[aud, "x"]), key, algorithm="RS256")
    )
    assert status == 200


async def test_exp_as_a_string_and_prn(http: aiohttp.ClientSession, jwt_org: Any) -> None:
    org, key = jwt_org
    # simple-salesforce sends exp as a string; prn wins over sub
    values = claims(org, exp=str(int(org.clock.time()) + 60), sub="nobody", prn=org.username)
    status, _ = await jwt_token(http, org, jwt.encode(values, key, algorithm="RS256"))
    assert status == 200


@pytest.mark.parametrize(
    ("changes", "error", "description"),
    [
        ({"iss": "someone-else"}, "invalid_client_id", "client identifier invalid"),
        ({"aud": "https://example.com"}, "invalid_grant", "audience is invalid"),
        ({"exp": -10}, "invalid_grant", "expired authorization code"),
        ({"exp": 600}, "invalid_grant", "expired authorization code"),
        ({"exp": None}, "invalid_grant", "expired authorization code"),
        ({"exp": "soon"}, "invalid_grant", "expired authorization code"),
        ({"sub": "nobody@example.com"}, "invalid_grant", "user hasn't approved this consumer"),
        ({"sub": None}, "invalid_grant", "invalid assertion"),
    ],
)
async def test_jwt_claim_errors(
    http: aiohttp.ClientSession,
    jwt_org: Any,
    changes: dict[str, Any],
    error: str,
    description: str,
) -> None:
    org, key = jwt_org
    if isinstance(changes.get("exp"), int):
        changes = {**changes, "exp": int(org.clock.time()) + changes["exp"]}
    status, body = await jwt_token(
        http, org, jwt.encode(claims(org, **changes), key, algorithm="RS256")
    )
    assert status == 400
    assert body == {"error": error, "error_description": description}


async def test_jwt_signature_errors(http: aiohttp.ClientSession, jwt_org: Any) -> None:
    org, _key = jwt_org
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    invalid = {"error": "invalid_grant", "error_description": "invalid assertion"}
    for assertion in (
        jwt.encode(claims(org), other, algorithm="RS256"),
        jwt.encode(claims(org), "shared-secret-of-at-least-32-bytes!", algorithm="HS256"),
        "not-a-jwt",
        "a.b.c",
        "eyJhbGciOiJSUzI1NiJ9.WzFd.AAAA",  # claims are a JSON array
        "",
    ):
        status, body = await jwt_token(http, org, assertion)
        assert (status, body) == (400, invalid)


async def test_jwt_without_a_configured_key(http: aiohttp.ClientSession) -> None:
    async with Emulator() as org:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        status, body = await jwt_token(http, org, jwt.encode(claims(org), key, algorithm="RS256"))
        assert (status, body["error_description"]) == (400, "invalid assertion")


def self_signed(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfstream test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


async def test_certificate_and_public_key_configuration(http: aiohttp.ClientSession) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with Emulator(jwt_public_key=self_signed(key)) as org:
        assertion = jwt.encode(claims(org, exp=int(time.time()) + 100), key, algorithm="RS256")
        status, _ = await jwt_token(http, org, assertion)
        assert status == 200
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    async with Emulator() as org:
        org.set_jwt_public_key(public_pem.decode())
        assertion = jwt.encode(claims(org, exp=int(time.time()) + 100), key, algorithm="RS256")
        status, _ = await jwt_token(http, org, assertion)
        assert status == 200


def test_only_rsa_keys_are_accepted() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="RSA"):
        Emulator(jwt_public_key=pem)


def test_the_private_key_is_not_in_the_config_repr() -> None:
    org = Emulator()
    private = org.generate_jwt_key()
    assert "PRIVATE KEY" in private
    assert "PRIVATE" not in repr(org.config)
