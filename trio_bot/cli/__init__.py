"""`trio-bot` command line: the entry point and the dispatch to each command's module.

Exit status: 0 done, 1 an invariant broke (simulate) or a runtime failure,
2 bad input (config, scenario, signals file, --db URL).
Ctrl-C: `run` finishes up and exits 0 at any moment (see `trio_bot.run`); another
command interrupted says so in one line and exits 130.

Exception groups: Trio wraps errors that cross a nursery. A group whose
leaves are all trio-bot errors (`TrioBotError`) is reported as its first
error, one clear line; a group holding anything else is a bug and is shown
whole, with its traceback.

The modules, one job each: `arguments` (the parser and the accepted ranges),
`errors` (how a failure becomes one line and an exit status), `reports` (the
read-only commands over the store), `operator` (`run` and the commands that
talk to a running instance), `instruments` (`simulate` and the local servers
that stand in for an exchange or a signal service).

This module imports only the standard library at import time, so a Ctrl-C
while the rest loads is still answered by `main` with one line.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # the entry point loads nothing it does not need (see the docstring)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

EXIT_OK, EXIT_BROKEN, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

# The commands that run on the store alone, inside `trio.run` (`reports`).
_STORE_COMMANDS = ("waves", "positions", "events", "db", "export", "report")


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(words)
    except KeyboardInterrupt:
        return _interrupted(words)
    except BaseException as exc:
        from trio_bot.cli.errors import interrupted, quiet_broken_pipe

        if quiet_broken_pipe(exc):
            return EXIT_OK
        if interrupted(exc):
            return _interrupted(words)
        raise


def _interrupted(words: list[str]) -> int:
    """Ctrl-C before the command could answer it itself (while Python loads its modules, or the
    instant before `run` receives signals): one line, no traceback. Nothing had started, so
    `run` ends as a Ctrl-C always ends it, with status 0."""
    print("trio-bot: interrupted", file=sys.stderr)
    command = next((w for w in words if not w.startswith("-")), None)  # no top-level option takes a value
    return EXIT_OK if command == "run" else EXIT_INTERRUPTED


def _main(argv: Sequence[str]) -> int:
    from engine.errors import ConfigError
    from trio_bot.cli.arguments import build_parser
    from trio_bot.cli.errors import one_line, setup_logging, user_error

    try:
        args = build_parser().parse_args(argv)
    except ConfigError as exc:
        # argparse calls the type with the text; its ArgumentError wraps only ValueError-likes.
        print(f"trio-bot: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    setup_logging(args.verbose)
    try:
        return _dispatch(args)
    except BaseException as exc:
        error = user_error(exc)
        if error is None:
            raise
        print(f"trio-bot: error: {one_line(str(error))}", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(error, ConfigError) else EXIT_BROKEN


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        from trio_bot.cli.operator import run_command

        return run_command(args)
    if args.command in ("status", "pause", "resume", "close"):
        from trio_bot.cli.operator import api_command

        return api_command(args)
    if args.command in _STORE_COMMANDS:
        from trio_bot.cli.reports import store_command

        return store_command(args)
    from trio_bot.cli import instruments

    commands = {"simulate": instruments.simulate_command, "fake-exchange": instruments.fake_exchange,
                "signal-server": instruments.signal_server}
    return commands[args.command](args)


__all__ = ["EXIT_BAD_INPUT", "EXIT_BROKEN", "EXIT_INTERRUPTED", "EXIT_OK", "main"]
