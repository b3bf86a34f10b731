"""``sfstream emulator`` / ``python -m sfstream.emulator``: serve an org until interrupted.

For the ``sfstream`` command line: :func:`add_arguments` fills a (sub)parser, :func:`run`
serves with the parsed arguments; :func:`main` does both for ``python -m sfstream.emulator``.
Every option can also come from a JSON or TOML file (``--config``), whose keys are the long
option names with ``-`` or ``_`` (``hold-time``, ``events``, ``push-topics``, ...); flags given
on the command line win over the file.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import errno
import json
import logging
import math
import os
import shlex
import signal
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn, TextIO

from sfstream.emulator._clock import SystemClock
from sfstream.emulator._config import (
    CURRENT_API_VERSION,
    DEFAULT_CONSUMER_KEY,
    DEFAULT_CONSUMER_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_REFRESH_TOKEN,
    DEFAULT_USERNAME,
)
from sfstream.emulator._emulator import DEFAULT_CDC_ENTITIES, Emulator
from sfstream.emulator._log import DAY
from sfstream.emulator._persist import StateFile
from sfstream.exceptions import InvalidArgumentError

__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_PORT",
    "add_arguments",
    "banner",
    "build_emulator",
    "exports",
    "main",
    "run",
]

#: The port ``sfstream emulator`` listens on unless told otherwise (0 picks a free one).
DEFAULT_PORT: Final = 8808
#: Platform events (and their custom fields) defined when neither ``--event`` nor the config
#: file names any, so that a demo can publish with no flags.
DEFAULT_EVENTS: Final[Mapping[str, tuple[str, ...]]] = {
    "Sfstream_Demo__e": ("Message__c", "N__c"),
}


# option name -> (type converter for config files, default)
def _finite(value: Any) -> float:
    """A number of seconds that is a number (``nan`` and ``inf`` were taken as they were)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, not {value!r}")
    return number


def _seconds(text: str) -> float:
    """argparse ``type`` of the options in seconds."""
    try:
        return _finite(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None


def _boolean(value: Any) -> bool:
    """``true``/``false`` of a configuration file (``bool("false")`` is True)."""
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, not {value!r}")
    return value


_SCALARS: Final[dict[str, tuple[Callable[[Any], Any], Any]]] = {
    "host": (str, "127.0.0.1"),
    "port": (int, DEFAULT_PORT),
    "public_host": (str, None),
    "consumer_key": (str, DEFAULT_CONSUMER_KEY),
    "consumer_secret": (str, DEFAULT_CONSUMER_SECRET),
    "username": (str, DEFAULT_USERNAME),
    "password": (str, DEFAULT_PASSWORD),
    "security_token": (str, ""),
    "refresh_token": (str, DEFAULT_REFRESH_TOKEN),
    "refresh_token_rotation": (_boolean, False),
    "no_client_credentials": (_boolean, False),
    "jwt_public_key": (str, None),
    "api_version": (str, CURRENT_API_VERSION),
    "hold_time": (_finite, 110.0),
    "session_expiry": (_finite, 40.0),
    "retention": (_finite, DAY),
    "high_volume_retention": (_finite, 3 * DAY),
    "max_batch": (int, 10_000),
    "max_request_size": (int, 32_768),
    "no_cookie_check": (_boolean, False),
    "token_lifetime": (_finite, None),
    "no_admin": (_boolean, False),
    "state_file": (str, None),
    "clock_offset": (_finite, 0.0),
    "verbose": (int, 0),
}
_LISTS: Final = ("streaming_channels", "cdc_entities")
_MAPS: Final = ("push_topics", "channels")
_MAX_PORT: Final = 65535


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser`` (defaults are applied by :func:`run`)."""
    server = parser.add_argument_group("server")
    server.add_argument("--host", help="address to bind (default 127.0.0.1: loopback only)")
    server.add_argument(
        "--port", type=int, help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    server.add_argument(
        "--public-host", help="host name to put in URLs (default: the bound address)"
    )
    server.add_argument(
        "--config", type=Path, metavar="FILE", help="read options from a JSON or TOML file"
    )
    server.add_argument(
        "--state-file",
        metavar="FILE",
        help="keep the org (events, definitions, records) in FILE across restarts",
    )
    server.add_argument(
        "--no-admin", action="store_true", default=None, help="do not serve /_emulator"
    )
    server.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=None,
        help="log requests (-v) and protocol details (-vv) to stderr; never credentials",
    )

    creds = parser.add_argument_group("credentials (well-known demo values by default)")
    creds.add_argument("--consumer-key", metavar="KEY")
    creds.add_argument("--consumer-secret", metavar="SECRET")
    creds.add_argument("--username")
    creds.add_argument("--password")
    creds.add_argument("--security-token", metavar="TOKEN", help="appended to the password")
    creds.add_argument("--refresh-token", metavar="TOKEN", help="a refresh token the org accepts")
    creds.add_argument(
        "--refresh-token-rotation",
        action="store_true",
        default=None,
        help="each refresh returns a new refresh token and retires the old one",
    )
    creds.add_argument(
        "--jwt-public-key",
        metavar="PEM_FILE",
        help="certificate or public key (PEM) that JWT bearer assertions are checked against",
    )
    creds.add_argument(
        "--no-client-credentials",
        action="store_true",
        default=None,
        help="refuse the client_credentials grant",
    )
    creds.add_argument(
        "--token-lifetime", type=_seconds, metavar="SECONDS", help="access tokens expire after this"
    )

    org = parser.add_argument_group("org")
    org.add_argument(
        "--event",
        dest="events",
        action="append",
        metavar="NAME__e[:FIELD__c,...]",
        help=(
            "define a platform event and its custom fields, e.g. 'Order__e:OrderId__c,Amount__c'"
            " (only the declared fields are accepted: a bare name declares none); repeatable; "
            "default "
            + ", ".join(f"{name}:{','.join(fields)}" for name, fields in DEFAULT_EVENTS.items())
        ),
    )
    org.add_argument(
        "--push-topic",
        dest="push_topics",
        action="append",
        metavar="NAME=QUERY",
        help="create a PushTopic, e.g. 'Accounts=SELECT Id, Name FROM Account' (repeatable)",
    )
    org.add_argument(
        "--streaming-channel",
        dest="streaming_channels",
        action="append",
        metavar="/u/NAME",
        help="create a StreamingChannel for generic streaming (repeatable)",
    )
    org.add_argument(
        "--channel",
        dest="channels",
        action="append",
        metavar="CHANNEL=MEMBER,...",
        help="a custom channel, e.g. '/event/Orders__chn=Order_EU__e,Order_US__e' (repeatable)",
    )
    org.add_argument(
        "--cdc-entity",
        dest="cdc_entities",
        action="append",
        metavar="ENTITY",
        help=f"select an entity for CDC (repeatable; default {', '.join(DEFAULT_CDC_ENTITIES)})",
    )
    org.add_argument("--api-version", metavar="X.Y", help=f"default {CURRENT_API_VERSION}")

    timing = parser.add_argument_group("timings (seconds)")
    timing.add_argument("--hold-time", type=_seconds, help="long-poll hold (default 110)")
    timing.add_argument(
        "--session-expiry",
        type=_seconds,
        help="Bayeux session expiry without reconnect (default 40)",
    )
    timing.add_argument(
        "--retention", type=_seconds, help="PushTopic/generic event retention (default 86400)"
    )
    timing.add_argument(
        "--high-volume-retention",
        type=_seconds,
        help="platform event/CDC retention (default 259200)",
    )
    timing.add_argument(
        "--clock-offset", type=_seconds, help="start the org's clock this far ahead of real time"
    )

    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-batch", type=int, help="events per connect reply (default 10000)")
    limits.add_argument(
        "--max-request-size", type=int, help="largest request body in bytes (default 32768)"
    )
    limits.add_argument(
        "--no-cookie-check",
        action="store_true",
        default=None,
        help="do not require the BAYEUX_BROWSER cookie after the handshake",
    )


def _key(name: str) -> str:
    return name.replace("-", "_")


def _load_config(path: Path) -> dict[str, Any]:
    text = path.read_bytes()
    raw = tomllib.loads(text.decode()) if path.suffix.lower() == ".toml" else json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the configuration must be a table/object")
    section = raw.get("emulator", raw)
    if not isinstance(section, dict):
        raise ValueError(f"{path}: [emulator] must be a table")
    config = {_key(k): v for k, v in section.items()}
    known = set(_SCALARS) | set(_LISTS) | set(_MAPS) | {"events"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {', '.join(unknown)}")
    return config


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    result = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name.strip() or not value.strip():
            raise ValueError(f"{what} must look like NAME=VALUE, not {item!r}")
        result[name.strip()] = value.strip()
    return result


def _event(text: str) -> tuple[str, list[str] | None]:
    """``Order__e:A__c,B__c`` → (``Order__e``, [``A__c``, ``B__c``]); a bare name → (name, None).

    A bare name declares no custom fields (or keeps those a state file stored).
    """
    name, colon, fields = text.partition(":")
    name = name.strip()
    if not name.endswith("__e"):
        raise ValueError(
            f"--event {text!r}: a platform event's API name ends in __e "
            f"(--event {name or 'Order'}__e, or --event {name or 'Order'}__e:Amount__c,...)"
        )
    if not colon:
        return name, None
    return name, [f.strip() for f in fields.split(",") if f.strip()]


def _events(value: Any, where: str) -> dict[str, list[str] | None]:
    """Events from a config file: a list of ``--event`` strings or a table name → fields."""
    if isinstance(value, Mapping):
        events: dict[str, list[str] | None] = {}
        for name, fields in value.items():
            if fields is not None and (isinstance(fields, str) or not isinstance(fields, Sequence)):
                raise ValueError(f"{where}: the fields of {name} are a list of names")
            events[str(name)] = None if fields is None else [str(f) for f in fields]
        return events
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"{where}: events is a list of names or a table of name = [fields]")
    return dict(_event(str(item)) for item in value)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """Merge defaults, the config file and the flags into one dict of options."""
    options: dict[str, Any] = {name: default for name, (_, default) in _SCALARS.items()}
    path = getattr(args, "config", None)
    file_options = _load_config(path) if path is not None else {}
    for name, (convert, _) in _SCALARS.items():
        if name in file_options and file_options[name] is not None:
            try:
                options[name] = convert(file_options[name])
            except (TypeError, ValueError) as exc:
                # It said only "invalid literal for int() with base 10: 'abc'".
                raise ValueError(f"{path}: {name}: {exc}") from None
    for name in _LISTS:
        value = file_options.get(name)
        options[name] = None if value is None else [str(v) for v in value]
    events = file_options.get("events")
    options["events"] = None if events is None else _events(events, str(path))
    for name in _MAPS:
        value = file_options.get(name)
        if value is not None and not isinstance(value, Mapping):
            raise ValueError(f"{name} in the configuration file must be a table/object")
        options[name] = None if value is None else dict(value)
    for name in _SCALARS:
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    for name in _LISTS:
        value = getattr(args, name, None)
        if value:
            options[name] = [*(options[name] or []), *value]
    flags = getattr(args, "events", None)
    if flags:
        options["events"] = {**(options["events"] or {}), **dict(map(_event, flags))}
    topics = getattr(args, "push_topics", None)
    if topics:
        options["push_topics"] = {
            **(options["push_topics"] or {}),
            **_pairs(topics, "--push-topic"),
        }
    channels = getattr(args, "channels", None)
    if channels:
        parsed = {k: v.split(",") for k, v in _pairs(channels, "--channel").items()}
        options["channels"] = {**(options["channels"] or {}), **parsed}
    if options["events"] is None:
        options["events"] = {name: list(fields) for name, fields in DEFAULT_EVENTS.items()}
    return options


def _check_state_file(path: Path) -> None:
    """Refuse a file that holds something else than an org (see :meth:`StateFile.check`).

    Raises:
        ValueError: ``path`` is a file whose first line is no record of a state file.
    """
    try:
        StateFile(path).check()
    except InvalidArgumentError as exc:
        raise ValueError(f"--state-file {exc}") from None


def build_emulator(args: argparse.Namespace) -> Emulator:
    """The emulator that ``args`` (parsed with :func:`add_arguments`) describes."""
    options = _options(args)
    if options["state_file"] is not None:
        _check_state_file(Path(options["state_file"]))
    key = options["jwt_public_key"]
    return Emulator(
        host=options["host"],
        port=options["port"],
        public_host=options["public_host"],
        consumer_key=options["consumer_key"],
        consumer_secret=options["consumer_secret"],
        username=options["username"],
        password=options["password"],
        security_token=options["security_token"],
        refresh_token=options["refresh_token"],
        refresh_token_rotation=options["refresh_token_rotation"],
        client_credentials=not options["no_client_credentials"],
        jwt_public_key=None if key is None else Path(key).read_bytes(),
        api_version=options["api_version"],
        hold_time=options["hold_time"],
        session_expiry=options["session_expiry"],
        retention=options["retention"],
        high_volume_retention=options["high_volume_retention"],
        max_batch=options["max_batch"],
        max_request_size=options["max_request_size"],
        require_cookie=not options["no_cookie_check"],
        token_lifetime=options["token_lifetime"],
        admin=not options["no_admin"],
        events=options["events"],
        channels=options["channels"],
        push_topics=options["push_topics"],
        streaming_channels=options["streaming_channels"] or (),
        cdc_entities=options["cdc_entities"],
        clock=SystemClock(options["clock_offset"]),
        state_file=options["state_file"],
        access_log=options["verbose"] >= 1,
    )


def exports(org: Emulator) -> list[str]:
    """``export SFSTREAM_…=…`` lines that point ``sfstream listen``/``publish`` at ``org``."""
    config = org.config
    values = {
        "SFSTREAM_LOGIN_URL": org.login_url,
        "SFSTREAM_CONSUMER_KEY": config.consumer_key,
        "SFSTREAM_CONSUMER_SECRET": config.consumer_secret,
        "SFSTREAM_USERNAME": config.username,
        "SFSTREAM_PASSWORD": config.password,
    }
    if config.security_token:
        values["SFSTREAM_SECURITY_TOKEN"] = config.security_token
    if config.api_version != CURRENT_API_VERSION:
        values["SFSTREAM_API_VERSION"] = config.api_version
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]


def _event_line(name: str, fields: frozenset[str]) -> str:
    if not fields:
        return f"/event/{name}  (no custom fields; declare them: --event {name}:A__c,B__c)"
    return f"/event/{name}  ({', '.join(sorted(fields))})"


def banner(org: Emulator) -> str:
    """What the command prints on start: where the org is and how to log in to it."""
    state = org.state
    lines = [
        f"Salesforce emulator listening on {org.base_url}",
        "",
        f"  login URL        {org.login_url}",
        f"  instance URL     {org.instance_url}",
        f"  token endpoint   {org.token_url}",
        f"  CometD endpoint  {org.cometd_url()}",
        f"  consumer key     {org.consumer_key}",
        f"  consumer secret  {org.consumer_secret}",
        f"  username         {org.username}",
        f"  password         {org.password}",
    ]
    if org.refresh_token is not None:
        lines.append(f"  refresh token    {org.refresh_token}")
    lines.append("")
    channels = [
        _event_line(name, state.platform_events[name].fields)
        for name in sorted(state.platform_events)
    ]
    channels += sorted(t.channel for t in state.push_topics.values())
    channels += sorted(c.name for c in state.streaming_channels.values())
    channels += sorted(state.custom_channels)
    channels += ["/data/ChangeEvents"] + [
        f"/data/{e[:-1] if e.endswith('__c') else e}ChangeEvent" for e in sorted(state.cdc_entities)
    ]
    lines.append("  channels         " + ("\n                   ".join(channels) or "(none)"))
    if org.config.admin:
        lines += ["", f"  admin endpoint   {org.admin_url}  (faults, publishing; see docs)"]
    lines += ["", "For sfstream listen / publish in another shell:", ""]
    lines += [f"  {line}" for line in exports(org)]
    lines += ["", "Press Ctrl+C to stop."]
    return "\n".join(lines)


async def run(
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Serve the org ``args`` describe until interrupted (SIGINT/SIGTERM) or ``stop`` is set."""
    output = sys.stdout if out is None else out
    try:
        org = build_emulator(args)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"sfstream emulator: {exc}", file=sys.stderr)
        return 2
    if not 0 <= org.config.port <= _MAX_PORT:
        # --port or the config file's port: bind() would raise OverflowError.
        print(
            f"sfstream emulator: port {org.config.port}: a port is 0 to {_MAX_PORT} "
            "(0 picks a free one)",
            file=sys.stderr,
        )
        return 2
    verbose = getattr(args, "verbose", None) or 0
    if verbose and not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
    done = asyncio.Event() if stop is None else stop
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, done.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows, threads
            pass
    try:
        try:
            await org.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                print(
                    f"sfstream emulator: cannot listen: port {org.config.port} is taken "
                    "(another emulator?) — use --port 0 for a free port, or --port N for "
                    "another one",
                    file=sys.stderr,
                )
            else:
                print(f"sfstream emulator: cannot listen: {exc}", file=sys.stderr)
            return 2
        try:
            _say(banner(org), output)
            await done.wait()
        finally:
            await org.stop()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    _say("Salesforce emulator stopped.", output)
    return 0


def _say(text: str, output: TextIO) -> None:
    """Print ``text``; a reader that went away (``| head``) does not stop the org (which
    keeps serving) nor end it with a BrokenPipeError traceback."""
    try:
        print(text, file=output, flush=True)
    except BrokenPipeError:
        try:
            fileno = output.fileno()
        except (AttributeError, OSError, ValueError):
            return
        # What is still buffered would fail again at exit: send the rest to /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fileno)
        os.close(devnull)


class _OneLineParser(argparse.ArgumentParser):
    """A usage error is one line, with "did you mean" for a mistyped option (not argparse's
    usage block): as ``sfstream emulator`` reports it."""

    def error(self, message: str) -> NoReturn:
        hint = f"{self.prog} --help shows every option"
        unknown = message.removeprefix("unrecognized arguments: ")
        if unknown != message:
            options = [word.split("=")[0] for word in unknown.split() if word.startswith("-")]
            known = [o for action in self._actions for o in action.option_strings]
            matches = [m for o in options for m in difflib.get_close_matches(o, known, n=1)]
            if options:
                message = f"unknown option {' '.join(options)}"
            if matches:
                hint = f"did you mean {' '.join(matches)}? ({hint})"
        self.exit(2, f"{self.prog}: {message} — {hint}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sfstream.emulator [options]``."""
    parser = _OneLineParser(
        prog="python -m sfstream.emulator",
        description="Serve a Salesforce org on loopback for Streaming API clients.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl+C during shutdown
        return 130
