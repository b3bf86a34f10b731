"""The relay's TOML configuration: what it accepts, and one clear error for each mistake."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from sfstream.exceptions import InvalidArgumentError
from sfstream.relay import Relay, Role
from sfstream.relay._config import (
    ConfigError,
    load_config,
    make_sink,
    parse_address,
    parse_config,
    parse_fallback,
    parse_replay,
)
from sfstream.relay._metrics import OpsServer, RelayMetrics
from sfstream.relay._redis import RedisSink
from sfstream.salesforce import ReplayOption

SINK = "redis://127.0.0.1:6379/0"


def config(**top: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sink": SINK, "sets": [{"name": "orders", "channels": ["/event/A__e"]}]}
    base.update(top)
    return base


def test_a_full_configuration() -> None:
    parsed = parse_config(
        {
            "sink": SINK,
            "lease_ttl": 5,
            "batch_size": 200,
            "metrics": ":9200",
            "holder": "host-a",
            "maxlen": 1000,
            "orgs": {"prod": {"username": "u", "password_env": "PW", "sandbox": True}},
            "sets": [
                {
                    "name": "orders",
                    "org": "prod",
                    "channels": ["/event/A__e", "/topic/T?x=1"],
                    "replay": "all",
                    "fallback": "new",
                },
                {
                    "name": "cdc",
                    "org": "prod",
                    "channels": ["/data/AccountChangeEvent"],
                    "sink": "nats://127.0.0.1:4222",
                    "stream": "EVENTS",
                    "replay": 42,
                },
            ],
        },
        environ={"PW": "secret"},
    )
    assert parsed.lease_ttl == 5.0
    assert parsed.batch_size == 200
    assert parsed.metrics == ("127.0.0.1", 9200)
    assert parsed.holder == "host-a"
    assert parsed.orgs["prod"].options == {"username": "u", "password": "secret", "sandbox": True}
    assert "secret" not in repr(parsed)
    orders, cdc = parsed.sets
    assert orders.channel_set.replay == -2
    assert orders.fallback is ReplayOption.NEW_EVENTS
    assert orders.maxlen == 1000
    assert cdc.channel_set.replay == 42
    assert cdc.sink.startswith("nats://")
    assert cdc.stream == "EVENTS"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (config(bogus=1), "unknown key 'bogus'"),
        (config(sink="http://x"), "not a sink URL"),
        (config(orgs=[]), "orgs: expected tables"),
        (config(orgs={"a": 1}), "orgs.a: expected a table"),
        (config(orgs={"a": {"nope": "x"}}), "unknown key 'nope'"),
        (config(orgs={"a": {"password_env": 1}}), "name of an environment variable"),
        (config(orgs={"a": {"password_env": "MISSING"}}), "MISSING is not set"),
        (config(orgs={"a": {"username": 1}}), "expected a string"),
        (config(orgs={"a": {"password": True}}), "orgs.a.password: expected a string"),
        (config(orgs={"a": {"sandbox": "yes"}}), "orgs.a.sandbox: expected true or false"),
        (config(sets=[{"name": "a", "org": "p", "channels": ["/e"]}]), "no [orgs.p] table"),
        ({"sink": SINK}, "no channel sets"),
        (config(sets=[1]), "sets[0]: expected a table"),
        (config(sets=[{"name": "a b", "channels": ["/e"]}]), "without spaces"),
        (config(sets=[{"name": "a", "channels": ["/e"], "x": 1}]), "unknown key 'x'"),
        (
            config(sets=[{"name": "a", "channels": ["/e"]}, {"name": "a", "channels": ["/f"]}]),
            "used twice",
        ),
        (
            config(orgs={"o": {}}, sets=[{"name": "a", "org": "p", "channels": ["/e"]}]),
            "no [orgs.p] table",
        ),
        (config(sets=[{"name": "a", "channels": []}]), "expected a list of channels"),
        (config(sets=[{"name": "a", "channels": ["/meta/x"]}]), "expected a list of channels"),
        (
            config(sets=[{"name": "a", "channels": ["/e"]}, {"name": "b", "channels": ["/e?x"]}]),
            "already relayed by set 'a'",
        ),
        ({"sets": [{"name": "a", "channels": ["/e"]}]}, "no sink"),
        (config(sets=[{"name": "a", "channels": ["/e", "/e"]}]), "already relayed by set 'a'"),
        (config(sets=[{"name": "a", "channels": ["/e"], "stream": 1}]), "stream: expected"),
        (config(sets=[{"name": "a", "channels": ["/e"], "maxlen": 0}]), "at least 1"),
        (
            config(sets=[{"name": "a", "channels": ["/e"], "stream": "S"}]),
            "set 'a'.stream: only a nats sink has it",
        ),
        (
            config(sink="nats://h:4222", sets=[{"name": "a", "channels": ["/e"], "maxlen": 9}]),
            "set 'a'.maxlen: only a redis sink has it",
        ),
        (config(sets=[{"name": "a", "channels": ["/e"], "replay": "x"}]), "expected new, all"),
        (config(sets=[{"name": "a", "channels": ["/e"], "fallback": "x"}]), "new or all"),
        (config(holder=1), "holder: expected"),
        (config(lease_ttl="x"), "lease_ttl: expected a number"),
        (config(lease_ttl=True), "lease_ttl: expected a number"),
        (config(lease_ttl=float("nan")), "lease_ttl: expected a number"),
        (config(lease_ttl=float("inf")), "lease_ttl: expected at most 86400"),
        (config(batch_size=1.5), "whole number"),
        (config(metrics=[1]), "HOST:PORT"),
        (config(metrics="h:x"), "HOST:PORT"),
        (config(metrics=70000), "out of range"),
    ],
)
def test_mistakes_are_named(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ={})
    assert message in str(caught.value)


def test_without_org_tables_every_set_is_of_the_command_line_org() -> None:
    parsed = parse_config(config())
    assert list(parsed.orgs) == ["default"]
    assert parsed.orgs["default"].options == {}  # the command line's credential options
    assert parsed.sets[0].channel_set.org == "default"


def test_switches_read_from_the_environment_are_parsed_as_listen_reads_them() -> None:
    orgs = {"a": {"sandbox_env": "SB", "client_credentials_env": "CC", "username_env": "U"}}
    environ = {"SB": "false", "CC": "Yes", "U": "false"}
    parsed = parse_config(
        config(orgs=orgs, sets=[{"name": "x", "org": "a", "channels": ["/e"]}]), environ
    )
    assert parsed.orgs["a"].options == {
        "sandbox": False,  # not the string "false", which is true
        "client_credentials": True,
        "username": "false",
    }


def test_make_sink_refuses_urls_it_cannot_use() -> None:
    with pytest.raises(InvalidArgumentError, match="invalid port") as caught:
        make_sink("redis://:hunter2@127.0.0.1:99999/0", "orders")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="invalid NATS URL") as nats:
        make_sink("nats://u:hunter2@127.0.0.1:99999", "orders")
    assert "hunter2" not in str(nats.value)


def test_small_parsers() -> None:
    assert parse_replay("new") == -1
    assert parse_replay(" ALL ") == -2
    assert parse_replay("17") == 17
    with pytest.raises(ConfigError):
        parse_replay(-3)
    with pytest.raises(ConfigError):
        parse_replay(True)
    assert parse_fallback(None) is None
    assert parse_fallback("ALL") is ReplayOption.ALL_EVENTS
    assert parse_address("0.0.0.0:80") == ("0.0.0.0", 80)  # noqa: S104
    assert parse_address("[::1]:81") == ("::1", 81)
    assert parse_address(82) == ("127.0.0.1", 82)


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text('sink = "redis://h:1/0"\n[[sets]]\nname = "a"\nchannels = ["/e"]\n')
    assert load_config(path).sets[0].channel_set.name == "a"
    path.write_text("sink = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    path.write_text("sets = 1")
    with pytest.raises(ConfigError, match=r"relay.toml: no channel sets"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_make_sink_imports_engines_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = make_sink("redis+cluster://127.0.0.1:7000", "orders", maxlen=5)
    assert isinstance(sink, RedisSink)
    assert sink.cluster
    assert sink.maxlen == 5
    monkeypatch.setitem(sys.modules, "sfstream.relay._nats", None)
    with pytest.raises(ImportError, match="NATS sink is not available"):
        make_sink("nats://127.0.0.1:4222", "orders")
    with pytest.raises(ConfigError):
        make_sink("ftp://x", "orders")


async def test_healthz_is_503_unless_every_relay_runs() -> None:
    metrics = RelayMetrics()
    sink = RedisSink(SINK, channel_set="orders")
    from sfstream.relay import ChannelSet

    relay = Relay(ChannelSet("orders", ("/event/A__e",)), sink, lambda *_: None)  # type: ignore[arg-type]
    assert relay.role is Role.STOPPED
    server = OpsServer([relay], metrics, port=0)
    await server.start()
    try:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{server.port}/healthz") as response:
                assert response.status == 503
                body = await response.json()
            async with session.get(f"http://127.0.0.1:{server.port}/metrics") as response:
                assert response.status == 200
                assert "sfstream_relay" in await response.text()
        assert body["relays"][0]["role"] == "stopped"
        assert body["healthy"] is False
    finally:
        await server.stop()


def test_make_sink_builds_the_nats_sink_from_cluster_urls() -> None:
    from sfstream.relay._nats import NatsSink

    three = "nats://a:4222,nats://user:secret@b:4222,tls://c:4222"
    sink = make_sink(three, "orders", lease_ttl=8.0)
    assert isinstance(sink, NatsSink)
    assert sink.stream == "SFSTREAM"  # as documented (not the set's or a lower-case name)
    assert sink._servers == ["nats://a:4222", "nats://user:secret@b:4222", "tls://c:4222"]
    assert sink._replicas == 3  # three servers listed: a replicated stream and bucket
    assert sink._retry_for == 4.0  # half the lease TTL: a renewal cannot outlive the lease
    assert "secret" not in repr(sink)
    one = make_sink("nats://a:4222?stream=ORDERS&creds=/etc/relay.creds", "orders", lease_ttl=2)
    assert isinstance(one, NatsSink)
    assert (one.stream, one._replicas, one._retry_for) == ("ORDERS", 1, 1.0)
    assert one._creds == "/etc/relay.creds"
    assert make_sink(three + "?replicas=5", "orders", stream="MINE")._replicas == 5  # type: ignore[attr-defined]
    assert make_sink(three, "orders", stream="MINE").stream == "MINE"  # type: ignore[attr-defined]
