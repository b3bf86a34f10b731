"""Rendering: colour or plain text, events for humans, JSON lines, the trace, a progress line.

Colour is used when the stream is a terminal, ``NO_COLOR`` is not set and ``TERM`` is not
``dumb`` (``--color always|never`` overrides). Everything written goes through
:meth:`Console.scrub`, which replaces every secret the command knows (password, tokens, client
secret) with ``[redacted]``: a secret cannot reach the screen even by accident.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, TextIO

from sfstream.exceptions import ReplayError
from sfstream.salesforce import marker_from_message, parse_marker_date

__all__ = [
    "REDACTED",
    "BacklogProgress",
    "Console",
    "Style",
    "colour_wanted",
    "describe_event",
    "format_event",
    "json_line",
    "redact",
]

ColorMode = Literal["auto", "always", "never"]

REDACTED: Final = "[redacted]"
#: Keys whose values are never shown (compared case-insensitively, ``-`` and ``_`` ignored).
SECRET_KEYS: Final = frozenset(
    {
        "accesstoken",
        "refreshtoken",
        "password",
        "clientsecret",
        "consumersecret",
        "authorization",
        "assertion",
        "token",
        "sessionid",
        "secret",
        "securitytoken",
        "privatekey",
    }
)

_CODES: Final = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}


def colour_wanted(stream: TextIO, mode: ColorMode = "auto") -> bool:
    """Whether to colour what is written to ``stream``."""
    if mode != "auto":
        return mode == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Style:
    """Wraps text in ANSI colours, or returns it unchanged when colour is off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles or not text:
            return text
        codes = ";".join(_CODES[style] for style in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced."""
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str) and key.replace("_", "").replace("-", "").lower() in SECRET_KEYS
            else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def json_line(value: Any) -> str:
    """``value`` as one line of JSON (for ``--json`` and the trace)."""
    return json.dumps(value, separators=(",", ":"), default=str)


class Console:
    """Where the command writes: ``out`` for results, ``err`` for notes, errors and traces.

    Args:
        out: the results stream (stdout).
        err: the diagnostics stream (stderr).
        color: ``auto``, ``always`` or ``never``.
    """

    def __init__(
        self,
        out: TextIO | None = None,
        err: TextIO | None = None,
        *,
        color: ColorMode = "auto",
    ) -> None:
        self.out = sys.stdout if out is None else out
        self.err = sys.stderr if err is None else err
        self.style = Style(colour_wanted(self.out, color))
        self.err_style = Style(colour_wanted(self.err, color))
        self._secrets: list[Callable[[], str | None]] = []

    def add_secret(self, secret: str | Callable[[], str | None] | None) -> None:
        """Never print ``secret`` (a value, or a function giving the current value)."""
        if secret is None:
            return
        if isinstance(secret, str):
            if len(secret) >= 4:
                self._secrets.append(lambda: secret)
            return
        self._secrets.append(secret)

    def secrets(self) -> Iterable[str]:
        for get in self._secrets:
            value = get()
            if value and len(value) >= 4:
                yield value

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced by ``[redacted]``."""
        for secret in sorted(set(self.secrets()), key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

    def print(self, text: str = "") -> None:
        """A line on ``out``."""
        self.out.write(self.scrub(text) + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        """A line on ``err``."""
        self.err.write(self.scrub(text) + "\n")
        self.err.flush()

    def error(self, text: str) -> None:
        """The one error line on ``err``: ``sfstream: <text>``."""
        self.note(f"{self.err_style('sfstream:', 'bold', 'red')} {text}")

    @property
    def err_isatty(self) -> bool:
        isatty = getattr(self.err, "isatty", None)
        return bool(isatty and isatty())


# -- events for humans --------------------------------------------------------------------------

_PLATFORM_EVENT_NOISE: Final = frozenset({"CreatedDate", "CreatedById"})
#: Audit fields left out of change events for humans (``--json`` shows everything).
_AUDIT_FIELDS: Final = frozenset(
    {"CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp"}
)
_PLAIN: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/@+")


def _value(value: Any) -> str:
    if isinstance(value, str) and value and set(value) <= _PLAIN:
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def _fields(fields: Mapping[str, Any], skip: Iterable[str] = ()) -> str:
    skipped = set(skip)
    return " ".join(f"{key}={_value(item)}" for key, item in fields.items() if key not in skipped)


def describe_event(message: Mapping[str, Any]) -> str:
    """The content of an event in a few words (secret-looking fields redacted)."""
    data = message.get("data")
    if not isinstance(data, Mapping):
        return _value(data)
    payload = data.get("payload")
    event = data.get("event")
    if not isinstance(event, Mapping):
        event = {}
    sobject = data.get("sobject")
    if isinstance(sobject, Mapping):  # PushTopic
        return f"{event.get('type', 'changed')}  {_fields(redact(sobject))}"
    if isinstance(payload, Mapping):
        header = payload.get("ChangeEventHeader")
        if isinstance(header, Mapping):  # Change Data Capture
            ids = header.get("recordIds")
            record = ",".join(str(i) for i in ids) if isinstance(ids, list) else ""
            what = f"{header.get('changeType', '?')} {header.get('entityName', '')} {record}"
            rest = _fields(redact(payload), {"ChangeEventHeader", *_AUDIT_FIELDS})
            return f"{what.strip()}  {rest}".rstrip()
        text = _fields(redact(payload), _PLATFORM_EVENT_NOISE)  # platform event
        uuid = event.get("EventUuid")
        if uuid:
            text = f"{text}  (EventUuid {uuid})" if text else f"(EventUuid {uuid})"
        return text
    if payload is not None:  # generic streaming
        return _value(payload)
    return json_line(redact(data))


def format_event(message: Mapping[str, Any], style: Style, *, now: datetime | None = None) -> str:
    """One line for a human: time received, channel, replay id, content."""
    moment = (now or datetime.now()).strftime("%H:%M:%S")
    channel = str(message.get("channel", "?"))
    data = message.get("data")
    event = data.get("event") if isinstance(data, Mapping) else None
    replay = event.get("replayId") if isinstance(event, Mapping) else None
    replay_text = f"#{replay}" if replay is not None else "#?"
    text = describe_event(message)
    return f"{style(moment, 'dim')} {style(channel, 'cyan')} {style(replay_text, 'yellow')}  {text}"


# -- backlog progress -------------------------------------------------------------------------


def event_time(message: Mapping[str, Any]) -> datetime | None:
    """When an event was created (None if it carries no usable date)."""
    try:
        return parse_marker_date(marker_from_message(message).date)
    except ReplayError:
        return None


class BacklogProgress:
    """A progress line on a terminal while a backlog of older events is replayed.

    Events created before ``since`` are the backlog. The line shows how many arrived and the
    rate; it goes away at the first live event, or when :meth:`finish` is called (after a
    second with nothing to receive), leaving a summary. (A server clock behind ours makes live
    events look old: the line then lasts until the next idle second, nothing worse.)

    Args:
        console: where to draw (its ``err`` stream).
        enabled: False makes every method a no-op (not a terminal, or no replay asked).
        since: when the subscriptions were made.
        clock: seconds, monotonic (tests pass their own).
    """

    INTERVAL: Final = 0.1

    def __init__(
        self,
        console: Console,
        *,
        enabled: bool,
        since: datetime | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.active = enabled
        self.since = (since or datetime.now(UTC)).timestamp()
        self.clock = clock
        self.count = 0
        self.started = clock()
        self._drawn = False
        self._last_draw = 0.0

    def _line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-6)
        rate = self.count / elapsed
        return f"replaying the backlog: {self.count:,} events ({rate:,.0f}/s)"

    def clear(self) -> None:
        """Erase the progress line (before another line is written to the terminal)."""
        if self._drawn:
            self.console.err.write("\r\x1b[2K")
            self.console.err.flush()
            self._drawn = False

    def draw(self, *, force: bool = False) -> None:
        now = self.clock()
        if not self.active or (not force and now - self._last_draw < self.INTERVAL):
            return
        self._last_draw = now
        self.console.err.write("\r\x1b[2K" + self.console.err_style(self._line(), "dim"))
        self.console.err.flush()
        self._drawn = True

    def seen(self, message: Mapping[str, Any]) -> None:
        """Count ``message``; finish at the first live event."""
        if not self.active:
            return
        created = event_time(message)
        if created is not None and created.timestamp() >= self.since:
            self.finish()
            return
        self.count += 1
        self.draw()

    def finish(self) -> None:
        """Replace the progress line by a summary (once)."""
        if not self.active:
            return
        self.active = False
        self.clear()
        if self.count:
            elapsed = max(self.clock() - self.started, 1e-6)
            self.console.note(
                self.console.err_style(
                    f"replayed {self.count:,} backlog events in {elapsed:.1f} s "
                    f"({self.count / elapsed:,.0f}/s)",
                    "dim",
                )
            )
