"""Every credential option builds the right authenticator, and each one really logs in."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sfstream import (
    AccessTokenAuthenticator,
    ClientCredentialsAuthenticator,
    PasswordAuthenticator,
    RefreshTokenAuthenticator,
)
from sfstream.cli import _credentials, build_parser
from sfstream.cli._credentials import (
    Credentials,
    build_authenticator,
    resolve_credentials,
    sf_org_display,
    terminal_password_prompt,
)
from sfstream.cli._errors import CliError, ExitCode
from sfstream.emulator import EmulatorThread
from tests.cli.conftest import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    EVENT,
    PASSWORD,
    REFRESH_TOKEN,
    ROOT,
    SECURITY_TOKEN,
    USERNAME,
    CliRunner,
    json_lines,
    password_args,
    password_env,
)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["listen", "/event/X__e", *argv])


def resolve(*argv: str, env: dict[str, str] | None = None, **kwargs: Any) -> Credentials:
    return resolve_credentials(parse(*argv), env or {}, **kwargs)


def private_key_pem() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


# -- choosing the flow ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "flow", "kind"),
    [
        (
            ["--consumer-key", "k", "--consumer-secret", "s", "--username", "u", "--password", "p"],
            "password",
            PasswordAuthenticator,
        ),
        (
            ["--consumer-key", "k", "--refresh-token", "r"],
            "refresh-token",
            RefreshTokenAuthenticator,
        ),
        (
            ["--access-token", "tok-123", "--instance-url", "https://acme.my.salesforce.com"],
            "access-token",
            AccessTokenAuthenticator,
        ),
        (
            [
                "--consumer-key",
                "k",
                "--consumer-secret",
                "s",
                "--client-credentials",
                "--login-url",
                "https://acme.my.salesforce.com",
            ],
            "client-credentials",
            ClientCredentialsAuthenticator,
        ),
    ],
)
def test_flags_choose_the_flow(argv: list[str], flow: str, kind: type[Any]) -> None:
    credentials = resolve(*argv)
    assert credentials.flow == flow
    assert type(build_authenticator(credentials)) is kind


def test_environment_variables_are_read() -> None:
    env = {
        "SFSTREAM_CONSUMER_KEY": "k",
        "SFSTREAM_CONSUMER_SECRET": "s",
        "SFSTREAM_USERNAME": "u@example.com",
        "SFSTREAM_PASSWORD": "p",
        "SFSTREAM_SECURITY_TOKEN": "t",
        "SFSTREAM_SANDBOX": "yes",
        "SFSTREAM_API_VERSION": "61.0",
    }
    credentials = resolve(env=env)
    assert credentials.flow == "password"
    assert credentials.api_version == "61.0"
    auth = build_authenticator(credentials)
    assert isinstance(auth, PasswordAuthenticator)
    assert auth.password == "pt"
    assert auth.token_url == "https://test.salesforce.com/services/oauth2/token"
    assert "p" not in repr(credentials).replace("password", "").replace("api", "")


def test_flags_choose_before_the_environment() -> None:
    env = {"SFSTREAM_USERNAME": "u", "SFSTREAM_PASSWORD": "p", "SFSTREAM_CONSUMER_KEY": "k"}
    credentials = resolve(
        "--access-token", "abcd", "--instance-url", "https://x.example.com", env=env
    )
    assert credentials.flow == "access-token"
    # and a flag value wins over its variable
    assert (
        resolve("--username", "flag", env={**env, "SFSTREAM_CONSUMER_SECRET": "s"}).get("username")
        == "flag"
    )


def test_key_and_secret_alone_mean_client_credentials() -> None:
    env = {"SFSTREAM_CONSUMER_KEY": "k", "SFSTREAM_CONSUMER_SECRET": "s"}
    credentials = resolve("--login-url", "https://acme.my.salesforce.com", env=env)
    assert credentials.flow == "client-credentials"


def test_explicit_auth_and_missing_values() -> None:
    with pytest.raises(CliError) as info:
        resolve("--auth", "jwt", "--username", "u")
    assert info.value.code is ExitCode.USAGE
    assert "--jwt-key (SFSTREAM_JWT_KEY_FILE)" in str(info.value)
    assert "--consumer-key (SFSTREAM_CONSUMER_KEY)" in str(info.value)
    with pytest.raises(CliError, match="no credentials"):
        resolve()


def test_a_missing_password_is_asked_for_on_a_terminal() -> None:
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return "typed"

    credentials = resolve(
        "--consumer-key", "k", "--consumer-secret", "s", "--username", "u", ask_password=ask
    )
    assert credentials.get("password") == "typed"
    assert asked == ["Password for u: "]
    assert credentials.secrets() == ["s", "typed"]


def _on_a_terminal(org: EmulatorThread, answer: bytes | None) -> tuple[int, str]:
    """``sfstream listen`` on a pseudo-terminal without a password: at the prompt, type
    ``answer`` and Enter (None: nothing), then press Ctrl-C; (exit status, what it showed)."""
    env = {**os.environ, **password_env(org)}
    del env["SFSTREAM_PASSWORD"]
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "sfstream", "listen", EVENT], env)  # noqa: S606
    shown = b""

    def read_until(text: bytes) -> None:
        nonlocal shown
        deadline = time.monotonic() + 20
        while text not in shown and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                with contextlib.suppress(OSError):
                    shown += os.read(fd, 4096)

    try:
        read_until(b"Password for ")
        if answer is not None:
            os.write(fd, answer + b"\r")
            read_until(b"waiting for events")
        os.write(fd, b"\x03")  # Ctrl-C, as the terminal sends it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")
            if select.select([fd], [], [], 0.1)[0]:
                with contextlib.suppress(OSError):
                    shown += os.read(fd, 4096)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return -1, shown.decode(errors="replace")
    finally:
        os.close(fd)


def test_ctrl_c_at_the_password_prompt_interrupts(org: EmulatorThread) -> None:
    # The prompt read on while the event loop's SIGINT handler took note: Ctrl-C did nothing
    # until Enter.
    code, shown = _on_a_terminal(org, None)
    assert code == 130, shown
    assert "Traceback" not in shown


def test_the_password_typed_at_the_prompt_logs_in(org: EmulatorThread) -> None:
    code, shown = _on_a_terminal(org, (PASSWORD + SECURITY_TOKEN).encode())
    assert "connected to" in shown
    assert code == 130, shown  # and Ctrl-C then stops listen as before
    assert PASSWORD not in shown.replace("Password for", "")


def test_no_prompt_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Pipe:
        def isatty(self) -> bool:
            return False

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Pipe())
    assert terminal_password_prompt() is None
    monkeypatch.setattr(sys, "stdin", Tty())
    assert terminal_password_prompt() is not None


def test_refused_values_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="plain http") as info:
        build_authenticator(
            resolve(
                "--consumer-key", "k", "--refresh-token", "r", "--login-url", "http://example.com"
            )
        )
    assert info.value.code is ExitCode.USAGE
    missing = tmp_path / "missing.pem"
    jwt = ("--consumer-key", "k", "--username", "u", "--jwt-key")
    with pytest.raises(CliError, match=r"missing\.pem") as info:
        build_authenticator(resolve(*jwt, str(missing)))
    assert info.value.code is ExitCode.USAGE
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(CliError, match="could not be loaded"):
        build_authenticator(resolve(*jwt, str(garbage)))


_TOKEN = ("--access-token", "abcd", "--instance-url", "https://x.example.com")


@pytest.mark.parametrize("version", ["abc", "v62.0", "62.0/../x", "62.0?x=1", "", "62."])
def test_a_malformed_api_version_is_a_usage_error(version: str) -> None:
    # It went into the URLs as given: "Unsupported API version" (exit 1) from the CometD
    # endpoint, or a 404 that publish blamed on the platform event's name.
    with pytest.raises(CliError, match="expected an API version such as") as info:
        resolve(*_TOKEN, "--api-version", version)
    assert info.value.code is ExitCode.USAGE
    assert str(info.value).startswith(f"--api-version {version!r}")


def test_a_malformed_api_version_in_the_environment_is_named_as_such() -> None:
    with pytest.raises(CliError, match=r"SFSTREAM_API_VERSION 'v62\.0'"):
        resolve(*_TOKEN, env={"SFSTREAM_API_VERSION": "v62.0"})
    assert resolve(*_TOKEN, env={"SFSTREAM_API_VERSION": "62.0"}).api_version == "62.0"
    assert resolve(*_TOKEN, "--api-version", "9.10").api_version == "9.10"


@pytest.mark.parametrize("name", ["SFSTREAM_SANDBOX", "SFSTREAM_CLIENT_CREDENTIALS"])
def test_a_yes_no_variable_takes_only_yes_or_no(name: str) -> None:
    # Any other value was read as "no": SFSTREAM_SANDBOX=sandbox logged in to production.
    with pytest.raises(CliError, match=f"{name}='sandbox': expected 1, true") as info:
        resolve(*_TOKEN, env={name: "sandbox"})
    assert info.value.code is ExitCode.USAGE
    for word, meaning in (("On", True), (" 1 ", True), ("off", False), ("FALSE", False)):
        assert resolve(*_TOKEN, env={name: word}).get(name[9:].lower()) is meaning


@pytest.mark.parametrize(
    ("argv", "start", "hint"),
    [
        (
            ("--consumer-key", "k", "--refresh-token", "r", "--login-url", "acme.example.com"),
            "--login-url (SFSTREAM_LOGIN_URL) must be an absolute https:// URL",
            "https://acme.my.salesforce.com",
        ),
        (
            ("--access-token", "abcd", "--instance-url", "acme.example.com"),
            "--instance-url (SFSTREAM_INSTANCE_URL) must be an absolute https:// URL",
            "sf org display",
        ),
    ],
)
def test_a_refused_url_names_its_option(argv: tuple[str, ...], start: str, hint: str) -> None:
    # The message named the library's parameter (login_url, instance_url), with no hint.
    with pytest.raises(CliError) as info:
        build_authenticator(resolve(*argv))
    assert info.value.code is ExitCode.USAGE
    assert info.value.message.startswith(start)
    assert hint in info.value.hint


def test_an_unknown_flow_in_the_environment_is_a_usage_error() -> None:
    # It was "unexpected error: KeyError: 'bogus'", exit 1.
    with pytest.raises(CliError, match="SFSTREAM_AUTH='bogus': not a flow") as info:
        resolve(env={"SFSTREAM_AUTH": "bogus", "SFSTREAM_USERNAME": "u"})
    assert info.value.code is ExitCode.USAGE
    assert info.value.hint.startswith("one of sf-org, access-token, jwt")


def test_jwt_without_its_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise ImportError(
            "JwtBearerAuthenticator needs PyJWT: pip install '.[jwt]' in the sfstream checkout"
        )

    monkeypatch.setattr(_credentials, "JwtBearerAuthenticator", missing)
    with pytest.raises(CliError, match=r"'\.\[jwt\]' in the sfstream checkout") as info:
        build_authenticator(
            resolve("--consumer-key", "k", "--username", "u", "--jwt-key", str(tmp_path / "k.pem"))
        )
    assert info.value.code is ExitCode.ERROR


# -- every flow against the emulator --------------------------------------------------------------


def listen_one(cli: CliRunner, org: EmulatorThread, *creds: str) -> list[dict[str, Any]]:
    org.publish(EVENT, {"Amount__c": 1})
    run = cli("listen", EVENT, "--replay", "all", "--json", "--count", "1", *creds)
    assert run.code == 0, run.err
    run.assert_no_secret()
    return json_lines(run.out)


def test_password_flow(cli: CliRunner, org: EmulatorThread) -> None:
    assert len(listen_one(cli, org, *password_args(org))) == 1


def test_refresh_token_flow(cli: CliRunner, org: EmulatorThread) -> None:
    creds = (
        "--login-url",
        org.login_url,
        "--consumer-key",
        CONSUMER_KEY,
        "--consumer-secret",
        CONSUMER_SECRET,
        "--refresh-token",
        REFRESH_TOKEN,
    )
    assert len(listen_one(cli, org, *creds)) == 1


def test_client_credentials_flow(cli: CliRunner, org: EmulatorThread) -> None:
    creds = (
        "--login-url",
        org.login_url,
        "--consumer-key",
        CONSUMER_KEY,
        "--consumer-secret",
        CONSUMER_SECRET,
        "--client-credentials",
    )
    assert len(listen_one(cli, org, *creds)) == 1


def test_access_token_flow(cli: CliRunner, org: EmulatorThread) -> None:
    token = org.call(org.emulator.issue_access_token)
    assert (
        len(listen_one(cli, org, "--access-token", token, "--instance-url", org.instance_url)) == 1
    )


def test_jwt_flow(cli: CliRunner, org: EmulatorThread, tmp_path: Path) -> None:
    private, public = private_key_pem()
    org.call(org.emulator.set_jwt_public_key, public)
    key = tmp_path / "server.key"
    key.write_bytes(private)
    creds = (
        "--login-url",
        org.login_url,
        "--consumer-key",
        CONSUMER_KEY,
        "--username",
        USERNAME,
        "--jwt-key",
        str(key),
    )
    assert len(listen_one(cli, org, *creds)) == 1
    other, _ = private_key_pem()
    key.write_bytes(other)
    run = cli("listen", EVENT, *creds)
    run.assert_one_error_line(3, "invalid_grant: invalid assertion", "--jwt-key")
    assert other.decode() not in run.all


def test_jwt_flow_from_the_environment(
    sfstream: CliRunner, org: EmulatorThread, tmp_path: Path
) -> None:
    private, public = private_key_pem()
    org.call(org.emulator.set_jwt_public_key, public)
    key = tmp_path / "server.key"
    key.write_bytes(private)
    org.publish(EVENT, {"Amount__c": 1})
    env = {
        "SFSTREAM_LOGIN_URL": org.login_url,
        "SFSTREAM_CONSUMER_KEY": CONSUMER_KEY,
        "SFSTREAM_USERNAME": USERNAME,
        "SFSTREAM_JWT_KEY_FILE": str(key),
    }
    run = sfstream("listen", EVENT, "--replay", "all", "--json", "--count", "1", env=env)
    assert run.code == 0, run.err
    assert len(json_lines(run.out)) == 1


# -- sf org display -------------------------------------------------------------------------------


def fake_sf(directory: Path, output: dict[str, Any] | str, status: int = 0) -> Path:
    """An ``sf`` executable that prints ``output`` and exits with ``status``."""
    directory.mkdir(exist_ok=True)
    text = output if isinstance(output, str) else json.dumps(output)
    script = directory / "sf"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "assert sys.argv[1:4] == ['org', 'display', '--json'], sys.argv\n"
        "assert sys.argv[4] == '--target-org', sys.argv\n"
        f"sys.stdout.write({text!r})\n"
        f"sys.exit({status})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return directory


def on_path(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")


def test_sf_org(
    cli: CliRunner, org: EmulatorThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = org.call(org.emulator.issue_access_token)
    result = {"accessToken": token, "instanceUrl": org.instance_url, "username": USERNAME}
    on_path(monkeypatch, fake_sf(tmp_path / "bin", {"status": 0, "result": result}))
    messages = listen_one(cli, org, "--sf-org", "my-scratch")
    assert len(messages) == 1
    run = cli("listen", EVENT, "--replay", "all", "--count", "1", "--trace", "--sf-org", "x")
    assert run.code == 0
    run.assert_no_secret(token)
    published = cli("publish", EVENT, '{"Amount__c": 2}', "--sf-org", "my-scratch")
    assert published.code == 0, published.err


def test_sf_org_in_a_subprocess(sfstream: CliRunner, org: EmulatorThread, tmp_path: Path) -> None:
    token = org.call(org.emulator.issue_access_token)
    result = {"accessToken": token, "instanceUrl": org.instance_url}
    directory = fake_sf(tmp_path / "bin", {"status": 0, "result": result})
    org.publish(EVENT, {"Amount__c": 1})
    run = sfstream(
        "listen",
        EVENT,
        "--replay",
        "all",
        "--count",
        "1",
        "--sf-org",
        "dev",
        env={"PATH": f"{directory}{os.pathsep}{os.environ['PATH']}"},
    )
    assert run.code == 0, run.err
    run.assert_no_secret(token)


def test_sf_org_without_alias_uses_the_cli_default(
    cli: CliRunner, org: EmulatorThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = org.call(org.emulator.issue_access_token)
    result = {"accessToken": token, "instanceUrl": org.instance_url}
    on_path(monkeypatch, fake_sf(tmp_path / "bin", {"status": 0, "result": result}))
    home = tmp_path / "home"
    (home / ".sf").mkdir(parents=True)
    (home / ".sf" / "config.json").write_text('{"target-org": "my-default"}')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SF_TARGET_ORG", raising=False)
    org.publish(EVENT, {"Amount__c": 1})
    for argv in (
        [EVENT, "--replay", "all", "--sf-org"],
        ["--sf-org", EVENT, "--replay", "all"],  # the channel is no alias
    ):
        run = cli("listen", *argv, "--json", "--count", "1")
        assert run.code == 0, run.err
        assert len(json_lines(run.out)) == 1
        run.assert_no_secret(token)
    assert resolve("--sf-org").flow == "sf-org"
    assert resolve("--auth", "sf-org").flow == "sf-org"
    (home / ".sf" / "config.json").unlink()
    # The fake sf insists on --target-org, as a CLI without a default org would fail.
    cli("listen", EVENT, "--sf-org").assert_one_error_line(3, "sf org display")


def test_sf_org_failures(cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing = {"status": 1, "name": "NoOrgFound", "message": "No authorization for nope"}
    on_path(monkeypatch, fake_sf(tmp_path / "a", failing, status=1))
    cli("listen", EVENT, "--sf-org", "nope").assert_one_error_line(
        3,
        "sf org display --target-org nope failed: No authorization for nope",
        "sf org login web --alias nope",
    )
    secret_garbage = "Warning: 00Dxx!AQ0AQsecret-token-like-output"
    on_path(monkeypatch, fake_sf(tmp_path / "b", secret_garbage))
    run = cli("listen", EVENT, "--sf-org", "x")
    run.assert_one_error_line(3, "printed no JSON")
    assert "secret-token-like" not in run.all
    on_path(monkeypatch, fake_sf(tmp_path / "c", {"status": 0, "result": {}}))
    cli("listen", EVENT, "--sf-org", "x").assert_one_error_line(3, "failed: no access token")


def test_sf_missing(cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    cli("listen", EVENT, "--sf-org", "x").assert_one_error_line(
        3, "the Salesforce CLI (sf) is not installed or not on PATH", "sf org login web"
    )


def test_sf_that_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path(monkeypatch, fake_sf(tmp_path / "bin", "{}"))

    def broken(*_args: Any, **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired("sf", 60)

    with pytest.raises(CliError, match="cannot run sf org display --target-org x: TimeoutExpired"):
        sf_org_display("x", run=broken)


# -- the wrong password ---------------------------------------------------------------------------


def test_bad_credentials_are_one_line_with_exit_3(cli: CliRunner, org: EmulatorThread) -> None:
    creds = password_args(org)
    creds[creds.index(PASSWORD)] = "Wr0ng-guess-never-printed"
    run = cli("listen", EVENT, *creds)
    line = run.assert_one_error_line(3)
    assert line == (
        "sfstream: authentication failed: invalid_grant: authentication failure"
        " — check username/password/security token"
    )
    run.assert_no_secret("Wr0ng-guess-never-printed")
    assert SECURITY_TOKEN not in run.all
