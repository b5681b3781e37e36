"""The demo generator and the JSON Lines file: waves that need no service.

Signals are passed on unvalidated (the engine rejects malformed ones with a
reason); only a malformed *file* is an error here, reported at start-up with
its line number so nothing runs on half a file.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import trio

from adapters.signals.arrival import Arrival, RawWave
from adapters.textfile import read_text
from engine.checks import loads_untrusted
from engine.errors import ConfigError

MAX_LINE = 4 * 1024 * 1024  # characters in one wave's line
MAX_WAVE = 10_000  # signals in one wave


class DemoSignalSource:
    """A built-in generator: a ranked wave of random signals, then one every `interval`."""

    def __init__(self, symbols: Sequence[str], *, interval: float, size: int = 6, seed: int | None = None,
                 first_id: int = 1) -> None:
        self._symbols = list(symbols)
        self._interval = interval
        self._size = min(size, len(self._symbols))
        self._rng = random.Random(seed)
        self._next_id = first_id

    def _wave(self) -> list[dict[str, Any]]:
        picked = self._rng.sample(self._symbols, self._size)
        wave = []
        for symbol in picked:
            wave.append({"id": str(self._next_id), "symbol": symbol,
                         "side": self._rng.choice(["long", "short"]),
                         "score": round(self._rng.uniform(5.0, 10.0), 2)})
            self._next_id += 1
        return sorted(wave, key=lambda s: -s["score"])

    async def waves(self) -> AsyncIterator[RawWave]:
        while True:
            yield self._wave()
            await trio.sleep(self._interval)

    async def feed(self, send: trio.MemorySendChannel[Arrival]) -> None:
        async with send:
            async for wave in self.waves():
                await send.send(Arrival(wave, "demo", received_at=trio.current_time()))


class JsonlSignalSource:
    """One wave per line of a JSON Lines file: `[{...}, ...]` or `{"signals": [...]}`."""

    def __init__(self, path: str | Path, *, interval: float) -> None:
        self._waves = self.parse(path)
        self._interval = interval

    @staticmethod
    def parse(path: str | Path) -> list[RawWave]:
        text = read_text(path, key="--signals", where="signals", what="JSON Lines file")
        waves: list[RawWave] = []
        # Lines end at "\n" only: str.splitlines() would also split at U+2028 and other separators
        # that JSON allows raw inside a string.
        for number, line in enumerate(text.split("\n"), start=1):
            line = line.removesuffix("\r")
            if not line.strip():
                continue
            where = f"{path}:{number}"
            if len(line) > MAX_LINE:
                raise ConfigError(where, line, f"a line of at most {MAX_LINE:,} characters", where="signals")
            try:
                data = loads_untrusted(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(where, line, f"a JSON array of signals ({exc.msg} at column {exc.colno})",
                                  where="signals") from None
            except RecursionError:
                raise ConfigError(where, line, "a JSON array of signals (it is nested too deeply)",
                                  where="signals") from None
            if isinstance(data, dict):
                data = data.get("signals")
            if not isinstance(data, list):
                raise ConfigError(where, line, 'a JSON array of signals or {"signals": [...]}',
                                  where="signals")
            if len(data) > MAX_WAVE:
                raise ConfigError(where, f"{len(data)} signals", f"at most {MAX_WAVE:,} signals in one wave",
                                  where="signals")
            waves.append(data)
        return waves

    async def waves(self) -> AsyncIterator[RawWave]:
        for i, wave in enumerate(self._waves):
            if i:
                await trio.sleep(self._interval)
            yield wave

    async def feed(self, send: trio.MemorySendChannel[Arrival]) -> None:
        async with send:
            async for wave in self.waves():
                await send.send(Arrival(wave, "file", received_at=trio.current_time()))
