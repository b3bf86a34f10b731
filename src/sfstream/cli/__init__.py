"""The ``sfstream`` command line (also ``python -m sfstream``).

Commands: ``demo`` (the library at work against a local emulated org), ``listen`` (print the
events of channels), ``publish`` (publish a platform event or a generic streaming push),
``relay`` (channels into Redis Streams or NATS JetStream, with failover) and ``emulator``
(serve an emulated org). :func:`main` runs one and returns the exit status; see
:class:`~sfstream.cli._errors.ExitCode` and ``docs/cli.md``.

The command line configures logging for its own process (``--debug``: DEBUG records of
``sfstream`` on stderr); the library never does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final

from sfstream import __version__

from . import _demo, _listen, _publish, _relay
from ._credentials import ENVIRONMENT
from ._errors import CliError, ExitCode, to_cli_error
from ._output import Console

__all__ = ["ExitCode", "build_parser", "main"]

Command = Callable[[argparse.Namespace, Console], Awaitable[int]]

_COMMANDS: Final[dict[str, Command]] = {
    "demo": _demo.run,
    "listen": _listen.run,
    "publish": _publish.run,
    "relay": _relay.run,
}

_EXIT_CODES: Final = """\
exit status:
  0    success (listen: stopped by --count or --timeout)
  1    runtime error (a subscription or publish refused, the demo lost events)
  2    usage error (bad option, missing credentials)
  3    authentication failed
  4    a host could not be reached, or the connection was lost
  5    listen --count N --timeout S: fewer than N events within S seconds
  130  interrupted (Ctrl-C)
"""


def _environment_help() -> str:
    names = "\n".join(f"  {name}" for name in ENVIRONMENT.values())
    return f"environment variables (flags win):\n{names}\n  NO_COLOR    no colours\n"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sfstream``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log DEBUG messages to stderr and show tracebacks",
    )
    common.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default=argparse.SUPPRESS,
        help="colour output (default auto: on a terminal, unless NO_COLOR is set)",
    )
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="sfstream",
        description="Stream Salesforce events (PushTopics, generic streaming, platform events, "
        "Change Data Capture) from the command line.",
        epilog=_EXIT_CODES,
        formatter_class=formatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"sfstream {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="see sfstream at work against a local emulated org (no Salesforce needed)",
        description="Start an emulated Salesforce org, publish PushTopic, generic, platform "
        "event and Change Data Capture events, and stream them through a real client, "
        "through a lost session, a revoked token and a client restart. Ends with a summary; "
        "the exit status is 1 if any event was lost.",
        epilog=_EXIT_CODES,
        formatter_class=formatter,
    )
    _demo.add_arguments(demo)

    listen = commands.add_parser(
        "listen",
        parents=[common],
        help="subscribe to channels and print their events",
        description="Subscribe to one or more channels of an org and print each event as it "
        "comes (stdout); connection news and traces go to stderr.",
        epilog=_environment_help() + "\n" + _EXIT_CODES,
        formatter_class=formatter,
    )
    _listen.add_arguments(listen)

    publish = commands.add_parser(
        "publish",
        parents=[common],
        help="publish a platform event (or a generic streaming push) through the REST API",
        description="Publish a platform event (prints its EventUuid) or push a generic "
        "streaming event through Salesforce's REST API.",
        epilog=_environment_help() + "\n" + _EXIT_CODES,
        formatter_class=formatter,
    )
    _publish.add_arguments(publish)

    relay = commands.add_parser(
        "relay",
        parents=[common],
        help="relay channels into Redis Streams or NATS JetStream, with failover",
        description="Subscribe to channels of an org and write every event, with its replay "
        "id as the position, into an engine in one atomic step. Run it on several hosts: one "
        "is the leader per channel set, the others stand by (see docs/scaling.md).",
        epilog=_environment_help() + "\n" + _EXIT_CODES,
        formatter_class=formatter,
    )
    _relay.add_arguments(relay)

    emulator = commands.add_parser(
        "emulator",
        parents=[common],
        help="serve an emulated Salesforce org on loopback until Ctrl-C",
        description="Serve a Salesforce org on loopback for Streaming API clients "
        "(see docs/emulator.md).",
    )
    from sfstream.emulator import _cli as emulator_cli

    emulator_cli.add_arguments(emulator)
    return parser


class _ScrubbingFormatter(logging.Formatter):
    def __init__(self, console: Console) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.console = console

    def format(self, record: logging.LogRecord) -> str:
        return self.console.scrub(super().format(record))


@contextmanager
def _logging(debug: bool, console: Console) -> Iterator[None]:
    """DEBUG records of ``sfstream`` on stderr with ``--debug``; else none at all (everything
    worth saying is reported by the command itself)."""
    logger = logging.getLogger("sfstream")
    level = logger.level
    handler: logging.Handler
    if debug:
        handler = logging.StreamHandler(console.err)
        handler.setFormatter(_ScrubbingFormatter(console))
        logger.setLevel(logging.DEBUG)
    else:
        handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def _interruptible(command: Awaitable[int]) -> int:
    """Run ``command``; SIGINT/SIGTERM cancel it and make the result 130."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, interrupt)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - Windows
            pass
    try:
        return await command
    except asyncio.CancelledError:
        if not interrupted:
            raise  # pragma: no cover - cancelled by something else
        task.uncancel()
        return ExitCode.INTERRUPTED
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _report(error: CliError, console: Console, debug: bool) -> int:
    if debug:
        console.note("".join(traceback.format_exception(error)).rstrip())
    console.error(str(error))
    return int(error.code)


def _run(command: Command, args: argparse.Namespace, console: Console, debug: bool) -> int:
    try:
        return int(asyncio.run(_interruptible(command(args, console))))
    except KeyboardInterrupt:  # pragma: no cover - Ctrl-C before the handlers are in place
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return ExitCode.OK
    except CliError as error:
        return _report(error, console, debug)
    except Exception as exc:
        known = to_cli_error(exc)
        if known is not None:
            known.__cause__ = exc
            return _report(known, console, debug)
        if debug:
            console.note("".join(traceback.format_exception(exc)).rstrip())
        console.error(
            f"unexpected error: {type(exc).__name__}: {exc}"
            + ("" if debug else " (run with --debug for the traceback)")
        )
        return ExitCode.ERROR


def _silence_stdout() -> None:
    """The reader of stdout went away (``| head``): drop what is still buffered."""
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)


def _run_emulator(args: argparse.Namespace) -> int:
    from sfstream.emulator import _cli as emulator_cli

    try:
        return asyncio.run(emulator_cli.run(args))
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C during shutdown
        return ExitCode.INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sfstream`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else ExitCode.USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    console = Console(color=getattr(args, "color", "auto"))
    debug: bool = getattr(args, "debug", False)
    with _logging(debug, console):
        if args.command == "emulator":
            return _run_emulator(args)
        return _run(_COMMANDS[args.command], args, console, debug)
