"""The one place that decides whether a number or an identifier from outside is acceptable.

Every edge (config, scenario, signals, CLI arguments, exchange answers) asks
these functions rather than writing its own `isinstance(...) and
math.isfinite(...)`: the edge cases are few but sharp — `True` is an `int`, an
integer of a few hundred digits makes `math.isfinite` raise `OverflowError`,
`str()` of one with more than 4,300 digits raises `ValueError`, `5e-324` is
finite and positive yet makes any division explode. A value either passes
with a documented range or is refused with one message naming the key, the
value (shown bounded) and what was expected.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

import attrs

from engine.errors import ConfigError


def is_number(value: Any) -> bool:
    """An int or float, not a bool (TOML and JSON have both; `True` is not a quantity)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def finite(value: Any) -> float | None:
    """`value` as a finite float, or None if it is not a number or not finite (NaN, ±inf, or an
    integer too large for a float). Never raises."""
    if not is_number(value):
        return None
    if isinstance(value, int):
        # int → float raises OverflowError beyond ~1.8e308; bit_length is cheap for any size.
        if value.bit_length() > sys.float_info.max_exp:
            return None
        number = float(value)
    else:
        number = value
    return number if math.isfinite(number) else None


@attrs.frozen
class Range:
    """A closed-or-open interval of acceptable numbers, printable for messages and docs."""

    low: float
    high: float
    low_open: bool = False  # True: the low end itself is excluded
    high_open: bool = False
    integer: bool = False

    def contains(self, value: Any) -> bool:
        if self.integer and not (isinstance(value, int) and not isinstance(value, bool)):
            return False
        number = finite(value)
        if number is None:
            return False
        above = number > self.low if self.low_open else number >= self.low
        below = number < self.high if self.high_open else number <= self.high
        return above and below

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        low = f"{self.low:g}" if not self.integer else f"{int(self.low)}"
        high = f"{self.high:g}" if not self.integer else f"{int(self.high)}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"{kind} in {left}{low}, {high}{right}"

    def check(self, key: str, value: Any, *, where: str = "config") -> float:
        """`value` as a float if it is inside the range, else a ConfigError naming `key`."""
        if not self.contains(value):
            raise ConfigError(key, value, self.describe(), where=where)
        return float(value)

    def check_int(self, key: str, value: Any, *, where: str = "config") -> int:
        if not (isinstance(value, int) and not isinstance(value, bool)) or not self.contains(value):
            raise ConfigError(key, value, self.describe(), where=where)
        return value


def positive_up_to(high: float) -> Range:
    return Range(0.0, high, low_open=True)


def integer(low: int, high: int) -> Range:
    return Range(low, high, integer=True)


# Ranges shared by several edges (documented in the README's configuration tables).
PRICE = Range(1e-8, 1e9)  # a market price in the quote currency
GRID_STEP = Range(1e-12, 1e6)  # tick_size, step_size
SECONDS = Range(0.0, 604_800.0)  # any time of day-to-week scale: latencies, waits, offsets
SCORE = Range(-1e12, 1e12)
PORT = integer(0, 65_535)
ROW_ID = integer(1, 2**63 - 1)  # a stored position id (SQLite and PostgreSQL BIGINT)

# Identifiers a signal source or a config may send. Bounded, and restricted to characters that
# print as themselves: they land in tables, logs, the database and client order ids.
ID_MAX = 64
SYMBOL_MAX = 32
_ID = re.compile(r"[A-Za-z0-9._:/@#+=-]+")
_SYMBOL = re.compile(r"[A-Za-z0-9._:/-]+")
ID_ALPHABET = "letters, digits and . _ : / @ # + = -"
SYMBOL_ALPHABET = "letters, digits and . _ : / -"


def identifier_problem(text: str, *, what: str = "id") -> str | None:
    """Why `text` is not an acceptable signal id, or None."""
    limit, pattern, alphabet = ((SYMBOL_MAX, _SYMBOL, SYMBOL_ALPHABET) if what == "symbol"
                                else (ID_MAX, _ID, ID_ALPHABET))
    if not text:
        return "is empty"
    if len(text) > limit:
        return f"is {len(text)} characters long (at most {limit})"
    if not pattern.fullmatch(text):
        return f"has characters outside {alphabet}"
    return None


# Python refuses to turn a string of more than 4,300 digits into an int (sys.int_info), and
# json.loads passes that refusal on as a bare ValueError that no JSON error handler expects.
# Numbers that long are never a valid score, price or id, so they become floats (inf), which
# every range check already rejects with a clear reason naming the key.
_LONGEST_EXACT_INTEGER = 1000


def _parse_int(digits: str) -> int | float:
    if len(digits) > _LONGEST_EXACT_INTEGER:
        return float(digits)
    return int(digits)


def loads_untrusted(text: str | bytes) -> Any:
    """`json.loads` for text from outside (signal files, frames, webhook bodies).

    It raises only what `json.loads` documents for malformed text (`json.JSONDecodeError`,
    `UnicodeDecodeError`, `RecursionError`); an integer too long to convert comes back as a float
    for validation to reject, so one hostile number costs one signal, never the wave or the engine.
    """
    return json.loads(text, parse_int=_parse_int)
