"""ccxt errors as the engine's error kinds, and the scrubbing that keeps secrets out of text.

Why it is apart from the exchange adapter: what an error *means* (refused, unknown
outcome, duplicate id, bad key) is a table of classes and exchange codes that can be
read and tested without a client, a loop or a server.

* Errors become the engine's kinds (`engine.errors`) by ccxt class *and* by the
  exchange's numeric code: ccxt only applies Binance's futures error table to the
  real fapi host names, and the duplicate-id code maps to a generic class. An error
  whose outcome is unknown (a bad response, an unclassified ccxt error) becomes
  `TransientError`: the engine then looks the order up by its client id rather than
  assuming it was refused.
* Secrets never leave: the API key and secret are scrubbed from every error message
  and from ccxt's own debug logging (which prints request headers, i.e. the key), and
  query strings (timestamps and signatures) are cut from URLs in messages.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from ccxt.base import errors as ccxt_errors

from engine.errors import DuplicateOrderError, ExchangeError, PermanentError, TransientError

# Exchange codes meaning "this client order id was used before".
DUPLICATE_CODES = frozenset({
    "-4116",  # binance: ClientOrderId is duplicated
    "-20132",  # binance algo: the client algo id is duplicated
    "110072",  # bybit: OrderLinkedID is duplicate
})
# Exchange codes meaning "the exchange looked at the request and refused it". ccxt maps
# some of them only for the real fapi hosts (or to a generic class), so they are listed
# here to keep the refusal permanent whatever the host.
REFUSAL_CODES = frozenset({
    "-1102", "-1111", "-1116", "-1117", "-1121", "-2011", "-2013", "-2018", "-2019", "-2020",
    "-2021", "-2022", "-2027", "-2028", "-4003", "-4028", "-4131", "-4164",
    "110001", "110007", "110008", "110017", "10001",
})
NOT_FOUND_CODES = frozenset({"-2013", "110001", "170213"})
_CODE_PATTERN = re.compile(r'"(?:code|retCode)"\s*:\s*"?(-?\d+)"?')
_MSG_PATTERN = re.compile(r'"(?:msg|retMsg)"\s*:\s*"((?:[^"\\]|\\.)*)"')
_QUERY_PATTERN = re.compile(r"(https?://[^\s?\"']+)\?[^\s\"']*")


class ExchangeAuthError(PermanentError):
    """The key or secret was refused (or lacks a permission): start-up must stop, not retry."""


def scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` without any secret and without URL query strings (timestamps, signatures)."""
    text = _QUERY_PATTERN.sub(r"\1?…", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def exchange_code(message: str) -> str | None:
    """The exchange's numeric error code inside a ccxt message (which embeds the body)."""
    match = _CODE_PATTERN.search(message)
    return match.group(1) if match else None


def _describe(exc: BaseException, code: str | None) -> str:
    """`<code> <exchange message>` when the body is there, else ccxt's own message."""
    message = str(exc)
    found = _MSG_PATTERN.search(message)
    if code is not None and found is not None:
        try:
            text = json.loads(f'"{found.group(1)}"')
        except ValueError:
            text = found.group(1)
        return f"{code} {text}"
    return message or type(exc).__name__


def map_error(exc: BaseException, secrets: Sequence[str] = ()) -> ExchangeError:
    """The engine's error kind for a ccxt error; the message is scrubbed of `secrets`.

    Order matters: a duplicate id is recognised by code before its (generic) class; an
    auth failure before the general refusal branch (it is one); network trouble is
    transient; anything unclassified is transient because its outcome is unknown.
    """
    code = exchange_code(str(exc))
    text = scrub(f"{type(exc).__name__}: {_describe(exc, code)}", secrets)
    if isinstance(exc, ccxt_errors.DuplicateOrderId) or code in DUPLICATE_CODES:
        return DuplicateOrderError(text)
    if isinstance(exc, ccxt_errors.AuthenticationError):
        return ExchangeAuthError(text)
    if isinstance(exc, ccxt_errors.NetworkError):
        return TransientError(text)
    if isinstance(exc, ccxt_errors.InvalidOrder | ccxt_errors.InsufficientFunds | ccxt_errors.BadRequest
                  | ccxt_errors.OperationRejected | ccxt_errors.NotSupported | ccxt_errors.ArgumentsRequired):
        return PermanentError(text)
    if isinstance(exc, ccxt_errors.ExchangeError) and code in REFUSAL_CODES:
        return PermanentError(text)
    return TransientError(text)


def is_not_found(exc: BaseException) -> bool:
    """The exchange says there is no such order (as opposed to refusing to answer)."""
    return isinstance(exc, ccxt_errors.OrderNotFound) or exchange_code(str(exc)) in NOT_FOUND_CODES


class ScrubbingLogger(logging.LoggerAdapter[logging.Logger]):
    """ccxt's logger: its debug lines print request headers (the API key); scrub them first."""

    def __init__(self, logger: logging.Logger, secrets: Sequence[str]) -> None:
        super().__init__(logger, {})
        self._secrets = tuple(s for s in secrets if s)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = " ".join(str(part) for part in (msg, *args))
        kwargs.pop("exc_info", None)  # a traceback could carry the secrets in locals/args
        self.logger.log(level, scrub(text, self._secrets), **kwargs)
