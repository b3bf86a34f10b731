"""The ``sfstream`` command line (also ``python -m sfstream``).

Commands: ``demo`` (the library at work against a local emulated org), ``listen`` (print the
events of channels), ``publish`` (publish a platform event or a generic streaming push),
``relay`` (channels into Redis Streams or NATS JetStream, with failover), ``emulator`` (serve
an emulated org) and ``bayeux`` (debug any Bayeux server). :func:`main` runs one and returns the
exit status; see :class:`~sfstream.cli._errors.ExitCode` and ``docs/cli.md``.

The command line configures logging for its own process (``--debug``: DEBUG records of
``sfstream`` on stderr); the library never does.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final, NoReturn

from sfstream import __version__

from . import _bayeux, _demo, _listen, _publish, _relay
from ._credentials import ENVIRONMENT
from ._errors import CliError, ExitCode, to_cli_error
from ._output import Console, json_line

__all__ = ["ExitCode", "UsageError", "build_parser", "main", "usage_message"]

Command = Callable[[argparse.Namespace, Console], Awaitable[int]]

_COMMANDS: Final[dict[str, Command]] = {
    "demo": _demo.run,
    "listen": _listen.run,
    "publish": _publish.run,
    "relay": _relay.run,
    "bayeux": _bayeux.run,
}

_EXIT_CODES: Final = """\
exit status:
  0    success (listen: stopped by --count or --timeout)
  1    runtime error (a subscription or publish refused, the demo lost events)
  2    usage error (bad option, missing credentials)
  3    authentication failed
  4    a host could not be reached or failed, or the connection was lost
  5    listen --count N --timeout S: fewer than N events within S seconds
  130  interrupted (Ctrl-C)
"""


def _environment_help() -> str:
    names = "\n".join(f"  {name}" for name in ENVIRONMENT.values())
    return f"environment variables (flags win):\n{names}\n  NO_COLOR    no colours\n"


class UsageError(CliError):
    """The command line does not parse (raised by :class:`_Parser` instead of printing the
    whole usage block and exiting). A command that calls ``parser.error()`` itself gets the
    same one-line report, exit status 2."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message, ExitCode.USAGE, f"{parser.prog} --help shows every option")
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [option for action in parser._actions for option in action.option_strings]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


_INVALID_CHOICE: Final = re.compile(
    r"invalid choice: '?(?P<value>[^'(]*?)'? \(choose from (?P<choices>.*)\)"
)


def _suggest(word: str, candidates: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


#: Options whose values are secrets: words left over near them are never echoed.
_SECRET_OPTIONS: Final = frozenset(
    {
        "--password",
        "--consumer-secret",
        "--security-token",
        "--refresh-token",
        "--jwt-key-password",
        "--access-token",
        "--header",
    }
)


def usage_message(
    error: UsageError, parser: argparse.ArgumentParser, argv: Sequence[str]
) -> tuple[str, str]:
    """``(message, hint)`` for a usage error: "did you mean" for a mistyped option, command or
    choice, and where the full usage is (instead of argparse's usage block)."""
    commands = _subparsers(parser)
    command = next((arg for arg in argv if arg in commands), None)
    target = commands[command] if command is not None else error.parser
    help_hint = "sfstream" + (f" {command}" if command else "") + " --help shows every option"
    message = error.message
    if message.startswith("unrecognized arguments: "):
        unknown = message.removeprefix("unrecognized arguments: ").split()
        options = [word.split("=")[0] for word in unknown if word.startswith("-")]
        if not options:
            if any(word.split("=")[0] in _SECRET_OPTIONS for word in argv):
                # Most often the rest of a secret with a space that was not quoted
                # (--password my secret): it was printed.
                return (
                    f"{len(unknown)} unexpected argument(s), not shown in case they are part "
                    "of a secret",
                    f"quote a value that holds spaces ({help_hint})",
                )
            return f"unexpected argument {' '.join(unknown)}", help_hint
        known = _options(target)
        matches = [m for m in (_suggest(option, known) for option in options) if m is not None]
        text = f"unknown option {' '.join(options)}"
        if matches:
            return text, f"did you mean {' '.join(matches)}? ({help_hint})"
        return text, help_hint
    choice = _INVALID_CHOICE.search(message)
    if choice is not None:
        value = choice["value"]
        choices = [c.strip().strip("'\"") for c in choice["choices"].split(",")]
        if message.startswith("argument COMMAND"):
            text = f"unknown command {value}"
        else:
            text = message.split(" (choose from")[0]
        match = _suggest(value, choices)
        listed = ", ".join(choices)
        if match is not None:
            return text, f"did you mean {match}? (one of {listed})"
        return text, f"one of {listed}"
    return message, help_hint


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sfstream``."""
    common = _Parser(add_help=False)
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
    parser = _Parser(
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

    bayeux = commands.add_parser(
        "bayeux",
        parents=[common],
        help="debug any Bayeux server (Faye, CometD): subscribe, publish, trace the wire",
        description="Connect to any Bayeux server, subscribe and publish, and print what "
        "arrives (stdout); connection news and --trace go to stderr.",
        epilog=_EXIT_CODES,
        formatter_class=formatter,
    )
    _bayeux.add_arguments(bayeux)

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
        text = super().format(record)
        if self.console.json:
            # --json: every stderr line is JSON, the --debug records too.
            message = record.getMessage()
            if record.exc_text:  # set by super().format() from exc_info
                message += "\n" + record.exc_text
            text = json_line(
                {
                    "log": message,
                    "level": record.levelname,
                    "logger": record.name,
                    "time": self.formatTime(record),
                }
            )
        return self.console.scrub(text)


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
    console.error(error.message, hint=error.hint, code=int(error.code))
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
            f"unexpected error: {type(exc).__name__}: {exc}",
            hint="" if debug else "run with --debug for the traceback",
            code=int(ExitCode.ERROR),
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


def _default_org_before_channels(words: list[str]) -> list[str]:
    """``--sf-org /event/X``: the channel is no alias (aliases never start with ``/``); make it
    ``--sf-org= /event/X`` (the default org) so that argparse does not take it as one."""
    fixed = list(words)
    for index, word in enumerate(words[:-1]):
        if word == "--sf-org" and words[index + 1].startswith("/"):
            fixed[index] = "--sf-org="
    return fixed


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sfstream`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    words = _default_org_before_channels(list(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(words)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else ExitCode.USAGE
    except UsageError as error:
        wants_json = bool({"listen", "bayeux", "publish"} & set(words)) and "--json" in words
        message, hint = usage_message(error, parser, words)
        Console(json=wants_json).error(message, hint=hint, code=int(ExitCode.USAGE))
        return ExitCode.USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    console = Console(
        color=getattr(args, "color", "auto"),
        json=args.command in ("listen", "bayeux", "publish") and bool(getattr(args, "json", False)),
    )
    debug: bool = getattr(args, "debug", False)
    with _logging(debug, console):
        if args.command == "emulator":
            return _run_emulator(args)
        return _run(_COMMANDS[args.command], args, console, debug)
