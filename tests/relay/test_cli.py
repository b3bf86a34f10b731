"""``sfstream relay`` as users run it: processes, SIGKILL failover, SIGTERM, metrics, errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import redis

from sfstream.cli import main
from sfstream.emulator import Emulator, EmulatorThread
from sfstream.relay._redis import stream_key
from tests.relay._engines import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
ORDER = "/event/Order__e"
SHIP = "/event/Shipment__e"
PASSWORD = "relay-Pa55word-never-printed"
SECRET = "relay-consumer-secret-never-printed"


@pytest.fixture
def org(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    for name in list(os.environ):
        if name.startswith("SFSTREAM_"):
            monkeypatch.delenv(name)
    emulator = Emulator(
        events={"Order__e": ["Amount__c", "N__c"], "Shipment__e": ["Amount__c", "N__c"]},
        hold_time=0.3,
        session_expiry=3.0,
        password=PASSWORD,
        consumer_secret=SECRET,
    )
    with emulator.in_thread() as thread:
        yield thread


def environment(org: EmulatorThread) -> dict[str, str]:
    return {
        **os.environ,
        "SFSTREAM_LOGIN_URL": org.login_url,
        "SFSTREAM_CONSUMER_KEY": org.emulator.consumer_key,
        "SFSTREAM_CONSUMER_SECRET": SECRET,
        "SFSTREAM_USERNAME": org.emulator.username,
        "SFSTREAM_PASSWORD": PASSWORD,
    }


#: Each relay process's stderr, in a file: a pipe nobody reads while the test waits would
#: fill up with the relay's log lines and block it.
_STDERR: dict[int, IO[str]] = {}


def start(org: EmulatorThread, *argv: str) -> subprocess.Popen[str]:
    err = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed by _stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "sfstream", "relay", *argv],
        stdout=subprocess.DEVNULL,
        stderr=err,
        text=True,
        env=environment(org),
        cwd=ROOT,
    )
    _STDERR[process.pid] = err
    return process


def _stderr(process: subprocess.Popen[str]) -> str:
    """What the (ended) process wrote on stderr; empty the second time."""
    err = _STDERR.pop(process.pid, None)
    if err is None:
        return ""
    with err:
        err.seek(0)
        return err.read()


def wait(condition: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def holder(db: redis.Redis, name: str) -> str | None:
    value: Any = db.get(f"sfstream:{{{name}}}:lease")
    return None if value is None else value.decode().split(" ", 1)[1]


def ids(db: redis.Redis, name: str, channel: str) -> list[int]:
    entries: Any = db.xrange(stream_key(name, channel))
    return [int(fields[b"replay_id"]) for _id, fields in entries]


def publish(org: EmulatorThread, channel: str, count: int) -> list[int]:
    return [org.publish(channel, {"N__c": i}).replay_id for i in range(count)]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
    return process.returncode, _stderr(process)


def test_sigkill_failover_sigterm_and_metrics(
    org: EmulatorThread, redis_server: RedisServer
) -> None:
    db = redis.Redis.from_url(redis_server.url)
    ports = {"first": free_port(), "second": free_port()}
    common = ["--sink", redis_server.url, "--name", "orders", "--replay", "all"]
    common += ["--lease-ttl", "1", ORDER, SHIP]
    first = start(org, *common, "--holder", "first", "--metrics", f"127.0.0.1:{ports['first']}")
    second = start(org, *common, "--holder", "second", "--metrics", f"127.0.0.1:{ports['second']}")
    try:
        wait(lambda: holder(db, "orders") is not None, "a leader")
        leader, standby = (first, second) if holder(db, "orders") == "first" else (second, first)
        expected = {ORDER: publish(org, ORDER, 150), SHIP: publish(org, SHIP, 150)}
        wait(lambda: len(ids(db, "orders", ORDER)) > 0, "the first entries")
        leader.send_signal(signal.SIGKILL)
        survivor = "second" if leader is first else "first"
        wait(lambda: holder(db, "orders") == survivor, "the standby to take over")
        expected[ORDER] += publish(org, ORDER, 100)
        expected[SHIP] += publish(org, SHIP, 100)
        wait(
            lambda: all(ids(db, "orders", c)[-1:] == v[-1:] for c, v in expected.items()),
            "every event in Redis",
        )
        for channel, replay_ids in expected.items():
            assert ids(db, "orders", channel) == replay_ids  # none lost, none twice, in order
        port = ports[survivor]
        status, body = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert 'sfstream_relay_leader{set="orders"} 1.0' in body
        assert 'sfstream_relay_events_total{channel="/event/Order__e",set="orders"}' in body
        assert 'sfstream_relay_leaderships_total{set="orders"} 1.0' in body
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        assert '"role": "leader"' in body
        standby.send_signal(signal.SIGTERM)
        code, err = stop_gracefully(standby)
        assert code == 130, err
        assert "releasing the lease" in err
        assert holder(db, "orders") is None  # released: another relay may start at once
        for secret in (PASSWORD, SECRET):
            assert secret not in err
    finally:
        stop(first)
        stop(second)
        db.close()


def test_warnings_are_on_stderr_without_debug(
    org: EmulatorThread, redis_server: RedisServer
) -> None:
    # Replay ids that went back (a refreshed sandbox): the position in Redis is above every id
    # this org issued, Salesforce refuses it and --fallback all subscribes again; the events
    # are left out, and the sink's warning must reach the operator (it was only in --debug).
    db = redis.Redis.from_url(redis_server.url)
    db.hset("sfstream:{back}:positions", ORDER, "99999999")
    publish(org, ORDER, 3)
    process = start(org, "--sink", redis_server.url, "--name", "back", "--fallback", "all", ORDER)
    err = _STDERR[process.pid]

    def said() -> str:
        err.seek(0)
        return err.read()

    try:
        wait(lambda: "were not written" in said(), "the warning")
        process.send_signal(signal.SIGTERM)
        code, text = stop_gracefully(process)
        assert code == 130, text
        assert re.search(r"warning: back: \d of \d events were not written", text), text
        assert ids(db, "back", ORDER) == []
        for secret in (PASSWORD, SECRET):
            assert secret not in text
    finally:
        stop(process)
        db.close()


def stop_gracefully(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return process.returncode, _stderr(process)


def test_a_config_file_relays_several_sets_in_one_process(
    org: EmulatorThread, redis_server: RedisServer, tmp_path: Path
) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(
        f"""
sink = "{redis_server.url}"
lease_ttl = 2

[orgs.main]
login_url = "{org.login_url}"
consumer_key = "{org.emulator.consumer_key}"
consumer_secret_env = "SFSTREAM_CONSUMER_SECRET"
username = "{org.emulator.username}"
password_env = "SFSTREAM_PASSWORD"

[[sets]]
name = "orders"
org = "main"
channels = ["{ORDER}"]
replay = "all"

[[sets]]
name = "shipments"
org = "main"
channels = ["{SHIP}"]
replay = "all"
""",
        encoding="utf-8",
    )
    db = redis.Redis.from_url(redis_server.url)
    process = start(org, "--config", str(config))
    try:
        orders, shipments = publish(org, ORDER, 30), publish(org, SHIP, 20)
        wait(lambda: ids(db, "orders", ORDER) == orders, "orders")
        wait(lambda: ids(db, "shipments", SHIP) == shipments, "shipments")
        process.send_signal(signal.SIGTERM)
        code, err = stop_gracefully(process)
        assert code == 130, err
        assert "orders: leader" in err
        assert "shipments: leader" in err
    finally:
        stop(process)
        db.close()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["relay", *argv])
    return code, capsys.readouterr().err


def login_options(org: EmulatorThread, password: str = PASSWORD) -> list[str]:
    """The credential options of ``sfstream relay`` for the emulated org."""
    return [
        "--login-url", org.login_url,
        "--consumer-key", org.emulator.consumer_key,
        "--consumer-secret", SECRET,
        "--username", org.emulator.username,
        "--password", password,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        ((ORDER,), 2, "no --sink"),
        (("--sink", "redis://127.0.0.1:1/0"), 2, "no channels"),
        (("--sink", "http://x", ORDER), 2, "not a sink URL"),
        (("--sink", "redis://127.0.0.1:1/0", "meta"), 2, "not a channel"),
        (("--sink", "redis://127.0.0.1:1/0", ORDER, ORDER), 2, "names a channel twice"),
        (("--config", "/nonexistent/relay.toml"), 2, "cannot read"),
        (("--config", "x.toml", ORDER), 2, "--config replaces"),
        # Options of the command line's one set would be ignored with a file: refused.
        (("--config", "x.toml", "--maxlen", "100"), 2, "--maxlen is not used with --config"),
        (("--config", "x.toml", "--name", "orders"), 2, "--name is not used with --config"),
        (("--config", "x.toml", "--replay", "all"), 2, "--replay is not used with --config"),
        (("--config", "x.toml", "--fallback", "all"), 2, "--fallback is not used"),
        (("--config", "x.toml", "--stream", "S"), 2, "--stream is not used with --config"),
        (("--sink", "nats://127.0.0.1:1", "--maxlen", "9", ORDER), 2, "for a redis sink only"),
        (("--sink", "redis://127.0.0.1:1/0", "--stream", "S", ORDER), 2, "for a nats sink"),
        (("--sink", "redis://127.0.0.1:1/0", "--username", "u", ORDER), 2, "password flow needs"),
        # Checked before the credentials, as usage errors, without the URL's password:
        (("--sink", f"redis://:{PASSWORD}@127.0.0.1:99999/0", ORDER), 2, "invalid port"),
        (("--sink", "redis://127.0.0.1:x/0", ORDER), 2, "invalid port"),
        (("--sink", "redis://127.0.0.1:1/one", ORDER), 2, "invalid database 'one'"),
        (("--sink", "redis+cluster://127.0.0.1:1/2", ORDER), 2, "database 0 only"),
        (("--sink", f"nats://u:{PASSWORD}@127.0.0.1:99999", ORDER), 2, "invalid NATS URL"),
        (("--sink", "redis://127.0.0.1:1/0", "--name", "a{b}", ORDER), 2, "channel set name"),
    ],
)
def test_usage_errors_are_one_clear_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
    code: int,
    text: str,
) -> None:
    for name in list(os.environ):
        if name.startswith("SFSTREAM_"):
            monkeypatch.delenv(name)
    got, err = run_cli(capsys, *argv)
    assert got == code, err
    assert text in err
    assert "Traceback" not in err
    assert PASSWORD not in err


def test_missing_credentials_of_an_org_of_the_file_name_the_org(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("SFSTREAM_"):
            monkeypatch.delenv(name)
    config = tmp_path / "relay.toml"
    config.write_text(
        'sink = "redis://127.0.0.1:1/0"\n'
        '[orgs.prod]\naccess_token = "t"\ninstance_url = "https://x.my.salesforce.com"\n'
        '[orgs.eu]\nusername = "u"\n'
        '[[sets]]\nname = "a"\norg = "prod"\nchannels = ["/event/A__e"]\n'
        '[[sets]]\nname = "b"\norg = "eu"\nchannels = ["/event/B__e"]\n'
    )
    code, err = run_cli(capsys, "--config", str(config))
    assert code == 2, err
    assert "[orgs.eu] of" in err
    assert "password flow needs" in err


def test_a_config_file_without_orgs_takes_the_command_line_credentials(
    capsys: pytest.CaptureFixture[str], org: EmulatorThread, tmp_path: Path
) -> None:
    config = tmp_path / "relay.toml"
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0?password={PASSWORD}"
    config.write_text(f'sink = "{url}"\n[[sets]]\nname = "a"\nchannels = ["{ORDER}"]\n')
    code, err = run_cli(capsys, "--config", str(config), *login_options(org))
    assert code == 4, err  # the engine cannot be reached (not a KeyError of the org)
    assert "cannot reach Redis" in err
    assert PASSWORD not in err


def test_an_unreachable_engine_exits_4_without_the_password(
    capsys: pytest.CaptureFixture[str], org: EmulatorThread
) -> None:
    url = f"redis://user:{PASSWORD}@127.0.0.1:{free_port()}/0"
    code, err = run_cli(
        capsys,
        "--sink",
        url,
        *login_options(org),
        ORDER,
    )
    assert code == 4, err
    assert "cannot reach Redis" in err
    assert PASSWORD not in err
    assert SECRET not in err


def test_a_channel_that_does_not_exist_ends_the_relay_as_it_ends_listen(
    capsys: pytest.CaptureFixture[str], org: EmulatorThread, redis_server: RedisServer
) -> None:
    # (it retried the subscription for ever, the reason only in --debug output)
    code, err = run_cli(capsys, "--sink", redis_server.url, *login_options(org), "/topic/Nope")
    assert code == 1, err
    assert "/topic/Nope" in err
    assert "does not exist" in err
    assert "check the channel name" in err
    assert "Traceback" not in err
    db = redis.Redis.from_url(redis_server.url)
    try:
        assert holder(db, "sfstream") is None  # the lease was released
    finally:
        db.close()


def test_salesforce_too_busy_at_the_first_subscription_is_retried(
    org: EmulatorThread, redis_server: RedisServer
) -> None:
    # A 503 behind a 401 error (Salesforce's "Server is too busy", failureReason first) on
    # the first subscription: the relay ended at once, exit 3, "check the credentials"
    # (seen in the relay-chaos campaign when a restarted relay met it). It is a moment's
    # refusal: the relay subscribes again and relays.
    org.call(org.emulator.server_busy, channel="/meta/subscribe")
    replay_ids = publish(org, ORDER, 3)
    process = start(org, "--sink", redis_server.url, "--name", "busy", "--replay", "all", ORDER)
    db = redis.Redis.from_url(redis_server.url)
    try:
        wait(
            lambda: process.poll() is not None or ids(db, "busy", ORDER) == replay_ids,
            "the events in Redis",
        )
        assert process.poll() is None, _stderr(process)
        process.send_signal(signal.SIGTERM)
        code, text = stop_gracefully(process)
        assert code == 130, text
        assert "too busy" in text  # the retry's warning names the cause
        assert "credentials" not in text
    finally:
        stop(process)
        db.close()


def test_a_login_server_out_of_reach_at_start_exits_4_as_listen_does(
    capsys: pytest.CaptureFixture[str], org: EmulatorThread, redis_server: RedisServer
) -> None:
    options = login_options(org)
    options[1] = f"http://127.0.0.1:{free_port()}"
    code, err = run_cli(capsys, "--sink", redis_server.url, *options, ORDER)
    # (exit 3, "check the credentials": the network error was taken for a refusal)
    assert code == 4, err
    assert "cannot reach" in err
    assert "check --login-url" in err
    assert PASSWORD not in err
    assert SECRET not in err


def test_wrong_credentials_exit_3_and_release_the_lease(
    capsys: pytest.CaptureFixture[str], org: EmulatorThread, redis_server: RedisServer
) -> None:
    code, err = run_cli(
        capsys,
        "--sink",
        redis_server.url,
        *login_options(org, password="wrong-password"),
        ORDER,
    )
    assert code == 3, err
    assert "Traceback" not in err
    db = redis.Redis.from_url(redis_server.url)
    try:
        assert holder(db, "sfstream") is None
    finally:
        db.close()
