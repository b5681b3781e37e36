"""The account endpoints: balances, positions and their risk, leverage, margin type and position mode.

Each is an `(account, params)` handler, shaped by `shapes` from the account's simulator and
the shared mark price.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from adapters.sim.fake_binance import params as p
from adapters.sim.fake_binance import shapes
from adapters.sim.fake_binance.account import Account, now_ms
from adapters.sim.fake_binance.params import Rejection
from adapters.sim.fake_binance.shapes import JSON, PositionFigures
from engine.model import Market


def requested_symbols(markets: Mapping[str, Market], params: dict[str, str]) -> list[str]:
    """The `symbol` asked for (-1121 if unknown), or every market in name order."""
    symbol = params.get("symbol")
    if symbol is None:
        return sorted(markets)
    if symbol not in markets:
        raise Rejection(-1121, "Invalid symbol.")
    return [symbol]


class AccountRoutes:
    def __init__(self, markets: Mapping[str, Market], mark_price: Callable[[str], float]) -> None:
        self.markets = markets
        self.mark_price = mark_price

    def symbols(self, params: dict[str, str]) -> list[str]:
        return requested_symbols(self.markets, params)

    def figures(self, account: Account, symbols: list[str]) -> list[PositionFigures]:
        held = {h.symbol: h for h in account.exchange.positions_snapshot()}
        return [PositionFigures(self.markets[s], held.get(s), self.mark_price(s), account.leverages.get(s, 1),
                                account.margin_type.get(s, "CROSSED")) for s in symbols]

    async def funds(self, account: Account) -> tuple[shapes.Funds, list[PositionFigures]]:
        balance = await account.exchange.fetch_balance()
        figures = self.figures(account, sorted(self.markets))
        funds = shapes.Funds("USDT", balance.total, balance.free, sum(f.unrealized for f in figures),
                             sum(f.maint_margin for f in figures))
        return funds, figures

    async def account_v3(self, account: Account, params: dict[str, str]) -> JSON:
        funds, figures = await self.funds(account)
        now = now_ms()
        return funds.totals_json() | {
            "assets": [funds.asset_json(now)],
            "positions": [shapes.account_position(f, now) for f in figures if f.held is not None]}

    async def account_v2(self, account: Account, params: dict[str, str]) -> JSON:
        funds, figures = await self.funds(account)
        now = now_ms()
        positions = [shapes.account_position(f, now) | {"leverage": str(f.leverage), "isolated": f.isolated,
                                                         "entryPrice": shapes.fmt(f.entry)} for f in figures]
        return funds.totals_json() | {
            "feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True, "updateTime": 0,
            "multiAssetsMargin": False, "tradeGroupId": -1, "assets": [funds.asset_json(now)],
            "positions": positions}

    async def balance(self, account: Account, params: dict[str, str]) -> list[JSON]:
        funds, _ = await self.funds(account)
        return [funds.balance_json(now_ms())]

    async def position_risk_v2(self, account: Account, params: dict[str, str]) -> list[JSON]:
        now = now_ms()
        return [shapes.position_risk(f, now, v2=True) for f in self.figures(account, self.symbols(params))]

    async def position_risk_v3(self, account: Account, params: dict[str, str]) -> list[JSON]:
        """v3 lists only symbols with a position (the simulator's stops hold no margin)."""
        now = now_ms()
        return [shapes.position_risk(f, now, v2=False) for f in self.figures(account, self.symbols(params))
                if f.held is not None]

    async def symbol_config(self, account: Account, params: dict[str, str]) -> list[JSON]:
        """GET /fapi/v1/symbolConfig: leverage and margin type per symbol."""
        return [{"symbol": s, "marginType": account.margin_type.get(s, "CROSSED"), "isAutoAddMargin": False,
                 "leverage": account.leverages.get(s, 1), "maxNotionalValue": shapes.fmt(shapes.MAX_QTY)}
                for s in self.symbols(params)]

    async def leverage_bracket(self, account: Account, params: dict[str, str]) -> list[JSON]:
        # Always a list: ccxt's loadLeverageBrackets iterates it as one.
        return [shapes.leverage_bracket(self.markets[s]) for s in self.symbols(params)]

    async def set_leverage(self, account: Account, params: dict[str, str]) -> JSON:
        symbol = account.symbol(params)
        leverage = p.integer(params, "leverage")
        account.set_leverage(symbol, leverage)
        return {"leverage": leverage, "maxNotionalValue": shapes.fmt(shapes.MAX_QTY), "symbol": symbol}

    async def set_margin_type(self, account: Account, params: dict[str, str]) -> JSON:
        account.set_margin_type(account.symbol(params), params.get("marginType", "").upper())
        return {"code": 200, "msg": "success"}

    async def position_mode(self, account: Account, params: dict[str, str]) -> JSON:
        return {"dualSidePosition": account.dual_side}

    async def set_position_mode(self, account: Account, params: dict[str, str]) -> JSON:
        account.set_dual_side(p.flag(params, "dualSidePosition"))
        return {"code": 200, "msg": "success"}
