"""The error lines ``docs/cli.md`` shows are the lines ``sfstream listen`` prints.

Each case runs the command against an emulated org and looks its one error line up in the
page's *Errors* block, character for character (Salesforce's replay id text has two spaces after
``invalid.``, which the page must keep).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sfstream import ReplayMarker, SqliteStorage
from sfstream.cli import ExitCode, main
from sfstream.emulator import Emulator, EmulatorThread

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
CHANNEL = "/event/Order__e"
#: The date the page shows for a stored marker; the test stores a recent one instead.
PAGE_DATE = "2026-12-07 09:12 UTC"


def errors_block() -> list[str]:
    """The lines of the ```text block of the page's *Errors* section."""
    section = PAGE.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```text\n(.*?)```", section, re.DOTALL)
    assert match is not None, "docs/cli.md: no text block under ## Errors"
    return match[1].splitlines()


@pytest.fixture
def org(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    for name in ("NO_COLOR", "TERM", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    with Emulator(events={"Order__e": ["Amount__c"]}, hold_time=0.3).in_thread() as thread:
        yield thread


def listen(org: EmulatorThread, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``sfstream listen`` against ``org``; its one error line (exit status 1)."""
    credentials = [
        "--login-url",
        org.login_url,
        "--consumer-key",
        org.emulator.consumer_key,
        "--consumer-secret",
        org.emulator.consumer_secret,
        "--username",
        org.emulator.username,
        "--password",
        org.emulator.password,
    ]
    code = main(["listen", *args, "--count", "1", "--quiet", *credentials])
    err = capsys.readouterr().err
    assert code == ExitCode.ERROR, err
    [line] = [line for line in err.splitlines() if line.startswith("sfstream:")]
    return line


def store_marker(path: Path, date: str) -> None:
    async def write() -> None:
        async with SqliteStorage(path) as storage:
            await storage.set_replay_marker(CHANNEL, ReplayMarker(date, 41))

    asyncio.run(write())


@pytest.mark.parametrize("channel", ["/event/Odrer__e", "/event/Nothing__e"])
def test_an_unknown_channel_is_reported_as_the_page_shows(
    channel: str, org: EmulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    assert listen(org, capsys, channel) in errors_block()


def test_a_refused_replay_id_with_an_empty_store_is_reported_as_the_page_shows(
    org: EmulatorThread,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    line = listen(org, capsys, CHANNEL, "--replay", "41", "--store", "orders.db")
    assert line in errors_block()


def test_a_stored_replay_id_the_channel_never_issued_is_reported_as_the_page_shows(
    org: EmulatorThread,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    stored = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    store_marker(tmp_path / "orders.db", stored.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    line = listen(org, capsys, CHANNEL, "--store", "orders.db")
    shown = stored.strftime("%Y-%m-%d %H:%M UTC")
    assert shown in line
    assert line.replace(shown, PAGE_DATE) in errors_block()


def test_the_generic_push_lines_shown_are_what_publish_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody subscribed, a broadcast to a subscriber, a push to that subscriber's user: each
    line ``sfstream publish /u/...`` prints is one the page shows."""
    import threading

    from sfstream import SalesforceStreamingClient
    from sfstream.testing import emulator_credentials

    for name in ("NO_COLOR", "TERM", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    channel = "/u/Notifications"
    section = PAGE.split("\n## sfstream publish\n", 1)[1].split("\n## ", 1)[0]
    subscribed = threading.Event()
    received: list[object] = []

    def subscriber(org: Emulator) -> None:
        async def listen() -> None:
            async with SalesforceStreamingClient(**emulator_credentials(org)) as client:
                await client.subscribe(channel)
                subscribed.set()
                async with asyncio.timeout(20):
                    received.extend([await client.receive(), await client.receive()])

        asyncio.run(listen())

    with Emulator(streaming_channels=[channel], hold_time=0.3).in_thread() as org:
        credentials = [
            "--login-url",
            org.login_url,
            "--consumer-key",
            org.emulator.consumer_key,
            "--consumer-secret",
            org.emulator.consumer_secret,
            "--username",
            org.emulator.username,
            "--password",
            org.emulator.password,
        ]

        def publish(*args: str) -> str:
            assert main(["publish", channel, *args, *credentials]) == ExitCode.OK
            [line] = capsys.readouterr().out.splitlines()
            return line

        lines = [publish("Anyone there?")]
        thread = threading.Thread(target=subscriber, args=(org.emulator,))
        thread.start()
        try:
            assert subscribed.wait(20)
            lines.append(publish("Build 42 is green"))
            lines.append(publish("Build 42 is green", "--user-id", org.emulator.user_id))
        finally:
            thread.join(30)
    assert len(received) == 2
    for line in lines:
        assert f"\n  {line}\n" in section, f"docs/cli.md does not show: {line}"


def test_the_demo_summary_shown_is_what_the_demo_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary block of ``sfstream demo`` on the page, except the line of counters from
    ``client.stats`` (how often a reconnect takes more than one attempt varies with the
    machine's load)."""
    for name in ("NO_COLOR", "TERM", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    section = PAGE.split("\n## sfstream demo\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```text\n(Summary\n.*?)```", section, re.DOTALL)
    assert match is not None, "docs/cli.md: no summary block under ## sfstream demo"
    assert main(["demo"]) == ExitCode.OK
    out = capsys.readouterr().out
    printed = out[out.index("\nSummary\n") + 1 :].splitlines()

    def without_counters(lines: list[str]) -> list[str]:
        return [line for line in lines if "(from client.stats)" not in line]

    assert without_counters(printed) == without_counters(match[1].splitlines())
