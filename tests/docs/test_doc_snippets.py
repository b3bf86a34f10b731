"""Every ```python block of the documentation runs, against an emulated org.

The pages are ``docs/**/*.md`` and ``README.md``. How a block runs is said by an HTML comment on
the line before its fence (invisible on GitHub and in the built site):

(no comment)
    A complete program. It runs in a subprocess (``_run_snippet.py``) against the emulated org
    of the test (:data:`DOCS_ORG`), with the placeholders of :func:`placeholders` replaced
    (``"<consumer key>"``, ``http://127.0.0.1:8808``...) and the default login hosts pointing
    at the org. Once it has subscribed, one event is published on each of its channels. It
    must exit with status 0, or print a line per published event (then it is stopped). When a
    ```text block follows it, that is exactly what it must print.
``<!-- run: CONTEXT -->``
    A fragment run in-process in one of the :data:`CONTEXTS`: it may ``await`` at top level and
    use the names a reader would have at that point (``org``, ``client``, the public names of
    ``sfstream``, ``sfstream.bayeux`` and ``sfstream.emulator``), and ``...`` as the first
    argument of a client stands for the org's credentials. It must end without an exception,
    or, if it loops forever, do what the context waits for (then it is cancelled).
``<!-- fragment -->``
    A fragment that cannot run on its own; it must compile.

So a page that gains a python block without a comment gets it run as a program: every block is
either run or explicitly marked. :data:`RUN_ELSEWHERE` lists the blocks that other tests run.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import os
import re
import signal
import sys
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import sfstream
import sfstream.bayeux
import sfstream.emulator
from sfstream import ReplayMarkerStoragePolicy, SalesforceStreamingClient
from sfstream.bayeux import Message, Request
from sfstream.emulator import Emulator
from sfstream.salesforce import _auth
from sfstream.testing import emulator_credentials
from tests.driver.fake_server import FakeBayeuxServer

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("_run_snippet.py")
PAGES = sorted(
    path
    for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    if "_build" not in path.parts
)
#: Seconds a snippet may take.
TIMEOUT = 20.0

#: The org every snippet runs against: what the pages subscribe to must exist here.
DOCS_ORG: dict[str, Any] = {
    "events": {"Order__e": ["Amount__c", "N__c"], "Order_Shipped__e": ["Amount__c", "N__c"]},
    "streaming_channels": ["/u/news"],
    "hold_time": 0.3,
    "session_expiry": 5.0,
}

HOW_TO_MARK = (
    "A python block without a marker comment runs as a complete program against the emulator. "
    "If it cannot, put <!-- run: CONTEXT --> (one of CONTEXTS) or <!-- fragment --> on the line "
    "before its fence; see the docstring of tests/docs/test_doc_snippets.py."
)

#: (page, section heading) -> the test that runs the python blocks of that section.
RUN_ELSEWHERE = {
    ("README.md", "The Bayeux client"): "tests/interop/test_readme_example.py",
}

# -- finding the blocks -----------------------------------------------------------------------

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_PYTHON_INFO = re.compile(r"^(?:python3?|py|\{code(?:-block|-cell)?\}\s+python3?)\b")
_MARKER = re.compile(r"^\s*<!--\s*(?P<marker>.*?)\s*-->\s*$")
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*$")


@dataclass(frozen=True)
class Block:
    """One python block of a page."""

    page: Path
    line: int  # of the opening fence, 1-based
    code: str
    marker: str | None
    heading: str
    output: str | None = None  # the ```text block right after it, if any

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def extract_blocks(page: Path) -> list[Block]:
    """The python blocks of ``page``, with the marker comment and heading before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    heading = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        if title := _HEADING.match(line):
            heading = title["title"]
        fence = _FENCE.match(line)
        if fence is None:
            index += 1
            continue
        body, end = _fenced_body(lines, index, fence)
        info = fence["info"].strip()
        if _PYTHON_INFO.match(info):
            blocks.append(
                Block(
                    page=page,
                    line=index + 1,
                    code=body,
                    marker=_marker_before(lines, index),
                    heading=heading,
                    output=_output_after(lines, end),
                )
            )
        index = end + 1
    return blocks


def _fenced_body(lines: list[str], start: int, fence: re.Match[str]) -> tuple[str, int]:
    indent, mark = len(fence["indent"]), fence["fence"]
    body: list[str] = []
    for end in range(start + 1, len(lines)):
        stripped = lines[end].strip()
        if stripped.startswith(mark[0] * len(mark)) and not stripped.strip(mark[0]):
            return "\n".join(body) + "\n", end
        body.append(lines[end][indent:])
    raise AssertionError(f"{start + 1}: unclosed code fence")


def _marker_before(lines: list[str], index: int) -> str | None:
    for previous in reversed(lines[:index]):
        if previous.strip():
            match = _MARKER.match(previous)
            return match["marker"] if match else None
    return None


def _output_after(lines: list[str], end: int) -> str | None:
    for index in range(end + 1, len(lines)):
        if not lines[index].strip():
            continue
        fence = _FENCE.match(lines[index])
        if fence is None or fence["info"].strip() != "text":
            return None
        return _fenced_body(lines, index, fence)[0]
    return None


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in extract_blocks(page)]


def _blocks_where(keep: Callable[[Block], bool]) -> list[Any]:
    return [pytest.param(block, id=block.name) for block in all_blocks() if keep(block)]


def _is_pytest_block(block: Block) -> bool:
    return block.marker == "run: pytest"


def _elsewhere(block: Block) -> str | None:
    return RUN_ELSEWHERE.get((block.page.name, block.heading))


# -- running them -----------------------------------------------------------------------------


def placeholders(org: Emulator) -> dict[str, str]:
    """Text of the pages -> what it becomes against ``org``."""
    values = {
        '"<consumer key>"': org.consumer_key,
        '"<consumer secret>"': org.consumer_secret,
        '"<username>"': org.username,
        '"<password>"': org.password,
        '"<refresh token>"': org.refresh_token or "",
        '"https://MyDomainName.my.salesforce.com"': org.login_url,
        '"https://acme.my.salesforce.com"': org.login_url,
        '"http://127.0.0.1:8808"': org.login_url,
    }
    return {text: repr(value) for text, value in values.items()}


def substitute(code: str, org: Emulator) -> str:
    for text, value in placeholders(org).items():
        code = code.replace(text, value)
    return code


async def publish_to(org: Emulator, channel: str) -> None:
    """Publish one event that a subscription to ``channel`` receives."""
    if channel.startswith("/event/"):
        await org.publish(channel, {"Amount__c": 42})
    elif channel.startswith("/u/"):
        await org.publish(channel, "hello")
    elif match := re.fullmatch(r"/data/(\w+?)(?:__)?ChangeEvent", channel):
        org.create_record(match[1], {"Name": "Acme"})
    elif channel == "/data/ChangeEvents":
        org.create_record("Account", {"Name": "Acme"})
    else:
        raise AssertionError(f"the docs' test cannot publish to {channel}")


class Feeder:
    """Publishes one event on every channel a client of ``org`` subscribes to."""

    def __init__(self, org: Emulator) -> None:
        self.org = org
        self.published: dict[str, int] = {}  # channel -> its last replay id

    async def feed(self) -> int:
        """Publish on the channels subscribed to since the last call; return how many."""
        count = 0
        for session in self.org.sessions():
            for channel in session["subscriptions"]:
                if channel not in self.published:
                    await publish_to(self.org, channel.partition("?")[0])
                    self.published[channel] = len(self.org.events(channel.partition("?")[0]))
                    count += 1
        return count

    def delivered(self) -> bool:
        """True once every published event was sent to a subscriber."""
        cursors: dict[str, int] = {}
        for session in self.org.sessions():
            for channel, cursor in session["subscriptions"].items():
                cursors[channel] = max(cursors.get(channel, 0), cursor)
        return bool(self.published) and all(
            cursors.get(channel, 0) >= last for channel, last in self.published.items()
        )


def public_names() -> dict[str, Any]:
    names: dict[str, Any] = {}
    for module in (sfstream.bayeux, sfstream.emulator, sfstream):
        names.update({name: getattr(module, name) for name in module.__all__})
    return names


def compile_fragment(block: Block, code: str | None = None) -> types.CodeType:
    compiled: types.CodeType = compile(
        code if code is not None else block.code,
        block.name,
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )
    return compiled


async def run_fragment(
    block: Block,
    code: str,
    namespace: dict[str, Any],
    done: Callable[[], bool] | None = None,
    tick: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Run ``code``; if it is still running when ``done()`` turns true, cancel it."""
    compiled = compile_fragment(block, code)

    async def execute() -> None:
        result = eval(compiled, namespace)  # noqa: S307 - the docs' own code
        if inspect.isawaitable(result):
            await result

    task = asyncio.create_task(execute())
    async with asyncio.timeout(TIMEOUT):
        while not task.done():
            if tick is not None:
                await tick()
            if done is not None and done():
                await asyncio.sleep(0.1)  # let the block handle what it got
                task.cancel()
                break
            await asyncio.sleep(0.02)
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


def docs_org_marker() -> pytest.MarkDecorator:
    marker: pytest.MarkDecorator = pytest.mark.sfstream_emulator(**DOCS_ORG)
    return marker


@contextlib.contextmanager
def login_hosts_at(org: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_auth, "PRODUCTION_LOGIN_URL", org.login_url)
    monkeypatch.setattr(_auth, "SANDBOX_LOGIN_URL", org.login_url)
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(variable, raising=False)
    yield


def write_test_files(folder: Path, org: Emulator) -> None:
    """Files the fragments read: a JWT key the org trusts, a CA bundle."""
    (folder / "server.key").write_text(org.generate_jwt_key())
    (folder / "corporate-ca.pem").write_bytes(_self_signed_certificate())


def _self_signed_certificate() -> bytes:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfstream docs test CA")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass
class Context:
    """What a ``<!-- run: NAME -->`` fragment runs with."""

    namespace: dict[str, Any] = field(default_factory=public_names)
    done: Callable[[], bool] | None = None
    tick: Callable[[], Awaitable[object]] | None = None
    check: Callable[[], None] | None = None


@contextlib.asynccontextmanager
async def plain_context(org: Emulator) -> AsyncIterator[Context]:
    """No org needed: the fragment must end by itself."""
    yield Context()


@contextlib.asynccontextmanager
async def emulator_context(org: Emulator) -> AsyncIterator[Context]:
    """``org`` is the emulated org; a client built with ``...`` logs in to it; an event is
    published on each channel subscribed to, and a fragment that loops forever is stopped once
    they were delivered."""
    feeder = Feeder(org)
    namespace = public_names() | {"org": org, "alert": lambda *args: None}
    yield Context(namespace, done=feeder.delivered, tick=feeder.feed)


@contextlib.asynccontextmanager
async def client_context(org: Emulator) -> AsyncIterator[Context]:
    """``client`` is an open client (MANUAL storage policy, markers in a dict) subscribed to
    ``/event/Order__e``, with one event waiting; ``process(message)`` is the application's
    work. Stopped once a message was processed; its marker must then be stored."""
    processed: list[Message] = []
    markers: dict[str, Any] = {}

    async def process(message: Message) -> None:
        processed.append(message)

    async with SalesforceStreamingClient(
        **emulator_credentials(org),
        replay=markers,
        replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
    ) as client:
        await client.subscribe("/event/Order__e")
        await org.publish("/event/Order__e", {"Amount__c": 42})

        def check() -> None:
            assert processed, "the fragment processed no message"
            assert "/event/Order__e" in markers, "the processed message's marker was not stored"

        namespace = public_names() | {"org": org, "client": client, "process": process}
        yield Context(namespace, done=lambda: bool(processed), check=check)


@contextlib.asynccontextmanager
async def bayeux_server_context(org: Emulator) -> AsyncIterator[Context]:
    """A Bayeux server (not Salesforce) at ``http://127.0.0.1:8000/bayeux``'s place: it accepts
    publishing. A fragment that loops forever is stopped once a publish was delivered."""
    server = FakeBayeuxServer(hold=0.2)

    async def handle(request: web.Request) -> web.Response:
        messages = await request.json()
        replies = await server(Request(messages if isinstance(messages, list) else [messages], 30))
        return web.json_response(replies)

    app = web.Application()
    app.router.add_post("/bayeux", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:

        def delivered() -> bool:
            published = sum(
                1
                for request in server.requests
                for message in request.messages
                if not message["channel"].startswith("/meta/")
            )
            return published > 0 and not any(server.pending.values())

        context = Context(done=delivered)
        context.namespace["__bayeux_url__"] = f"http://127.0.0.1:{port}/bayeux"
        yield context
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def redis_context(org: Emulator) -> AsyncIterator[Context]:
    """A real ``redis-server`` at ``redis://localhost:6379/0``'s place (a free loopback port),
    and the org as in the emulator context. The fragment must have written to it."""
    from tests._servers import redis_command, running_redis

    with running_redis() as server:
        async with emulator_context(org) as context:

            def check() -> None:
                assert redis_command(server.port, "DBSIZE") != b"0", "nothing written to Redis"

            context.namespace["__redis_url__"] = server.url
            context.check = check
            yield context


CONTEXTS: dict[str, Callable[[Emulator], contextlib.AbstractAsyncContextManager[Context]]] = {
    "plain": plain_context,
    "emulator": emulator_context,
    "client": client_context,
    "bayeux-server": bayeux_server_context,
    "redis": redis_context,
}

_CLIENT_ARGS = re.compile(r"\b(SalesforceStreamingClient)\(\.\.\.(?=[,)])")


def prepare(code: str, org: Emulator, context: Context) -> str:
    code = substitute(code, org)
    code = _CLIENT_ARGS.sub(r"\1(**__credentials__", code)
    context.namespace["__credentials__"] = emulator_credentials(org)
    if "__bayeux_url__" in context.namespace:
        code = code.replace('"http://127.0.0.1:8000/bayeux"', "__bayeux_url__")
    if "__redis_url__" in context.namespace:
        code = code.replace('"redis://localhost:6379/0"', "__redis_url__")
    return code


# -- the tests --------------------------------------------------------------------------------


def test_the_pages_have_blocks_of_every_kind() -> None:
    blocks = all_blocks()
    markers = {block.marker for block in blocks}
    assert {None, "fragment", "run: pytest", "run: emulator", "run: plain", "run: redis"} <= markers
    assert any(_elsewhere(block) for block in blocks), "RUN_ELSEWHERE names no block"
    for (page, heading), test in RUN_ELSEWHERE.items():
        assert (ROOT / test).is_file(), test
        assert page in (ROOT / test).read_text(), f"{test} does not read {page}"
        assert heading in (ROOT / test).read_text(), f"{test} does not look at {heading!r}"


def test_extract_blocks_reads_markers_headings_and_output(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Part\n\n<!-- run: plain -->\n```python\nx = 1\n```\n\n```text\n1\n```\n"
        "\n- item\n\n  ```py\n  y = 2\n  ```\n\n````{code-block} python\nz = 3\n````\n"
        "```pycon\n>>> 1\n```\n"
    )
    blocks = extract_blocks(page)
    assert [(b.line, b.code, b.marker, b.heading, b.output) for b in blocks] == [
        (6, "x = 1\n", "run: plain", "Part", "1\n"),
        (16, "y = 2\n", None, "Part", None),
        (20, "z = 3\n", None, "Part", None),
    ]


@pytest.mark.parametrize("block", _blocks_where(lambda block: block.marker == "fragment"))
def test_fragment_compiles(block: Block) -> None:
    compile_fragment(block)


@docs_org_marker()
@pytest.mark.parametrize(
    "block",
    _blocks_where(
        lambda block: (
            block.marker is not None
            and block.marker.startswith("run:")
            and not _is_pytest_block(block)
        )
    ),
)
async def test_fragment_runs(
    block: Block,
    sfstream_emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert block.marker is not None
    name = block.marker.partition(":")[2].strip()
    assert name in CONTEXTS, f"unknown context {name!r}; known: {sorted(CONTEXTS)}"
    monkeypatch.chdir(tmp_path)
    write_test_files(tmp_path, sfstream_emulator)
    with login_hosts_at(sfstream_emulator, monkeypatch):
        async with CONTEXTS[name](sfstream_emulator) as context:
            code = prepare(block.code, sfstream_emulator, context)
            await run_fragment(block, code, context.namespace, context.done, context.tick)
            if context.check is not None:
                context.check()


@pytest.mark.parametrize("block", _blocks_where(_is_pytest_block))
def test_pytest_fragment_passes(block: Block, pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    pytester.makepyfile(test_snippet=block.code)
    result = pytester.runpytest_inprocess(*plugin_args())
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1, result.stdout.str()
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()


def plugin_args() -> list[str]:
    """``-p sfstream.testing`` unless the plugin's entry point is installed."""
    from tests.conftest import _PLUGIN_INSTALLED

    return [] if _PLUGIN_INSTALLED else ["-p", "sfstream.testing"]


@docs_org_marker()
@pytest.mark.parametrize(
    "block", _blocks_where(lambda block: block.marker is None and not _elsewhere(block))
)
async def test_program_runs(block: Block, sfstream_emulator: Emulator, tmp_path: Path) -> None:
    process = await _start_program(block, sfstream_emulator, tmp_path)
    try:
        stopped, output, errors = await _watch(process, Feeder(sfstream_emulator))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if not stopped:
        assert process.returncode == 0, (
            f"exit status {process.returncode}\n{output}{errors}\n{HOW_TO_MARK}"
        )
    if block.output is not None:
        assert output == block.output, errors


async def _start_program(block: Block, org: Emulator, tmp_path: Path) -> asyncio.subprocess.Process:
    script = tmp_path / "snippet.py"
    script.write_text(substitute(block.code, org))
    write_test_files(tmp_path, org)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(RUNNER),
        org.login_url,
        str(script),
        cwd=tmp_path,
        env=_program_environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _loops_until_stopped(block: Block) -> bool:
    """A complete program whose ``async for`` over a client runs until the user stops it."""
    return (
        block.marker is None
        and not _elsewhere(block)
        and "asyncio.run(" in block.code
        and "async for " in block.code
        and "break" not in block.code
    )


def _ctrl_c_params() -> list[Any]:
    return [
        pytest.param(block, id=block.name)
        for [block] in (param.values for param in _blocks_where(_loops_until_stopped))
    ]


@docs_org_marker()
@pytest.mark.parametrize("block", _ctrl_c_params())
async def test_a_documented_loop_stops_cleanly_on_ctrl_c(
    block: Block, sfstream_emulator: Emulator, tmp_path: Path
) -> None:
    """Ctrl-C (SIGINT) in a documented ``async for message in client`` loop: the program
    ends with no ``KeyboardInterrupt`` traceback, as docs/getting-started.md shows."""
    process = await _start_program(block, sfstream_emulator, tmp_path)
    try:
        stopped, _, errors = await _watch(
            process, Feeder(sfstream_emulator), lambda p: p.send_signal(signal.SIGINT)
        )
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert stopped, "the program ended by itself: it is no loop to stop"
    assert "Traceback" not in errors, errors
    assert process.returncode in (0, 130), errors


def test_the_landing_pages_have_a_loop_to_stop() -> None:
    pages = {str(p.values[0].page.relative_to(ROOT)) for p in _blocks_where(_loops_until_stopped)}
    assert {"README.md", "docs/index.md", "docs/getting-started.md"} <= pages


async def _watch(
    process: asyncio.subprocess.Process,
    feeder: Feeder,
    stop: Callable[[asyncio.subprocess.Process], None] = asyncio.subprocess.Process.terminate,
) -> tuple[bool, str, str]:
    """Feed the program's subscriptions until it ends, or has printed a line per event (then
    ``stop`` it: SIGTERM by default).

    Returns whether it had to be stopped, its output and its error output.
    """
    assert process.stdout is not None
    assert process.stderr is not None
    lines: list[str] = []
    errors = asyncio.create_task(process.stderr.read())

    async def read_lines() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            lines.append(line.decode())

    reader = asyncio.create_task(read_lines())
    exited = asyncio.create_task(process.wait())
    stopped = False
    printed_before: int | None = None
    async with asyncio.timeout(TIMEOUT):
        while not exited.done():
            before = len(lines)
            if await feeder.feed() and printed_before is None:
                printed_before = before
            if printed_before is not None and len(lines) - printed_before >= len(feeder.published):
                await asyncio.wait([exited], timeout=0.1)
                if not exited.done():
                    stop(process)
                    stopped = True
                break
            await asyncio.wait([exited], timeout=0.02)
        await exited
        await reader
        return stopped, "".join(lines), (await errors).decode()


def _program_environment() -> dict[str, str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("SFSTREAM_") and "proxy" not in name.lower()
    }
    environment["PYTHONUNBUFFERED"] = "1"
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [environment.get("PYTHONPATH")])]
    )
    return environment
