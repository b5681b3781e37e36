"""Binance USDⓈ-M account settings trio-bot depends on, checked (and set) before trading.

The engine sizes every position with `leverage`, sends orders without `positionSide`
(one-way mode) and assumes one margin type; Binance keeps all three per account or
per symbol, and starts a symbol the account never touched at 20x cross. So before
the first wave:

* position mode: one-way. In hedge mode every order without `positionSide` is
  refused (-4061); trio-bot switches the account to one-way (allowed only with no
  position and no open order, else -4068/-4067) or refuses to start.
* per traded symbol: the configured leverage (POST /fapi/v1/leverage) and margin
  type (POST /fapi/v1/marginType; -4046 "No need to change" is success).

`change=False` only checks, refusing to start on the first difference: for an
account whose settings someone else manages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio_asyncio
from ccxt.base import errors as ccxt_errors

from adapters.ccxt_errors import exchange_code, map_error
from engine.errors import PermanentError

MARGIN_TYPES = {"cross": "CROSSED", "isolated": "ISOLATED"}


class AccountSettingsError(PermanentError):
    """The account is set up in a way trio-bot cannot trade, and may not or could not change it."""


@attrs.frozen
class AccountSettings:
    leverage: int
    margin_type: str = "cross"  # "cross" or "isolated"
    change: bool = True  # set what differs; False: refuse to start on a difference


async def _call(fn: Callable[..., Awaitable[Any]], secrets: Sequence[str], *args: Any,
                ok_code: str | None = None) -> Any:
    try:
        return await trio_asyncio.aio_as_trio(fn)(*args)
    except ccxt_errors.BaseError as exc:
        if ok_code is not None and exchange_code(str(exc)) == ok_code:
            return None
        raise map_error(exc, secrets) from None


async def prepare_binance_account(client: Any, symbols: Sequence[str], wanted: AccountSettings,
                                  secrets: Sequence[str] = ()) -> list[str]:
    """Check (and with `wanted.change`, set) position mode, leverage and margin type.

    Returns one line per thing checked or changed, for the start-up screen; raises
    `AccountSettingsError` naming the setting, the account's value and what trio-bot needs.
    """
    margin = MARGIN_TYPES[wanted.margin_type]
    notes: list[str] = []
    mode = await _call(client.fapiPrivateGetPositionSideDual, secrets)
    if str(mode.get("dualSidePosition")).lower() == "true":
        if not wanted.change:
            raise AccountSettingsError(
                "the account is in hedge mode (dualSidePosition=true); trio-bot trades in one-way mode only: "
                "switch the account to one-way mode, or let trio-bot do it (exchange.account_settings = \"set\")")
        try:
            await _call(client.fapiPrivatePostPositionSideDual, secrets, {"dualSidePosition": "false"})
        except PermanentError as exc:
            raise AccountSettingsError(f"the account is in hedge mode and could not be switched to one-way mode "
                                       f"({exc}); close its positions and orders first") from None
        notes.append("position mode: hedge -> one-way (set)")
    else:
        notes.append("position mode: one-way")
    configs = {str(c.get("symbol")): c for c in await _call(client.fapiPrivateGetSymbolConfig, secrets) or []}
    for symbol in symbols:
        config = configs.get(symbol, {})
        have_margin = str(config.get("marginType") or "CROSSED").upper()
        have_leverage = int(float(config.get("leverage") or 0))
        changed = []
        if have_margin != margin:
            if not wanted.change:
                raise AccountSettingsError(f"{symbol}: margin type is {have_margin}, the config says {margin} "
                                           "(exchange.margin_type); trio-bot is set not to change it")
            try:  # -4046 "No need to change margin type." is success
                await _call(client.fapiPrivatePostMarginType, secrets, {"symbol": symbol, "marginType": margin},
                            ok_code="-4046")
            except PermanentError as exc:
                raise AccountSettingsError(f"{symbol}: margin type {have_margin} could not be set to "
                                           f"{margin}: {exc}") from None
            changed.append(f"margin {have_margin} -> {margin}")
        if have_leverage != wanted.leverage:
            if not wanted.change:
                raise AccountSettingsError(f"{symbol}: leverage is {have_leverage}x, the config says "
                                           f"{wanted.leverage}x (engine.leverage); trio-bot is set not to change it")
            try:
                await _call(client.fapiPrivatePostLeverage, secrets, {"symbol": symbol, "leverage": wanted.leverage})
            except PermanentError as exc:
                raise AccountSettingsError(f"{symbol}: leverage could not be set to {wanted.leverage}x: {exc}") \
                    from None
            changed.append(f"leverage {have_leverage}x -> {wanted.leverage}x")
        state = f"{wanted.margin_type}, {wanted.leverage}x"
        notes.append(f"{symbol}: {state}" + (f" (set: {', '.join(changed)})" if changed else ""))
    return notes
