"""``sfstream relay``: relay channels of an org into Redis Streams or NATS JetStream.

Either channels on the command line (one channel set, the org from the credential options of
``listen``), or ``--config FILE`` (TOML; several orgs and channel sets in one process, see
:mod:`sfstream.relay._config`). Start it on several hosts with the same configuration: one
relay per channel set is the leader, the others stand by and take over within the lease TTL.

SIGTERM or Ctrl-C: the in-flight write finishes, the lease is released (a standby takes over at
once) and the command exits with status 130, like ``listen``. A second signal stops at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
from typing import Any

from sfstream.bayeux import StatusCallback
from sfstream.exceptions import InvalidArgumentError
from sfstream.relay import Relay, Role, run_relays
from sfstream.relay._config import (
    ConfigError,
    OrgConfig,
    RelayConfig,
    SetConfig,
    check_sink_url,
    load_config,
    make_sink,
    parse_address,
    parse_fallback,
    parse_replay,
    sink_engine,
)
from sfstream.relay._runner import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LEASE_TTL,
    MAX_LEASE_TTL,
    ChannelSet,
)
from sfstream.relay._sink import EventRefused, SinkError
from sfstream.salesforce import (
    DEFAULT_API_VERSION,
    AuthenticatorBase,
    Client,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
)

from ._credentials import (
    ENVIRONMENT,
    add_credential_arguments,
    build_authenticator,
    resolve_credentials,
)
from ._errors import CliError, ExitCode, to_cli_error
from ._listen import status_line
from ._output import Console

__all__ = ["add_arguments", "run"]


def _config_error(text: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(text)


def _typed(parse: Any) -> Any:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as exc:
            raise _config_error(str(exc).split(": ", 1)[-1]) from None

    return convert


def _positive(kind: type, maximum: float = math.inf) -> Any:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise _config_error(f"expected a number, not {text!r}") from None
        if not value > 0:  # also NaN
            raise _config_error(f"expected a number above 0, not {text}")
        if value > maximum:
            raise _config_error(f"expected at most {maximum:g}, not {text}")
        return value

    return convert


#: Options of the command line's one channel set, and their keys in a --config file.
_SET_OPTIONS = (
    ("name", "name = ... in each [[sets]] table"),
    ("replay", "replay = ... in a [[sets]] table"),
    ("fallback", "fallback = ... in a [[sets]] table"),
    ("maxlen", "maxlen = ... at the top of the file or in a [[sets]] table"),
    ("stream", "stream = ... at the top of the file or in a [[sets]] table"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "channels",
        nargs="*",
        metavar="CHANNEL",
        help="/event/<Name>__e, /data/<Entity>ChangeEvent, /topic/<Name>, ... (or --config)",
    )
    relay = parser.add_argument_group("relay")
    relay.add_argument(
        "--sink",
        metavar="URL",
        help="the engine: redis://host:port/db, rediss://..., redis+cluster://host:port, "
        "nats://host:port",
    )
    relay.add_argument(
        "--config", metavar="FILE", help="a TOML file with several orgs and channel sets"
    )
    relay.add_argument(
        "--name",
        help="the channel set's name: the lease and the key prefix (default sfstream)",
    )
    relay.add_argument(
        "--replay",
        type=_typed(parse_replay),
        metavar="new|all|ID",
        help="where a channel starts when the engine has no position for it (default new)",
    )
    relay.add_argument(
        "--fallback",
        choices=("new", "all"),
        help="when Salesforce refuses the engine's replay id (too old, or not one this channel "
        "issued), start there instead of failing",
    )
    relay.add_argument(
        "--lease-ttl",
        type=_positive(float, MAX_LEASE_TTL),
        default=None,
        metavar="S",
        help=f"seconds a leader's lease lives without renewal (default {DEFAULT_LEASE_TTL:g})",
    )
    relay.add_argument(
        "--batch", type=_positive(int), default=None, metavar="N", help="events per write"
    )
    relay.add_argument("--holder", help="this relay's name in the lease (default host:pid:random)")
    relay.add_argument(
        "--metrics",
        type=_typed(parse_address),
        metavar="HOST:PORT",
        help="serve /metrics (Prometheus) and /healthz there",
    )
    relay.add_argument(
        "--maxlen", type=_positive(int), metavar="N", help="Redis: trim each stream to ~N entries"
    )
    relay.add_argument("--stream", metavar="NAME", help="NATS: the JetStream stream's name")
    relay.add_argument("-q", "--quiet", action="store_true", help="no news on stderr")
    add_credential_arguments(parser)


def _from_arguments(args: argparse.Namespace) -> RelayConfig:
    if not args.channels:
        raise CliError("no channels", ExitCode.USAGE, "give channels and --sink, or --config FILE")
    if args.sink is None:
        raise CliError("no --sink", ExitCode.USAGE, "e.g. --sink redis://127.0.0.1:6379/0")
    for channel in args.channels:
        if not channel.startswith("/") or channel.startswith("/meta/"):
            raise CliError(
                f"not a channel: {channel!r}",
                ExitCode.USAGE,
                "channels look like /event/Order__e, /topic/Name, /data/AccountChangeEvent",
            )
    try:
        channel_set = ChannelSet(
            "sfstream" if args.name is None else args.name,
            tuple(args.channels),
            replay=int(ReplayOption.NEW_EVENTS) if args.replay is None else args.replay,
        )
        sink = check_sink_url(args.sink, "--sink")
    except (ConfigError, ValueError) as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None
    engine = sink_engine(sink)
    for option, needs in (("maxlen", "redis"), ("stream", "nats")):
        if getattr(args, option) is not None and engine != needs:
            raise CliError(f"--{option} is for a {needs} sink only", ExitCode.USAGE)
    return RelayConfig(
        sets=(
            SetConfig(
                channel_set,
                sink,
                fallback=parse_fallback(args.fallback),
                maxlen=args.maxlen,
                stream=args.stream,
            ),
        ),
        orgs={"default": OrgConfig("default", {})},
    )


def _org_arguments(org: OrgConfig, args: argparse.Namespace) -> argparse.Namespace:
    if not org.options:
        return args
    return argparse.Namespace(**{name: org.options.get(name) for name in ENVIRONMENT})


class _Command:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console

    def note(self, text: str) -> None:
        if not self.args.quiet:
            self.console.note(self.console.err_style(text, "dim"))

    def on_role(self, relay: Relay, role: Role) -> None:
        name = relay.channel_set.name
        lease = relay.lease
        if role is Role.LEADER and lease is not None:
            self.note(f"{name}: leader (fencing token {lease.token}), relaying")
        elif role is Role.STANDBY:
            self.note(f"{name}: standing by for the lease")
        else:
            self.note(f"{name}: stopped")

    def status(self, name: str) -> StatusCallback:
        def report(status: Any) -> None:
            line = status_line(status)
            if line is not None:
                self.note(f"{name}: {line}")

        return report


class _Warnings(logging.Handler):
    """The relay's warnings on stderr, also without ``--debug`` and with ``-q``: a relay is a
    service, and an engine that fails, a Salesforce retried, a lease lost or events left out
    are its operator's to know."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.WARNING)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.levelname.lower()}: {record.getMessage()}"
            self.console.note(self.console.err_style(text, "yellow"))  # scrubbed by note()
        except Exception:  # pragma: no cover - logging must not raise
            self.handleError(record)


def _client_factory(
    auth: AuthenticatorBase, set_config: SetConfig, api_version: str, report: StatusCallback
) -> Any:
    def make(replay: ReplayMarkerStorage, on_status: StatusCallback) -> Client:
        def both(status: Any) -> None:
            on_status(status)
            report(status)

        return Client(
            auth,
            replay=replay,
            replay_fallback=set_config.fallback,
            replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
            connection_timeout=30.0,
            max_pending_count=4 * DEFAULT_BATCH_SIZE,
            api_version=api_version,
            on_status=both,
        )

    return make


async def run(args: argparse.Namespace, console: Console) -> int:
    if args.config is not None:
        if args.channels or args.sink:
            raise CliError(
                "--config replaces channels and --sink", ExitCode.USAGE, "give one or the other"
            )
        # Options of one channel set: the file has them per set (ignoring them would leave
        # streams untrimmed, or start channels elsewhere than asked).
        for option, instead in _SET_OPTIONS:
            if getattr(args, option) is not None:
                raise CliError(
                    f"--{option} is not used with --config", ExitCode.USAGE, f"write {instead}"
                )
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            raise CliError(str(exc), ExitCode.USAGE) from None
    else:
        config = _from_arguments(args)
    lease_ttl = args.lease_ttl or config.lease_ttl
    batch = args.batch or config.batch_size
    command = _Command(args, console)
    # The sinks first (nothing is connected yet): a wrong URL or set name is a usage error,
    # reported before the credentials are looked at.
    sinks = []
    for set_config in config.sets:
        channel_set = set_config.channel_set
        try:
            sinks.append(
                make_sink(
                    set_config.sink,
                    channel_set.name,
                    maxlen=set_config.maxlen,
                    stream=set_config.stream,
                    lease_ttl=lease_ttl,
                )
            )
        except ImportError as exc:
            raise CliError(str(exc), ExitCode.USAGE) from None
        except (ConfigError, InvalidArgumentError) as exc:
            where = f"set {channel_set.name!r}: " if args.config is not None else ""
            raise CliError(f"{where}{exc}", ExitCode.USAGE) from None
    auths: dict[str, tuple[AuthenticatorBase, str]] = {}
    for name, org in config.orgs.items():
        if not any(s.channel_set.org == name for s in config.sets):
            continue
        try:
            credentials = resolve_credentials(_org_arguments(org, args))
        except CliError as exc:
            if not org.options:  # the command line's org: the message names its options
                raise
            raise CliError(
                f"[orgs.{name}] of {args.config}: {exc.message}",
                exc.code,
                "in the file, write the options with _ for - (consumer_key, password_env...)",
            ) from None
        for secret in credentials.secrets():
            console.add_secret(secret)
        auth = build_authenticator(credentials)
        console.add_secret(lambda auth=auth: auth.access_token)  # type: ignore[misc]
        console.add_secret(lambda auth=auth: auth.refresh_token)  # type: ignore[misc]
        auths[name] = (auth, credentials.api_version or DEFAULT_API_VERSION)
    metrics = None
    metrics_address = args.metrics or config.metrics
    if metrics_address is not None:
        from sfstream.relay._metrics import RelayMetrics

        try:
            metrics = RelayMetrics()
        except ImportError as exc:
            raise CliError(str(exc), ExitCode.USAGE) from None
    relays = []
    for set_config, sink in zip(config.sets, sinks, strict=True):
        channel_set = set_config.channel_set
        auth, api_version = auths[channel_set.org]
        relays.append(
            Relay(
                channel_set,
                sink,
                _client_factory(auth, set_config, api_version, command.status(channel_set.name)),
                holder=args.holder or config.holder,
                lease_ttl=lease_ttl,
                batch_size=batch,
                metrics=metrics,
                on_role=command.on_role,
            )
        )
    return await _serve(relays, metrics, metrics_address, command)


async def _serve(
    relays: list[Relay], metrics: Any, address: tuple[str, int] | None, command: _Command
) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopping = forced = False

    def stop() -> None:
        nonlocal stopping, forced
        if stopping:  # a second signal: stop at once
            forced = True
            task.cancel()
            return
        stopping = True
        command.note("stopping: finishing the write in flight and releasing the lease")
        for relay in relays:
            relay.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # Windows
            loop.add_signal_handler(signum, stop)
    server = None
    warnings: logging.Handler | None = None
    if not getattr(command.args, "debug", False):  # (with --debug, every record is shown)
        warnings = _Warnings(command.console)
        logging.getLogger("sfstream.relay").addHandler(warnings)
    try:
        if metrics is not None and address is not None:
            from sfstream.relay._metrics import OpsServer

            server = OpsServer(relays, metrics, *address)
            try:
                await server.start()
            except OSError as exc:
                raise CliError(
                    f"cannot serve metrics on {address[0]}:{address[1]}: {exc.strerror or exc}",
                    ExitCode.USAGE,
                ) from None
            command.note(f"metrics on http://{address[0]}:{server.port}/metrics and /healthz")
        try:
            await run_relays(relays)
        except asyncio.CancelledError:
            if not forced:
                raise
            task.uncancel()  # our own cancellation: the command ends as after one signal
        except EventRefused as exc:
            raise CliError(
                f"the engine refused an event: {exc}",
                ExitCode.ERROR,
                "raise the engine's limit (NATS: max_payload in the server's configuration)"
                if "NATS" in str(exc)
                else "",
            ) from None
        except SinkError as exc:
            raise CliError(
                f"the engine failed: {exc}", ExitCode.CONNECTION, "check the --sink URL"
            ) from None
        except Exception as exc:
            error = to_cli_error(exc)
            if error is None:
                raise
            raise error from exc
    finally:
        if warnings is not None:
            logging.getLogger("sfstream.relay").removeHandler(warnings)
        if server is not None:
            await server.stop()
    return ExitCode.INTERRUPTED if stopping else ExitCode.OK
