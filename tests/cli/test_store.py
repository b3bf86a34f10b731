"""``--store``: an SQLite replay store, shelve stores migrated once, and errors that say what
is wrong with the path the user gave (issue #14)."""

from __future__ import annotations

import asyncio
import dbm.dumb
import pickle
import shelve
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from sfstream import ReplayMarker, SqliteStorage
from sfstream.cli import _store
from sfstream.cli._errors import CliError
from sfstream.emulator import EmulatorThread
from tests.cli.conftest import EVENT, CliRunner, json_lines, password_args, replay_ids

OLD_DATE = "2020-01-01T00:00:00.000Z"
#: Credentials that pass the checks; the store is opened before anything is sent.
NO_ORG = ("--access-token", "t", "--instance-url", "http://127.0.0.1:9")


def dumb_shelve(path: Path, markers: dict[str, Any]) -> None:
    """A shelve store on dbm.dumb (``PATH.dat``, ``PATH.dir``, ``PATH.bak``), as the old
    ``--store`` wrote it on a Python without gdbm/ndbm."""
    database: Any = dbm.dumb.open(str(path), "c")  # noqa: SIM115 - the shelf closes it
    shelf: shelve.Shelf[Any]
    with shelve.Shelf(database) as shelf:
        shelf.update(markers)


def dbm_sqlite3_shelve(path: Path, markers: dict[str, Any]) -> None:
    """A shelve store on Python 3.13's dbm.sqlite3 (one file at PATH), made by hand so that
    every Python can make it."""
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE Dict (key BLOB UNIQUE NOT NULL, value BLOB NOT NULL)")
        connection.executemany(
            "INSERT INTO Dict (key, value) VALUES (?, ?)",
            [(key.encode(), pickle.dumps(value)) for key, value in markers.items()],
        )
    connection.close()


def error_line(run: Any) -> str:
    line: str = run.assert_one_error_line(1)
    # what issue #14 saw: a bytes repr, dbm.dumb's internal file, a hint about damage
    assert "b'" not in line
    assert ".dat" not in line
    assert "damaged" not in line
    return line


def test_a_missing_directory_is_named(cli: CliRunner, tmp_path: Path) -> None:
    store = tmp_path / "no" / "such" / "markers"
    line = error_line(cli("listen", EVENT, "--store", str(store), *NO_ORG))
    assert line == (
        f"sfstream: cannot open the store {store}: the directory {store.parent} does not exist"
        " — create the directory, or give another path"
    )


@pytest.mark.parametrize(
    ("make", "message", "hint"),
    [
        (lambda p: p.mkdir(), "it is a directory", "give the path of a file"),
        (lambda p: p.write_text("hello " * 50), "is not an SQLite database", "replay store"),
        (
            lambda p: sqlite3.connect(p).execute("CREATE TABLE t (x)").connection.close(),
            "an SQLite database without replay markers (it has the tables t)",
            "replay store",
        ),
        (lambda p: (p.parent / "file").write_text(""), "is not a directory", "existing directory"),
    ],
)
def test_store_paths_that_cannot_be_used(
    cli: CliRunner, tmp_path: Path, make: Any, message: str, hint: str
) -> None:
    store = tmp_path / "store"
    make(store)
    if message == "is not a directory":
        store = tmp_path / "file" / "store"
    line = error_line(cli("listen", EVENT, "--store", str(store), *NO_ORG))
    assert message in line
    assert hint in line.partition(" — ")[2]
    assert str(store) in line


def test_a_dumb_shelve_store_is_migrated_once(
    cli: CliRunner, org: EmulatorThread, tmp_path: Path
) -> None:
    store = tmp_path / "markers"
    for n in range(1, 5):
        org.publish(EVENT, {"Amount__c": n})
    dumb_shelve(store, {EVENT: ReplayMarker(OLD_DATE, 2), "/u/other": ReplayMarker(OLD_DATE, 9)})
    creds = password_args(org)
    first = cli("listen", EVENT, "--store", str(store), "--json", "--count", "2", *creds)
    assert first.code == 0, first.err
    assert replay_ids(json_lines(first.out)) == [3, 4]  # resumed after the shelve's marker
    assert (
        f"moved the replay markers of 2 channels from the shelve store {store} (dbm.dumb) to an "
        "SQLite store in its place; the shelve files are left as they were"
    ) in first.err
    assert Path(f"{store}.dat").exists()  # untouched
    assert not Path(f"{store}.sqlite3.migrating").exists()
    with SqliteStorage(store) as storage:
        markers = asyncio.run(storage.markers())
    assert markers["/u/other"] == ReplayMarker(OLD_DATE, 9)
    assert markers[EVENT].replay_id == 4
    org.publish(EVENT, {"Amount__c": 5})
    second = cli("listen", EVENT, "--store", str(store), "--json", "--count", "1", *creds)
    assert second.code == 0, second.err
    assert replay_ids(json_lines(second.out)) == [5]
    assert "moved" not in second.err


def test_a_shelve_store_in_the_way_is_migrated_next_to_it(
    cli: CliRunner, org: EmulatorThread, tmp_path: Path
) -> None:
    """A shelve whose file is PATH itself (dbm.sqlite3 here; dbm.gnu likewise)."""
    store = tmp_path / "markers"
    for n in range(1, 4):
        org.publish(EVENT, {"Amount__c": n})
    dbm_sqlite3_shelve(store, {EVENT: ReplayMarker(OLD_DATE, 1)})
    assert _store.find_shelve(store) == "dbm.sqlite3"
    creds = password_args(org)
    run = cli("listen", EVENT, "--store", str(store), "--json", "--count", "2", *creds)
    if sys.version_info < (3, 13):  # no dbm.sqlite3 to read it with: say so
        assert run.code == 1, run.err
        [error] = json_lines(run.err)  # with --json, errors are JSON lines on stderr too
        assert error["error"] == (
            f"cannot read the shelve store {store}: it was written with dbm.sqlite3, "
            "which this Python does not have"
        )
        assert error["hint"] == (
            f"read it once with a Python that has dbm.sqlite3, or delete {store} to start again"
        )
        return
    assert run.code == 0, run.err
    assert replay_ids(json_lines(run.out)) == [2, 3]
    assert f"to an SQLite store at {store}.sqlite3;" in run.err


def test_an_earlier_migration_is_used(tmp_path: Path) -> None:
    store = tmp_path / "markers"
    dbm_sqlite3_shelve(store, {EVENT: ReplayMarker(OLD_DATE, 1)})
    with SqliteStorage(f"{store}.sqlite3") as storage:
        asyncio.run(storage.set_replay_marker(EVENT, ReplayMarker(OLD_DATE, 7)))
    notes: list[str] = []
    opened = asyncio.run(_store.open_store(str(store), -2, notes.append))
    try:
        assert opened.path == Path(f"{store}.sqlite3")
        assert asyncio.run(opened.get_replay_id(EVENT)) == 7
        assert asyncio.run(opened.get_replay_id("/u/nothing")) == -2
    finally:
        opened.close()
    assert notes == []


def test_an_unreadable_shelve_is_not_half_migrated(tmp_path: Path) -> None:
    store = tmp_path / "markers"
    dumb_shelve(store, {EVENT: ReplayMarker(OLD_DATE, 1), "/u/bad": "not a marker"})
    with pytest.raises(CliError) as raised:
        asyncio.run(_store.open_store(str(store)))
    assert raised.value.message == (
        f"cannot read the shelve store {store}: the value stored for channel '/u/bad' is not "
        "a replay marker (str)"
    )
    assert raised.value.hint.startswith(f"delete {store}.dat, {store}.dir")
    assert not store.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "markers.bak",
        "markers.dat",
        "markers.dir",
    ]


def test_a_shelve_marker_with_a_bad_date_is_not_half_migrated(tmp_path: Path) -> None:
    # It failed with "replay store: not a replay marker date: 'x' — check the replay store"
    # and left markers.migrating next to the shelve.
    store = tmp_path / "markers"
    dumb_shelve(store, {EVENT: ReplayMarker(OLD_DATE, 1), "/u/bad": ReplayMarker("x", 2)})
    with pytest.raises(CliError) as raised:
        asyncio.run(_store.open_store(str(store)))
    assert raised.value.message.startswith(
        f"cannot read the shelve store {store}: the marker stored for channel '/u/bad' cannot "
        "be used (not a replay marker date: 'x')"
    )
    assert raised.value.hint.startswith(f"delete {store}.dat, {store}.dir")
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "markers.bak",
        "markers.dat",
        "markers.dir",
    ]


def test_an_sqlite_store_is_used_as_it_is(tmp_path: Path) -> None:
    store = tmp_path / "markers.sqlite3"
    with SqliteStorage(store) as storage:
        asyncio.run(storage.set_replay_marker(EVENT, ReplayMarker(OLD_DATE, 3)))
    assert _store.find_shelve(store) is None
    assert _store.find_shelve(tmp_path / "nothing") is None
    opened = asyncio.run(_store.open_store(str(store), None))
    try:
        assert asyncio.run(opened.get_replay_id(EVENT)) == 3
        assert asyncio.run(opened.get_replay_id("/u/x")) is None
    finally:
        opened.close()


def test_relative_paths_and_odd_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("markers", "my store #1?.db"):
        for _ in range(2):  # created, then found again
            opened = asyncio.run(_store.open_store(name, None))
            try:
                asyncio.run(opened.set_replay_marker(EVENT, ReplayMarker(OLD_DATE, 1)))
            finally:
                opened.close()
            assert _store.find_shelve(Path(name)) is None
    dbm_sqlite3_shelve(tmp_path / "old", {EVENT: ReplayMarker(OLD_DATE, 1)})
    assert _store.find_shelve(Path("old")) == "dbm.sqlite3"
