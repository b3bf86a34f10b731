"""``--trace``: print every Bayeux message the client sends and receives, secrets redacted.

It is a :class:`sfstream.bayeux.Extension` given to the client with ``extensions=``: it sees
every outgoing message after the engine stamped ``id`` and ``clientId`` and the replay extension
added ``ext.replay`` (what goes on the wire), and every incoming message before anything else
looks at it (what came off the wire).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from sfstream.bayeux import Extension, Message

from ._output import Console, json_line, redact

__all__ = ["TraceExtension", "trace_writer"]

Direction = Literal["out", "in"]
TraceWriter = Callable[[Direction, Message], None]


class TraceExtension(Extension):
    """Hands every message to ``write``, unchanged."""

    def __init__(self, write: TraceWriter) -> None:
        self._write = write

    def outgoing(self, message: Message) -> None:
        self._write("out", message)

    def incoming(self, message: Message) -> bool | None:
        self._write("in", message)
        return None


def trace_writer(console: Console) -> TraceWriter:
    """A writer printing ``>>`` (sent) and ``<<`` (received) lines on ``console.err``.

    Values of secret-looking keys are replaced, and every secret the console knows is
    scrubbed from the line.
    """
    style = console.err_style

    def write(direction: Direction, message: Message) -> None:
        if console.json:
            console.note_json({"trace": direction, "message": redact(message)})
            return
        arrow = (
            style(">>", "blue", "bold") if direction == "out" else style("<<", "magenta", "bold")
        )
        console.note(f"{arrow} {json_line(redact(message))}")

    return write
