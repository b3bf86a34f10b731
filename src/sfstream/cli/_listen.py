"""``sfstream listen CHANNEL...``: subscribe and print events as they come.

Events go to stdout (one line each for humans, or one JSON object per line with ``--json``);
connection news, the backlog progress line and ``--trace`` go to stderr, so that stdout stays
clean for ``jq``. With ``--store FILE`` the replay id of each event is stored, and synced to
disk, once the event has been printed, so the next run resumes right after it (an event may be
printed twice if the process is killed between printing and storing; none is skipped).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sfstream.bayeux import Message, Status, StatusKind, validate_subscription
from sfstream.exceptions import ReplayError, ServerError
from sfstream.salesforce import (
    DEFAULT_API_VERSION,
    AuthenticatorBase,
    Client,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
    ReplayParameter,
    SqliteStorage,
    is_replay_error,
    parse_marker_date,
)

from ._args import file_path, positive_int, seconds
from ._channels import known_channels, suggest_channel
from ._credentials import (
    add_credential_arguments,
    build_authenticator,
    resolve_credentials,
    terminal_password_prompt,
)
from ._errors import CliError, ExitCode, to_cli_error
from ._output import BacklogProgress, Console, format_event, json_line
from ._store import open_store
from ._trace import TraceExtension, trace_writer

__all__ = [
    "add_arguments",
    "close_client",
    "open_store",
    "parse_replay",
    "run",
    "status_line",
    "with_arrival",
]

#: Seconds without an event after which a backlog counts as replayed.
BACKLOG_IDLE = 1.0
#: Seconds an interrupted marker write may take before the user is told what is awaited.
SLOW_WRITE = 0.5


def parse_replay(text: str) -> int:
    """``new`` -> -1, ``all`` -> -2, or a replay id (argparse ``type``)."""
    lowered = text.strip().lower()
    if lowered == "new":
        return int(ReplayOption.NEW_EVENTS)
    if lowered == "all":
        return int(ReplayOption.ALL_EVENTS)
    try:
        value = int(lowered)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected new, all or a replay id, not {text!r}"
        ) from None
    if value < -2 or value == 0:
        raise argparse.ArgumentTypeError(f"a replay id is -2, -1 or positive, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "channels",
        nargs="+",
        metavar="CHANNEL",
        help="/event/<Name>__e, /topic/<Name>, /u/<name>, /data/<Entity>ChangeEvent, ...",
    )
    replay = parser.add_argument_group("replay")
    replay.add_argument(
        "--replay",
        type=parse_replay,
        default=int(ReplayOption.NEW_EVENTS),
        metavar="new|all|ID",
        help="where to start: new events (default), all retained events (24 h, 72 h for "
        "platform events and CDC), or after a replay id; with --store, only for channels "
        "the store has nothing for",
    )
    replay.add_argument(
        "--store",
        type=file_path,
        metavar="FILE",
        help="keep the last replay id per channel in FILE (SQLite; a shelve store given here "
        "is migrated) and resume from it",
    )
    replay.add_argument(
        "--fallback",
        choices=("new", "all"),
        help="when Salesforce refuses a replay id (too old, or not one this channel issued), "
        "start from new or all events instead of failing",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="one JSON object per line")
    output.add_argument(
        "--trace",
        action="store_true",
        help="print every Bayeux message sent (>>) and received (<<) on stderr, secrets redacted",
    )
    output.add_argument("-q", "--quiet", action="store_true", help="no connection news on stderr")
    stop = parser.add_argument_group("stopping")
    stop.add_argument("--count", type=positive_int, metavar="N", help="stop after N events")
    stop.add_argument(
        "--timeout",
        type=seconds,
        metavar="S",
        help="stop after S seconds (exit status 5 if --count was not reached)",
    )
    stop.add_argument(
        "--connection-timeout",
        type=seconds,
        default=30.0,
        metavar="S",
        help="give up after S seconds without a working connection (default 30; 0: never)",
    )
    add_credential_arguments(parser)


def status_line(status: Status) -> str | None:
    """What to tell the user about a connection change (None: nothing worth a line)."""
    kind = status.kind
    where = f"{status.channel}: " if status.channel else ""
    detail = status.detail
    if kind is StatusKind.SESSION_LOST:
        return f"session lost ({detail}): starting a new one"
    if kind is StatusKind.CONNECTION_LOST:
        return f"connection problem ({detail}): retrying"
    if kind is StatusKind.RECONNECTED:
        return "reconnected: each channel resumes after the last event received"
    if kind is StatusKind.REAUTHENTICATED:
        return "logged in again: new access token"
    if kind is StatusKind.REPLAY_FALLBACK:
        option = "all retained events" if detail == "ALL_EVENTS" else "new events"
        return f"{where}Salesforce refused the replay id: starting from {option} instead"
    if kind is StatusKind.REPLAY_MARKER_MISSING:
        return f"{where}no replay id stored for an event: {detail}"
    if kind is StatusKind.RESUBSCRIBE_FAILED:
        return f"{where}could not subscribe again: {detail}"
    if kind is StatusKind.STOPPED:
        return f"stopped: {detail}"
    return None


def _replay_parameter(args: argparse.Namespace, shelf: SqliteStorage | None) -> ReplayParameter:
    start: int = args.replay
    if shelf is None:
        return ReplayOption(start) if start < 0 else start
    return shelf  # opened with default_id=start


def _describe_start(args: argparse.Namespace) -> str:
    start: int = args.replay
    text = {-1: "new events", -2: "all retained events"}.get(start, f"after replay id {start}")
    if args.store:
        return f"from {args.store}, else {text}"
    return text


class _Listener:
    def __init__(
        self,
        args: argparse.Namespace,
        console: Console,
        shelf: SqliteStorage | None = None,
    ) -> None:
        self.args = args
        self.console = console
        self.shelf = shelf
        self.progress = BacklogProgress(console, enabled=False)

    def note(self, text: str) -> None:
        if not self.args.quiet:
            self.progress.clear()
            self.console.note(self.console.err_style(text, "dim"))

    def on_status(self, status: Status) -> None:
        line = status_line(status)
        if line is not None:
            self.note(line)

    def emit(self, message: Message) -> None:
        self.progress.before_output()
        if self.args.json:
            self.console.print(json_line(with_arrival(message)))
        else:
            self.console.print(format_event(message, self.console.style))
        self.progress.seen(message)

    async def handle(self, client: Client, message: Message) -> None:
        storage = client.replay_storage
        if self.shelf is None or storage is None:
            self.emit(message)
            return
        # Printing and storing run to the end in a task of their own: Ctrl-C or SIGTERM landing
        # while the marker is written left a printed event unstored (printed again next run).
        work = asyncio.ensure_future(self._emit_and_store(storage, message))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            done, _ = await asyncio.wait([work], timeout=SLOW_WRITE)
            if not done:
                # Another process holds the store's write lock: say why Ctrl-C takes a while.
                self.console.note(
                    "interrupted: waiting to store the last printed event's replay id in "
                    f"{self.args.store} (another process is writing it)"
                )
                await asyncio.wait([work])
            if not work.cancelled():
                work.exception()  # retrieved: the interruption is what is reported
            raise

    async def _emit_and_store(self, storage: ReplayMarkerStorage, message: Message) -> None:
        try:
            async with storage(message):
                self.emit(message)
        except ReplayError as exc:
            # Not news but a failure (the next run prints this event again): also with -q.
            self.progress.clear()
            self.console.note(self.console.err_style(f"no replay id stored: {exc}", "yellow"))

    async def listen(self, client: Client, auth: AuthenticatorBase) -> int:
        args = self.args
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = None if args.timeout is None else started + args.timeout
        await client.open()
        self.note(f"connected to {auth.instance_url} (API {client.api_version})")
        since = datetime.now(UTC)
        for channel in args.channels:
            await client.subscribe(channel)
            self.note(f"subscribed to {channel} ({_describe_start(args)})")
        self.progress = BacklogProgress(
            self.console,
            enabled=self.console.err_isatty
            and not args.trace
            and (args.replay != ReplayOption.NEW_EVENTS or bool(args.store)),
            since=since,
        )
        self.note("waiting for events (Ctrl-C to stop)")
        try:
            received = await self._receive(client, deadline)
        except asyncio.CancelledError:
            self.progress.finish(interrupted=True)
            raise
        self.progress.finish()
        if args.count is not None and received < args.count:
            raise CliError(
                f"received {received} of {args.count} events within {args.timeout:g} s",
                ExitCode.TIMEOUT,
            )
        return ExitCode.OK

    async def _receive(self, client: Client, deadline: float | None) -> int:
        """Receive and print events until ``--count`` or the deadline; return how many."""
        args = self.args
        loop = asyncio.get_running_loop()
        received = 0
        while args.count is None or received < args.count:
            wait = None if deadline is None else deadline - loop.time()
            if wait is not None and wait <= 0:
                break
            if self.progress.active:
                wait = BACKLOG_IDLE if wait is None else min(wait, BACKLOG_IDLE)
            try:
                async with asyncio.timeout(wait):
                    message = await client.receive()
            except TimeoutError:
                self.progress.finish()
                continue
            await self.handle(client, message)
            received += 1
        return received


async def close_client(client: Client) -> None:
    """Close ``client``, also from a task being cancelled (Ctrl-C).

    ``BayeuxClient.close()`` re-raises ``CancelledError`` without closing its transport when
    awaiting its connect loop raises it in a task that has a cancellation pending; closing in
    a task of its own keeps the cleanup whole whatever the caller's state.
    """
    await asyncio.shield(asyncio.ensure_future(client.close()))


def with_arrival(message: Message, now: datetime | None = None) -> dict[str, Any]:
    """``message`` with ``receivedAt``: when it arrived (ISO 8601, UTC, milliseconds)."""
    moment = now or datetime.now(UTC)
    return {
        **message,
        "receivedAt": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def _check_channels(channels: list[str]) -> None:
    for channel in channels:
        if not channel.startswith("/") or channel.startswith("/meta/"):
            raise CliError(
                f"not a channel: {channel!r}",
                ExitCode.USAGE,
                "channels look like /event/Order__e, /topic/Name, /u/name, "
                "/data/AccountChangeEvent",
            )
        try:
            validate_subscription(channel)
        except ValueError as exc:
            # Before logging in: the same name was refused by the client after the login,
            # exit 1, where bayeux --subscribe refuses it as a usage error.
            raise CliError(
                str(exc),
                ExitCode.USAGE,
                "channels look like /event/Order__e, /topic/Name, /u/name, "
                "/data/AccountChangeEvent",
            ) from None


async def run(args: argparse.Namespace, console: Console) -> int:
    _check_channels(args.channels)
    credentials = resolve_credentials(args, ask_password=terminal_password_prompt())
    for secret in credentials.secrets():
        console.add_secret(secret)
    auth = build_authenticator(credentials)
    console.add_secret(lambda: auth.access_token)
    console.add_secret(lambda: auth.refresh_token)
    api_version = credentials.api_version or DEFAULT_API_VERSION
    shelf = await open_store(args.store, args.replay, console.note) if args.store else None
    listener = _Listener(args, console, shelf)
    try:
        client = Client(
            auth,
            replay=_replay_parameter(args, shelf),
            replay_fallback=_fallback(args.fallback),
            replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL
            if shelf is not None
            else ReplayMarkerStoragePolicy.AUTOMATIC,
            connection_timeout=args.connection_timeout or None,
            api_version=api_version,
            on_status=listener.on_status,
            extensions=[TraceExtension(trace_writer(console))] if args.trace else (),
        )
        try:
            return await listener.listen(client, auth)
        finally:
            listener.progress.finish()
            await close_client(client)
    except Exception as exc:
        suggestion = await _suggestion(exc, auth, api_version)
        error = to_cli_error(
            exc,
            login_url=auth.login_url,
            store=args.store,
            suggestion=suggestion,
            replay_note=await _stored_marker_note(exc, shelf),
        )
        if error is None:
            raise
        raise error from exc
    finally:
        if shelf is not None:
            shelf.close()


async def _suggestion(exc: Exception, auth: AuthenticatorBase, api_version: str) -> str | None:
    """For a channel Salesforce says does not exist: the org's closest channel, if any."""
    if not isinstance(exc, ServerError) or "does not exist" not in str(exc):
        return None
    subscription = (exc.response or {}).get("subscription")
    if not isinstance(subscription, str):
        return None
    return suggest_channel(subscription, await known_channels(auth, api_version))


async def _stored_marker_note(
    exc: Exception,
    shelf: ReplayMarkerStorage | None,
    now: datetime | None = None,
) -> str | None:
    """For a replay id refused on a channel the store has a marker for: whether the marker is
    older than the channel's retention (expired) or not (then the id was never issued on this
    channel, e.g. a store written against another org)."""
    if shelf is None or not isinstance(exc, ServerError) or not is_replay_error(exc):
        return None
    subscription = (exc.response or {}).get("subscription")
    if not isinstance(subscription, str):
        return None
    try:
        marker = await shelf.get_replay_marker(subscription)
        created = parse_marker_date(marker.date) if marker is not None else None
    except ReplayError:
        return None
    if created is None:
        return None
    hours = 72 if subscription.startswith(("/event/", "/data/")) else 24
    age = (now or datetime.now(UTC)) - created
    stamp = created.strftime("%Y-%m-%d %H:%M UTC")
    if age > timedelta(hours=hours):
        return f"the stored replay id is from {stamp}, older than this channel's {hours} h"
    return (
        f"the stored replay id is from {stamp}, within this channel's {hours} h, so it was "
        "not issued on this channel: is the store from another org?"
    )


def _fallback(name: str | None) -> ReplayOption | None:
    options: Mapping[str | None, ReplayOption | None] = {
        "new": ReplayOption.NEW_EVENTS,
        "all": ReplayOption.ALL_EVENTS,
    }
    return options.get(name)
