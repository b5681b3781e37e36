"""How a failure becomes one line and an exit status.

Trio wraps errors that cross a nursery in exception groups; these helpers look
through them, so a group of trio-bot errors is reported as its first error and
anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import TypeVar

import trio

from engine.errors import ConfigError, TrioBotError
from engine.text import cut, printable
from trio_bot.tables import PrintableFormatter

E = TypeVar("E", bound=BaseException)


class UsageError(ConfigError):
    """A command line argparse refused: reported as one line, exit status 2."""

    def __init__(self, message: str) -> None:
        TrioBotError.__init__(self, message)
        self.key, self.value, self.expected = "", None, message


def one_line(text: str, limit: int = 2000) -> str:
    """An error message fit for one terminal line: escaped and bounded."""
    return cut(printable(text), limit)


def setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc`, however deeply Trio's nurseries grouped them."""
    found: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseExceptionGroup):
            stack.extend(reversed(item.exceptions))
        else:
            found.append(item)
    return found


def only(exc: BaseException, kind: type[E]) -> E | None:
    """The first `kind` error in `exc` if that is all it holds (besides cancellations), else None."""
    found = leaves(exc)
    ours = [leaf for leaf in found if isinstance(leaf, kind)]
    if ours and all(isinstance(leaf, kind | trio.Cancelled) for leaf in found):
        return ours[0]
    return None


def user_error(exc: BaseException) -> TrioBotError | None:
    """The trio-bot error to report for `exc`, or None if it is something else (a bug)."""
    return only(exc, TrioBotError)


def interrupted(exc: BaseException) -> bool:
    """A Ctrl-C that reached the entry point (alone, or grouped with cancellations)."""
    return only(exc, KeyboardInterrupt) is not None


def quiet_broken_pipe(exc: BaseException) -> bool:
    """The reader went away (`trio-bot positions --json | head`): nothing left to say to it.

    Points stdout at /dev/null so the interpreter's final flush does not fail again."""
    if only(exc, BrokenPipeError) is None:
        return False
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return True
