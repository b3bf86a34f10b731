"""``sfstream relay --sink nats://a,nats://b,nats://c`` as users run it: two processes on a
three-node JetStream cluster, SIGKILL of the leader, takeover by the standby, metrics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from sfstream.emulator import Emulator, EmulatorThread
from sfstream.relay._nats import DEFAULT_STREAM
from tests._servers import free_port as _free_port
from tests.relay._nats_chaos import replay_ids
from tests.relay._nats_servers import NatsCluster, NatsServer
from tests.relay.test_cli import (
    ORDER,
    PASSWORD,
    SECRET,
    SHIP,
    get,
    login_options,
    publish,
    run_cli,
    start,
    stop,
    stop_gracefully,
)

LEASE_TTL = 2.0


@pytest.fixture
def org(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    for name in list(os.environ):
        if name.startswith("SFSTREAM_"):
            monkeypatch.delenv(name)
    emulator = Emulator(
        events={"Order__e": ["N__c"], "Shipment__e": ["N__c"]},
        hold_time=0.3,
        session_expiry=3.0,
        password=PASSWORD,
        consumer_secret=SECRET,
    )
    with emulator.in_thread() as thread:
        yield thread


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path) as running:
        yield running


def role(port: int) -> str | None:
    try:
        status, body = get(f"http://127.0.0.1:{port}/healthz")
    except OSError:  # not listening yet
        return None
    if status not in (200, 503):
        return None
    try:
        found: str = json.loads(body)["relays"][0]["role"]
    except (ValueError, KeyError, IndexError):
        return None
    return found


async def until(condition: Callable[[], Any], what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# Each wait below is bounded on its own (a cluster and two relays start on a loaded machine),
# so that a stuck step fails with its name and the relays' logs, not with the test's timeout.
@pytest.mark.timeout(180)
async def test_sigkill_failover_on_a_jetstream_cluster(
    org: EmulatorThread, cluster: NatsCluster
) -> None:
    nc = await nats.connect(servers=cluster.urls)
    js = nc.jetstream(timeout=5)
    ports = {"first": _free_port(), "second": _free_port()}
    common = ["--sink", cluster.url, "--name", "orders", "--replay", "all"]
    # (--debug: a relay's own records, shown below if the test fails)
    common += ["--lease-ttl", str(LEASE_TTL), "--debug", ORDER, SHIP]
    processes = {
        name: start(org, *common, "--holder", name, "--metrics", f"127.0.0.1:{port}")
        for name, port in ports.items()
    }

    async def stored() -> dict[str, list[int]]:
        return await replay_ids(js, [ORDER, SHIP])

    try:
        await until(
            lambda: sorted(str(role(p)) for p in ports.values()) == ["leader", "standby"],
            "one leader and one standby",
        )
        leader = next(name for name, port in ports.items() if role(port) == "leader")
        survivor = "second" if leader == "first" else "first"
        # make_sink read the three servers of the URL: the stream is replicated on all three.
        info = await js.stream_info(DEFAULT_STREAM)
        assert info.config.num_replicas == 3
        expected = {ORDER: publish(org, ORDER, 150), SHIP: publish(org, SHIP, 150)}
        deadline = time.monotonic() + 60  # a new R3 stream on a loaded machine
        while not (await stored())[ORDER]:
            assert time.monotonic() < deadline, "no event reached JetStream"
            await asyncio.sleep(0.1)
        processes[leader].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await until(lambda: role(ports[survivor]) == "leader", "the standby to take over")
        # The standby takes a lease once it saw it unchanged for one TTL (plus a poll): a
        # bounded wait, generous for a loaded machine; not a performance figure.
        assert time.monotonic() - killed_at < LEASE_TTL + 10
        expected[ORDER] += publish(org, ORDER, 100)
        expected[SHIP] += publish(org, SHIP, 100)
        deadline = time.monotonic() + 30
        while True:
            got = await stored()
            if all(got[c][-1:] == v[-1:] for c, v in expected.items()):
                break
            assert time.monotonic() < deadline, "not every event reached JetStream"
            await asyncio.sleep(0.1)
        for channel, ids in expected.items():
            assert got[channel] == ids  # none lost, none twice (messages, not only ids), in order
        status, body = get(f"http://127.0.0.1:{ports[survivor]}/metrics")
        assert status == 200
        assert 'sfstream_relay_leader{set="orders"} 1.0' in body
        assert 'sfstream_relay_leaderships_total{set="orders"} 1.0' in body
        assert '"role": "leader"' in get(f"http://127.0.0.1:{ports[survivor]}/healthz")[1]
        processes[survivor].send_signal(signal.SIGTERM)
        code, err = stop_gracefully(processes[survivor])
        assert code == 130, err
        assert "releasing the lease" in err
        for secret in (PASSWORD, SECRET):
            assert secret not in err
    finally:
        for name, process in processes.items():
            _code, log = stop(process)
            # Shown only when the test fails (the relays log no secret: asserted above).
            print(f"--- relay {name}, last lines of stderr ---", *log.splitlines()[-150:], sep="\n")
        await nc.close()


def test_cluster_url_credentials_stay_out_of_errors(
    capsys: pytest.CaptureFixture[str], org: EmulatorThread
) -> None:
    dead = f"nats://relay:{PASSWORD}@127.0.0.1:{_free_port()}"
    sinks = f"{dead},nats://127.0.0.1:{_free_port()}"
    code, err = run_cli(capsys, "--sink", sinks, *login_options(org), ORDER)
    assert code == 4, err
    assert "cannot connect to NATS" in err
    assert "***@127.0.0.1" in err
    assert PASSWORD not in err


def test_an_event_larger_than_the_server_takes_stops_the_relay_with_a_clear_error(
    org: EmulatorThread, tmp_path: Path
) -> None:
    with NatsServer(tmp_path, max_payload=4096) as server:
        publish(org, ORDER, 3)
        org.publish(ORDER, {"N__c": "x" * 8000})
        process = start(org, "--sink", server.url, "--name", "orders", "--replay", "all", ORDER)
        try:
            process.wait(timeout=40)
        finally:
            code, err = stop(process)
    assert code == 1, err
    assert "the engine refused an event" in err
    assert "max_payload" in err
    assert "Traceback" not in err
    for secret in (PASSWORD, SECRET):
        assert secret not in err
