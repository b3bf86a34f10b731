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
        json: notes and errors on ``err`` as JSON objects, one per line (``listen --json``):
            ``{"note": ...}`` and ``{"error": ..., "hint": ..., "exitCode": ...}``.
    """

    def __init__(
        self,
        out: TextIO | None = None,
        err: TextIO | None = None,
        *,
        color: ColorMode = "auto",
        json: bool = False,
    ) -> None:
        self.out = sys.stdout if out is None else out
        self.err = sys.stderr if err is None else err
        self.json = json
        self.style = Style(colour_wanted(self.out, color))
        self.err_style = Style(not json and colour_wanted(self.err, color))
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
        """A line on ``err`` (``{"note": text}`` in JSON mode)."""
        self._err_line(json_line({"note": text}) if self.json else text)

    def note_json(self, value: Any) -> None:
        """``value`` as one JSON line on ``err``."""
        self._err_line(json_line(value))

    def _err_line(self, text: str) -> None:
        self.err.write(self.scrub(text) + "\n")
        self.err.flush()

    def error(self, text: str, *, hint: str = "", code: int | None = None) -> None:
        """The one error line on ``err``: ``sfstream: <text> — <hint>``, or in JSON mode
        ``{"error": text, "hint": hint, "exitCode": code}``."""
        if self.json:
            fields: dict[str, Any] = {"error": text}
            if hint:
                fields["hint"] = hint
            if code is not None:
                fields["exitCode"] = code
            self._err_line(json_line(fields))
            return
        full = f"{text} — {hint}" if hint else text
        self._err_line(f"{self.err_style('sfstream:', 'bold', 'red')} {full}")

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


def _duration(seconds: float) -> str:
    """``seconds`` for a human: ``42 s``, ``3 min 20 s``, ``5 h 12 min``, ``2 d 3 h``."""
    whole = max(int(seconds), 0)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


class BacklogProgress:
    """A progress line on a terminal while a backlog of older events is replayed.

    Events created before ``since`` are the backlog. The line shows how many arrived, the rate
    and, when events carry a date, how far the last one is behind the present. It is drawn on
    ``console.err`` (a terminal) and stays there while the events go to a file or a pipe; when
    stdout is the same terminal, it is erased before an event is printed and drawn again right
    after, below it. It ends at the first live event, or when :meth:`finish` is called (after a
    second with nothing to receive, or on Ctrl-C), leaving a summary: ``replayed N backlog
    events`` or ``interrupted after N backlog events``. (A server clock behind ours makes live
    events look old: the line then lasts until the next idle second, nothing worse.)

    Args:
        console: where to draw (its ``err`` stream).
        enabled: False makes every method a no-op (not a terminal, or no replay asked).
        since: when the subscriptions were made.
        clock: seconds, monotonic (tests pass their own).
        now: the current date, aware (tests pass their own).
    """

    INTERVAL: Final = 0.1

    def __init__(
        self,
        console: Console,
        *,
        enabled: bool,
        since: datetime | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.console = console
        self.active = enabled
        self.since = (since or now()).timestamp()
        self.clock = clock
        self.now = now
        self.count = 0
        self.started = clock()
        #: When the last backlog event arrived (the summary's end: not the idle second after).
        self.last_event = self.started
        self.latest: datetime | None = None
        #: Events go to the terminal the line is drawn on: erase it before each one.
        self.shares_terminal = _isatty(console.out) and _isatty(console.err)
        self._drawn = False
        self._last_draw = 0.0

    def _rate(self, until: float | None = None) -> tuple[float, float]:
        end = self.clock() if until is None else until
        elapsed = max(end - self.started, 1e-6)
        return elapsed, self.count / elapsed

    def _line(self) -> str:
        _, rate = self._rate()
        line = f"replaying the backlog: {_events(self.count)} ({rate:,.0f}/s)"
        if self.latest is not None:
            behind = (self.now() - self.latest).total_seconds()
            line += f", {_duration(behind)} behind" if behind >= 1 else ", caught up"
        return line

    def clear(self) -> None:
        """Erase the progress line (before another line is written to the terminal)."""
        if self._drawn:
            self.console.err.write("\r\x1b[2K")
            self.console.err.flush()
            self._drawn = False

    def before_output(self) -> None:
        """An event is about to be printed on stdout: erase the line if stdout is its
        terminal; leave it alone when stdout goes to a file or a pipe."""
        if self.shares_terminal:
            self.clear()

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
        self.last_event = self.clock()
        if created is not None:
            self.latest = created
        # Erased for the event just printed: draw it again at once, or it is never seen.
        self.draw(force=not self._drawn)

    def finish(self, *, interrupted: bool = False) -> None:
        """Replace the progress line by a summary (once); ``interrupted``: stopped by Ctrl-C."""
        if not self.active:
            return
        self.active = False
        self.clear()
        if not self.count and not interrupted:
            return
        # Replayed: from the subscription to the last backlog event, not to the live event or
        # the idle second that ended it. Interrupted: until now.
        elapsed, rate = self._rate(None if interrupted else self.last_event)
        backlog = _events(self.count, "backlog ")
        if interrupted:
            text = f"interrupted after {backlog} in {elapsed:.1f} s"
        else:
            text = f"replayed {backlog} in {elapsed:.1f} s"
        if self.count:
            text += f" ({rate:,.0f}/s)"
        if interrupted and self.latest is not None:
            behind = (self.now() - self.latest).total_seconds()
            if behind >= 1:
                text += f"; the last one was {_duration(behind)} behind"
        self.console.note(self.console.err_style(text, "dim"))


def _events(count: int, kind: str = "") -> str:
    """``1 event``, ``2,000 events`` (``kind``: a word before ``event``)."""
    return f"{count:,} {kind}event" + ("" if count == 1 else "s")


def _isatty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
