"""The `Exchange` port on a real futures account, through ccxt's asyncio client.

Binance USDⓈ-M (`binanceusdm`) is the first-class target; Bybit linear perpetuals
(`bybit`) go through ccxt's unified API on a best-effort basis.

Why it is built the way it is, and where each job lives:

* ccxt is asyncio, the engine is Trio: every ccxt coroutine runs through
  `trio_asyncio.aio_as_trio` on the program's one loop (`trio_bot.aio`), so a Trio cancel
  scope cancels the asyncio task underneath. ccxt's own rate limiter is off: the engine
  rate-limits and applies deadlines (`adapters.ccxt_setup`).
* The engine's symbol is the native id (`BTCUSDT`), ccxt's the unified one
  (`BTC/USDT:USDT`); markets are range-checked on loading (`adapters.ccxt_markets`).
* Client ids carry the order kind (`engine.ids`); Binance keeps stops in its "algo" book,
  so look-ups and cancels pick the book from the id (`adapters.ccxt_lookup`). Closes above
  MARKET_LOT_SIZE are split (`adapters.ccxt_closes`); account settings are applied per
  symbol (`adapters.ccxt_settings`).
* Errors become the engine's kinds, secrets scrubbed (`adapters.ccxt_errors`); ccxt's dicts
  become the engine's values (`adapters.ccxt_orders`). `repr()` shows neither key nor secret.
* Prices and fills are pushed by websockets where the exchange offers them, polled
  otherwise (`adapters.ccxt_feeds`); a stop the user stream showed filled is answered
  from its figures without a REST look-up (`adapters.binance_fills`).
* 429/418 close a gate every call waits at until `Retry-After` has passed; protective
  orders leave first (`adapters.ccxt_ratelimit`). The asyncio side runs its ready
  callbacks in batches (`adapters.aio_batching`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import trio
import trio_asyncio
from ccxt.base import errors as ccxt_errors

from adapters.aio_batching import batch_ready_callbacks
from adapters.binance_account import AccountSettings
from adapters.binance_stream import PriceStream
from adapters.binance_user_stream import UserStream
from adapters.ccxt_closes import find_close, place_close
from adapters.ccxt_errors import map_error, scrub
from adapters.ccxt_feeds import Feeds, ws_url_for
from adapters.ccxt_lookup import OrderLookup, books_for
from adapters.ccxt_markets import MarketBook, max_leverage, order_windows, tradable_markets
from adapters.ccxt_orders import SETTLE, held_position, last_prices, number, resting
from adapters.ccxt_ratelimit import RateGate, retry_after_of
from adapters.ccxt_routing import check_ccxt_routing
from adapters.ccxt_settings import SymbolSettings
from adapters.ccxt_setup import new_client
from engine.errors import PermanentError, TransientError
from engine.ids import kind_of
from engine.model import (
    Balance,
    ExchangePosition,
    Market,
    OrderKind,
    OrderRequest,
    OrderState,
    OrderStatus,
)

if TYPE_CHECKING:
    from engine.ports import Exchange

T = TypeVar("T")

log = logging.getLogger("trio_bot.ccxt")

SUPPORTED = ("binanceusdm", "bybit")
# aclose() is shielded, so it needs its own bound: a dead server must not hang shutdown.
CLOSE_TIMEOUT = 5.0


class CcxtExchange:
    """Implements `engine.ports.Exchange` through ccxt; see the module docstring."""

    def __init__(
        self,
        exchange_id: str,
        *,
        api_key: str,
        api_secret: str,
        base_url: str | None = None,
        symbols: Sequence[str] | None = None,
        price_poll_interval: float = 1.0,
        options: dict[str, Any] | None = None,
        stop_working_type: str = "MARK_PRICE",
        ws_url: str | None = None,
    ) -> None:
        """`base_url` (binanceusdm only) moves every Binance URL onto a local compatible server;
        `options` are merged into ccxt's `options` last, so they win; `symbols` limits the
        price stream (default: every market `load_markets` found)."""
        if exchange_id not in SUPPORTED:
            raise ValueError(f"unsupported exchange {exchange_id!r}; expected one of {', '.join(SUPPORTED)}")
        if stop_working_type not in ("MARK_PRICE", "CONTRACT_PRICE"):
            raise ValueError(f"stop_working_type must be MARK_PRICE or CONTRACT_PRICE, got {stop_working_type!r}")
        self.stop_working_type = stop_working_type
        if not price_poll_interval > 0:
            raise ValueError(f"price_poll_interval must be > 0, got {price_poll_interval!r}")
        if exchange_id == "binanceusdm":
            check_ccxt_routing()  # a ccxt that sends stops where Binance refuses them must not trade
        batch_ready_callbacks()  # ccxt's requests in fewer Trio rounds (`adapters.aio_batching`)
        self.exchange_id = exchange_id
        self.base_url = base_url
        self._secrets = tuple(s for s in (api_key, api_secret) if s)
        self._symbols = list(symbols) if symbols is not None else None
        self._interval = float(price_poll_interval)
        self._binance = exchange_id == "binanceusdm"
        self._closed = False
        self._native: dict[str, str] = {}  # ccxt symbol -> native id

        self._client = new_client(exchange_id, api_key=api_key, api_secret=api_secret, base_url=base_url,
                                  options=options, secrets=self._secrets)
        self._gate = RateGate()
        self._lookup = OrderLookup(self._client, binance=self._binance, secrets=self._secrets)
        self._book = MarketBook({}, {}, {}, {})
        self._feeds = Feeds(exchange_id, ws_url_for(exchange_id, base_url, ws_url), self._interval,
                            self.fetch_prices, self._signed, self._client)
        self._settings = SymbolSettings(self._client, self._secrets)

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"CcxtExchange({self.exchange_id!r}{where}, api_key='***', api_secret='***')"

    __str__ = __repr__

    @property
    def ws_url(self) -> str | None:
        """Where the market and user streams are (None: prices are polled)."""
        return self._feeds.ws_url

    @property
    def price_stream(self) -> PriceStream | None:  # while `stream_prices` runs (tests, benchmarks)
        return self._feeds.price_stream

    @property
    def user_stream(self) -> UserStream | None:
        return self._feeds.user_stream

    @property
    def refused_markets(self) -> dict[str, str]:
        """Symbols whose market data was out of range, with the reason (see `adapters.ccxt_markets`)."""
        return dict(self._book.refused)

    @property
    def client(self) -> Any:
        """The ccxt client, for set-up calls the port does not cover (leverage, margin mode)."""
        return self._client

    async def aclose(self) -> None:
        """Always release ccxt's HTTP session, even when the caller is being cancelled."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
            try:
                await trio_asyncio.aio_as_trio(self._client.close)()
            except Exception as exc:
                log.warning("closing the %s client failed: %s", self.exchange_id,
                            scrub(str(exc), self._secrets))

    # --- bridge ---

    async def _gated(self, protective: bool, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One port call behind the account's 429/418 gate; a 429/418 answer closes the gate."""
        async with self._gate.passage(protective=protective):
            try:
                return await fn(*args)
            except TransientError as exc:
                after = retry_after_of(str(exc))
                if after is not None:
                    self._gate.block(after)
                    log.warning("%s: %s; every call waits %gs, protective orders first", self.exchange_id, exc,
                                after)
                raise

    async def _signed(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """A set-up call the port does not cover (listenKey, settings) behind the gate."""
        return await self._gated(False, self._aio, fn, *args)

    async def _aio(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run one ccxt coroutine on the shared asyncio loop; ccxt errors become engine kinds."""
        try:
            result: T = await trio_asyncio.aio_as_trio(fn)(*args, **kwargs)
        except ccxt_errors.BaseError as exc:
            raise map_error(exc, self._secrets) from None
        return result

    async def published_order_limits(self) -> list[tuple[int, float]]:
        """The exchange's own order-rate windows as (limit, seconds).

        Binance publishes them in exchangeInfo (`rateLimits`, type ORDERS); Bybit documents
        10 create/cancel requests a second per account for linear contracts.
        """
        if self.exchange_id != "binanceusdm":
            return [(10, 1.0)]
        info = await self._aio(self._client.fapiPublicGetExchangeInfo)
        return order_windows(info)

    @property
    def _unified(self) -> dict[str, str]:
        return self._book.unified

    async def _ensure_markets(self) -> None:
        if not self._unified:
            await self.load_markets()

    def _symbol(self, native: str) -> str:
        try:
            return self._unified[native]
        except KeyError:
            why = self._book.refused.get(native)
            raise PermanentError(f"-1121 Invalid symbol {native!r} ({why or f'not a {SETTLE} linear perpetual'} "
                                 f"on {self.exchange_id})") from None

    def _native_of(self, unified: str | None, info: Any = None) -> str:
        if unified is not None and unified in self._native:
            return self._native[unified]
        if isinstance(info, Mapping) and isinstance(info.get("symbol"), str):
            return str(info["symbol"])
        return unified or ""

    # --- markets ---

    async def load_markets(self) -> dict[str, Market]:
        """USDT-settled linear perpetuals that trade, keyed by native id, each market's figures
        range-checked (`adapters.ccxt_markets`: a refused one is logged once and not traded)."""
        raw = await self._aio(self._client.load_markets, True)
        leverage = await max_leverage(self._client, raw, self._secrets)
        book = tradable_markets(raw, leverage, strict=self._binance)
        for native, why in sorted(book.refused.items()):
            if native not in self._book.refused:
                log.warning("%s", why)
        self._book = book
        self._native = {s: n for n, s in book.unified.items()}
        return dict(book.markets)

    # --- reads ---

    async def fetch_prices(self, symbols: Sequence[str]) -> dict[str, float]:
        return await self._gated(False, self._fetch_prices, symbols)

    async def _fetch_prices(self, symbols: Sequence[str]) -> dict[str, float]:
        await self._ensure_markets()
        wanted = [self._unified[s] for s in symbols if s in self._unified]
        if not wanted:
            return {}
        if self._client.has.get("fetchLastPrices"):
            # Binance: GET /fapi/v2/ticker/price, one light call for every symbol.
            raw = await self._aio(self._client.fetch_last_prices, wanted)
            key = "price"
        else:
            raw = await self._aio(self._client.fetch_tickers, wanted)
            key = "last"
        return last_prices(raw, key, set(symbols), self._native_of)

    async def fetch_balance(self) -> Balance:
        return await self._gated(False, self._fetch_balance)

    async def _fetch_balance(self) -> Balance:
        raw = await self._aio(self._client.fetch_balance)
        account = raw.get(SETTLE) or {}
        total = number(account.get("total")) or 0.0
        free = number(account.get("free"))
        return Balance(total=total, free=total if free is None else free)

    async def fetch_positions(self) -> list[ExchangePosition]:
        return await self._gated(False, self._fetch_positions)

    async def _fetch_positions(self) -> list[ExchangePosition]:
        await self._ensure_markets()
        raw = await self._aio(self._client.fetch_positions)
        held = [h for p in raw or []
                if (h := held_position(p, self._native_of(p.get("symbol"), p.get("info") or {}))) is not None]
        return sorted(held, key=lambda h: h.symbol)

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        return await self._gated(False, self._fetch_order, symbol, client_order_id)

    async def _fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        await self._ensure_markets()
        unified = self._symbol(symbol)
        kind = kind_of(client_order_id)
        if kind is OrderKind.STOP:
            streamed = self._feeds.fills.filled_stop(client_order_id)
            if streamed is not None and streamed.symbol == symbol:
                return streamed  # the user stream showed it completely filled: no REST look-up
        if kind is OrderKind.CLOSE:
            return await find_close(client_order_id, self._book.market_max_qty.get(symbol),
                                    self._book.markets[symbol].step_size,
                                    lambda cid: self._find_in(unified, cid, OrderKind.CLOSE))
        return await self._find_in(unified, client_order_id, kind)

    async def _find_in(self, unified: str, client_order_id: str, kind: OrderKind | None) -> OrderState | None:
        for trigger in books_for(kind):
            found = await self._lookup.find(unified, client_order_id, trigger)
            if found is not None:
                return await self._state(found, client_order_id=client_order_id, kind=kind)
        return None

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        return await self._gated(False, self._fetch_open_orders, symbol)

    async def _fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        await self._ensure_markets()
        unified = self._symbol(symbol) if symbol is not None else None
        states: list[OrderState] = []
        for trigger in (False, True):  # Binance: GET /fapi/v1/openOrders, then /fapi/v1/openAlgoOrders
            params = {"trigger": True} if trigger else {}
            raw = await self._aio(self._client.fetch_open_orders, unified, None, None, params)
            states.extend([await self._state(order) for order in raw or []])
        return resting(states)

    async def prepare_account(self, symbols: Sequence[str], wanted: AccountSettings) -> list[str]:
        """Binance: check (and set) one-way mode, leverage and margin type per symbol before trading;
        see `adapters.binance_account`. Other exchanges: nothing is checked, and it says so.

        The settings are remembered: a symbol a signal brings later gets them before its first
        entry (`adapters.ccxt_settings`)."""
        if not self._binance:
            return [f"{self.exchange_id}: account settings are not checked (set leverage {wanted.leverage}x, "
                    f"{wanted.margin_type} margin and one-way mode on the exchange yourself)"]
        await self._ensure_markets()
        known = [s for s in symbols if s in self._unified]
        return await self._settings.prepare(known, wanted)

    # --- orders ---

    async def place_order(self, request: OrderRequest) -> OrderState:
        return await self._gated(request.reduce_only, self._place_order, request)

    async def _place_order(self, request: OrderRequest) -> OrderState:
        await self._ensure_markets()
        unified = self._symbol(request.symbol)
        if request.kind is OrderKind.ENTRY and self._binance:
            await self._settings.ready_for_entry(request.symbol)
        cap = self._book.market_max_qty.get(request.symbol)
        if request.kind is OrderKind.CLOSE and self._binance:
            # One or more reduce-only market orders of at most MARKET_LOT_SIZE maxQty each.
            step = self._book.markets[request.symbol].step_size
            return await place_close(request, cap if cap is not None else request.quantity, step,
                                     lambda chunk: self._place_one(unified, chunk))
        return await self._place_one(unified, request)

    async def _place_one(self, unified: str, request: OrderRequest) -> OrderState:
        params: dict[str, Any] = {"clientOrderId": request.client_order_id}
        if request.reduce_only:
            params["reduceOnly"] = True
        if request.kind is OrderKind.STOP:
            if request.stop_price is None or not request.stop_price > 0:
                # Without a trigger ccxt would send a plain reduce-only market order: refuse here.
                raise PermanentError("-1102 Mandatory parameter 'stopPrice' was not sent, was empty/null, "
                                     "or malformed.")
            # Binance: triggerPrice makes ccxt send STOP_MARKET to POST /fapi/v1/algoOrder with
            # clientAlgoId. Bybit: stopLossPrice makes ccxt derive triggerDirection from the side.
            params["triggerPrice" if self._binance else "stopLossPrice"] = request.stop_price
            if self._binance:
                # Binance's default is the last price (CONTRACT_PRICE), which one trade's wick can reach.
                params["workingType"] = self.stop_working_type
        order = await self._aio(self._client.create_order, unified, "market", request.side.value,
                                request.quantity, None, params)
        if not self._binance or not order.get("status"):
            # Bybit answers a create with ids only; the order itself has to be read back.
            found = await self._lookup.read_back(unified, request.client_order_id, request.kind)
            order = found if found is not None else order
        if request.kind is not OrderKind.STOP:
            order = await self._lookup.await_fill(unified, request, order)
        return await self._state(order, request=request)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState:
        return await self._gated(True, self._cancel_order, symbol, client_order_id)

    async def _cancel_order(self, symbol: str, client_order_id: str) -> OrderState:
        await self._ensure_markets()
        unified = self._symbol(symbol)
        order, kind, canceled = await self._lookup.cancel(unified, client_order_id)
        return await self._state(order, client_order_id=client_order_id, kind=kind,
                                 default_status=OrderStatus.CANCELED if canceled else None)

    # --- internals ---

    async def _state(self, order: Mapping[str, Any], **how: Any) -> OrderState:
        native = self._native_of(order.get("symbol"), order.get("info") or {})
        return await self._lookup.state(order, native, **how)

    # --- prices ---

    async def stream_prices(self, on_price: Callable[[str, float], None]) -> None:
        """Prices until cancelled, pushed where the exchange pushes them (`adapters.ccxt_feeds`)."""
        await self._ensure_markets()
        symbols = self._symbols if self._symbols is not None else sorted(self._unified)
        await self._feeds.run(symbols, on_price)


if TYPE_CHECKING:
    def _conforms(exchange: CcxtExchange) -> Exchange:
        """mypy proves here that `CcxtExchange` satisfies the port."""
        return exchange
