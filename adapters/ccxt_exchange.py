"""The `Exchange` port on a real futures account, through ccxt's asyncio client.

Binance USDⓈ-M (`binanceusdm`) is the first-class target; Bybit linear perpetuals
(`bybit`) go through ccxt's unified API on a best-effort basis.

Why it is built the way it is:

* ccxt is asyncio, the engine is Trio. Every ccxt coroutine runs through
  `trio_asyncio.aio_as_trio` on the program's one loop (opened once at the top by
  `trio_bot.aio`), so a Trio cancel scope cancels the asyncio task underneath and
  every method stays cancellable. The adapter never opens a loop of its own.
* The engine rate-limits and applies deadlines, so ccxt's own rate limiter is off
  (`adapters.ccxt_setup.new_client`).
* The engine's symbol is the exchange-native id (`BTCUSDT`); ccxt wants its unified
  symbol (`BTC/USDT:USDT`). Both maps are built by `load_markets`.
* Client order ids carry the order kind (`engine.ids`): `tb-<n>-stop<k>` is a
  conditional order, which Binance keeps in a separate "algo" book; look-ups and
  cancels pick the book from the id (`adapters.ccxt_lookup`).
* Errors become the engine's kinds and secrets are scrubbed from every message and
  from ccxt's own debug logging (`adapters.ccxt_errors`); ccxt's dicts become the
  engine's values in `adapters.ccxt_orders`. `repr()` shows neither key nor secret.
* Prices come from Binance's bookTicker websocket stream (`adapters.binance_stream`,
  trio-websocket), polled over REST (`price_poll_interval`) while it is down and for
  other exchanges; the engine keeps only the newest price per symbol anyway.
* 429/418 answers close a gate every call of the account waits at until `Retry-After`
  has passed; protective orders leave first (`adapters.ccxt_ratelimit`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio
import trio_asyncio
from ccxt.base import errors as ccxt_errors

from adapters.binance_account import AccountSettings, prepare_binance_account
from adapters.binance_stream import BINANCE_WS, PriceStream
from adapters.binance_user_stream import UserStream
from adapters.ccxt_errors import ExchangeAuthError, is_not_found, map_error, scrub
from adapters.ccxt_lookup import OrderLookup, books_for, raw_call
from adapters.ccxt_orders import (
    ALGO_RESOLVED_BY_FILL,
    DEFAULT_MAX_LEVERAGE,
    SETTLE,
    algo_status,
    held_position,
    market_leverage,
    number,
    order_state,
    order_windows,
    tier_leverage,
    tradable_markets,
)
from adapters.ccxt_ratelimit import RateGate, retry_after_of
from adapters.ccxt_routing import check_ccxt_routing
from adapters.ccxt_setup import new_client
from engine.errors import ExchangeError, PermanentError, TransientError
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
        """`base_url` (binanceusdm only) moves every Binance URL onto a local Binance-compatible
        server such as `adapters.sim.fake_binance`; `options` are merged into ccxt's `options`
        (e.g. `recvWindow`) last, so they win; `symbols` limits the price stream (default:
        every market `load_markets` found)."""
        if exchange_id not in SUPPORTED:
            raise ValueError(f"unsupported exchange {exchange_id!r}; expected one of {', '.join(SUPPORTED)}")
        if stop_working_type not in ("MARK_PRICE", "CONTRACT_PRICE"):
            raise ValueError(f"stop_working_type must be MARK_PRICE or CONTRACT_PRICE, got {stop_working_type!r}")
        self.stop_working_type = stop_working_type
        # Binance's market streams; a local server names its own, else prices are polled.
        self.ws_url = ws_url if ws_url is not None else (BINANCE_WS if exchange_id == "binanceusdm"
                                                          and base_url is None else None)
        self.price_stream: PriceStream | None = None
        self.user_stream: UserStream | None = None
        if not price_poll_interval > 0:
            raise ValueError(f"price_poll_interval must be > 0, got {price_poll_interval!r}")
        if exchange_id == "binanceusdm":
            check_ccxt_routing()  # a ccxt that sends stops where Binance refuses them must not trade
        self.exchange_id = exchange_id
        self.base_url = base_url
        self._secrets = tuple(s for s in (api_key, api_secret) if s)
        self._symbols = list(symbols) if symbols is not None else None
        self._interval = float(price_poll_interval)
        self._binance = exchange_id == "binanceusdm"
        self._closed = False
        self._unified: dict[str, str] = {}  # native id -> ccxt symbol
        self._native: dict[str, str] = {}  # ccxt symbol -> native id

        self._client = new_client(exchange_id, api_key=api_key, api_secret=api_secret, base_url=base_url,
                                  options=options, secrets=self._secrets)
        self._gate = RateGate()
        self._lookup = OrderLookup(self._client, binance=self._binance, secrets=self._secrets)

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"CcxtExchange({self.exchange_id!r}{where}, api_key='***', api_secret='***')"

    __str__ = __repr__

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
        await self._gate.wait(protective=protective)
        try:
            return await fn(*args)
        except TransientError as exc:
            after = retry_after_of(str(exc))
            if after is not None:
                self._gate.block(after)
                log.warning("%s: %s; every call waits %gs, protective orders first", self.exchange_id, exc, after)
            raise

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

    def _map(self, exc: BaseException) -> ExchangeError:
        return map_error(exc, self._secrets)

    async def _ensure_markets(self) -> None:
        if not self._unified:
            await self.load_markets()

    def _symbol(self, native: str) -> str:
        try:
            return self._unified[native]
        except KeyError:
            raise PermanentError(f"-1121 Invalid symbol {native!r} (not a {SETTLE} linear perpetual "
                                 f"on {self.exchange_id})") from None

    def _native_of(self, unified: str | None, info: Any = None) -> str:
        if unified is not None and unified in self._native:
            return self._native[unified]
        if isinstance(info, Mapping) and isinstance(info.get("symbol"), str):
            return str(info["symbol"])
        return unified or ""

    # --- markets ---

    async def load_markets(self) -> dict[str, Market]:
        """USDT-settled linear perpetuals that trade, keyed by native id (`tradable_markets`)."""
        raw = await self._aio(self._client.load_markets, True)
        leverage = await self._max_leverage(raw)
        markets, unified = tradable_markets(raw, leverage)
        self._unified = unified
        self._native = {s: n for n, s in unified.items()}
        return markets

    async def _max_leverage(self, raw: Mapping[str, Any]) -> dict[str, int]:
        """Highest leverage per ccxt symbol: from the market (Bybit) or the brackets (Binance).

        Binance's brackets are a signed call (`GET /fapi/v1/leverageBracket`), so a wrong key
        shows up here, at start-up. A server without the endpoint just leaves the default.
        """
        found = market_leverage(raw)
        if found or not self._client.has.get("fetchLeverageTiers"):
            return found
        try:
            tiers = await raw_call(self._client.fetch_leverage_tiers)
        except ccxt_errors.BaseError as exc:
            mapped = self._map(exc)
            if isinstance(mapped, ExchangeAuthError | TransientError):
                raise mapped from None
            log.warning("%s: no leverage brackets (%s); using %d", self.exchange_id, mapped,
                        DEFAULT_MAX_LEVERAGE)
            return found
        return tier_leverage(tiers)

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
        asked = set(symbols)
        prices: dict[str, float] = {}
        for unified, entry in (raw or {}).items():
            native = self._native_of(entry.get("symbol") or unified, entry.get("info"))
            price = number(entry.get(key))
            if native in asked and price is not None and price > 0:
                prices[native] = price
        return prices

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
        books = books_for(kind)
        for trigger in books:
            found = await self._lookup.find(unified, client_order_id, trigger)
            if found is not None:
                return await self._state(found, client_order_id=client_order_id, kind=kind)
        return None

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        return await self._gated(False, self._fetch_open_orders, symbol)

    async def _fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        await self._ensure_markets()
        unified = self._symbol(symbol) if symbol is not None else None
        # Binance: GET /fapi/v1/openOrders, then GET /fapi/v1/openAlgoOrders (the stops).
        # Bybit may list a conditional order in both answers, hence the de-duplication;
        # the key pairs both ids because Binance's orderId and algoId are separate counters.
        seen: set[tuple[str | None, str]] = set()
        states: list[OrderState] = []
        for trigger in (False, True):
            params = {"trigger": True} if trigger else {}
            raw = await self._aio(self._client.fetch_open_orders, unified, None, None, params)
            for order in raw or []:
                state = await self._state(order)
                key = (state.exchange_order_id, state.client_order_id)
                if state.status is OrderStatus.NEW and key not in seen:
                    seen.add(key)
                    states.append(state)
        return sorted(states, key=lambda o: (o.symbol, o.client_order_id))

    async def prepare_account(self, symbols: Sequence[str], wanted: AccountSettings) -> list[str]:
        """Binance: check (and set) one-way mode, leverage and margin type per symbol before trading;
        see `adapters.binance_account`. Other exchanges: nothing is checked, and it says so."""
        if not self._binance:
            return [f"{self.exchange_id}: account settings are not checked (set leverage {wanted.leverage}x, "
                    f"{wanted.margin_type} margin and one-way mode on the exchange yourself)"]
        await self._ensure_markets()
        known = [s for s in symbols if s in self._unified]
        return await prepare_binance_account(self._client, known, wanted, self._secrets)

    # --- orders ---

    async def place_order(self, request: OrderRequest) -> OrderState:
        return await self._gated(request.reduce_only, self._place_order, request)

    async def _place_order(self, request: OrderRequest) -> OrderState:
        await self._ensure_markets()
        unified = self._symbol(request.symbol)
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
        kind = kind_of(client_order_id)
        books = books_for(kind)
        for i, trigger in enumerate(books):
            params: dict[str, Any] = {"clientOrderId": client_order_id}
            if trigger:
                params["trigger"] = True
            try:
                order = await raw_call(self._client.cancel_order, None, unified, params)
            except ccxt_errors.BaseError as exc:
                if is_not_found(exc) and i + 1 < len(books):
                    continue  # a foreign id: try the other book
                raise self._map(exc) from None
            if not order.get("side") or order.get("amount") is None:
                # Binance's algo cancel answers {algoId, clientAlgoId, code, msg} only.
                found = await self._lookup.read_back(unified, client_order_id, kind, trigger=trigger)
                if found is not None:
                    order = found
                return await self._state(order, client_order_id=client_order_id, kind=kind,
                                         default_status=OrderStatus.CANCELED)
            return await self._state(order, client_order_id=client_order_id, kind=kind)
        raise PermanentError(f"-2011 Unknown order sent ({client_order_id}).")

    # --- internals ---

    async def _state(self, order: Mapping[str, Any], *, request: OrderRequest | None = None,
                     client_order_id: str | None = None, kind: OrderKind | None = None,
                     default_status: OrderStatus | None = None) -> OrderState:
        state = order_state(order, self._native_of(order.get("symbol"), order.get("info") or {}),
                            request=request, client_order_id=client_order_id, kind=kind,
                            default_status=default_status)
        algo = algo_status(order)
        if algo in ALGO_RESOLVED_BY_FILL:
            # Triggered: an exit only with the fill found on the order it became. FINISHED with
            # that order unfilled (expired in the matching engine) is a stop that is gone; not
            # found, or still resting (TRIGGERED), stays UNKNOWN: the position has no working stop.
            fill = await self._lookup.triggered_fill(order)
            if fill.filled > 0:
                state = attrs.evolve(state, status=OrderStatus.FILLED, filled_quantity=fill.filled,
                                     average_price=fill.average)
            elif algo == "FINISHED" and fill.finished:
                state = attrs.evolve(state, status=OrderStatus.CANCELED)
        return state

    # --- prices ---

    async def stream_prices(self, on_price: Callable[[str, float], None]) -> None:
        """Prices until cancelled: Binance's bookTicker stream when a websocket URL is known
        (`adapters.binance_stream`: polling while it is down, a REST poll after each connect),
        else a REST poll every `price_poll_interval` seconds.

        A transient failure skips one round (logged) instead of ending the stream; a refusal
        (bad key, bad symbol) ends it, since polling again would only repeat it.
        """
        await self._ensure_markets()
        symbols = self._symbols if self._symbols is not None else sorted(self._unified)
        poll_once = partial(self._poll_once, symbols, on_price)
        if self.ws_url is not None:
            self.price_stream = PriceStream(self.ws_url, symbols, poll_once, self._interval)
            self.user_stream = UserStream(self.ws_url, self._new_listen_key, self._keep_listen_key, on_price,
                                          poll_once)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.user_stream.run)
                await self.price_stream.run(on_price)
            return
        next_at = trio.current_time()
        while True:
            await poll_once()
            next_at = max(next_at + self._interval, trio.current_time())
            await trio.sleep_until(next_at)

    async def _new_listen_key(self) -> str:
        answer = await self._gated(False, self._aio, self._client.fapiPrivatePostListenKey)
        return str(answer["listenKey"])

    async def _keep_listen_key(self, key: str) -> None:
        await self._gated(False, self._aio, self._client.fapiPrivatePutListenKey, {"listenKey": key})

    async def _poll_once(self, symbols: Sequence[str], on_price: Callable[[str, float], None]) -> None:
        try:
            prices = await self.fetch_prices(symbols)
        except TransientError as exc:
            log.warning("%s price poll failed: %s", self.exchange_id, exc)
        else:
            for symbol, price in prices.items():
                on_price(symbol, price)

if TYPE_CHECKING:
    def _conforms(exchange: CcxtExchange) -> Exchange:
        """mypy proves here that `CcxtExchange` satisfies the port."""
        return exchange
