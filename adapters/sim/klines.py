"""Recorded price paths: Binance kline CSV files, checked line by line and replayed as ticks.

The format is the one of Binance's public data dumps (`<SYMBOL>-<interval>-<date>.csv`):
open time, open, high, low, close, volume, close time, quote volume, trades, taker buy
volume, taker buy quote volume, ignore. Older dumps have no header line; newer ones start
with `open_time,open,high,low,close,...`. Times are milliseconds since the epoch (or
microseconds, which newer spot dumps use; told apart by size).

A kline has four prices but no path between them, so each is replayed as four ticks spread
evenly over its interval: the open, then the extreme nearer the open, then the other
extreme, then the close (SCENARIOS.md). The file is read lazily: a month of one-second
klines costs no more memory than a line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs

from adapters.sim.scenario import ScenarioError
from engine.checks import finite

_REQUIRED = ("open_time", "open", "high", "low", "close", "close_time")
# Columns of the headerless dumps, by position.
_POSITIONS = {"open_time": 0, "open": 1, "high": 2, "low": 3, "close": 4, "close_time": 6}
# Open times at or above this are microseconds (the year 5138 in milliseconds).
_MICROSECONDS_FROM = 10**14


@attrs.frozen
class Kline:
    line: int
    open_time: int
    close_time: int
    open: float
    high: float
    low: float
    close: float


class KlineFileError(ValueError):
    """A line that is not a kline: names the file, the line and what is wrong with it."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path, self.line, self.problem = path, line, problem


def _int(text: str, column: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a whole number of milliseconds") from None


def _price(text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a number") from None
    if not (finite(value) is not None and value > 0):
        raise ValueError(f"{column} {text!r} is not a price > 0")
    return value


def _parse(fields: list[str], columns: dict[str, int], line: int) -> Kline:
    wanted = max(columns.values()) + 1
    if len(fields) < wanted:
        raise ValueError(f"{len(fields)} fields, expected at least {wanted} "
                         "(open time, open, high, low, close, volume, close time, ...)")
    raw = {name: fields[i].strip() for name, i in columns.items()}
    kline = Kline(line, _int(raw["open_time"], "open time"), _int(raw["close_time"], "close time"),
                  *(_price(raw[c], c) for c in ("open", "high", "low", "close")))
    if kline.close_time <= kline.open_time:
        raise ValueError(f"close time {kline.close_time} is not after open time {kline.open_time}")
    if kline.high < max(kline.open, kline.close, kline.low):
        raise ValueError(f"high {kline.high:g} is below the open, close or low")
    if kline.low > min(kline.open, kline.close):
        raise ValueError(f"low {kline.low:g} is above the open or close")
    return kline


def read_klines(path: Path) -> Iterator[Kline]:
    """Every kline of the file in order; `KlineFileError` at the first bad line."""
    columns = dict(_POSITIONS)
    previous: Kline | None = None
    line = 0
    try:
        with path.open(encoding="utf-8", newline="") as lines:
            for line, text in enumerate(lines, start=1):
                if not text.strip():
                    continue
                fields = text.rstrip("\r\n").split(",")
                if previous is None and line == 1 and not fields[0].strip().lstrip("-").isdigit():
                    names = [f.strip().lower() for f in fields]
                    missing = [c for c in _REQUIRED if c not in names]
                    if missing:
                        raise KlineFileError(path, line, f"header lacks {', '.join(missing)} "
                                             f"(a Binance kline header starts open_time,open,high,low,close)")
                    columns = {c: names.index(c) for c in _REQUIRED}
                    continue
                try:
                    kline = _parse(fields, columns, line)
                except ValueError as exc:
                    raise KlineFileError(path, line, str(exc)) from None
                if previous is not None and kline.open_time <= previous.open_time:
                    raise KlineFileError(path, line, f"open time {kline.open_time} is not after the previous "
                                         f"line's ({previous.open_time}); klines must be in time order")
                previous = kline
                yield kline
    except UnicodeDecodeError as exc:
        raise KlineFileError(path, line + 1, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise KlineFileError(path, 0, f"cannot be read ({exc.strerror})") from None
    if previous is None:
        raise KlineFileError(path, line, "no klines in the file")


def check_klines(path: Path, key: str) -> None:
    """Read the whole file once so a bad line stops the scenario before it runs."""
    try:
        for _ in read_klines(path):
            pass
    except KlineFileError as exc:
        where = f"{exc.path}" if exc.line == 0 else f"{exc.path} line {exc.line}"
        raise ScenarioError(key, where, f"a Binance kline CSV file: {exc.problem}") from None


def kline_ticks(path: Path, start: float) -> Iterator[tuple[float, float]]:
    """(virtual seconds, price): the first kline opens at `start`, later ones at their offset."""
    first: int | None = None
    unit = 1000.0
    for k in read_klines(path):
        if first is None:
            first = k.open_time
            unit = 1e6 if k.open_time >= _MICROSECONDS_FROM else 1000.0
        at = start + (k.open_time - first) / unit
        # Binance's close time is the interval's last millisecond (or microsecond): +1 closes it.
        quarter = (k.close_time - k.open_time + 1) / unit / 4
        high_first = (k.high - k.open < k.open - k.low) or (
            k.high - k.open == k.open - k.low and k.close < k.open)
        extremes = (k.high, k.low) if high_first else (k.low, k.high)
        yield at, k.open
        yield at + quarter, extremes[0]
        yield at + 2 * quarter, extremes[1]
        yield at + 3 * quarter, k.close
