"""Argument types the commands share (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ._errors import CliError, ExitCode

__all__ = ["file_path", "load_json", "not_utf8", "positive_int", "seconds", "utf8_text"]


def positive_int(text: str) -> int:
    """A whole number above 0 (``--count``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, not {value}")
    return value


def file_path(text: str) -> str:
    """A path that is not empty (``--store``: ``--store "$UNSET"`` meant no store at all, in
    silence, and the next run did not resume)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a file path, not an empty string")
    return text


def seconds(text: str) -> float:
    """A duration in seconds, 0 or more (``--timeout``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds (0 or more), not {text}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is not a JSON number (beyond the range of a float)")
    return value


def load_json(text: str) -> Any:
    """``json.loads`` without the NaN, Infinity and 1e999 (inf) Python's json reads: it writes
    them back as NaN and Infinity, which is not JSON (a body the server cannot parse).

    Raises:
        ValueError: ``text`` is not JSON.
    """
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def not_utf8(where: str, position: int, byte: int) -> CliError:
    """The usage error for input that is not UTF-8 text."""
    return CliError(
        f"{where} is not UTF-8 text: byte 0x{byte:02x} at position {position}",
        ExitCode.USAGE,
        "convert it to UTF-8 first (e.g. iconv -f latin1 -t utf-8)",
    )


def utf8_text(text: str, where: str) -> str:
    """``text`` if it can go on the wire as UTF-8.

    Bytes the locale could not decode reach Python as lone surrogates (surrogateescape):
    U+DC80..U+DCFF stand for the bytes 0x80..0xFF.

    Raises:
        CliError: it cannot (a usage error naming the byte and its position).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = ord(text[exc.start])
        position = len(text[: exc.start].encode("utf-8", "surrogateescape"))
        byte = char - 0xDC00 if 0xDC80 <= char <= 0xDCFF else char
        raise not_utf8(where, position, byte) from None
    return text
