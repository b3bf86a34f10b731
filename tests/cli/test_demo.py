"""``sfstream demo``: ends by itself with nothing lost, and says so only when it is true."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sfstream.bayeux import Message
from sfstream.cli import _demo
from sfstream.emulator import DEFAULT_CONSUMER_SECRET, DEFAULT_PASSWORD
from tests.cli.conftest import ROOT, CliRunner

FAST = ("--interval", "0.02")


def total_row(out: str) -> tuple[int, int, int, int]:
    match = re.search(r"^\s+total\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", out, re.MULTILINE)
    assert match, out
    published, received, lost, duplicates = (int(g) for g in match.groups())
    return published, received, lost, duplicates


def test_demo_completes_with_nothing_lost(cli: CliRunner) -> None:
    started = time.monotonic()
    run = cli("demo", *FAST)
    assert run.code == 0, run.all
    assert time.monotonic() - started < 30
    published, received, lost, duplicates = total_row(run.out)
    assert published == received > 40
    assert (lost, duplicates) == (0, 0)
    assert "Nothing lost" in run.out
    # the faults happened and were recovered from, as client.stats counted them
    assert "session expired on the server" in run.out
    assert "access token revoked on the server" in run.out
    stats = re.search(r"reconnects (\d+), re-authentications (\d+)", run.out)
    assert stats is not None
    assert int(stats.group(1)) >= 2
    assert int(stats.group(2)) >= 1
    for channel in _demo.CHANNELS:
        assert re.search(rf"^\s+{re.escape(channel)}\s+\d+\s+\d+\s+0\s+0\s*$", run.out, re.M)
    assert "\x1b[" not in run.out  # not a terminal: plain text
    assert "Traceback" not in run.all
    assert DEFAULT_PASSWORD not in run.out.replace("password flow", "")
    assert DEFAULT_CONSUMER_SECRET not in run.all


def test_a_kept_store_falls_back_on_a_new_org(cli: CliRunner, tmp_path: Path) -> None:
    store = str(tmp_path / "replay")
    first = cli("demo", *FAST, "--store", store)
    assert first.code == 0, first.all
    assert list(tmp_path.iterdir())
    second = cli("demo", *FAST, "--store", store)
    assert second.code == 0, second.all
    assert "the store's replay id is unknown to this org" in second.out
    assert total_row(second.out)[2] == 0


def test_a_lost_event_is_reported_and_fails(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary compares replay ids: a message the app never got counts as lost."""
    monkeypatch.setattr(_demo, "RECOVERY_TIMEOUT", 1.0)
    record = _demo.Demo.record
    dropped: list[Message] = []

    def drop_one(self: _demo.Demo, message: Message) -> None:
        # the platform event of the last round: only the final wait misses it
        if message["channel"] == _demo.EVENT and message["data"]["event"]["replayId"] == 13:
            dropped.append(message)
            return
        record(self, message)

    monkeypatch.setattr(_demo.Demo, "record", drop_one)
    run = cli("demo", *FAST)
    assert run.code == 1
    assert total_row(run.out)[2] == 1
    assert "LOST 1 event(s); 1 published EventUuid(s) never arrived" in run.out
    assert "EventUuids returned by the REST API: 13, of which received: 12" in run.out
    assert "gave up waiting for the client to receive every event" in run.out
    assert len(dropped) == 1
    assert re.search(rf"^\s+{re.escape(_demo.EVENT)}\s+\d+\s+\d+\s+1\s+0\s*$", run.out, re.M)


def test_summary_counts_duplicates() -> None:
    class Org:
        def events(self, channel: str) -> list[dict[str, Any]]:
            return [{"event": {"replayId": 1}}, {"event": {"replayId": 2}}]

    demo = _demo.Demo.__new__(_demo.Demo)
    demo.channels = {channel: _demo._Channel() for channel in _demo.CHANNELS}
    demo.channels[_demo.EVENT].received = [1, 2, 2]
    demo.uuids_published = set()
    demo.uuids_received = set()
    summary = demo.summary(Org())  # type: ignore[arg-type]
    assert summary.rows[_demo.EVENT] == (2, 3, 0, 1)
    assert summary.duplicates == 1
    assert summary.lost == 6  # the other three channels received nothing
    assert summary.failed
    assert not _demo.DemoSummary({}, 1, 0).failed
    assert _demo.DemoSummary({}, 1, 1).failed


def test_trace_shows_bayeux_messages_without_secrets(cli: CliRunner) -> None:
    run = cli("demo", *FAST, "--trace")
    assert run.code == 0
    assert '>> {"channel":"/meta/handshake"' in run.err
    assert '<< {"' in run.err
    assert '"/meta/subscribe"' in run.err
    assert DEFAULT_CONSUMER_SECRET not in run.all


def test_colour_on_request(cli: CliRunner) -> None:
    run = cli("--color", "always", "demo", *FAST)
    assert run.code == 0
    assert "\x1b[32mreceive" in run.out


def test_forever_stops_cleanly_on_ctrl_c(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_demo, "FAULT_EVERY", 3)
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        run = cli("demo", *FAST, "--forever")
    finally:
        timer.cancel()
    assert run.code == 0, run.all
    assert "--forever" in run.out
    assert "so far: published" in run.out
    assert "interrupted" in run.out
    assert total_row(run.out)[2] == 0
    assert "Traceback" not in run.all


def test_ctrl_c_without_forever_exits_130(cli: CliRunner) -> None:
    timer = threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        run = cli("demo", "--interval", "0.3")
    finally:
        timer.cancel()
    assert run.code == 130, run.all
    assert "Summary" in run.out
    assert "Traceback" not in run.all


def test_demo_as_a_subprocess(sfstream: CliRunner) -> None:
    run = sfstream("demo", *FAST)
    assert run.code == 0, run.all
    assert total_row(run.out)[2] == 0
    assert "Nothing lost" in run.out
    assert "\x1b[" not in run.out
    assert run.err == ""


def test_forever_subprocess_interrupted(clean_env: pytest.MonkeyPatch) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sfstream", "demo", "--forever", *FAST],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if "round 20:" in line:
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, out[-3000:] + err
    assert "Nothing lost" in out
    assert "Traceback" not in out + err
