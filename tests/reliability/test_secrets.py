"""No secret anywhere: everything captured during a full fault campaign is scanned.

Five clients (password, refresh token, JWT bearer, client credentials with HTTP Basic, a given
access token) and the command line (``sfstream listen --debug --trace``, a subprocess) stream
from an org behind the fault proxy while every fault of the campaign catalogue is injected
(network faults, the org's Bayeux and HTTP faults, 401s, token revocations, a restart), then
every token is revoked and bad logins are tried. Captured: every log record of every logger at
DEBUG (with tracebacks), the ``str``/``repr``/traceback of every exception a client raised,
every status detail, the reprs of clients, authenticators, Bayeux clients, engines, transports
and token requests, and the command line's stdout and stderr.

Scanned for: the password, the security token, the consumer secret, the refresh tokens, every
access token the org issued (recorded at the source), the JWT assertions, the private key, and
the HTTP Basic credentials. Any 24-character slice of a secret counts as a leak, so a
truncated secret is caught too.

The faults that make aiohttp raise ``ClientResponseError`` (a garbled status line, a huge
header) are checked for leaks by ``test_security.py``, through the transport and through the
whole client (log lines and status details).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import random
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sfstream import (
    AccessTokenAuthenticator,
    AuthenticationError,
    Client,
    ClientCredentialsAuthenticator,
    JwtBearerAuthenticator,
    PasswordAuthenticator,
    RefreshTokenAuthenticator,
    Status,
)
from sfstream.bayeux import ConstantBackoff

from ._campaign import FAULTS, CampaignConfig, _Run
from ._harness import EVENT, ProxiedOrg

CONSUMER_SECRET = "c0nsumer-S3CRET-9f2b-never-shown"
PASSWORD = "pa55-W0RD-a41c-never-shown"
SECURITY_TOKEN = "T0KEN-77xq-never-shown"
REFRESH_TOKEN = "5Aep861-REFRESH-t0ken-never-shown"
#: Every fault of the campaign catalogue, once each.
CAMPAIGN = list(FAULTS)


class Capture(logging.Handler):
    """Every record of every logger, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    levels = {
        name: logging.getLogger(name).level for name in ("", "sfstream", "aiohttp", "asyncio")
    }
    root.addHandler(handler)
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def slices(secret: str, size: int = 24, step: int = 8) -> Iterator[str]:
    if len(secret) <= size:
        yield secret
        return
    for start in range(0, len(secret) - size + 1, step):
        yield secret[start : start + size]
    yield secret[-size:]


def describe(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), "".join(traceback.format_exception(error))])


class Consumer:
    """Receives on one client until told to stop; keeps what it raised."""

    def __init__(self, name: str, client: Client) -> None:
        self.name = name
        self.client = client
        self.received = 0
        self.errors: list[str] = []
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(3):
                    await self.client.receive()
                self.received += 1
            except TimeoutError:
                continue
            except Exception as error:  # documented errors, and anything else: scan them all
                self.errors.append(describe(error))
                if self.client.closed or isinstance(error, AuthenticationError):
                    return
                await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_no_secret_anywhere_during_a_full_fault_campaign(capture: Capture) -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    org = ProxiedOrg(
        consumer_secret=CONSUMER_SECRET,
        password=PASSWORD,
        security_token=SECURITY_TOKEN,
        refresh_token=REFRESH_TOKEN,
        jwt_public_key=public_pem,
    )
    issued: list[str] = []
    issue_token = org.state.issue_token

    def recording_issue_token(*args: Any, **kwargs: Any) -> str:
        value = issue_token(*args, **kwargs)
        issued.append(value)
        return value

    org.state.issue_token = recording_issue_token  # type: ignore[method-assign]
    assertions: list[str] = []
    statuses: list[Status] = []
    texts: list[str] = []
    async with org:
        key = org.emulator.consumer_key
        username = org.emulator.username
        options: dict[str, Any] = {
            "backoff": ConstantBackoff(0.05),
            "connection_timeout": 5,
            "on_status": statuses.append,
        }
        jwt = JwtBearerAuthenticator(key, username, private_pem, login_url=org.url)
        make_assertion = jwt.make_assertion

        def recording_make_assertion(now: float | None = None) -> str:
            assertion = make_assertion(now)
            assertions.append(assertion)
            return assertion

        jwt.make_assertion = recording_make_assertion  # type: ignore[method-assign]
        clients = {
            "password": org.client(**options),
            "refresh token": Client(
                RefreshTokenAuthenticator(key, CONSUMER_SECRET, REFRESH_TOKEN, login_url=org.url),
                **options,
            ),
            "jwt": Client(jwt, **options),
            "client credentials": Client(
                ClientCredentialsAuthenticator(
                    key, CONSUMER_SECRET, login_url=org.url, basic_auth=True
                ),
                **options,
            ),
            "access token": Client(
                AccessTokenAuthenticator(org.emulator.issue_access_token(), org.url), **options
            ),
        }
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sfstream",
            "listen",
            EVENT,
            "--json",
            "--debug",
            "--trace",
            "--timeout",
            "40",
            "--count",
            "1000000",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={
                **os.environ,
                "SFSTREAM_CONSUMER_KEY": key,
                "SFSTREAM_CONSUMER_SECRET": CONSUMER_SECRET,
                "SFSTREAM_USERNAME": username,
                "SFSTREAM_PASSWORD": PASSWORD,
                "SFSTREAM_SECURITY_TOKEN": SECURITY_TOKEN,
                "SFSTREAM_LOGIN_URL": org.url,
                "NO_COLOR": "1",
            },
        )
        consumers: list[Consumer] = []
        try:
            for name, client in clients.items():
                await client.open()
                await client.subscribe(EVENT)
                consumer = Consumer(name, client)
                consumer.task = asyncio.create_task(consumer.run())
                consumers.append(consumer)
            await asyncio.sleep(1.5)  # the command line logs in and subscribes
            run = _Run(CampaignConfig(), org)
            run.rng = random.Random(7)
            for n, name in enumerate(["emulator restart", *CAMPAIGN]):
                org.publish(EVENT, n)
                if name == "emulator restart":
                    await org.restart(down=0.3)
                else:
                    injector, _weight, is_auth = FAULTS[name]
                    if is_auth:
                        await run._quiet()  # (a 401 stacked on another would stop clients)
                    result = injector(run)
                    if asyncio.iscoroutine(result):
                        await result
                await asyncio.sleep(0.25)
            for n in range(5):
                org.publish(EVENT, 100 + n)
            await asyncio.sleep(1.0)
            # the end: every token revoked, refresh tokens included; bad logins
            org.emulator.revoke_tokens()
            org.publish(EVENT, 200)
            await asyncio.sleep(1.5)
            for auth in (
                PasswordAuthenticator(
                    key, CONSUMER_SECRET, username, PASSWORD + "x", login_url=org.url
                ),
                PasswordAuthenticator(
                    key, CONSUMER_SECRET + "x", username, PASSWORD, login_url=org.url
                ),
                RefreshTokenAuthenticator(key, CONSUMER_SECRET, REFRESH_TOKEN, login_url=org.url),
            ):
                try:
                    await auth.authenticate()
                except AuthenticationError as error:
                    texts.append(describe(error))
                texts.append(repr(auth))
                texts.append(repr(auth.token_request()))
            for client in clients.values():
                texts += [repr(client), repr(client.auth), str(client.stats)]
                bayeux = client._bayeux
                if bayeux is not None:
                    texts += [repr(bayeux), repr(bayeux._engine), repr(bayeux._transport)]
                try:
                    texts.append(repr(client.auth.token_request()))
                except Exception as error:
                    texts.append(describe(error))
            texts += [repr(org.emulator), repr(org.emulator.config)]
        finally:
            for consumer in consumers:
                if consumer.task is not None:
                    consumer.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await consumer.task
                texts += consumer.errors
            for client in clients.values():
                await client.close()
            if cli.returncode is None:
                cli.terminate()
            cli_out, cli_err = await cli.communicate()
    texts += [status.detail for status in statuses]
    texts += [cli_out.decode(), cli_err.decode()]
    texts += capture.lines
    text = "\n".join(texts)

    access_tokens = set(issued) - {REFRESH_TOKEN}
    pem_lines = [
        line for line in private_pem.splitlines() if len(line) >= 24 and "-----" not in line
    ]
    secrets = {
        "password": PASSWORD,
        "password with token": PASSWORD + SECURITY_TOKEN,
        "security token": SECURITY_TOKEN,
        "consumer secret": CONSUMER_SECRET,
        "refresh token": REFRESH_TOKEN,
        "basic credentials": base64.b64encode(f"{key}:{CONSUMER_SECRET}".encode()).decode(),
        **{f"issued token {n}": token for n, token in enumerate(sorted(access_tokens))},
        **{f"JWT assertion {n}": assertion for n, assertion in enumerate(assertions)},
        **{f"private key line {n}": line for n, line in enumerate(pem_lines)},
    }
    # the campaign did what it says: many tokens, re-authentications, errors, CLI output
    assert len(access_tokens) >= 10, len(access_tokens)
    assert len(assertions) >= 2
    assert sum(1 for s in statuses if s.kind.value == "reauthenticated") >= 3
    assert "Traceback" in text or "AuthenticationError" in text
    assert cli_err, "the command line printed nothing on stderr"
    assert len(capture.lines) > 200
    print(
        f"scanned {len(text)} characters: {len(capture.lines)} log records, "
        f"{len(access_tokens)} access tokens, {len(assertions)} JWT assertions, "
        f"{sum(len(c.errors) for c in consumers)} client errors, {len(statuses)} statuses, "
        f"{len(cli_out.splitlines())} CLI events, {len(cli_err.splitlines())} CLI stderr lines"
    )
    leaks = [
        name for name, secret in secrets.items() if any(piece in text for piece in slices(secret))
    ]
    assert leaks == [], f"secrets found in the captured output: {leaks}"


def test_the_scan_finds_a_truncated_secret() -> None:
    secret = "00D000000000001!AQ" + "x" * 80
    text = f"INFO request failed: Bearer {secret[:40]}..."
    assert any(piece in text for piece in slices(secret))
    assert not any(piece in "nothing to see" for piece in slices(secret))
