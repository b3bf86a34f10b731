"""A replay marker storage in an SQLite file (the standard library's ``sqlite3``).

One row per subscription key. A marker is written with one atomic upsert whose ``WHERE`` clause
compares (normalised date, replay id), so it never moves backwards, whichever process writes
last. The file is in WAL mode, with a busy timeout, so several processes (and several clients
in one process) can share it.

Durability: with ``synchronous=NORMAL`` (the default) in WAL mode a commit is a ``write()`` into
the WAL file, which the operating system keeps when the process dies, also by SIGKILL; only an
OS crash or a power loss can drop the last commits, and then the store goes back to an older
marker, never a torn one: events are delivered again, none is skipped. ``synchronous="FULL"``
adds an fsync per commit, so that markers also survive a power loss.

Blocking: a call that may wait runs on the storage's worker thread, off the event loop. With
``synchronous=NORMAL`` a read or a write that gets its lock at once takes tens of microseconds
(no fsync), less than a trip to a thread: it runs on the event loop, on a connection that never
waits (busy timeout 0, no automatic checkpoint). When the lock is taken (another process is
writing) it goes to the worker thread, whose connection waits up to ``timeout`` seconds for it;
every few hundred writes, one runs there and checkpoints the WAL file. With ``"FULL"`` every
write fsyncs and so runs on the worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

from sfstream.exceptions import InvalidArgumentError, ReplayError
from sfstream.salesforce._replay import ReplayMarker, ReplayMarkerStorage, parse_marker_date

__all__ = ["SqliteStorage", "check_optional_id", "marker_order"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
#: SQLite's primary result codes for "someone else holds the lock".
_BUSY_CODES: Final = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED
#: Writes made on the event loop between two that checkpoint the WAL file on the worker thread.
CHECKPOINT_EVERY: Final = 500
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
#: The table the markers live in; a database holding other tables but not this one is refused.
TABLE: Final = "sfstream_replay_markers"
_SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    subscription TEXT NOT NULL PRIMARY KEY,
    date TEXT NOT NULL,
    date_us INTEGER NOT NULL,
    replay_id INTEGER NOT NULL
) WITHOUT ROWID
"""
_UPSERT: Final = f"""
INSERT INTO {TABLE} (subscription, date, date_us, replay_id) VALUES (?, ?, ?, ?)
ON CONFLICT (subscription) DO UPDATE SET
    date = excluded.date, date_us = excluded.date_us, replay_id = excluded.replay_id
WHERE (excluded.date_us, excluded.replay_id) >= ({TABLE}.date_us, {TABLE}.replay_id)
"""  # noqa: S608 - TABLE is a constant
_SELECT: Final = f"SELECT date, replay_id FROM {TABLE} WHERE subscription = ?"  # noqa: S608
_SELECT_ALL: Final = f"SELECT subscription, date, replay_id FROM {TABLE}"  # noqa: S608


def marker_order(marker: ReplayMarker) -> tuple[int, int]:
    """The order of ``marker``: (its date in microseconds since the epoch, its replay id).

    Markers compare as :meth:`ReplayMarkerStorage.extract_replay_id` compares them: by
    normalised date, then replay id. Both are signed 64-bit integers, so that SQL and Redis
    can compare them.

    Raises:
        ReplayError: the date does not parse, or the replay id is not a 64-bit integer.
    """
    date, replay_id = marker
    value: object = replay_id  # a user's marker may hold anything
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not _INT64_MIN <= value <= _INT64_MAX
    ):
        raise ReplayError(f"not a replay id: {replay_id!r}")
    micros = (parse_marker_date(date) - _EPOCH) // _MICROSECOND
    return micros, replay_id


def check_optional_id(default_id: object) -> int | None:
    """``default_id`` checked: None, an int or a ReplayOption."""
    if default_id is None:
        return None
    if not isinstance(default_id, int) or isinstance(default_id, bool):
        raise TypeError(f"default_id must be an int, a ReplayOption or None, not {default_id!r}")
    return default_id


class SqliteStorage(ReplayMarkerStorage):
    """Replay markers in an SQLite file: one row per subscription, never moving backwards.

    Safe to share between processes and clients: every write is one atomic upsert that keeps
    the newer marker (by normalised date, then replay id), so concurrent writers never move a
    marker backwards, and a process killed at any moment (SIGKILL included) leaves every
    committed marker readable. Works with both storage policies.

    Example::

        async with SqliteStorage("replay.sqlite3", default_id=ReplayOption.ALL_EVENTS) as replay:
            async with Client(auth, replay=replay) as client:
                ...

    Close it when done (``await`` :meth:`aclose`, or :meth:`close` outside an event loop, or use
    it as a context manager, sync or async); the file stays, and the next run resumes from it.

    Args:
        path: the database file; created if missing (its directory must exist). SQLite keeps
            ``-wal`` and ``-shm`` files next to it while it is open.
        default_id: where channels with no stored marker start (a replay id or a
            :class:`~sfstream.ReplayOption`); None (the default) leaves it to the client's
            ``replay`` default, new events.
        synchronous: ``"NORMAL"`` (the default) survives the process being killed;
            ``"FULL"`` also survives an OS crash or power loss, at the cost of an fsync per
            marker.
        timeout: seconds to wait for another process's write lock before failing, when
            opening the file (a new file is put in WAL mode) as when writing.

    Raises:
        ReplayError: the file cannot be opened or created (the message says why), or it is
            not an SQLite database of replay markers.
    """

    #: The replay id for channels with no stored marker (None: the client's default).
    default_id: int | None

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        default_id: int | None = None,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        timeout: float = 30.0,
    ) -> None:
        default_id = check_optional_id(default_id)
        if synchronous not in ("NORMAL", "FULL"):
            raise InvalidArgumentError(
                f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}"
            )
        self.default_id = default_id
        self._path = Path(path)
        self._closed = False
        self._connection = _connect(self._path, synchronous, timeout)
        self._inline: sqlite3.Connection | None = None
        if synchronous == "NORMAL":
            try:
                self._inline = _connect_inline(self._path)
            except BaseException:
                self._connection.close()
                raise
        self._inline_writes = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sfstream-sqlite"
        )
        #: the calls handed to the worker thread that have not ended yet
        self._outstanding: set[concurrent.futures.Future[Any]] = set()
        #: the worker thread's last job, closing its connection, when close() left it there
        self._closing: concurrent.futures.Future[None] | None = None

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {str(self._path)!r}{state}>"

    async def _run(
        self, function: Callable[[sqlite3.Connection], _T], *, inline_ok: bool = True
    ) -> _T:
        """``function(connection)``: on the event loop if the lock is free (and ``inline_ok``),
        else on the worker thread, which waits for it."""
        if self._closed:
            raise ReplayError(f"the replay store {self._path} is closed")
        inline = self._inline if inline_ok else None
        if inline is not None:
            try:
                return function(inline)
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                # locked by another writer (or a checkpoint): wait for it off the event loop
        try:
            job = self._executor.submit(function, self._connection)
        except RuntimeError:  # closed by another thread in the meantime
            raise ReplayError(f"the replay store {self._path} is closed") from None
        outstanding = self._outstanding
        outstanding.add(job)
        job.add_done_callback(outstanding.discard)
        return await asyncio.wrap_future(job)

    async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
        """The marker stored for ``subscription``, or None.

        Raises:
            ReplayError: the database cannot be read.
        """

        def read(connection: sqlite3.Connection) -> ReplayMarker | None:
            row = connection.execute(_SELECT, (subscription,)).fetchone()
            return None if row is None else ReplayMarker(row[0], row[1])

        try:
            return await self._run(read)
        except (sqlite3.Error, UnicodeError) as exc:
            raise ReplayError(
                f"cannot read the replay marker of {subscription!r} from {self._path}: {exc}"
            ) from exc

    async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
        """Store ``replay_marker`` for ``subscription``, unless a newer one is stored.

        One atomic upsert: of two writers, the newer marker (by normalised date, then replay
        id) wins, whatever the order of their commits.

        Raises:
            ReplayError: the marker's date does not parse, or the database cannot be written.
        """
        date = str(replay_marker[0])
        micros, replay_id = marker_order(ReplayMarker(date, replay_marker[1]))

        def write(connection: sqlite3.Connection) -> bool:
            connection.execute("BEGIN IMMEDIATE")
            try:
                cursor = connection.execute(_UPSERT, (subscription, date, micros, replay_id))
                stored = cursor.rowcount > 0
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            if connection is self._inline:
                self._inline_writes += 1
            return stored

        def write_and_checkpoint(connection: sqlite3.Connection) -> bool:
            stored = write(connection)
            _checkpoint(connection)
            return stored

        try:
            if self._inline_writes >= CHECKPOINT_EVERY:
                # the inline connection does not checkpoint the WAL file: this write does, on the
                # worker thread, while no inline write can append to the WAL file
                self._inline_writes = 0
                stored = await self._run(write_and_checkpoint, inline_ok=False)
            else:
                stored = await self._run(write)
        except (sqlite3.Error, UnicodeError) as exc:
            raise ReplayError(
                f"cannot store the replay marker of {subscription!r} in {self._path}: {exc}"
            ) from exc
        if not stored:
            logger.debug("kept the newer stored replay marker of %s", subscription)

    async def get_replay_id(self, subscription: str) -> int | None:
        """The stored marker's replay id, else :attr:`default_id`."""
        replay_id = await super().get_replay_id(subscription)
        return self.default_id if replay_id is None else replay_id

    async def markers(self) -> dict[str, ReplayMarker]:
        """Every stored marker, by subscription key.

        Raises:
            ReplayError: the database cannot be read.
        """

        def read(connection: sqlite3.Connection) -> dict[str, ReplayMarker]:
            rows = connection.execute(_SELECT_ALL).fetchall()
            return {key: ReplayMarker(date, replay_id) for key, date, replay_id in rows}

        try:
            return await self._run(read)
        except sqlite3.Error as exc:
            raise ReplayError(f"cannot read the replay markers from {self._path}: {exc}") from exc

    def close(self) -> None:
        """Close the database. Idempotent; the storage raises ReplayError once closed.

        A read or write in progress on the worker thread (waiting for another process's
        lock) ends first: it lands, or raises to its caller. Outside an event loop,
        ``close()`` waits for it. Called in a coroutine it never blocks the event loop (which
        may be what must run for the lock to be released): it returns at once and the worker
        thread closes its connection after that call; ``await`` :meth:`aclose` to wait for it.
        """
        if self._closed:
            return
        self._closed = True
        if self._inline is not None:
            # used only synchronously, by the thread that calls _run(): never busy now
            self._inline.close()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            on_loop = False
        else:
            on_loop = True
        if on_loop and self._outstanding:
            # the worker thread's last job: after every call handed to it, in order
            self._closing = self._executor.submit(self._connection.close)
            self._executor.shutdown(wait=False)
            return
        self._executor.shutdown(wait=True)  # idle (or outside a loop): no wait on the loop
        self._connection.close()

    async def aclose(self) -> None:
        """Close the database without blocking the event loop; idempotent.

        Returns once every read or write that was in progress has ended (landed, or raised to
        its caller) and the file is closed, also when :meth:`close` was called first.
        """
        self.close()
        closing = self._closing
        if closing is not None and not closing.done():
            # shielded: a cancelled aclose() must not cancel the connection's close
            await asyncio.shield(asyncio.wrap_future(closing))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def _checkpoint(connection: sqlite3.Connection) -> None:
    """Copy the WAL file into the database, so that the next write starts the WAL afresh."""
    try:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error as exc:  # the marker is stored all the same
        logger.warning("could not checkpoint a replay store: %s", exc)


def _connect_inline(path: Path) -> sqlite3.Connection:
    """A second connection to the database that :func:`_connect` opened, for the event loop:
    it never waits for a lock and never checkpoints the WAL file (its commits stay short)."""
    try:
        connection = sqlite3.connect(
            path, timeout=0.0, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise ReplayError(f"cannot open the replay store {path}: {exc}") from exc
    try:
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA wal_autocheckpoint = 0")
    except BaseException:
        connection.close()
        raise
    return connection


def _set_up(connection: sqlite3.Connection, path: Path, synchronous: str, until: float) -> None:
    """Check that the database holds replay markers (or nothing yet), put it in WAL mode and
    make the table.

    Another process may be doing the same, or writing. SQLite's busy timeout does not cover
    every wait here: a connection that must upgrade its lock while another one holds the write
    lock gets "database is locked" at once (waiting could deadlock), which is what two processes
    opening a new file together, or one opening while another writes in rollback mode, run
    into. Such a refusal is retried, from the start, until ``until`` (monotonic).
    """
    delay = 0.002
    while True:
        try:
            if _set_up_once(connection, path, synchronous):
                return
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
        if time.monotonic() + delay > until:
            raise sqlite3.OperationalError("database is locked")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _set_up_once(connection: sqlite3.Connection, path: Path, synchronous: str) -> bool:
    """One try of :func:`_set_up`: False if the file could not be put in WAL mode now."""
    tables = {
        row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    if tables and TABLE not in tables:
        raise ReplayError(
            f"{path} is an SQLite database without replay markers "
            f"(it has the tables {', '.join(sorted(tables))})"
        )
    # WAL: readers never wait for the writer, and a commit is one append to the WAL file. A
    # property of the file: once set, reading it takes no write lock.
    (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
    if str(mode).lower() != "wal":
        (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":  # refused without an error: the file is busy
            return False
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    connection.execute(_SCHEMA)
    return True


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` is a lock held by another connection (SQLITE_BUSY or SQLITE_LOCKED)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in _BUSY_CODES


def _connect(path: Path, synchronous: str, timeout: float) -> sqlite3.Connection:
    """Open (or create) the database at ``path`` and check that it holds replay markers."""
    where = f"cannot open the replay store {path}"
    parent = path.parent
    if not parent.is_dir():
        problem = "is not a directory" if parent.exists() else "does not exist"
        raise ReplayError(f"{where}: the directory {parent} {problem}")
    if path.is_dir():
        raise ReplayError(f"{where}: it is a directory")
    try:
        connection = sqlite3.connect(
            path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise ReplayError(f"{where}: {exc}") from exc
    try:
        _set_up(connection, path, synchronous, time.monotonic() + timeout)
    except sqlite3.DatabaseError as exc:
        connection.close()
        if "not a database" in str(exc):
            raise ReplayError(f"{path} is not an SQLite database") from exc
        raise ReplayError(f"{where}: {exc}") from exc
    except BaseException:
        connection.close()
        raise
    return connection
