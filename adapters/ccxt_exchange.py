"""The `Exchange` port on a real futures account, through ccxt's asyncio client.

Binance USDⓈ-M (`binanceusdm`) is the first-class target; Bybit linear perpetuals
(`bybit`) go through ccxt's unified API on a best-effort basis.

Why it is built the way it is:

* ccxt is asyncio, the engine is Trio. Every ccxt coroutine runs through
  `trio_asyncio.aio_as_trio` on the program's one loop (opened once at the top by
  `trio_bot.aio`), so a Trio cancel scope cancels the asyncio task underneath and
  every method stays cancellable. The adapter never opens a loop of its own.
* The engine rate-limits and applies deadlines, so ccxt's own rate limiter is off;
  a second limiter would only add invisible queueing in front of the engine's.
* The engine's symbol is the exchange-native id (`BTCUSDT`); ccxt wants its unified
  symbol (`BTC/USDT:USDT`). Both maps are built by `load_markets`.
* Client order ids carry the order kind (`engine.ids`): `tb-<n>-stop<k>` is a
  conditional order. Binance keeps conditional orders in a separate "algo" book
  (ccxt 4.5 routes them to `/fapi/v1/algoOrder` with `clientAlgoId`), so look-ups
  and cancels pick the book from the id; an id the engine did not make is tried in
  the regular book, then in the algo book.
* Errors become the engine's kinds (`engine.errors`) by ccxt class *and* by the
  exchange's numeric code (ccxt only applies Binance's futures error table to the
  real fapi host names, and the duplicate-id code maps to a generic class). An
  error whose outcome is unknown (a bad response, an unclassified ccxt error)
  becomes `TransientError`: the engine then looks the order up by its client id
  rather than assuming it was refused.
* Secrets never leave: the API key and secret are scrubbed from every error
  message and from ccxt's own debug logging (which prints request headers, i.e.
  the key), query strings (timestamps and signatures) are cut from URLs in
  messages, and `repr()` shows neither.
* Prices are polled (`price_poll_interval`): ccxt.pro's websockets cannot be pointed
  at a local test server with the REST `base_url`, and the engine keeps only the
  newest price per symbol anyway.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import ccxt.async_support as ccxt_async
import trio
import trio_asyncio
from ccxt.base import errors as ccxt_errors

from adapters.ccxt_setup import configure_ccxt
from engine.errors import DuplicateOrderError, ExchangeError, PermanentError, TransientError
from engine.ids import position_of
from engine.model import (
    Balance,
    ExchangePosition,
    Market,
    OrderKind,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderStatus,
    Side,
)

if TYPE_CHECKING:
    from engine.ports import Exchange

T = TypeVar("T")

log = logging.getLogger("trio_bot.ccxt")

DEFAULT_MAX_LEVERAGE = 125
SETTLE = "USDT"
SUPPORTED = ("binanceusdm", "bybit")
# aclose() is shielded, so it needs its own bound: a dead server must not hang shutdown.
CLOSE_TIMEOUT = 5.0
# A market order can be acknowledged before it is matched (status NEW); the port promises
# a filled answer, so it is re-read by client id a few times before giving up.
FILL_POLLS = 5
FILL_POLL_INTERVAL = 0.2

# Exchange codes meaning "this client order id was used before".
_DUPLICATE_CODES = frozenset({
    "-4116",  # binance: ClientOrderId is duplicated
    "-20132",  # binance algo: the client algo id is duplicated
    "110072",  # bybit: OrderLinkedID is duplicate
})
# Exchange codes meaning "the exchange looked at the request and refused it". ccxt maps
# some of them only for the real fapi hosts (or to a generic class), so they are listed
# here to keep the refusal permanent whatever the host.
_REFUSAL_CODES = frozenset({
    "-1102", "-1111", "-1116", "-1117", "-1121", "-2011", "-2013", "-2018", "-2019", "-2020",
    "-2021", "-2022", "-2027", "-2028", "-4003", "-4028", "-4131", "-4164",
    "110001", "110007", "110008", "110017", "10001",
})
_NOT_FOUND_CODES = frozenset({"-2013", "110001", "170213"})
_CODE_PATTERN = re.compile(r'"(?:code|retCode)"\s*:\s*"?(-?\d+)"?')
_MSG_PATTERN = re.compile(r'"(?:msg|retMsg)"\s*:\s*"((?:[^"\\]|\\.)*)"')
_QUERY_PATTERN = re.compile(r"(https?://[^\s?\"']+)\?[^\s\"']*")
_STOP_TYPES = frozenset({"stop", "stop_market", "stop_loss", "take_profit", "take_profit_market",
                         "trailing_stop_market"})


class ExchangeAuthError(PermanentError):
    """The key or secret was refused (or lacks a permission): start-up must stop, not retry."""


# --- errors ---

def _scrub(text: str, secrets: Sequence[str]) -> str:
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
    text = _scrub(f"{type(exc).__name__}: {_describe(exc, code)}", secrets)
    if isinstance(exc, ccxt_errors.DuplicateOrderId) or code in _DUPLICATE_CODES:
        return DuplicateOrderError(text)
    if isinstance(exc, ccxt_errors.AuthenticationError):
        return ExchangeAuthError(text)
    if isinstance(exc, ccxt_errors.NetworkError):
        return TransientError(text)
    if isinstance(exc, ccxt_errors.InvalidOrder | ccxt_errors.InsufficientFunds | ccxt_errors.BadRequest
                  | ccxt_errors.OperationRejected | ccxt_errors.NotSupported | ccxt_errors.ArgumentsRequired):
        return PermanentError(text)
    if isinstance(exc, ccxt_errors.ExchangeError) and code in _REFUSAL_CODES:
        return PermanentError(text)
    return TransientError(text)


def _is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, ccxt_errors.OrderNotFound) or exchange_code(str(exc)) in _NOT_FOUND_CODES


class _ScrubbingLogger(logging.LoggerAdapter[logging.Logger]):
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
        self.logger.log(level, _scrub(text, self._secrets), **kwargs)


# --- client ids and order values ---

def kind_of(client_order_id: str) -> OrderKind | None:
    """The order kind an engine-made client id names; None for a foreign id."""
    if position_of(client_order_id) is None:
        return None
    step = client_order_id.rsplit("-", 1)[1]
    if step == "entry":
        return OrderKind.ENTRY
    return OrderKind.STOP if step.startswith("stop") else OrderKind.CLOSE


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


_STATUS = {
    "open": OrderStatus.NEW,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "canceling": OrderStatus.NEW,
    "rejected": OrderStatus.REJECTED,
    # Binance expires a reduce-only stop with nothing left to reduce; the simulator calls
    # that CANCELED, and so does the engine's bookkeeping.
    "expired": OrderStatus.CANCELED,
}


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
    ) -> None:
        """`base_url` (binanceusdm only) moves every Binance URL onto a local Binance-compatible
        server such as `adapters.sim.fake_binance`; `options` are merged into ccxt's `options`
        (e.g. `recvWindow`) last, so they win; `symbols` limits the price stream (default:
        every market `load_markets` found)."""
        if exchange_id not in SUPPORTED:
            raise ValueError(f"unsupported exchange {exchange_id!r}; expected one of {', '.join(SUPPORTED)}")
        if not price_poll_interval > 0:
            raise ValueError(f"price_poll_interval must be > 0, got {price_poll_interval!r}")
        self.exchange_id = exchange_id
        self.base_url = base_url
        self._secrets = tuple(s for s in (api_key, api_secret) if s)
        self._symbols = list(symbols) if symbols is not None else None
        self._interval = float(price_poll_interval)
        self._binance = exchange_id == "binanceusdm"
        self._closed = False
        self._unified: dict[str, str] = {}  # native id -> ccxt symbol
        self._native: dict[str, str] = {}  # ccxt symbol -> native id

        ccxt_options: dict[str, Any] = {
            "fetchMargins": False,
            "defaultType": "swap",
            "defaultSubType": "linear",
            "fetchMarkets": {"types": ["linear"]},
        }
        if self._binance:
            # Without a symbol Binance weighs the call 40x; ccxt refuses unless told we know.
            ccxt_options["warnOnFetchOpenOrdersWithoutSymbol"] = False
        ccxt_options.update(options or {})
        config: dict[str, Any] = {
            "apiKey": api_key,
            "secret": api_secret,
            "enableRateLimit": False,
            "options": ccxt_options,
            # Currencies need a wallet permission (sapi / asset endpoints) the engine never uses.
            "has": {"fetchCurrencies": False},
            "logger": _ScrubbingLogger(logging.getLogger("trio_bot.ccxt.client"), self._secrets),
        }
        if base_url is not None:
            if exchange_id != "binanceusdm":
                raise ValueError(f"base_url is supported for binanceusdm only, not {exchange_id!r}")
            if base_url.startswith("http://"):
                config["timeout_on_exit"] = 0  # the wait is for TLS shutdown; plain HTTP has none
        self._client = getattr(ccxt_async, exchange_id)(config)
        if base_url is not None:
            # Moves every URL section (not only fapi, so nothing can reach the real exchange),
            # sets the options that keep ccxt off sapi, and merges Binance's USDⓈ-M error table,
            # which ccxt otherwise applies only to the real fapi host names.
            configure_ccxt(self._client, base_url)
            self._client.options.update(options or {})

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
                            _scrub(str(exc), self._secrets))

    # --- bridge ---

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
        seconds = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}
        return [(int(w["limit"]), seconds[w["interval"]] * int(w.get("intervalNum", 1)))
                for w in info.get("rateLimits", [])
                if w.get("rateLimitType") == "ORDERS" and w.get("interval") in seconds]

    async def _raw(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Like `_aio`, but ccxt errors pass through so the caller can tell "not found" apart."""
        result: T = await trio_asyncio.aio_as_trio(fn)(*args, **kwargs)
        return result

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
        """USDT-settled linear perpetuals that trade, keyed by native id.

        ccxt uses TICK_SIZE precision for both exchanges, so `precision['price']` is the
        tick and `precision['amount']` the step (Binance: PRICE_FILTER.tickSize and
        LOT_SIZE.stepSize); the minimum notional is `limits['cost']['min']`.
        """
        raw = await self._aio(self._client.load_markets, True)
        leverage = await self._max_leverage(raw)
        markets: dict[str, Market] = {}
        unified: dict[str, str] = {}
        for symbol, m in raw.items():
            if not (m.get("swap") and m.get("linear") and m.get("settle") == SETTLE):
                continue
            if m.get("active") is False:
                continue
            tick = _number((m.get("precision") or {}).get("price"))
            step = _number((m.get("precision") or {}).get("amount"))
            if not tick or not step:
                continue  # no grid: an order could not be rounded, so the engine must not trade it
            limits = m.get("limits") or {}
            min_notional = _number((limits.get("cost") or {}).get("min")) or 0.0
            native = str(m["id"])
            markets[native] = Market(native, tick, step, min_notional,
                                     leverage.get(symbol, DEFAULT_MAX_LEVERAGE))
            unified[native] = symbol
        self._unified = unified
        self._native = {s: n for n, s in unified.items()}
        return dict(markets)

    async def _max_leverage(self, raw: Mapping[str, Any]) -> dict[str, int]:
        """Highest leverage per ccxt symbol: from the market (Bybit) or the brackets (Binance).

        Binance's brackets are a signed call (`GET /fapi/v1/leverageBracket`), so a wrong key
        shows up here, at start-up. A server without the endpoint just leaves the default.
        """
        found: dict[str, int] = {}
        for symbol, m in raw.items():
            top = _number(((m.get("limits") or {}).get("leverage") or {}).get("max"))
            if top:
                found[symbol] = int(top)
        if found or not self._client.has.get("fetchLeverageTiers"):
            return found
        try:
            tiers = await self._raw(self._client.fetch_leverage_tiers)
        except ccxt_errors.BaseError as exc:
            mapped = self._map(exc)
            if isinstance(mapped, ExchangeAuthError | TransientError):
                raise mapped from None
            log.warning("%s: no leverage brackets (%s); using %d", self.exchange_id, mapped,
                        DEFAULT_MAX_LEVERAGE)
            return found
        for symbol, entries in (tiers or {}).items():
            values = [_number(t.get("maxLeverage")) for t in entries or []]
            best = max((v for v in values if v), default=None)
            if best:
                found[symbol] = int(best)
        return found

    # --- reads ---

    async def fetch_prices(self, symbols: Sequence[str]) -> dict[str, float]:
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
            price = _number(entry.get(key))
            if native in asked and price is not None and price > 0:
                prices[native] = price
        return prices

    async def fetch_balance(self) -> Balance:
        raw = await self._aio(self._client.fetch_balance)
        account = raw.get(SETTLE) or {}
        total = _number(account.get("total")) or 0.0
        free = _number(account.get("free"))
        return Balance(total=total, free=total if free is None else free)

    async def fetch_positions(self) -> list[ExchangePosition]:
        await self._ensure_markets()
        raw = await self._aio(self._client.fetch_positions)
        held: list[ExchangePosition] = []
        for p in raw or []:
            info = p.get("info") or {}
            contracts = _number(p.get("contracts")) or 0.0
            size = _number(p.get("contractSize")) or 1.0
            quantity = abs(contracts * size)
            if quantity == 0:
                continue
            side = p.get("side")
            if side not in ("long", "short"):
                signed = _number(info.get("positionAmt")) or 0.0
                side = "long" if signed > 0 else "short"
            held.append(ExchangePosition(self._native_of(p.get("symbol"), info), Side(side), quantity,
                                         _number(p.get("entryPrice")) or 0.0))
        return sorted(held, key=lambda h: h.symbol)

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        await self._ensure_markets()
        unified = self._symbol(symbol)
        kind = kind_of(client_order_id)
        books = self._books(kind)
        for trigger in books:
            found = await self._find(unified, client_order_id, trigger)
            if found is not None:
                return await self._state(found, client_order_id=client_order_id, kind=kind)
        return None

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
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

    # --- orders ---

    async def place_order(self, request: OrderRequest) -> OrderState:
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
        order = await self._aio(self._client.create_order, unified, "market", request.side.value,
                                request.quantity, None, params)
        if not self._binance or not order.get("status"):
            # Bybit answers a create with ids only; the order itself has to be read back.
            found = await self._read_back(unified, request.client_order_id, request.kind)
            order = found if found is not None else order
        if request.kind is not OrderKind.STOP:
            order = await self._await_fill(unified, request, order)
        return await self._state(order, request=request)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState:
        await self._ensure_markets()
        unified = self._symbol(symbol)
        kind = kind_of(client_order_id)
        books = self._books(kind)
        for i, trigger in enumerate(books):
            params: dict[str, Any] = {"clientOrderId": client_order_id}
            if trigger:
                params["trigger"] = True
            try:
                order = await self._raw(self._client.cancel_order, None, unified, params)
            except ccxt_errors.BaseError as exc:
                if _is_not_found(exc) and i + 1 < len(books):
                    continue  # a foreign id: try the other book
                raise self._map(exc) from None
            if not order.get("side") or order.get("amount") is None:
                # Binance's algo cancel answers {algoId, clientAlgoId, code, msg} only.
                found = await self._read_back(unified, client_order_id, kind, trigger=trigger)
                if found is not None:
                    order = found
                return await self._state(order, client_order_id=client_order_id, kind=kind,
                                         default_status=OrderStatus.CANCELED)
            return await self._state(order, client_order_id=client_order_id, kind=kind)
        raise PermanentError(f"-2011 Unknown order sent ({client_order_id}).")

    # --- internals ---

    def _books(self, kind: OrderKind | None) -> tuple[bool, ...]:
        """Which books to search, as `trigger` flags: stops live in the conditional book."""
        if kind is OrderKind.STOP:
            return (True,)
        if kind is not None:
            return (False,)
        return (False, True)

    async def _find(self, unified: str, client_order_id: str, trigger: bool) -> dict[str, Any] | None:
        """One book's order with this client id, or None when the exchange says there is none."""
        if self._binance:
            # GET /fapi/v1/order?origClientOrderId=… or GET /fapi/v1/algoOrder?clientAlgoId=…
            params: dict[str, Any] = {"clientOrderId": client_order_id}
            if trigger:
                params["trigger"] = True
            try:
                found: dict[str, Any] = await self._raw(self._client.fetch_order, None, unified, params)
            except ccxt_errors.BaseError as exc:
                if _is_not_found(exc):
                    return None
                raise self._map(exc) from None
            return found
        return await self._find_generic(unified, client_order_id, trigger)

    async def _find_generic(self, unified: str, client_order_id: str,
                            trigger: bool) -> dict[str, Any] | None:
        """Bybit and the like: open orders, then finished ones, filtered by the client id."""
        params: dict[str, Any] = {"orderLinkId": client_order_id}
        if trigger:
            params["trigger"] = True
        for method in ("fetch_open_orders", "fetch_canceled_and_closed_orders"):
            fn = getattr(self._client, method)
            try:
                orders = await self._raw(fn, unified, None, None, params)
            except ccxt_errors.BaseError as exc:
                if _is_not_found(exc):
                    continue
                raise self._map(exc) from None
            for order in orders or []:
                if order.get("clientOrderId") == client_order_id:
                    found: dict[str, Any] = order
                    return found
        return None

    async def _read_back(self, unified: str, client_order_id: str, kind: OrderKind | None, *,
                         trigger: bool | None = None) -> dict[str, Any] | None:
        books = (trigger,) if trigger is not None else self._books(kind)
        for flag in books:
            found = await self._find(unified, client_order_id, flag)
            if found is not None:
                return found
        return None

    async def _await_fill(self, unified: str, request: OrderRequest,
                          order: dict[str, Any]) -> dict[str, Any]:
        """A market order acknowledged as open is read back until it is no longer open."""
        for _ in range(FILL_POLLS):
            if order.get("status") != "open":
                return order
            await trio.sleep(FILL_POLL_INTERVAL)
            found = await self._find(unified, request.client_order_id, False)
            if found is not None:
                order = found
        return order

    async def _state(self, order: Mapping[str, Any], *, request: OrderRequest | None = None,
                     client_order_id: str | None = None, kind: OrderKind | None = None,
                     default_status: OrderStatus | None = None) -> OrderState:
        """The engine's view of a ccxt order; what the exchange leaves out comes from the request."""
        info = order.get("info") or {}
        cid = order.get("clientOrderId") or client_order_id or (request.client_order_id if request else "")
        kind = (request.kind if request else None) or kind or kind_of(cid) or _kind_from_order(order)
        raw_status = order.get("status")
        if raw_status is None:
            status = default_status or OrderStatus.UNKNOWN
        else:
            status = _STATUS.get(str(raw_status), OrderStatus.UNKNOWN)
        side_text = order.get("side") or (request.side.value if request else None)
        side = OrderSide(side_text) if side_text in ("buy", "sell") else OrderSide.BUY
        quantity = _number(order.get("amount"))
        if quantity is None:
            quantity = request.quantity if request else 0.0
        filled = _number(order.get("filled")) or 0.0
        average = _number(order.get("average"))
        if filled > 0 and not average:
            cost = _number(order.get("cost"))
            average = cost / filled if cost else None
        if status is OrderStatus.FILLED and filled == 0:
            filled, average = await self._triggered_fill(order, quantity)
        stop = _number(order.get("triggerPrice")) or _number(order.get("stopPrice"))
        if stop is None and request is not None and kind is OrderKind.STOP:
            stop = request.stop_price
        reduce_only = order.get("reduceOnly")
        if not isinstance(reduce_only, bool):
            reduce_only = kind is not OrderKind.ENTRY
        symbol = self._native_of(order.get("symbol"), info)
        if not symbol and request is not None:
            symbol = request.symbol
        order_id = order.get("id")
        return OrderState(
            client_order_id=cid, symbol=symbol, side=side, kind=kind, quantity=quantity,
            status=status, filled_quantity=filled, average_price=average if filled > 0 else None,
            stop_price=stop, reduce_only=reduce_only,
            exchange_order_id=str(order_id) if order_id not in (None, "") else None)

    async def _triggered_fill(self, order: Mapping[str, Any], quantity: float) -> tuple[float, float | None]:
        """A triggered Binance algo order reports no fill itself; its market order does.

        The algo order names that order (`actualOrderId`); failing that, the algo order's
        `actualPrice` and full quantity are the best answer there is.
        """
        info = order.get("info") or {}
        actual = info.get("actualOrderId")
        unified = order.get("symbol")
        if actual not in (None, "", "0", 0) and unified:
            try:
                placed = await self._raw(self._client.fetch_order, str(actual), unified)
            except ccxt_errors.BaseError as exc:
                if not _is_not_found(exc):
                    raise self._map(exc) from None
            else:
                filled = _number(placed.get("filled")) or 0.0
                if filled > 0:
                    average = _number(placed.get("average"))
                    return filled, average
        price = _number(info.get("actualPrice"))
        return quantity, price if price else None

    # --- prices ---

    async def stream_prices(self, on_price: Callable[[str, float], None]) -> None:
        """Poll every `price_poll_interval` seconds until cancelled.

        A transient failure skips one round (logged) instead of ending the stream; a refusal
        (bad key, bad symbol) ends it, since polling again would only repeat it.
        """
        await self._ensure_markets()
        symbols = self._symbols if self._symbols is not None else sorted(self._unified)
        next_at = trio.current_time()
        while True:
            try:
                prices = await self.fetch_prices(symbols)
            except TransientError as exc:
                log.warning("%s price poll failed: %s", self.exchange_id, exc)
            else:
                for symbol, price in prices.items():
                    on_price(symbol, price)
            next_at = max(next_at + self._interval, trio.current_time())
            await trio.sleep_until(next_at)


def _kind_from_order(order: Mapping[str, Any]) -> OrderKind:
    """A foreign order's kind: a trigger type is a stop, reduce-only a close, else an entry."""
    if str(order.get("type") or "").lower() in _STOP_TYPES or _number(order.get("triggerPrice")):
        return OrderKind.STOP
    return OrderKind.CLOSE if order.get("reduceOnly") is True else OrderKind.ENTRY


if TYPE_CHECKING:
    def _conforms(exchange: CcxtExchange) -> Exchange:
        """mypy proves here that `CcxtExchange` satisfies the port."""
        return exchange
