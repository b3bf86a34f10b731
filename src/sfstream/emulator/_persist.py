"""A state file: the org (definitions, records, token hashes, events) across emulator restarts.

The file is JSON lines. While an emulator runs, every change is appended (and flushed) as it
happens, so even a killed emulator leaves a usable file; a clean stop rewrites it compactly
(retained events only, revoked tokens dropped). Lines:

- ``{"k": "meta", "v": {...}}``: definitions and counters (the last one wins)
- ``{"k": "ev", "c": channel, "t": epoch, "u": [userIds] | null, "d": data}``: one event
- ``{"k": "rec", "v": {...}}``: a record's latest state
- ``{"k": "tok", "h": sha256, "v": {...}}``: a token's record (keyed by the token's hash)

A trailing line cut short by a crash is ignored. Tokens are stored as hashes only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO, Any

from sfstream.emulator._json import dumps, loads
from sfstream.emulator._log import ChannelLog, StoredEvent
from sfstream.emulator._state import OrgState
from sfstream.exceptions import InvalidArgumentError

__all__ = ["StateFile"]

logger = logging.getLogger("sfstream.emulator")


def _event_line(channel_prefix: bytes, event: StoredEvent) -> bytes:
    users = b"null" if event.user_ids is None else dumps(sorted(event.user_ids))
    return channel_prefix + dumps(event.time) + b',"u":' + users + b',"d":' + event.encoded + b"}\n"


def _prefix(channel: str) -> bytes:
    return b'{"k":"ev","c":' + dumps(channel) + b',"t":'


class StateFile:
    """Loads an org from a file and journals its changes back to it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: IO[bytes] | None = None
        self._state: OrgState | None = None
        self._prefixes: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"StateFile({str(self.path)!r})"

    def load(self, state: OrgState) -> int:
        """Apply the file to ``state``; returns the number of lines used (0: no file).

        Raises:
            InvalidArgumentError: the file holds something else than an org (its first line
                is no record of a state file): it would be overwritten.
        """
        if not self.path.exists():
            return 0
        self.check()
        used = 0
        with self.path.open("rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    self._apply(state, loads(line))
                except (ValueError, KeyError, TypeError):
                    logger.warning("%s: line %d is unreadable, skipped", self.path, number)
                    continue
                used += 1
        return used

    def check(self) -> None:
        """Refuse a file that holds something else than an org: the emulator skips the lines
        it cannot read and rewrites the file, so a mistyped path would replace whatever it
        names with an org.

        Raises:
            InvalidArgumentError: the first line that is not blank is no record of a state
                file.
        """
        try:
            with self.path.open("rb") as file:
                first = next((line for line in file if line.strip()), b"")
        except (FileNotFoundError, IsADirectoryError):
            return  # a new org; a directory is reported when the file is written
        if not first:
            return
        try:
            record = loads(first)
        except ValueError:
            record = None
        if not (isinstance(record, dict) and isinstance(record.get("k"), str)):
            raise InvalidArgumentError(
                f"{self.path}: this file is not an emulator state file (it would be "
                "overwritten); give a new path, or delete the file to start a new org"
            )

    @staticmethod
    def _apply(state: OrgState, item: dict[str, Any]) -> None:
        kind = item["k"]
        if kind == "meta":
            state.load_metadata(item["v"])
        elif kind == "ev":
            users = item["u"]
            data = item["d"]
            log = state.events.channel(item["c"])
            stored = StoredEvent(
                int(data["event"]["replayId"]),
                float(item["t"]),
                data,
                None if users is None else frozenset(users),
                keep=log.keep_data,
            )
            log.restore(stored)
        elif kind == "rec":
            state.restore_record(item["v"])
        elif kind == "tok":
            state.restore_token(item["h"], item["v"])
        else:
            raise KeyError(kind)

    def attach(self, state: OrgState) -> None:
        """Journal every later change of ``state`` to the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")
        self._state = state
        state.journal = self._journal
        state.events.listeners.append(self._on_event)
        self._journal("meta", state.metadata())

    def _journal(self, kind: str, payload: dict[str, Any]) -> None:
        if self._file is None:
            return
        if kind == "tok":
            line = {"k": "tok", "h": payload["h"], "v": payload["v"]}
        else:
            line = {"k": kind, "v": payload}
        self._file.write(dumps(line) + b"\n")
        self._file.flush()

    def _on_event(self, log: ChannelLog, event: StoredEvent) -> None:
        if self._file is None:
            return
        prefix = self._prefixes.get(log.channel)
        if prefix is None:
            prefix = self._prefixes[log.channel] = _prefix(log.channel)
        self._file.write(_event_line(prefix, event))
        self._file.flush()

    def close(self) -> None:
        """Stop journaling and rewrite the file compactly."""
        state = self._state
        if self._file is not None:
            self._file.close()
            self._file = None
        if state is None:
            return
        self._state = None
        if state.journal == self._journal:
            state.journal = None
        if self._on_event in state.events.listeners:
            state.events.listeners.remove(self._on_event)
        self.write(state)

    def write(self, state: OrgState) -> None:
        """Write ``state`` to the file (atomically, through a temporary file)."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("wb") as handle:
            handle.write(dumps({"k": "meta", "v": state.metadata()}) + b"\n")
            for digest, token in state.tokens.items():
                if not token.revoked:
                    handle.write(dumps({"k": "tok", "h": digest, "v": token.to_json()}) + b"\n")
            for record in state.records.values():
                handle.write(dumps({"k": "rec", "v": record.to_json()}) + b"\n")
            for log in state.events:
                prefix = _prefix(log.channel)
                for event in log.events:
                    handle.write(_event_line(prefix, event))
        os.replace(temporary, self.path)
