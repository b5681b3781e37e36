"""The public market data endpoints: ping, time, exchange info, tickers and the premium index.

Each is a `(params)` handler over the shared market: the last price of the first account's
simulator (every account follows it) and the mark price, which a wick can hold apart.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.sim.fake_binance import shapes
from adapters.sim.fake_binance.account import now_ms
from adapters.sim.fake_binance.account_routes import requested_symbols
from adapters.sim.fake_binance.limits import RateLimits
from adapters.sim.fake_binance.params import Limits
from adapters.sim.fake_binance.shapes import JSON
from engine.model import Market


class MarketRoutes:
    def __init__(self, markets: dict[str, Market], limits: dict[str, Limits], rate_limits: RateLimits,
                 price: Callable[[str], float], mark_price: Callable[[str], float],
                 open_prices: dict[str, float]) -> None:
        self.markets = markets
        self.limits = limits
        self.rate_limits = rate_limits
        self.price = price
        self.mark_price = mark_price
        self.open_prices = open_prices

    def _per_symbol(self, params: dict[str, str], shape: Callable[[str], JSON]) -> JSON | list[JSON]:
        rows = [shape(s) for s in requested_symbols(self.markets, params)]
        return rows[0] if "symbol" in params else rows

    async def ping(self, params: dict[str, str]) -> JSON:
        return {}

    async def time(self, params: dict[str, str]) -> JSON:
        return {"serverTime": now_ms()}

    async def exchange_info(self, params: dict[str, str]) -> JSON:
        return shapes.exchange_info([self.markets[s] for s in sorted(self.markets)], self.limits, now_ms(),
                                    self.rate_limits)

    async def ticker_price(self, params: dict[str, str]) -> JSON | list[JSON]:
        return self._per_symbol(params, lambda s: shapes.price_ticker(s, self.price(s), now_ms()))

    async def ticker_24hr(self, params: dict[str, str]) -> JSON | list[JSON]:
        return self._per_symbol(params, lambda s: shapes.ticker_24hr(s, self.price(s), self.open_prices[s],
                                                                      now_ms()))

    async def book_ticker(self, params: dict[str, str]) -> JSON | list[JSON]:
        return self._per_symbol(params, lambda s: shapes.book_ticker(s, self.price(s), now_ms()))

    async def premium_index(self, params: dict[str, str]) -> JSON | list[JSON]:
        return self._per_symbol(params, lambda s: shapes.premium_index(s, self.mark_price(s), now_ms()))
