"""The live suite's own code keeps working: in the default run it runs against the emulator
(which speaks the same OAuth, Streaming and REST APIs), and without ``SFSTREAM_LIVE_*`` it
reports every test as not run, with the reason, and passes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sfstream.emulator import Emulator, EmulatorThread
from tests.live._config import live_config, not_run_reason
from tests.live.conftest import Org

ROOT = Path(__file__).resolve().parents[2]


def run_live_suite(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SFSTREAM_", "PYTEST_"))}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "live",
            "tests/live",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
        ],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )


@pytest.fixture
def emulated_org() -> Iterator[EmulatorThread]:
    org = Emulator(
        events={"Sfstream_Test__e": ["Text__c"]},
        push_topics={"SfstreamAccounts": "SELECT Id, Name FROM Account"},
        streaming_channels=["/u/SfstreamTest"],
        cdc_entities=["Account"],
        hold_time=1.0,
    )
    with org.in_thread() as thread:
        yield thread


@pytest.mark.timeout(180)
def test_the_live_suite_passes_against_the_emulator(emulated_org: EmulatorThread) -> None:
    emulator = emulated_org.emulator
    result = run_live_suite(
        {
            "SFSTREAM_LIVE_LOGIN_URL": emulator.login_url,
            "SFSTREAM_LIVE_CONSUMER_KEY": emulator.consumer_key,
            "SFSTREAM_LIVE_CONSUMER_SECRET": emulator.consumer_secret,
            "SFSTREAM_LIVE_USERNAME": emulator.username,
            "SFSTREAM_LIVE_PASSWORD": emulator.password,
        }
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 passed" in result.stdout, result.stdout
    assert "skipped" not in result.stdout


def test_without_an_org_every_live_test_is_reported_as_not_run() -> None:
    result = run_live_suite({})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 skipped" in result.stdout, result.stdout
    assert "not run: no real org configured: set SFSTREAM_LIVE_LOGIN_URL" in result.stdout


def test_not_run_reason() -> None:
    assert not_run_reason({}) == (
        "no real org configured: set SFSTREAM_LIVE_LOGIN_URL, SFSTREAM_LIVE_CONSUMER_KEY, "
        "SFSTREAM_LIVE_CONSUMER_SECRET, SFSTREAM_LIVE_USERNAME and SFSTREAM_LIVE_PASSWORD, or "
        "SFSTREAM_LIVE_REFRESH_TOKEN (see docs/testing.md, 'Against a real org')"
    )
    base = {
        "SFSTREAM_LIVE_LOGIN_URL": "https://acme.my.salesforce.com",
        "SFSTREAM_LIVE_CONSUMER_KEY": "k",
        "SFSTREAM_LIVE_CONSUMER_SECRET": "s",
    }
    assert not_run_reason({**base, "SFSTREAM_LIVE_REFRESH_TOKEN": "r"}) is None
    assert not_run_reason({**base, "SFSTREAM_LIVE_USERNAME": "u"}) is not None
    both = {**base, "SFSTREAM_LIVE_USERNAME": "u", "SFSTREAM_LIVE_PASSWORD": "p"}
    assert not_run_reason(both) is None


async def test_the_org_helper_logs_in_again_when_its_token_is_revoked() -> None:
    """On a real org the helper that publishes may hold the very token the re-authentication
    test revokes (Salesforce can answer two logins of one user and one connected app with one
    token): it logs in again instead of failing with HTTP 401."""
    async with Emulator(events={"Sfstream_Test__e": ["Text__c"]}) as emulator:
        live = live_config(
            {
                "SFSTREAM_LIVE_LOGIN_URL": emulator.login_url,
                "SFSTREAM_LIVE_CONSUMER_KEY": emulator.consumer_key,
                "SFSTREAM_LIVE_CONSUMER_SECRET": emulator.consumer_secret,
                "SFSTREAM_LIVE_USERNAME": emulator.username,
                "SFSTREAM_LIVE_PASSWORD": emulator.password,
            }
        )
        async with aiohttp.ClientSession() as session:
            helper = Org(live, session)
            await helper.publish_event("before")
            token = helper.auth.access_token
            assert token is not None
            await helper.revoke(token)
            await helper.publish_event("after")
            assert helper.auth.access_token not in (None, token)
