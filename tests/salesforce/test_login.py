"""simple-salesforce's login parameters, and the Salesforce CLI's orgs (``sf`` faked on PATH)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sfstream import SalesforceStreamingClient
from sfstream.emulator import Emulator
from sfstream.exceptions import AuthenticationError
from sfstream.salesforce import (
    PRODUCTION_LOGIN_URL,
    SANDBOX_LOGIN_URL,
    AccessTokenAuthenticator,
    Client,
    PasswordAuthenticator,
    authenticator_from_login,
    authenticator_from_sf_org,
    default_sf_org,
    domain_login_url,
    sf_org_display,
)
from sfstream.testing import receive_messages

SECURITY_TOKEN = "LoginSecTok42"
PASSWORD = "login-Pa55word-never-shown"
TOKEN = "00Dxx0000001gPL!AQ4AQFake.token.never-shown"


@pytest.mark.parametrize(
    ("domain", "url"),
    [
        ("login", PRODUCTION_LOGIN_URL),
        ("test", SANDBOX_LOGIN_URL),
        ("TEST", SANDBOX_LOGIN_URL),
        ("acme.my", "https://acme.my.salesforce.com"),
        ("acme--dev.sandbox.my", "https://acme--dev.sandbox.my.salesforce.com"),
        ("acme.my.salesforce.com", "https://acme.my.salesforce.com"),
        ("acme.lightning.force.com", "https://acme.lightning.force.com"),
        ("https://acme.my.salesforce.com/", "https://acme.my.salesforce.com"),
        ("http://127.0.0.1:8808", "http://127.0.0.1:8808"),
        ("127.0.0.1:8808", "http://127.0.0.1:8808"),
        ("localhost:8808", "http://localhost:8808"),
        ("login.example.org:8443", "https://login.example.org:8443"),
    ],
)
def test_domain_login_url(domain: str, url: str) -> None:
    assert domain_login_url(domain) == url


@pytest.mark.parametrize("domain", ["", "  ", "acme my", "acme.my/path"])
def test_bad_domains(domain: str) -> None:
    with pytest.raises(ValueError, match="domain must be"):
        domain_login_url(domain)


def test_a_token_with_its_instance_url() -> None:
    url = "https://acme.my.salesforce.com"
    for auth in (
        authenticator_from_login(instance_url=url, session_id=TOKEN),
        authenticator_from_login(instance_url=url, access_token=TOKEN),
    ):
        assert isinstance(auth, AccessTokenAuthenticator)
        assert auth.access_token == TOKEN
        assert auth.instance_url == "https://acme.my.salesforce.com"
        assert not auth.can_refresh
        assert TOKEN not in repr(auth)
    same = authenticator_from_login(
        instance_url="https://acme.my.salesforce.com", session_id=TOKEN, access_token=TOKEN
    )
    assert same.access_token == TOKEN


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"session_id": TOKEN, "access_token": TOKEN + "x"}, "not both"),
        ({"session_id": TOKEN}, "needs instance_url"),
        (
            {"session_id": TOKEN, "instance_url": "https://a.my.salesforce.com", "username": "u"},
            "either a token",
        ),
        ({"instance_url": "https://a.my.salesforce.com"}, "goes with session_id"),
        ({"username": "u", "password": PASSWORD}, "also give consumer_key, consumer_secret"),
        ({}, "also give username, password, consumer_key, consumer_secret"),
        ({"session_id": TOKEN, "instance_url": "http://acme.example.com"}, "plain http"),
        (
            {
                "username": "u",
                "password": PASSWORD,
                "consumer_key": "k",
                "consumer_secret": "s",
                "domain": "test",
                "login_url": "https://acme.my.salesforce.com",
            },
            "domain or login_url",
        ),
        (
            {
                "username": "u",
                "password": PASSWORD,
                "consumer_key": "k",
                "consumer_secret": "s",
                "domain": "acme.my",
                "sandbox": True,
            },
            "sandbox=True means domain='test'",
        ),
    ],
)
def test_parameters_that_make_no_login(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        authenticator_from_login(**arguments)
    assert TOKEN not in str(raised.value)
    assert PASSWORD not in str(raised.value)


def password_login(**extra: Any) -> PasswordAuthenticator:
    auth = authenticator_from_login(
        username="u@example.com",
        password=PASSWORD,
        consumer_key="key",
        consumer_secret="secret",
        **extra,
    )
    assert isinstance(auth, PasswordAuthenticator)
    return auth


def test_where_a_password_login_goes() -> None:
    assert password_login().login_url == PRODUCTION_LOGIN_URL
    assert password_login(domain="login").login_url == PRODUCTION_LOGIN_URL
    assert password_login(domain="test").login_url == SANDBOX_LOGIN_URL
    assert password_login(sandbox=True).login_url == SANDBOX_LOGIN_URL
    assert password_login(domain="test", sandbox=True).login_url == SANDBOX_LOGIN_URL
    assert password_login(domain="acme.my").login_url == "https://acme.my.salesforce.com"
    mine = "https://acme.my.salesforce.com"
    assert password_login(login_url=mine).login_url == mine
    assert password_login(login_url=mine, domain="acme.my").login_url == mine
    assert password_login(login_url=SANDBOX_LOGIN_URL, domain="test").login_url == (
        SANDBOX_LOGIN_URL
    )
    # sandbox=True with a login URL keeps meaning what it means for the authenticators.
    assert password_login(login_url=mine, sandbox=True).login_url == mine


def test_production_and_sandbox_stay_the_authenticators_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sfstream.salesforce import _auth

    monkeypatch.setattr(_auth, "PRODUCTION_LOGIN_URL", "http://127.0.0.1:1")
    monkeypatch.setattr(_auth, "SANDBOX_LOGIN_URL", "http://127.0.0.1:2")
    assert password_login(domain="login").login_url == "http://127.0.0.1:1"
    assert password_login(domain="test").login_url == "http://127.0.0.1:2"
    assert password_login(sandbox=True).login_url == "http://127.0.0.1:2"


async def test_the_security_token_is_appended_to_the_password() -> None:
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]}, password=PASSWORD, security_token=SECURITY_TOKEN
    ) as org:
        assert org.password == PASSWORD + SECURITY_TOKEN
        auth = authenticator_from_login(
            username=org.username,
            password=PASSWORD,
            security_token=SECURITY_TOKEN,
            consumer_key=org.consumer_key,
            consumer_secret=org.consumer_secret,
            domain=org.login_url,
        )
        await auth.authenticate()
        assert auth.instance_url == org.instance_url
        without = authenticator_from_login(
            username=org.username,
            password=PASSWORD,
            consumer_key=org.consumer_key,
            consumer_secret=org.consumer_secret,
            login_url=org.login_url,
        )
        with pytest.raises(AuthenticationError, match="authentication failure"):
            await without.authenticate()
        # The token of the first login serves a client as simple-salesforce's session_id.
        assert auth.access_token is not None
        held = authenticator_from_login(instance_url=org.instance_url, session_id=auth.access_token)
        async with Client(held) as client:
            await client.subscribe("/event/Order__e")
            await org.publish("/event/Order__e", {})
            [message] = await receive_messages(client, 1)
            assert message["channel"] == "/event/Order__e"


def test_the_client_still_takes_its_own_parameters() -> None:
    client = SalesforceStreamingClient(
        consumer_key="k", consumer_secret="s", username="u", password="p"
    )
    assert isinstance(client.auth, PasswordAuthenticator)


async def test_the_streaming_client_takes_simple_salesforce_parameters() -> None:
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]}, password=PASSWORD, security_token=SECURITY_TOKEN
    ) as org:
        async with SalesforceStreamingClient(
            consumer_key=org.consumer_key,
            consumer_secret=org.consumer_secret,
            username=org.username,
            password=PASSWORD,
            security_token=SECURITY_TOKEN,
            domain=org.login_url,
        ) as client:
            await client.subscribe("/event/Order__e")
            await org.publish("/event/Order__e", {})
            [message] = await receive_messages(client, 1)
            assert message["channel"] == "/event/Order__e"
            token = client.auth.access_token
        assert token is not None
        # simple-salesforce's session_id, and the same token under its OAuth name
        for held in (
            SalesforceStreamingClient(instance_url=org.instance_url, session_id=token),
            SalesforceStreamingClient(instance_url=org.instance_url, access_token=token),
        ):
            async with held:
                assert isinstance(held.auth, AccessTokenAuthenticator)
                assert held.auth.access_token == token
                await held.subscribe("/event/Order__e")
                await org.publish("/event/Order__e", {"N__c": 1})
                [message] = await receive_messages(held, 1)
                assert message["channel"] == "/event/Order__e"
                assert message["data"]["payload"]["N__c"] == 1


def test_the_streaming_client_refuses_parameters_that_make_no_login() -> None:
    with pytest.raises(ValueError, match="password"):
        SalesforceStreamingClient(username="u")


# -- the Salesforce CLI ------------------------------------------------------------------------


def write_config(directory: Path, target: Any) -> None:
    (directory / ".sf").mkdir(parents=True, exist_ok=True)
    (directory / ".sf" / "config.json").write_text(json.dumps({"target-org": target}))


def test_default_sf_org(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "work" / "project"
    nested = project / "force-app" / "main"
    nested.mkdir(parents=True)
    home.mkdir()
    assert default_sf_org(cwd=nested, home=home, environ={}) is None
    write_config(home, "global-org")
    assert default_sf_org(cwd=nested, home=home, environ={}) == "global-org"
    write_config(project, "project-org")  # the project's config wins, from any subfolder
    assert default_sf_org(cwd=nested, home=home, environ={}) == "project-org"
    environ = {"SF_TARGET_ORG": "env-org"}  # the variable wins over both
    assert default_sf_org(cwd=nested, home=home, environ=environ) == "env-org"
    (project / ".sf" / "config.json").write_text("{not json")  # unreadable: skipped
    assert default_sf_org(cwd=nested, home=home, environ={}) == "global-org"
    write_config(project, "")
    write_config(home, 42)
    assert default_sf_org(cwd=nested, home=home, environ={}) is None


def fake_sf(directory: Path, output: dict[str, Any] | str, status: int = 0) -> Path:
    """An ``sf`` that appends its arguments to ``calls.jsonl`` and prints ``output``."""
    directory.mkdir(parents=True, exist_ok=True)
    text = output if isinstance(output, str) else json.dumps(output)
    calls = directory / "calls.jsonl"
    script = directory / "sf"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(calls)!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"sys.stdout.write({text!r})\n"
        f"sys.exit({status})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return calls


def calls_of(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


DISPLAY: dict[str, Any] = {
    "status": 0,
    "result": {
        "id": "00Dxx0000001gPLEAY",
        "accessToken": TOKEN,
        "instanceUrl": "https://acme.my.salesforce.com",
        "username": "dev@example.com",
        "clientId": "PlatformCLI",
        "connectedStatus": "Connected",
        "alias": "dev",
    },
    "warnings": [],
}


@pytest.fixture
def sf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home and working folder, and no SF_TARGET_ORG."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    monkeypatch.delenv("SF_TARGET_ORG", raising=False)
    return home


def on_path(monkeypatch: pytest.MonkeyPatch, calls: Path) -> None:
    monkeypatch.setenv("PATH", f"{calls.parent}{os.pathsep}{os.environ['PATH']}")


def test_authenticator_from_sf_org(
    sf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_sf(tmp_path / "bin", DISPLAY)
    on_path(monkeypatch, calls)
    auth = authenticator_from_sf_org("dev")
    assert isinstance(auth, AccessTokenAuthenticator)
    assert (auth.access_token, auth.instance_url) == (TOKEN, "https://acme.my.salesforce.com")
    write_config(sf_home, "my-default")
    authenticator_from_sf_org()  # the default org, named to sf
    monkeypatch.setenv("SF_TARGET_ORG", "from-env")
    authenticator_from_sf_org()
    monkeypatch.delenv("SF_TARGET_ORG")
    (sf_home / ".sf" / "config.json").unlink()
    authenticator_from_sf_org()  # no default known here: sf decides
    assert calls_of(calls) == [
        ["org", "display", "--json", "--target-org", "dev"],
        ["org", "display", "--json", "--target-org", "my-default"],
        ["org", "display", "--json", "--target-org", "from-env"],
        ["org", "display", "--json"],
    ]


def test_sf_failures_say_what_to_do(
    sf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_default = {"status": 1, "name": "NoDefaultEnvError", "message": "No default environment"}
    on_path(monkeypatch, fake_sf(tmp_path / "a", no_default, status=1))
    with pytest.raises(AuthenticationError) as raised:
        sf_org_display()
    assert str(raised.value) == (
        "sf org display failed: No default environment (no default org is set: name one with "
        "--sf-org ALIAS, or set it with sf config set target-org ALIAS (or SF_TARGET_ORG))"
    )
    with pytest.raises(AuthenticationError, match="sf org login web --alias gone"):
        sf_org_display("gone")
    on_path(monkeypatch, fake_sf(tmp_path / "b", f"Warning: {TOKEN}"))
    with pytest.raises(AuthenticationError, match="printed no JSON") as garbled:
        sf_org_display("x")
    assert TOKEN not in str(garbled.value)
    http = {"status": 0, "result": {"accessToken": TOKEN, "instanceUrl": "http://a.example"}}
    on_path(monkeypatch, fake_sf(tmp_path / "c", http))
    with pytest.raises(AuthenticationError, match="unusable org: instance_url") as unusable:
        authenticator_from_sf_org("x")
    assert TOKEN not in str(unusable.value)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(AuthenticationError, match="not installed or not on PATH"):
        sf_org_display("x")


def test_sf_that_cannot_run(sf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path(monkeypatch, fake_sf(tmp_path / "bin", "{}"))

    def broken(*_args: Any, **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired("sf", 60)

    with pytest.raises(AuthenticationError, match="cannot run sf org display: TimeoutExpired"):
        sf_org_display(run=broken)
