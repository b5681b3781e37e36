"""Error kinds the engine reasons about.

Adapters translate whatever their library raises into these, so the engine
decides retry-or-give-up from the *kind* of failure, never from a message.
"""

from __future__ import annotations

from engine.text import printable, shown


class TrioBotError(Exception):
    """Base of every error the engine raises or understands."""


class ExchangeError(TrioBotError):
    """An exchange call failed."""


class TransientError(ExchangeError):
    """Nothing happened (HTTP 502, connection reset); trying again may work."""


class PermanentError(ExchangeError):
    """The exchange refused the request (invalid order, no margin); retrying won't help."""


class DuplicateOrderError(PermanentError):
    """The client order id was used before; the order may already exist."""


class StorageError(TrioBotError):
    """A storage call failed."""


class CallTimeout(TrioBotError):
    """A port call did not answer within its deadline; its outcome is unknown."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"{what} did not answer within {seconds:g}s")
        self.what = what
        self.seconds = seconds


class ConfigError(TrioBotError):
    """A user-supplied setting is invalid: names the key, the value and what was expected."""

    def __init__(self, key: str, value: object, expected: str, *, where: str = "config") -> None:
        # The value is shown bounded and escaped: it may be 100,000 characters or a terminal escape.
        super().__init__(f"{printable(where)}: {printable(key)} = {shown(value)}: expected {expected}")
        self.key = key
        self.value = value
        self.expected = expected
