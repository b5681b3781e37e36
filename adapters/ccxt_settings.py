"""Binance account settings per traded symbol: set up at start-up, and before a new symbol's first entry.

Start-up (`prepare`) checks the position mode and sets (or checks) leverage and margin type
for the configured symbols (`adapters.binance_account`). A signal may bring a symbol that
list does not name; its entry would then trade with whatever leverage and margin type the
account has for it, so before its first entry the same settings are applied to it
(`ready_for_entry`), once. A refusal (the account differs and may not be changed, or the
change failed) is remembered and refuses every entry on that symbol with the reason, so the
signal is rejected with it; a transient failure is not remembered (the next entry tries
again). Memory is bounded: past `MAX_PREPARED` symbols the oldest is forgotten (and checked
again when it trades next).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from adapters.binance_account import AccountSettings, AccountSettingsError, prepare_binance_account
from engine.errors import PermanentError

log = logging.getLogger("trio_bot.ccxt")

MAX_PREPARED = 4096


class SymbolSettings:
    """Which symbols have the account settings trio-bot trades with (Binance)."""

    def __init__(self, client: Any, secrets: Sequence[str]) -> None:
        self._client = client
        self._secrets = tuple(secrets)
        self.wanted: AccountSettings | None = None
        self._prepared: dict[str, str | None] = {}  # symbol -> None (ready) or why it may not be traded

    async def prepare(self, symbols: Sequence[str], wanted: AccountSettings) -> list[str]:
        self.wanted = wanted
        notes = await prepare_binance_account(self._client, symbols, wanted, self._secrets)
        for symbol in symbols:
            self._remember(symbol, None)
        return notes

    async def ready_for_entry(self, symbol: str) -> None:
        """Apply the settings to `symbol` if it never had them; raise `PermanentError` if it may not trade."""
        if self.wanted is None:
            return  # nothing was asked for (a caller that never prepared the account)
        if symbol in self._prepared:
            why = self._prepared[symbol]
            if why is not None:
                raise PermanentError(f"{symbol}: account settings: {why}")
            return
        try:
            notes = await prepare_binance_account(self._client, [symbol], self.wanted, self._secrets)
        except AccountSettingsError as exc:
            self._remember(symbol, str(exc))
            raise PermanentError(f"{symbol}: account settings: {exc}") from None
        self._remember(symbol, None)
        log.info("account: %s", notes[-1])

    def _remember(self, symbol: str, why: str | None) -> None:
        self._prepared.pop(symbol, None)
        self._prepared[symbol] = why
        while len(self._prepared) > MAX_PREPARED:
            del self._prepared[next(iter(self._prepared))]
