"""How `trio-bot run` stops: SIGINT/SIGTERM received for the whole run, from before the lease on.

A signal at any moment takes the clean way out: while the lease is awaited or the account is
set up, it cancels the start-up; during the reconciliation it is held (it protects positions);
once start-up is done it stops the waves (the running one is cancelled, its cleanup shielded).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TextIO

import attrs


@attrs.define
class Stopper:
    """SIGINT/SIGTERM for the whole run, received from before the lease on: a Ctrl-C at any moment
    takes the clean way out. `on_signal` is what a signal does now: cancel the start-up, stop the
    waves, or (None, during the reconciliation) wait until start-up is done."""

    out: TextIO
    received: int | None = None
    on_signal: Callable[[], None] | None = None
    # What a second signal also does once the run is stopping (stop waiting for the resolver).
    on_repeat: Callable[[], str | None] | None = None

    async def watch(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if self.received is None:
                self.received = signum
                print(f"trio-bot: {signal.Signals(signum).name}: finishing up", file=self.out, flush=True)
            elif self.on_repeat is not None:
                said = self.on_repeat()
                if said:
                    print(f"trio-bot: {signal.Signals(signum).name} again: {said}", file=self.out, flush=True)
            if self.on_signal is not None:
                self.on_signal()

    @contextlib.contextmanager
    def until_done(self) -> Iterator[None]:
        """Once the engine is closed, a late signal has nothing left to stop."""
        try:
            yield
        finally:
            self.on_signal = None
            self.on_repeat = None


@contextlib.contextmanager
def one_error() -> Iterator[None]:
    """The signal watcher's nursery adds a group around whatever the run raises; take it off, so
    callers see the same errors (LeaseHeld, ConfigError, ...) as without it."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        raise group.exceptions[0] from None
