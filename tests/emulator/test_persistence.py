"""The org outlives an emulator: pass its state to a new one, or keep it in a state file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import pytest

from sfstream.emulator import Emulator, ManualClock, OrgState, StateFile
from sfstream.exceptions import InvalidArgumentError

from .conftest import Bayeux, events_of, password_token


async def test_restart_with_the_same_state(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    state = OrgState()
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]}, state=state, clock=clock, hold_time=0.3
    ) as first:
        port = first.port
        token = await password_token(http, first)
        client = Bayeux(http, first, token)
        await client.start("/event/Order__e")
        for n in range(3):
            await first.publish("/event/Order__e", {"N__c": n})
        events = events_of(await client.connect())
        last = events[-1]["data"]["event"]["replayId"]
        await first.publish("/event/Order__e", {"N__c": 3})  # published while "down" for us
        old_client_id = client.client_id
    async with Emulator(state=state, clock=clock, port=port, hold_time=0.3) as second:
        client = Bayeux(http, second, token)  # the token is still valid
        client.client_id = old_client_id
        [reply] = await client.connect()
        assert reply["error"] == "403::Unknown client"  # Bayeux sessions do not survive
        events = events_of(await client.start("/event/Order__e", replay=last))
        assert [e["data"]["payload"]["N__c"] for e in events] == [3]
        published = await second.publish("/event/Order__e", {"N__c": 4})
        assert published.replay_id == 5


async def test_state_file_across_emulators(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    path = tmp_path / "org" / "state.jsonl"
    clock = ManualClock()
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]}, state_file=path, clock=clock
    ) as first:
        token = await password_token(http, first)
        revoked = first.issue_access_token()
        first.revoke_token(revoked)
        topic = first.create_push_topic("Accounts", "SELECT Id, Name FROM Account")
        first.create_streaming_channel("/u/news")
        first.define_channel("/event/All__chn", ["Order__e"])
        for n in range(3):
            await first.publish("/event/Order__e", {"N__c": n})
        await first.publish("/u/news", "for one", user_ids=[first.user_id])
        record = first.create_record("Account", {"Name": "Acme"})
        first.update_record("Account", record, {"Name": "Acme 2"})
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    kinds = {line["k"] for line in lines}
    assert kinds == {"meta", "tok", "rec", "ev"}
    assert token not in path.read_text()  # tokens are kept as hashes only
    async with Emulator(state_file=path, clock=clock) as second:
        assert second.state.topic_by_name("Accounts") is not None
        assert second.state.topic_by_name("Accounts").id == topic.id  # type: ignore[union-attr]
        assert second.state.records[record].fields["Name"] == "Acme 2"
        assert [e["payload"]["N__c"] for e in second.events("/event/Order__e")] == [0, 1, 2]
        assert second.state.valid_access_token(token, clock.time(), None) is not None
        assert second.state.valid_access_token(revoked, clock.time(), None) is None
        client = Bayeux(http, second, token)
        events = events_of(await client.start("/event/Order__e", "/u/news", replay=-2))
        assert len(events) == 4
        assert (await second.publish("/event/Order__e", {})).replay_id == 4
        assert len(second.events("/event/All__chn")) == 4
        assert second.create_record("Account", {"Name": "x"}) != record


async def test_state_file_of_a_killed_emulator(tmp_path: Path) -> None:
    path = tmp_path / "state.jsonl"
    running = Emulator(events={"Order__e": ["Amount__c", "N__c"]}, state_file=path)
    await running.start()
    try:
        for n in range(5):
            await running.publish("/event/Order__e", {"N__c": n})
        # read the journal while the first one still runs (as after a SIGKILL)
        with path.open("ab") as handle:
            handle.write(b'{"k":"ev","c":"/event/Order__e","t":1.0,"u":null,"d":{"eve')
        reader = Emulator(state_file=path)
        assert [e["payload"]["N__c"] for e in reader.events("/event/Order__e")] == list(range(5))
    finally:
        await running.stop()


async def test_retention_applies_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.jsonl"
    clock = ManualClock()
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]}, state_file=path, clock=clock
    ) as first:
        await first.publish("/event/Order__e", {})
        await first.publish("/u/news", "x")
    clock.advance(25 * 3600)
    async with Emulator(state_file=path, clock=clock) as second:
        second.advance_clock(0)
        assert second.events("/u/news") == []
        assert len(second.events("/event/Order__e")) == 1
        log = second.state.events.get("/u/news")
        assert log is not None
        assert log.purged_through == 1
        assert log.last_id == 1
    async with Emulator(state_file=path, clock=clock) as third:
        log = third.state.events.get("/u/news")
        assert log is not None
        assert log.purged_through == 1
        assert log.last_id == 1
        assert (await third.publish("/u/news", "y")).replay_id == 2


def test_unreadable_lines_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.jsonl"
    path.write_text('\n{"k":"unknown"}\nnot json\n{"k":"ev"}\n')
    state = OrgState()
    with caplog.at_level(logging.WARNING, logger="sfstream.emulator"):
        assert StateFile(path).load(state) == 0
    assert len(caplog.records) == 3
    assert StateFile(tmp_path / "missing.jsonl").load(state) == 0


@pytest.mark.parametrize("content", ["x\n", "# my notes\n{}\n", '["k", "meta"]\n'])
def test_a_file_that_is_not_a_state_file_is_refused_and_left_as_it_is(
    tmp_path: Path, content: str
) -> None:
    # (the emulator skipped every line and then rewrote the file with the org: the notes
    # were gone, from Python as from the command line)
    path = tmp_path / "notes.txt"
    path.write_text(content)
    with pytest.raises(InvalidArgumentError, match="not an emulator state file"):
        Emulator(state_file=path)
    assert path.read_text() == content


def test_state_file_repr_and_idle_close(tmp_path: Path) -> None:
    state_file = StateFile(tmp_path / "s.jsonl")
    assert "s.jsonl" in repr(state_file)
    state_file.close()  # never attached: nothing to do
    state_file._journal("meta", {})  # detached journal calls are ignored
