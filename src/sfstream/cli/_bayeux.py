"""``sfstream bayeux URL``: talk to any Bayeux server (Faye, CometD, ...) to see what it says.

Subscribes (``--subscribe``, wildcards allowed), publishes (``--publish CHANNEL JSON``), and
prints deliveries on stdout (one line each, or JSON lines with ``--json``). ``--trace`` prints
every message in both directions on stderr: a timestamp, the direction, the channel, the
round-trip time of a reply (from the message with the same id), and the message itself, with
the values of secret-looking keys, every ``--header`` secret and the secrets of the URL (its
password, secret-looking query parameters) scrubbed. Exit codes and errors are those of
``sfstream listen``: with ``--json``, stderr is JSON lines too (``{"note": ...}``,
``{"error": ..., "hint": ..., "exitCode": ...}`` and the trace's objects).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from yarl import URL

from sfstream.bayeux import (
    AckExtension,
    BayeuxClient,
    Extension,
    Message,
    Status,
    StatusKind,
    validate_channel,
    validate_subscription,
)
from sfstream.exceptions import ServerError

from ._args import load_json, positive_int, seconds, utf8_text
from ._errors import CliError, ExitCode, to_cli_error
from ._output import Console, Style, json_line, redact
from ._trace import Direction, TraceExtension

__all__ = ["add_arguments", "parse_header", "run", "status_line", "wire_tracer"]

#: Header names whose values are never printed (any name containing one of these).
_SECRET_HEADER_PARTS: Final = (
    "authorization",
    "cookie",
    "token",
    "secret",
    "key",
    "auth",
    "session",
)
#: Sent messages remembered for round-trip times; older ones are forgotten past this.
_RTT_MEMORY: Final = 10_000


def parse_header(text: str) -> tuple[str, str]:
    """``Name: value`` -> (name, value) (argparse ``type``)."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c.isspace() for c in name):
        # Never echo the text: it is often 'Authorization Bearer <token>' missing its colon.
        raise argparse.ArgumentTypeError(
            "expected NAME:VALUE, e.g. 'Authorization: Bearer ...' (what was given is not "
            "shown: it may hold a secret)"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value if c != "\t"):
        # aiohttp refuses them ("header injection"): it was an "unexpected error".
        raise argparse.ArgumentTypeError(
            f"the value of header {name} holds a control character (a line break?)"
        )
    return name, value.strip()


def _json_value(text: str) -> Any:
    try:
        return load_json(utf8_text(text, "--publish data"))
    except ValueError as exc:
        raise CliError(
            f"--publish data is not JSON: {exc}",
            ExitCode.USAGE,
            'e.g. --publish /chat \'{"text": "hi"}\'',
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", help="the Bayeux endpoint, e.g. http://host/bayeux")
    parser.add_argument(
        "--subscribe",
        action="append",
        default=[],
        metavar="CHANNEL",
        help="subscribe to CHANNEL (/chat/*, /chat/** allowed); repeat for more",
    )
    parser.add_argument(
        "--publish",
        action="append",
        nargs=2,
        default=[],
        metavar=("CHANNEL", "JSON"),
        help="publish JSON on CHANNEL once subscribed; repeat for more",
    )
    connection = parser.add_argument_group("connection")
    connection.add_argument(
        "--connection-type",
        action="append",
        choices=("websocket", "long-polling"),
        metavar="websocket|long-polling",
        help="the connection type to use (default long-polling); give it twice for an order "
        "of preference, e.g. websocket then long-polling to fall back",
    )
    connection.add_argument(
        "--header",
        action="append",
        type=parse_header,
        default=[],
        metavar="NAME:VALUE",
        help="an HTTP header for every request (and the WebSocket upgrade); secret-looking "
        "values (Authorization, Cookie, ...) are never printed",
    )
    connection.add_argument(
        "--ack",
        action="store_true",
        help="ask the server for CometD's message acknowledgement (ext.ack)",
    )
    connection.add_argument(
        "--connection-timeout",
        type=seconds,
        default=30.0,
        metavar="S",
        help="give up after S seconds without a working connection (default 30; 0: never)",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="one JSON object per line")
    output.add_argument(
        "--trace",
        action="store_true",
        help="print every message sent (>>) and received (<<) on stderr, with a timestamp, "
        "the channel and the round-trip time of replies; secrets redacted",
    )
    output.add_argument("-q", "--quiet", action="store_true", help="no connection news on stderr")
    stop = parser.add_argument_group("stopping")
    stop.add_argument("--count", type=positive_int, metavar="N", help="stop after N messages")
    stop.add_argument(
        "--timeout",
        type=seconds,
        metavar="S",
        help="stop after S seconds (exit status 5 if --count was not reached)",
    )


def status_line(status: Status) -> str | None:
    """What to tell the user about a connection change (None: nothing worth a line)."""
    kind, detail = status.kind, status.detail
    if kind is StatusKind.FALLBACK:
        return f"falling back: {detail}"
    if kind is StatusKind.SESSION_LOST:
        return f"session lost ({detail}): starting a new one"
    if kind is StatusKind.CONNECTION_LOST:
        return f"connection problem ({detail}): retrying"
    if kind is StatusKind.RECONNECTED:
        return "reconnected (subscriptions made again)"
    if kind is StatusKind.PAUSED:
        return f"paused: {detail}"
    if kind is StatusKind.RESUBSCRIBE_FAILED:
        return f"{status.channel}: could not subscribe again: {detail}"
    if kind is StatusKind.STOPPED:
        return f"stopped: {detail}"
    return None


def wire_tracer(
    console: Console,
    *,
    as_json: bool = False,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Callable[[Direction, Message], None]:
    """A trace writer for :class:`~sfstream.cli._trace.TraceExtension`: one line per message
    on ``console.err`` with the time, ``>>``/``<<``, the channel and, for a reply, the
    milliseconds since the message with its id was sent."""
    sent: dict[str, float] = {}
    style = console.err_style

    def write(direction: Direction, message: Message) -> None:
        moment = clock()
        channel = message["channel"]
        ident = message.get("id")
        rtt: float | None = None
        if ident is not None:
            if direction == "out":
                if len(sent) >= _RTT_MEMORY:
                    sent.clear()
                sent[str(ident)] = moment
            elif channel.startswith("/meta/") or "data" not in message:
                start = sent.pop(str(ident), None)
                if start is not None:
                    rtt = (moment - start) * 1000
        stamp = now().isoformat(timespec="milliseconds")
        if as_json:
            console.note_json(
                {
                    "time": stamp,
                    "direction": direction,
                    "channel": channel,
                    "rtt_ms": None if rtt is None else round(rtt, 1),
                    "message": redact(message),
                }
            )
            return
        arrow = (
            style(">>", "blue", "bold") if direction == "out" else style("<<", "magenta", "bold")
        )
        took = f" {rtt:.0f} ms" if rtt is not None else ""
        console.note(
            f"{style(stamp, 'dim')} {arrow} {channel}{style(took, 'dim')} "
            f"{json_line(redact(message))}"
        )

    return write


def _delivery_line(message: Message, console: Console) -> str:
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    data = json_line(message.get("data"))
    return f"{console.style(stamp, 'dim')} {console.style(message['channel'], 'bold')} {data}"


def _secret_header(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _SECRET_HEADER_PARTS)


def _add_secrets(console: Console, headers: dict[str, str], url: str) -> None:
    """Never print the secrets the command line carries: the values of secret-looking
    headers, the URL's password and its secret-looking query parameters
    (``?access_token=...``)."""
    for name, value in headers.items():
        if _secret_header(name):
            console.add_secret(value)
            # "Bearer <token>": the token alone may show up elsewhere too
            console.add_secret(value.rpartition(" ")[2])
    parsed = _parse_url(url)
    if parsed is None:
        return
    console.add_secret(parsed.password)
    console.add_secret(parsed.raw_password)
    for name, value in parsed.query.items():
        if _secret_header(name):
            console.add_secret(value)
    query = url.partition("?")[2].partition("#")[0]
    for part in query.split("&"):  # as given too: the URL is printed as given
        name, _, raw = part.partition("=")
        if _secret_header(name):
            console.add_secret(raw)


def _parse_url(text: str) -> URL | None:
    try:
        return URL(text)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None


def _check(args: argparse.Namespace) -> list[tuple[str, Any]]:
    url = _parse_url(args.url)
    if url is None or url.scheme not in ("http", "https", "ws", "wss") or not url.host:
        raise CliError(
            f"not a Bayeux URL: {args.url!r}", ExitCode.USAGE, "e.g. http://127.0.0.1:8000/bayeux"
        )
    if (url.user is not None or url.password is not None) and any(
        name.lower() == "authorization" for name, _ in args.header
    ):
        raise CliError(
            "credentials both in the URL and in an Authorization header",
            ExitCode.USAGE,
            "give one of them",
        )
    if not args.subscribe and not args.publish:
        raise CliError(
            "nothing to do",
            ExitCode.USAGE,
            "give --subscribe CHANNEL and/or --publish CHANNEL JSON",
        )
    try:
        for channel in args.subscribe:
            validate_subscription(channel)
        for channel, _ in args.publish:
            validate_channel(channel)
    except ValueError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None
    return [(channel, _json_value(data)) for channel, data in args.publish]


def _http_url(url: str) -> str:
    parsed = URL(url)
    if parsed.scheme in ("ws", "wss"):
        return str(parsed.with_scheme("http" if parsed.scheme == "ws" else "https"))
    return url


async def _session(
    args: argparse.Namespace,
    console: Console,
    client: BayeuxClient,
    publishes: Sequence[tuple[str, Any]],
) -> int:
    def note(text: str) -> None:
        if not args.quiet:
            console.note(console.err_style(text, "dim"))

    loop = asyncio.get_running_loop()
    deadline = None if args.timeout is None else loop.time() + args.timeout
    await client.open()
    note(f"connected to {client.url} over {client.connection_type} (clientId {client.client_id})")
    for channel in args.subscribe:
        await client.subscribe(channel)
        note(f"subscribed to {channel}")
    for channel, data in publishes:
        reply = await client.publish(channel, data)
        note(f"published to {channel} (id {reply.get('id')})")
    if not args.subscribe:
        return ExitCode.OK
    note("waiting for messages (Ctrl-C to stop)")
    received = 0
    while args.count is None or received < args.count:
        wait = None if deadline is None else deadline - loop.time()
        if wait is not None and wait <= 0:
            break
        try:
            async with asyncio.timeout(wait):
                message = await client.receive()
        except TimeoutError:
            break
        console.print(json_line(message) if args.json else _delivery_line(message, console))
        received += 1
    if args.count is not None and received < args.count:
        raise CliError(
            f"received {received} of {args.count} messages within {args.timeout:g} s",
            ExitCode.TIMEOUT,
        )
    return ExitCode.OK


async def run(args: argparse.Namespace, console: Console) -> int:
    if args.json and not console.json:
        # As `sfstream listen --json`: notes and errors on stderr are JSON lines too.
        console.json = True
        console.err_style = Style(False)
    headers = dict(args.header)
    _add_secrets(console, headers, args.url)
    publishes = _check(args)
    extensions: list[Extension] = [AckExtension()] if args.ack else []
    if args.trace:
        extensions.append(TraceExtension(wire_tracer(console, as_json=args.json)))

    def on_status(status: Status) -> None:
        line = status_line(status)
        if line is not None and not args.quiet:
            console.note(console.err_style(line, "dim"))

    client = BayeuxClient(
        _http_url(args.url),
        connection_types=tuple(dict.fromkeys(args.connection_type or ("long-polling",))),
        headers=headers or None,
        extensions=extensions,
        connection_timeout=args.connection_timeout or None,
        on_status=on_status,
    )
    try:
        try:
            return await _session(args, console, client, publishes)
        finally:
            await asyncio.shield(asyncio.ensure_future(client.close()))
    except ServerError as exc:
        known = to_cli_error(exc)
        if known is not None and known.code is ExitCode.AUTHENTICATION:
            raise CliError(
                f"authentication failed: the server refused the credentials ({exc})",
                ExitCode.AUTHENTICATION,
                "check the credentials given with --header",
            ) from exc
        raise CliError(f"the server refused: {exc}", ExitCode.ERROR) from exc
    except Exception as exc:
        error = to_cli_error(exc, login_url=args.url)
        if error is None:
            raise
        raise error from exc
