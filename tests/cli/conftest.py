"""Fixtures for the command line tests: an emulated org in a background thread.

``main()`` runs its own event loop (``asyncio.run``), so the tests that call it are
synchronous and the org serves from :meth:`Emulator.in_thread`. Subprocess tests reach the
same org over loopback.

Fixtures:

``org``
    A running :class:`~sfstream.emulator.EmulatorThread` with the platform event ``Order__e``,
    the generic channel ``/u/Notes``, the PushTopic ``/topic/Accounts`` and CDC for Account,
    and credentials that appear nowhere else (so a test can prove they are never printed).
``clean_env``
    No ``SFSTREAM_*``, ``NO_COLOR`` or ``TERM`` variable leaks in from the developer's shell.
``cli``
    ``cli(*argv)`` runs ``main(argv)`` in-process and returns a :class:`Run`.
``sfstream``
    ``sfstream(*argv)`` runs ``python -m sfstream`` in a subprocess and returns a :class:`Run`.

Helpers: :func:`password_args`, :func:`publish_when_subscribed`, :func:`json_lines`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sfstream.cli import main
from sfstream.emulator import Emulator, EmulatorThread

ROOT = Path(__file__).resolve().parents[2]

CONSUMER_KEY = "3MVG9cliTestConsumerKey"
CONSUMER_SECRET = "cli-test-consumer-Secret-4711"
USERNAME = "cli.tester@example.com"
PASSWORD = "Pa55-word-never-printed"
SECURITY_TOKEN = "SecTok0815"
REFRESH_TOKEN = "5Aep861cliTestRefreshToken-never-printed"
#: Every secret of the org: none may appear in any output.
SECRETS = (CONSUMER_SECRET, PASSWORD, SECURITY_TOKEN, REFRESH_TOKEN)

EVENT = "/event/Order__e"
GENERIC = "/u/Notes"
TOPIC = "/topic/Accounts"
CDC = "/data/AccountChangeEvent"


@dataclass
class Run:
    """What a command printed and returned."""

    code: int
    out: str
    err: str

    @property
    def all(self) -> str:
        return self.out + self.err

    def assert_no_secret(self, *extra: str) -> None:
        for secret in (*SECRETS, *extra):
            assert secret not in self.out, f"a secret was printed on stdout: {self.out}"
            assert secret not in self.err, f"a secret was printed on stderr: {self.err}"

    def assert_one_error_line(self, code: int, *parts: str) -> str:
        """The command failed with ``code`` and said so in one line without a traceback."""
        assert self.code == code, (self.code, self.out, self.err)
        assert "Traceback" not in self.all
        errors = [line for line in self.err.splitlines() if line.startswith("sfstream:")]
        assert len(errors) == 1, self.err
        for part in parts:
            assert part in errors[0], errors[0]
        return errors[0]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("SFSTREAM_") or name in ("NO_COLOR", "TERM", "FORCE_COLOR"):
            monkeypatch.delenv(name)
    return monkeypatch


def make_org(**options: Any) -> Emulator:
    settings: dict[str, Any] = {
        "events": {"Order__e": ["Amount__c", "N__c"]},
        "streaming_channels": [GENERIC],
        "push_topics": {"Accounts": "SELECT Id, Name FROM Account"},
        "cdc_entities": ["Account"],
        "consumer_key": CONSUMER_KEY,
        "consumer_secret": CONSUMER_SECRET,
        "username": USERNAME,
        "password": PASSWORD,
        "security_token": SECURITY_TOKEN,
        "refresh_token": REFRESH_TOKEN,
        "hold_time": 0.3,
        "session_expiry": 5.0,
    }
    settings.update(options)
    return Emulator(**settings)


@pytest.fixture
def org(clean_env: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    with make_org().in_thread() as thread:
        yield thread


def password_args(org: EmulatorThread) -> list[str]:
    """Flags for the password flow against ``org`` (the password with its security token)."""
    return [
        "--login-url",
        org.login_url,
        "--consumer-key",
        CONSUMER_KEY,
        "--consumer-secret",
        CONSUMER_SECRET,
        "--username",
        USERNAME,
        "--password",
        PASSWORD,
        "--security-token",
        SECURITY_TOKEN,
    ]


def password_env(org: EmulatorThread) -> dict[str, str]:
    return {
        "SFSTREAM_LOGIN_URL": org.login_url,
        "SFSTREAM_CONSUMER_KEY": CONSUMER_KEY,
        "SFSTREAM_CONSUMER_SECRET": CONSUMER_SECRET,
        "SFSTREAM_USERNAME": USERNAME,
        "SFSTREAM_PASSWORD": PASSWORD + SECURITY_TOKEN,
    }


CliRunner = Callable[..., Run]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], clean_env: pytest.MonkeyPatch) -> CliRunner:
    def run(*argv: str) -> Run:
        code = main(list(argv))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def sfstream(clean_env: pytest.MonkeyPatch) -> CliRunner:
    def run(*argv: str, env: dict[str, str] | None = None, timeout: float = 40.0) -> Run:
        completed = subprocess.run(
            [sys.executable, "-m", "sfstream", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            check=False,
        )
        return Run(completed.returncode, completed.stdout, completed.stderr)

    return run


def subscribed(org: EmulatorThread, channel: str) -> bool:
    """True once a live Bayeux session of ``org`` is subscribed to ``channel``."""
    return any(channel in session["subscriptions"] for session in org.call(org.emulator.sessions))


def publish_when_subscribed(
    org: EmulatorThread,
    channel: str,
    payloads: list[Any],
    *,
    then: Callable[[], object] | None = None,
    timeout: float = 10.0,
) -> threading.Thread:
    """In a thread: wait for a subscription to ``channel``, then publish ``payloads``.

    ``then`` (e.g. a fault) runs between the first and the rest of the payloads.
    """

    def work() -> None:
        deadline = time.monotonic() + timeout
        while not subscribed(org, channel):
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        for index, payload in enumerate(payloads):
            org.publish(channel, payload)
            if index == 0 and then is not None:
                time.sleep(0.2)
                then()
                time.sleep(0.2)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def amounts(messages: list[dict[str, Any]]) -> list[Any]:
    return [m["data"]["payload"]["Amount__c"] for m in messages]


def replay_ids(messages: list[dict[str, Any]]) -> list[int]:
    return [m["data"]["event"]["replayId"] for m in messages]
