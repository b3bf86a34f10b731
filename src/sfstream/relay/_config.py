"""The relay's configuration: a TOML file for several orgs and channel sets, and sink URLs.

A file looks like this (every key but ``channels`` is optional; the ``[orgs.*]`` tables take
the credential options of ``sfstream listen``, with ``_`` for ``-``; a secret is best given as
``<name>_env = "VARIABLE"``, read from the environment; a file without ``[orgs.*]`` tables
relays one org, with the credential options of the command line)::

    sink = "redis://127.0.0.1:6379/0"    # the default engine of every set
    lease_ttl = 8.0
    batch_size = 1000
    metrics = "127.0.0.1:9108"           # /metrics and /healthz

    [orgs.prod]
    consumer_key = "3MVG9..."
    username = "integration@example.com"
    password_env = "PROD_SF_PASSWORD"
    login_url = "https://example.my.salesforce.com"

    [[sets]]
    name = "orders"                      # the lease and the key prefix
    org = "prod"
    channels = ["/event/Order__e", "/data/OrderChangeEvent"]
    replay = "all"                       # where a channel starts with nothing in the engine
    fallback = "all"                     # when Salesforce refuses a too-old replay id

:func:`make_sink` turns a URL into a :class:`~sfstream.relay.Sink`: ``redis://``,
``rediss://``, ``redis+cluster://`` (Redis Streams) or ``nats://``, ``tls://`` (JetStream,
``sfstream.relay._nats``). Engines are imported only when used.
"""

from __future__ import annotations

import importlib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from sfstream.exceptions import SfstreamError
from sfstream.relay._runner import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LEASE_TTL,
    MAX_LEASE_TTL,
    ChannelSet,
)
from sfstream.relay._sink import Sink, SinkError
from sfstream.salesforce import ReplayOption, channel_key

__all__ = [
    "ConfigError",
    "OrgConfig",
    "RelayConfig",
    "SetConfig",
    "load_config",
    "make_sink",
    "parse_config",
    "parse_replay",
    "sink_engine",
]

#: Credential options an ``[orgs.*]`` table may hold (as for ``sfstream listen``).
CREDENTIAL_KEYS: Final = frozenset(
    {
        "auth",
        "consumer_key",
        "consumer_secret",
        "username",
        "password",
        "security_token",
        "refresh_token",
        "jwt_key",
        "jwt_key_password",
        "client_credentials",
        "access_token",
        "instance_url",
        "sf_org",
        "login_url",
        "sandbox",
        "api_version",
    }
)
#: The credential options that are switches (``true``/``false``; from the environment as
#: ``sfstream listen`` reads them: 1, true, yes or on).
BOOLEAN_KEYS: Final = frozenset({"client_credentials", "sandbox"})
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
#: The org of a set that names none. Without ``[orgs.*]`` tables it is the only org, with the
#: credential options of the command line (flags or ``SFSTREAM_*`` variables).
DEFAULT_ORG: Final = "default"
_TOP_KEYS: Final = frozenset(
    {"sink", "lease_ttl", "batch_size", "metrics", "holder", "maxlen", "stream", "orgs", "sets"}
)
_SET_KEYS: Final = frozenset(
    {"name", "org", "channels", "replay", "fallback", "sink", "maxlen", "stream"}
)
_SINK_SCHEMES: Final = {
    "redis": "redis",
    "rediss": "redis",
    "redis+cluster": "redis",
    "rediss+cluster": "redis",
    "nats": "nats",
    "tls": "nats",
}


class ConfigError(SfstreamError, ValueError):
    """The relay's configuration is wrong (the message says where and what to write)."""


@dataclass(frozen=True)
class OrgConfig:
    """One org: a name and its credential options (secrets: never print them)."""

    name: str
    options: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class SetConfig:
    """One channel set and the engine it goes to."""

    channel_set: ChannelSet
    sink: str = field(repr=False)
    fallback: ReplayOption | None = None
    maxlen: int | None = None
    stream: str | None = None


@dataclass(frozen=True)
class RelayConfig:
    """A whole relay process."""

    sets: tuple[SetConfig, ...]
    orgs: Mapping[str, OrgConfig]
    lease_ttl: float = DEFAULT_LEASE_TTL
    batch_size: int = DEFAULT_BATCH_SIZE
    metrics: tuple[str, int] | None = None
    holder: str | None = None


def parse_replay(value: object, where: str = "replay") -> int:
    """``"new"`` -> -1, ``"all"`` -> -2, or a replay id."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "new":
            return int(ReplayOption.NEW_EVENTS)
        if lowered == "all":
            return int(ReplayOption.ALL_EVENTS)
        try:
            value = int(lowered)
        except ValueError:
            raise ConfigError(f"{where}: expected new, all or a replay id, not {value!r}") from None
    if not isinstance(value, int) or isinstance(value, bool) or value < -2:
        raise ConfigError(f"{where}: expected new, all or a replay id, not {value!r}")
    return value


def parse_fallback(value: object, where: str = "fallback") -> ReplayOption | None:
    if value is None:
        return None
    options = {"new": ReplayOption.NEW_EVENTS, "all": ReplayOption.ALL_EVENTS}
    if not isinstance(value, str) or value.lower() not in options:
        raise ConfigError(f"{where}: expected new or all, not {value!r}")
    return options[value.lower()]


def parse_address(value: object, where: str = "metrics") -> tuple[str, int]:
    """``"host:port"`` or ``":port"`` or a port number -> (host, port)."""
    if isinstance(value, int) and not isinstance(value, bool):
        host, port_text = "127.0.0.1", str(value)
    elif isinstance(value, str):
        host, _, port_text = value.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
    else:
        raise ConfigError(f"{where}: expected HOST:PORT, not {value!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{where}: expected HOST:PORT, not {value!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}: port {port} is out of range")
    return host, port


def sink_engine(url: str) -> str | None:
    """``"redis"`` or ``"nats"``: the engine of a sink URL (None: not a sink URL)."""
    return _SINK_SCHEMES.get(urlsplit(url).scheme)


def check_sink_url(url: object, where: str = "sink") -> str:
    if not isinstance(url, str) or urlsplit(url).scheme not in _SINK_SCHEMES:
        shown = urlsplit(url).scheme + "://..." if isinstance(url, str) else repr(url)
        raise ConfigError(
            f"{where}: not a sink URL ({shown}); use redis://host:port/db, rediss://, "
            "redis+cluster://host:port or nats://host:port"
        )
    return url


def _number(
    value: object, where: str, kind: type, minimum: float, maximum: float = math.inf
) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(f"{where}: expected a number, not {value!r}")
    if kind is int and not isinstance(value, int):
        raise ConfigError(f"{where}: expected a whole number, not {value!r}")
    if value < minimum:
        raise ConfigError(f"{where}: expected at least {minimum}, not {value!r}")
    if value > maximum:
        raise ConfigError(f"{where}: expected at most {maximum:g}, not {value!r}")
    return kind(value)


def _unknown(table: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ConfigError(
            f"{where}: unknown key {extra[0]!r} (known: {', '.join(sorted(allowed))})"
        )


def _org(name: str, table: object, environ: Mapping[str, str]) -> OrgConfig:
    where = f"orgs.{name}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    options: dict[str, Any] = {}
    for key, value in table.items():
        if key.endswith("_env") and key[:-4] in CREDENTIAL_KEYS:
            if not isinstance(value, str):
                raise ConfigError(f"{where}.{key}: expected the name of an environment variable")
            if value not in environ:
                raise ConfigError(f"{where}.{key}: the environment variable {value} is not set")
            text = environ[value]
            name = key[:-4]
            options[name] = text.strip().lower() in _TRUE if name in BOOLEAN_KEYS else text
        elif key in BOOLEAN_KEYS:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: expected true or false, not {value!r}")
            options[key] = value
        elif key in CREDENTIAL_KEYS:
            if not isinstance(value, str):
                raise ConfigError(f"{where}.{key}: expected a string")
            options[key] = value
        else:
            known = ", ".join(sorted(CREDENTIAL_KEYS))
            raise ConfigError(f"{where}: unknown key {key!r} (credential options: {known})")
    return OrgConfig(name, options)


def parse_config(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> RelayConfig:
    """Check a parsed TOML document and build the :class:`RelayConfig`.

    Raises:
        ConfigError: anything wrong, with where it is.
    """
    env = os.environ if environ is None else environ
    _unknown(data, _TOP_KEYS, "the configuration")
    default_sink = data.get("sink")
    if default_sink is not None:
        check_sink_url(default_sink)
    orgs_table = data.get("orgs", {})
    if not isinstance(orgs_table, dict):
        raise ConfigError("orgs: expected tables [orgs.NAME]")
    orgs = {name: _org(name, table, env) for name, table in orgs_table.items()}
    if "orgs" not in data:
        orgs = {DEFAULT_ORG: OrgConfig(DEFAULT_ORG, {})}  # the command line's credentials
    raw_sets = data.get("sets")
    if not isinstance(raw_sets, list) or not raw_sets:
        raise ConfigError("no channel sets: add at least one [[sets]] with name and channels")
    sets: list[SetConfig] = []
    seen: dict[tuple[str, str], str] = {}
    for index, table in enumerate(raw_sets):
        where = f"sets[{index}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table")
        _unknown(table, _SET_KEYS, where)
        name = table.get("name")
        if not isinstance(name, str) or not name or any(c in name for c in "{} "):
            raise ConfigError(f"{where}.name: expected a name without spaces or braces")
        where = f"set {name!r}"
        if any(s.channel_set.name == name for s in sets):
            raise ConfigError(f"{where}: the name is used twice")
        org = table.get("org", DEFAULT_ORG)
        if not isinstance(org, str) or org not in orgs:
            raise ConfigError(f"{where}.org: no [orgs.{org}] table")
        channels = table.get("channels")
        if (
            not isinstance(channels, list)
            or not channels
            or not all(
                isinstance(c, str) and c.startswith("/") and not c.startswith("/meta/")
                for c in channels
            )
        ):
            raise ConfigError(
                f'{where}.channels: expected a list of channels such as "/event/Order__e"'
            )
        for channel in channels:
            key = (org, channel_key(channel))
            if key in seen:
                raise ConfigError(
                    f"{where}: {channel} of org {org!r} is already relayed by set {seen[key]!r}"
                )
            seen[key] = name
        sink = table.get("sink", default_sink)
        if sink is None:
            raise ConfigError(f'{where}: no sink (set sink = "redis://..." at the top or here)')
        try:
            channel_set = ChannelSet(
                name, tuple(channels), org=org, replay=parse_replay(table.get("replay", "new"))
            )
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        maxlen = table.get("maxlen", data.get("maxlen"))
        stream = table.get("stream", data.get("stream"))
        if stream is not None and not isinstance(stream, str):
            raise ConfigError(f"{where}.stream: expected a name")
        engine = sink_engine(sink) if isinstance(sink, str) else None
        # A set's own option its engine does not have would be ignored (one at the top of the
        # file applies to the sets whose engine has it).
        for option, needs in (("maxlen", "redis"), ("stream", "nats")):
            if option in table and engine is not None and engine != needs:
                raise ConfigError(f"{where}.{option}: only a {needs} sink has it")
        sets.append(
            SetConfig(
                channel_set,
                check_sink_url(sink, f"{where}.sink"),
                fallback=parse_fallback(table.get("fallback"), f"{where}.fallback"),
                maxlen=None if maxlen is None else _number(maxlen, f"{where}.maxlen", int, 1),
                stream=stream,
            )
        )
    metrics = data.get("metrics")
    holder = data.get("holder")
    if holder is not None and not isinstance(holder, str):
        raise ConfigError("holder: expected a string")
    return RelayConfig(
        sets=tuple(sets),
        orgs=orgs,
        lease_ttl=_number(
            data.get("lease_ttl", DEFAULT_LEASE_TTL), "lease_ttl", float, 0.1, MAX_LEASE_TTL
        ),
        batch_size=_number(data.get("batch_size", DEFAULT_BATCH_SIZE), "batch_size", int, 1),
        metrics=None if metrics is None else parse_address(metrics),
        holder=holder,
    )


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> RelayConfig:
    """Read and check a TOML configuration file.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or its content is wrong.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return parse_config(data, environ)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def make_sink(
    url: str,
    channel_set: str,
    *,
    maxlen: int | None = None,
    stream: str | None = None,
    lease_ttl: float = DEFAULT_LEASE_TTL,
) -> Sink:
    """The sink for ``url``, serving ``channel_set`` (engines are imported only here).

    NATS: ``url`` may list several servers (``nats://a:4222,nats://b:4222``; ``tls://`` for TLS,
    ``user:password@`` or ``token@`` in a server's URL for credentials, ``?creds=PATH`` for a
    credentials file); ``stream`` (else the URL's ``?stream=``, else ``SFSTREAM``) names the
    stream. A listing of three or more servers creates the stream and the lease bucket with
    three replicas unless ``?replicas=`` says otherwise. Requests that find no JetStream leader
    are retried for half the lease TTL at most (see :class:`~sfstream.relay._nats.NatsSink`), so
    that a relay learns in time that its lease may be lost.

    Raises:
        ConfigError: an unknown scheme, or a NATS URL that cannot be parsed.
        InvalidArgumentError: a Redis URL with an invalid port or database, or a channel set
            name the sink refuses.
        ImportError: the engine's client package is missing (the message names the extra).
    """
    kind = _SINK_SCHEMES.get(urlsplit(url).scheme)
    if kind == "redis":
        from sfstream.relay._redis import RedisSink

        return RedisSink(url, channel_set=channel_set, maxlen=maxlen)
    if kind == "nats":
        try:
            module = importlib.import_module("sfstream.relay._nats")
        except ImportError as exc:
            raise ImportError(
                f"the NATS sink is not available ({exc}): "
                "pip install '.[nats]' in the sfstream checkout"
            ) from None
        try:
            servers, options = module._parse_url(url)
            replicas = None if "replicas" in options else (3 if len(servers) >= 3 else 1)
            sink: Sink = module.NatsSink(
                url,
                stream=stream,
                replicas=replicas,
                retry_for=max(0.5, min(20.0, lease_ttl / 2)),
            )
        except SinkError as exc:  # nothing is connected yet: the URL is wrong
            raise ConfigError(str(exc)) from None
        return sink
    check_sink_url(url)
    raise AssertionError("unreachable")  # pragma: no cover
