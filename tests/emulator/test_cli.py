"""The command line: ``python -m sfstream.emulator`` and the hooks for ``sfstream emulator``."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shlex
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sfstream.emulator import _cli

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    _cli.add_arguments(parser)
    return parser.parse_args(list(argv))


async def serve(args: argparse.Namespace) -> tuple[asyncio.Task[int], io.StringIO, asyncio.Event]:
    out = io.StringIO()
    stop = asyncio.Event()
    task = asyncio.create_task(_cli.run(args, out=out, stop=stop))
    for _ in range(200):
        if "Press Ctrl+C" in out.getvalue() or task.done():
            break
        await asyncio.sleep(0.01)
    return task, out, stop


def value(banner: str, label: str) -> str:
    for line in banner.splitlines():
        if line.strip().startswith(label):
            return line.strip()[len(label) :].strip()
    raise AssertionError(f"{label!r} not in the banner")


async def test_run_prints_credentials_and_serves(http: aiohttp.ClientSession) -> None:
    task, out, stop = await serve(parse("--port", "0", "--event", "A__e", "--event", "B__e"))
    banner = out.getvalue()
    login = value(banner, "login URL")
    assert login.startswith("http://127.0.0.1:")
    form = {
        "grant_type": "password",
        "client_id": value(banner, "consumer key"),
        "client_secret": value(banner, "consumer secret"),
        "username": value(banner, "username"),
        "password": value(banner, "password"),
    }
    async with http.post(f"{login}/services/oauth2/token", data=form) as response:
        assert response.status == 200
    assert "/event/A__e" in banner
    assert "/event/B__e" in banner
    assert "Sfstream_Demo__e" not in banner  # the default applies only without --event
    assert "/data/AccountChangeEvent" in banner
    assert value(banner, "refresh token") == "5Aep861sfstreamEmulatorRefreshToken"
    stop.set()
    assert await task == 0
    assert "stopped" in out.getvalue()


async def test_defaults_need_no_flags() -> None:
    args = parse("--port", "0")
    org = _cli.build_emulator(args)
    assert org.config.host == "127.0.0.1"
    assert "Sfstream_Demo__e" in org.state.platform_events
    assert org.config.hold_time == 110.0
    assert org.config.session_expiry == 40.0
    assert _cli.build_emulator(parse()).config.port == _cli.DEFAULT_PORT


async def test_every_flag(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    args = parse(
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--public-host",
        "localhost",
        "--consumer-key",
        "ck",
        "--consumer-secret",
        "cs",
        "--username",
        "u@x.org",
        "--password",
        "pw",
        "--security-token",
        "tok",
        "--refresh-token",
        "rt",
        "--refresh-token-rotation",
        "--jwt-public-key",
        str(pem),
        "--no-client-credentials",
        "--token-lifetime",
        "60",
        "--event",
        "E__e",
        "--push-topic",
        "Accounts=SELECT Id, Name FROM Account",
        "--streaming-channel",
        "/u/news",
        "--channel",
        "/event/All__chn=E__e",
        "--cdc-entity",
        "Contact",
        "--api-version",
        "66.0",
        "--hold-time",
        "1",
        "--session-expiry",
        "2",
        "--retention",
        "3",
        "--high-volume-retention",
        "4",
        "--clock-offset",
        "100",
        "--max-batch",
        "5",
        "--max-request-size",
        "6000",
        "--no-cookie-check",
        "--no-admin",
        "--state-file",
        str(tmp_path / "s.jsonl"),
    )
    org = _cli.build_emulator(args)
    config = org.config
    assert (config.consumer_key, config.consumer_secret, config.username) == ("ck", "cs", "u@x.org")
    assert org.password == "pwtok"
    assert config.refresh_token == "rt"
    assert config.refresh_token_rotation
    assert config.jwt_key is not None
    assert not config.client_credentials
    assert config.token_lifetime == 60
    assert config.api_version == "66.0"
    assert (config.hold_time, config.session_expiry) == (1, 2)
    assert (config.retention, config.high_volume_retention) == (3, 4)
    assert (config.max_batch, config.max_request_size) == (5, 6000)
    assert not config.require_cookie
    assert not config.admin
    assert org.state.cdc_entities == {"Contact"}
    assert org.state.topic_by_name("Accounts") is not None
    assert org.state.custom_channels["/event/All__chn"].members == {"E__e"}
    assert org.state.streaming_channel_by_name("/u/news") is not None
    await org.start()
    try:
        assert org.base_url.startswith("http://localhost:")
    finally:
        await org.stop()


@pytest.mark.parametrize("suffix", [".json", ".toml"])
async def test_config_files(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"emulator{suffix}"
    if suffix == ".json":
        path.write_text(
            json.dumps(
                {
                    "port": 0,
                    "hold-time": 2.5,
                    "events": ["F__e"],
                    "username": "file@x.org",
                    "push_topics": {"T": "SELECT Id FROM Account"},
                    "channels": {"/event/G__chn": ["F__e"]},
                    "refresh-token-rotation": True,
                }
            )
        )
    else:
        path.write_text(
            '[emulator]\nport = 0\nhold-time = 2.5\nevents = ["F__e"]\nusername = "file@x.org"\n'
            "refresh-token-rotation = true\n"
            '[emulator.push_topics]\nT = "SELECT Id FROM Account"\n'
            '[emulator.channels]\n"/event/G__chn" = ["F__e"]\n'
        )
    org = _cli.build_emulator(parse("--config", str(path), "--event", "H__e", "--hold-time", "3"))
    assert org.config.hold_time == 3  # flags win over the file
    assert org.config.username == "file@x.org"
    assert org.config.refresh_token_rotation
    assert set(org.state.platform_events) == {"F__e", "H__e"}
    assert org.state.topic_by_name("T") is not None
    assert "/event/G__chn" in org.state.custom_channels


@pytest.mark.parametrize(
    ("content", "suffix"),
    [
        ('{"bogus": 1}', ".json"),
        ("[1]", ".json"),
        ('{"emulator": 5}', ".json"),
        ('{"push_topics": ["x"]}', ".json"),
    ],
)
async def test_bad_config_files(tmp_path: Path, content: str, suffix: str) -> None:
    path = tmp_path / f"c{suffix}"
    path.write_text(content)
    assert await _cli.run(parse("--config", str(path)), out=io.StringIO()) == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["--push-topic", "no-equals-sign"],
        ["--channel", "=x"],
        ["--config", "/nonexistent/file.json"],
        ["--hold-time", "-1"],
        ["--jwt-public-key", "/nonexistent.pem"],
    ],
)
async def test_bad_arguments(argv: list[str]) -> None:
    assert await _cli.run(parse("--port", "0", *argv), out=io.StringIO()) == 2


async def test_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert await _cli.run(parse("--port", str(port)), out=io.StringIO()) == 2


async def test_python_dash_m_serves_until_interrupted(http: aiohttp.ClientSession) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sfstream.emulator",
        "--port",
        "0",
        "-v",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    lines = []
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        assert line, "the emulator exited early"
        lines.append(line)
        if "Press Ctrl+C" in line:
            break
    banner = "".join(lines)
    login = value(banner, "login URL")
    async with http.post(
        f"{login}/services/oauth2/token",
        params={"token": "secret-in-query"},
        data={
            "grant_type": "password",
            "client_id": value(banner, "consumer key"),
            "client_secret": value(banner, "consumer secret"),
            "username": value(banner, "username"),
            "password": value(banner, "password"),
        },
    ) as response:
        assert response.status == 200
    process.send_signal(signal.SIGINT)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0
    assert "stopped" in stdout.decode()
    log = stderr.decode()
    assert "POST /services/oauth2/token 200" in log  # -v logs requests ...
    assert "secret-in-query" not in log  # ... without query strings
    assert value(banner, "password") not in log


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["--prot", "0"],
            "python -m sfstream.emulator: unknown option --prot — did you mean --port? "
            "(python -m sfstream.emulator --help shows every option)",
        ),
        (
            ["--port", "abc"],
            "python -m sfstream.emulator: argument --port: invalid int value: 'abc' — "
            "python -m sfstream.emulator --help shows every option",
        ),
    ],
)
def test_main_usage_errors_are_one_line(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _cli.main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == line + "\n"  # not argparse's 29-line usage block


def test_main_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "--consumer-key" in capsys.readouterr().out


# -- declared event fields, the exports, the port hint ------------------------------------------


def test_event_fields_on_the_command_line() -> None:
    org = _cli.build_emulator(
        parse("--port", "0", "--event", "Order__e:OrderId__c, Amount__c", "--event", "Ship__e")
    )
    events = org.state.platform_events
    assert events["Order__e"].fields == frozenset({"OrderId__c", "Amount__c"})
    assert events["Ship__e"].fields == frozenset()  # a bare name declares no custom fields
    assert (
        _cli.build_emulator(parse("--event", "Empty__e:")).state.platform_events["Empty__e"].fields
        == frozenset()
    )


@pytest.mark.parametrize("event", ["Order", "Order:Amount__c", "Order__e:Amount", ":A__c"])
async def test_an_event_name_without_e_or_a_bad_field_is_refused(
    event: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _cli.run(parse("--port", "0", "--event", event)) == 2
    error = capsys.readouterr().err
    assert error.startswith("sfstream emulator: ")
    assert "__e" in error or "__c" in error
    assert "Traceback" not in error


def test_event_fields_in_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "org.toml"
    path.write_text('[emulator]\nevents = {Order__e = ["Amount__c"], Ship__e = []}\n')
    org = _cli.build_emulator(parse("--config", str(path), "--event", "Extra__e:N__c"))
    events = org.state.platform_events
    assert events["Order__e"].fields == frozenset({"Amount__c"})
    assert events["Ship__e"].fields == frozenset()
    assert events["Extra__e"].fields == frozenset({"N__c"})
    listed = tmp_path / "org.json"
    listed.write_text(json.dumps({"events": ["A__e:X__c", "B__e"]}))
    events = _cli.build_emulator(parse("--config", str(listed))).state.platform_events
    assert (events["A__e"].fields, events["B__e"].fields) == (frozenset({"X__c"}), frozenset())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"events": {"A__e": "X__c"}}))
    with pytest.raises(ValueError, match="list of names"):
        _cli.build_emulator(parse("--config", str(bad)))
    bad.write_text(json.dumps({"events": "A__e"}))
    with pytest.raises(ValueError, match="a list of names or a table"):
        _cli.build_emulator(parse("--config", str(bad)))


async def test_the_banner_says_how_to_declare_fields() -> None:
    task, out, stop = await serve(parse("--port", "0", "--event", "A__e:X__c", "--event", "B__e"))
    stop.set()
    assert await task == 0
    banner = out.getvalue()
    assert "/event/A__e  (X__c)" in banner
    assert "/event/B__e  (no custom fields; declare them: --event B__e:A__c,B__c)" in banner


async def test_the_banner_exports_what_sfstream_listen_reads(http: aiohttp.ClientSession) -> None:
    from sfstream.cli._credentials import ENVIRONMENT, resolve_credentials

    task, out, stop = await serve(
        parse(
            "--port", "0", "--password", "p w'd", "--security-token", "tok", "--api-version", "60.0"
        )
    )
    try:
        lines = [line.strip() for line in out.getvalue().splitlines()]
        exported = [line for line in lines if line.startswith("export ")]
        environ = dict(shlex.split(line)[1].split("=", 1) for line in exported)
        assert set(environ) <= set(ENVIRONMENT.values())
        assert environ["SFSTREAM_API_VERSION"] == "60.0"
        credentials = resolve_credentials(argparse.Namespace(), environ)
        assert credentials.flow == "password"
        form = {
            "grant_type": "password",
            "client_id": credentials.get("consumer_key"),
            "client_secret": credentials.get("consumer_secret"),
            "username": credentials.get("username"),
            "password": credentials.get("password") + credentials.get("security_token"),
        }
        async with http.post(f"{credentials.login_url}/services/oauth2/token", data=form) as reply:
            assert reply.status == 200
    finally:
        stop.set()
        assert await task == 0


async def test_a_taken_port_suggests_port_0(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert await _cli.run(parse("--port", str(port))) == 2
    error = capsys.readouterr().err
    assert error == (
        f"sfstream emulator: cannot listen: port {port} is taken (another emulator?) — use "
        "--port 0 for a free port, or --port N for another one\n"
    )  # one line: no errno and address tuple before it
