"""The replay store of ``sfstream listen --store`` and ``sfstream demo --store``.

The store is an :class:`~sfstream.SqliteStorage` file. A path that holds a ``shelve`` store
(what ``--store`` wrote before, or aiosfstream's shelf: any ``dbm`` flavour, including
``dbm.dumb``'s ``PATH.dat``/``PATH.dir``/``PATH.bak``) is read once and its markers moved into
an SQLite store next to it: at PATH itself when the shelve's files have other names, else at
``PATH.sqlite3``; a note on stderr says so, and the shelve files are left untouched.

Every problem becomes one :class:`CliError` line naming the path the user gave (never an
internal file name, never a bytes repr) and what to do about it.
"""

from __future__ import annotations

import dbm
import importlib
import importlib.util
import os
import shelve
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from sfstream.exceptions import ReplayError
from sfstream.salesforce import MappingStorage, SqliteStorage

from ._errors import CliError, ExitCode

__all__ = ["find_shelve", "migrated_path", "open_store"]

_SQLITE_HEADER: Final = b"SQLite format 3\x00"
#: The table of a shelve on Python 3.13's ``dbm.sqlite3``.
_DBM_SQLITE_TABLE: Final = "Dict"


def _sqlite_tables(path: Path) -> set[str] | None:
    """The tables of the SQLite database at ``path``, or None if it is not one."""
    try:
        with path.open("rb") as file:
            if file.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
                return None
    except OSError:
        return None
    try:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {row[0] for row in rows}
        finally:
            connection.close()
    except sqlite3.Error:
        return None


def find_shelve(path: Path) -> str | None:
    """The ``dbm`` flavour of a shelve store at ``path`` (``"dbm.dumb"``...), or None."""
    tables = _sqlite_tables(path)
    if tables is not None:
        return "dbm.sqlite3" if tables == {_DBM_SQLITE_TABLE} else None
    try:
        kind = dbm.whichdb(str(path))
    except OSError:
        return None
    return kind or None


def migrated_path(path: Path) -> Path:
    """Where the SQLite store of the shelve store at ``path`` goes."""
    return path.with_name(path.name + ".sqlite3") if path.exists() else path


def _shelve_files(path: Path, shown: str) -> str:
    """The files of the shelve store at ``path``, as the user would name them."""
    names = [
        shown + suffix
        for suffix in ("", ".db", ".dat", ".dir", ".bak")
        if Path(f"{path}{suffix}").is_file()
    ]
    return ", ".join(names) if names else shown


def _open_error(path: str, exc: ReplayError) -> CliError:
    text = str(exc)
    if "directory" in text and "does not exist" in text:
        hint = "create the directory, or give another path"
    elif "is not a directory" in text:
        hint = "give a path in an existing directory"
    elif "it is a directory" in text:
        hint = "give the path of a file (it is created if missing)"
    elif "not an SQLite database" in text or "without replay markers" in text:
        hint = "give the path of a replay store, or of a file that does not exist yet"
    else:
        hint = "check the path and its permissions"
    text = text.replace("cannot open the replay store", "cannot open the store")
    return CliError(text, ExitCode.ERROR, hint)


def _open(path: Path, default_id: int | None, shown: str) -> SqliteStorage:
    try:
        return SqliteStorage(path, default_id=default_id)
    except ReplayError as exc:
        raise _open_error(shown, exc) from None


async def _migrate(source: Path, kind: str, target: Path, shown: str) -> int:
    """Copy the markers of the shelve at ``source`` into a new SQLite store at ``target``."""
    where = f"cannot read the shelve store {shown}"
    partial = target.with_name(target.name + ".migrating")
    for leftover in (partial, *(Path(f"{partial}{suffix}") for suffix in ("-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
    if importlib.util.find_spec(kind) is None:
        raise CliError(
            f"{where}: it was written with {kind}, which this Python does not have",
            ExitCode.ERROR,
            f"read it once with a Python that has {kind}, or delete "
            f"{_shelve_files(source, shown)} to start again",
        )
    try:
        module: Any = importlib.import_module(kind)
        shelf: shelve.Shelf[Any] = shelve.Shelf(module.open(str(source), "r"))
    except (OSError, *dbm.error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CliError(f"{where}: {reason}", ExitCode.ERROR, "check its permissions") from None
    try:
        reader = MappingStorage(shelf)
        markers = {}
        for key in list(shelf.keys()):
            try:
                marker = await reader.get_replay_marker(key)
            except ReplayError as exc:
                raise CliError(
                    f"{where}: {exc}",
                    ExitCode.ERROR,
                    f"delete {_shelve_files(source, shown)} to start again (its channels then "
                    "start from --replay)",
                ) from None
            if marker is not None:
                markers[key] = marker
    finally:
        shelf.close()
    store = _open(partial, None, shown)
    try:
        for key, marker in markers.items():
            try:
                await store.set_replay_marker(key, marker)
            except ReplayError as exc:
                # A marker whose date does not parse: the same report as a value that is not
                # a marker (it was "replay store: ... — check the replay store", and the
                # half-written SQLite file was left next to the shelve).
                raise CliError(
                    f"{where}: the marker stored for channel {key!r} cannot be used ({exc})",
                    ExitCode.ERROR,
                    f"delete {_shelve_files(source, shown)} to start again (its channels then "
                    "start from --replay)",
                ) from None
    except BaseException:
        store.close()
        for leftover in (partial, *(Path(f"{partial}{suffix}") for suffix in ("-wal", "-shm"))):
            leftover.unlink(missing_ok=True)
        raise
    store.close()
    os.replace(partial, target)
    return len(markers)


def _locate(path: str) -> tuple[Path, str | None, Path]:
    """(the path given, the dbm flavour of a shelve store there to migrate or None, the
    SQLite store to use)."""
    given = Path(path).expanduser()
    kind = find_shelve(given)
    if kind is None:
        return given, None, given
    target = migrated_path(given)
    if target != given and _sqlite_tables(target) is not None:
        return given, None, target  # migrated by an earlier run
    return given, kind, target


async def open_store(
    path: str, default_id: int | None = None, note: Callable[[str], None] | None = None
) -> SqliteStorage:
    """The SQLite replay store at ``path``, migrating a shelve store found there first.

    Args:
        path: what the user gave to ``--store``.
        default_id: where channels with nothing stored start.
        note: where to say that a shelve store was migrated (stderr).

    Raises:
        CliError: the store cannot be opened or migrated; the message says why and what to do.
    """
    given, kind, target = _locate(path)
    if kind is None:
        return _open(target, default_id, path)
    count = await _migrate(given, kind, target, path)
    if note is not None:
        where = "in its place" if target == given else f"at {target}"
        channels = "channel" if count == 1 else "channels"
        note(
            f"moved the replay markers of {count} {channels} from the shelve store {path} "
            f"({kind}) to an SQLite store {where}; the shelve files are left as they were "
            "and no longer used"
        )
    return _open(target, default_id, path)
