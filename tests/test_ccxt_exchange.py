"""The ccxt adapter: real ccxt over real HTTP against the fake Binance server, plus offline checks
of the error mapping, the secret scrubbing and the Bybit wiring."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio_asyncio
from ccxt.base import errors as E

from adapters.ccxt_errors import ExchangeAuthError, map_error
from adapters.ccxt_exchange import CcxtExchange
from adapters.sim.fake_binance import FakeBinance
from adapters.sim.scenario import ExchangeSpec, FaultSpec, MarketSpec
from engine import ids
from engine.errors import DuplicateOrderError, PermanentError, TransientError
from engine.model import (
    Balance,
    ExchangePosition,
    Market,
    OrderKind,
    OrderRequest,
    OrderSide,
    OrderStatus,
    Side,
)

KEY = "k3y-ABCDEFGHIJKLMNOP"
SECRET = "s3cr3t-QRSTUVWXYZ0123456789"


# --- offline: error mapping ---

def body(code: int, msg: str) -> str:
    return f'binanceusdm {{"code":{code},"msg":"{msg}"}}'


@pytest.mark.parametrize(("error", "kind"), [
    (E.NetworkError("binanceusdm GET http://h/fapi/v1/order"), TransientError),
    (E.RequestTimeout("binanceusdm POST http://h/fapi/v1/order"), TransientError),
    (E.ExchangeNotAvailable("binanceusdm 502 Bad Gateway"), TransientError),
    (E.DDoSProtection("binanceusdm 418"), TransientError),
    (E.RateLimitExceeded(body(-1003, "Too much request weight used")), TransientError),
    (E.InvalidNonce(body(-1021, "Timestamp outside recvWindow")), TransientError),
    (E.InvalidOrder(body(-4164, "Order's notional must be no smaller than 5")), PermanentError),
    (E.OrderImmediatelyFillable(body(-2021, "Order would immediately trigger.")), PermanentError),
    (E.InsufficientFunds(body(-2019, "Margin is insufficient.")), PermanentError),
    (E.BadSymbol(body(-1121, "Invalid symbol.")), PermanentError),
    (E.BadRequest(body(-1102, "Mandatory parameter")), PermanentError),
    (E.OrderNotFound(body(-2011, "Unknown order sent.")), PermanentError),
    # A generic class with a refusal code (ccxt maps it so off the real fapi hosts).
    (E.ExchangeError(body(-2022, "ReduceOnly Order is rejected.")), PermanentError),
    # Duplicates by code whatever the class: linear table says InvalidOrder, elsewhere generic.
    (E.InvalidOrder(body(-4116, "ClientOrderId is duplicated.")), DuplicateOrderError),
    (E.ExchangeError(body(-4116, "ClientOrderId is duplicated.")), DuplicateOrderError),
    (E.BadRequest(body(-20132, "The client algo id is duplicated")), DuplicateOrderError),
    (E.DuplicateOrderId("bybit duplicate"), DuplicateOrderError),
    (E.AuthenticationError(body(-2015, "Invalid API-key, IP, or permissions for action.")), ExchangeAuthError),
    (E.AuthenticationError(body(-1022, "Signature for this request is not valid.")), ExchangeAuthError),
    (E.PermissionDenied("bybit permission denied"), ExchangeAuthError),
    # Outcome unknown: the engine must look the order up, so these are transient.
    (E.BadResponse("binanceusdm unparsable"), TransientError),
    (E.NullResponse("binanceusdm empty"), TransientError),
    (E.ExchangeError(body(-1001, "Internal error")), TransientError),
    (E.BaseError("something new"), TransientError),
])
def test_error_mapping(error: Exception, kind: type[Exception]) -> None:
    mapped = map_error(error)
    assert type(mapped) is kind


def test_refusals_keep_the_exchange_message() -> None:
    mapped = map_error(E.InsufficientFunds(body(-2019, "Margin is insufficient.")))
    assert "-2019 Margin is insufficient." in str(mapped)


def test_auth_error_is_permanent() -> None:
    assert issubclass(ExchangeAuthError, PermanentError)


def test_messages_are_scrubbed_of_secrets_and_signatures() -> None:
    error = E.ExchangeNotAvailable(f"binanceusdm GET http://h/fapi/v1/order?timestamp=1&signature=abcdef {KEY} "
                                   f"{SECRET}")
    text = str(map_error(error, [KEY, SECRET]))
    assert KEY not in text and SECRET not in text and "signature" not in text


# --- offline: construction ---

def test_repr_hides_secrets() -> None:
    exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url="http://127.0.0.1:1")
    assert KEY not in repr(exchange) and SECRET not in repr(exchange) and SECRET not in str(exchange)


def test_binance_wiring_moves_every_url_and_disables_the_rate_limiter() -> None:
    exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url="http://127.0.0.1:8080/")
    client = exchange.client
    assert client.enableRateLimit is False
    assert client.has["fetchCurrencies"] is False
    assert client.urls["api"]["fapiPrivate"] == "http://127.0.0.1:8080/fapi/v1"
    assert client.urls["api"]["fapiPublicV2"] == "http://127.0.0.1:8080/fapi/v2"
    assert client.urls["api"]["fapiPrivateV3"] == "http://127.0.0.1:8080/fapi/v3"
    assert all(url.startswith("http://127.0.0.1:8080/") for url in client.urls["api"].values())
    # The local server gets Binance's futures error table, as fapi.binance.com does.
    assert client.exceptions["exact"]["-4116"] is E.InvalidOrder
    assert client.exceptions["exact"]["-2019"] is E.InsufficientFunds


def test_bybit_wiring() -> None:
    exchange = CcxtExchange("bybit", api_key=KEY, api_secret=SECRET, options={"recvWindow": 7000})
    client = exchange.client
    assert client.id == "bybit"
    assert client.enableRateLimit is False
    assert client.options["defaultType"] == "swap"
    assert client.options["defaultSubType"] == "linear"
    assert client.options["fetchMarkets"]["types"] == ["linear"]
    assert client.options["recvWindow"] == 7000
    assert client.has["fetchCurrencies"] is False
    assert client.urls["api"]["public"].startswith("https://")  # untouched without base_url


def test_bybit_error_codes() -> None:
    assert type(map_error(E.InvalidOrder('bybit {"retCode":110072,"retMsg":"OrderLinkedID is duplicate"}'))) \
        is DuplicateOrderError
    assert type(map_error(E.AuthenticationError('bybit {"retCode":10003,"retMsg":"API key is invalid."}'))) \
        is ExchangeAuthError
    assert type(map_error(E.InsufficientFunds('bybit {"retCode":110007,"retMsg":"not enough"}'))) \
        is PermanentError


def test_construction_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        CcxtExchange("kraken", api_key=KEY, api_secret=SECRET)
    with pytest.raises(ValueError, match="binanceusdm only"):
        CcxtExchange("bybit", api_key=KEY, api_secret=SECRET, base_url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="price_poll_interval"):
        CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, price_poll_interval=0)


def test_ccxt_debug_log_is_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url="http://127.0.0.1:1")
    with caplog.at_level(logging.DEBUG, logger="trio_bot.ccxt"):
        exchange.client.logger.debug("%s %s, Request: %s %s", "GET", "http://h/x", {"X-MBX-APIKEY": KEY}, SECRET)
    assert caplog.records
    assert KEY not in caplog.text and SECRET not in caplog.text


async def test_aclose_without_any_request() -> None:
    async with trio_asyncio.open_loop():
        exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url="http://127.0.0.1:1")
        await exchange.aclose()
        await exchange.aclose()  # idempotent


async def test_unreachable_server_is_transient() -> None:
    async with trio_asyncio.open_loop():
        exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url="http://127.0.0.1:9")
        try:
            with pytest.raises(TransientError) as caught:
                await exchange.load_markets()
        finally:
            await exchange.aclose()
    assert SECRET not in str(caught.value) and KEY not in str(caught.value)


# --- live: real ccxt over real HTTP against FakeBinance ---

SPEC = ExchangeSpec(balance_usdt=10_000.0, latency=0.0, markets=(
    MarketSpec("BTCUSDT", 50_000.0, tick_size=0.1, step_size=0.001, min_notional=5.0, max_leverage=50),
    MarketSpec("FORMUSDT", 0.8, tick_size=0.0001, step_size=1.0, min_notional=5.0, max_leverage=75),
))


@asynccontextmanager
async def connected(*, key: str = KEY, secret: str = SECRET,
                    interval: float = 1.0) -> AsyncIterator[tuple[FakeBinance, CcxtExchange]]:
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        fake = FakeBinance(SPEC, api_key=KEY, api_secret=SECRET)
        port = await nursery.start(fake.serve)
        exchange = CcxtExchange("binanceusdm", api_key=key, api_secret=secret,
                                base_url=f"http://127.0.0.1:{port}", price_poll_interval=interval)
        try:
            yield fake, exchange
        finally:
            await exchange.aclose()
            nursery.cancel_scope.cancel()


def entry(side: OrderSide, qty: float, pid: int = 1, symbol: str = "BTCUSDT") -> OrderRequest:
    return OrderRequest(symbol, side, OrderKind.ENTRY, qty, ids.entry_id(pid))


def stop(side: OrderSide, qty: float, price: float, pid: int = 1, seq: int = 1,
         symbol: str = "BTCUSDT") -> OrderRequest:
    return OrderRequest(symbol, side, OrderKind.STOP, qty, ids.stop_id(pid, seq), price)


def close(side: OrderSide, qty: float, pid: int = 1, symbol: str = "BTCUSDT") -> OrderRequest:
    return OrderRequest(symbol, side, OrderKind.CLOSE, qty, ids.close_id(pid))


async def test_markets_prices_and_balance() -> None:
    async with connected() as (_, exchange):
        markets = await exchange.load_markets()
        assert markets == {
            "BTCUSDT": Market("BTCUSDT", 0.1, 0.001, 5.0, 50),
            "FORMUSDT": Market("FORMUSDT", 0.0001, 1.0, 5.0, 75),
        }
        assert await exchange.fetch_prices(["BTCUSDT", "FORMUSDT", "NOPEUSDT"]) == {
            "BTCUSDT": 50_000.0, "FORMUSDT": 0.8}
        assert await exchange.fetch_prices([]) == {}
        assert await exchange.fetch_balance() == Balance(10_000.0, 10_000.0)


async def test_entry_stop_cancel_close_round_trip() -> None:
    async with connected() as (fake, exchange):
        filled = await exchange.place_order(entry(OrderSide.BUY, 0.01))
        assert (filled.status, filled.filled_quantity, filled.average_price) == (OrderStatus.FILLED, 0.01, 50_000.0)
        assert (filled.kind, filled.reduce_only, filled.symbol) == (OrderKind.ENTRY, False, "BTCUSDT")
        assert await exchange.fetch_positions() == [ExchangePosition("BTCUSDT", Side.LONG, 0.01, 50_000.0)]
        assert await exchange.fetch_order("BTCUSDT", ids.entry_id(1)) == filled

        resting = await exchange.place_order(stop(OrderSide.SELL, 0.01, 49_000.04))
        assert (resting.status, resting.stop_price, resting.reduce_only) == (OrderStatus.NEW, 49_000.0, True)
        assert resting.kind is OrderKind.STOP
        assert await exchange.fetch_open_orders() == [resting]
        assert await exchange.fetch_open_orders("FORMUSDT") == []
        assert await exchange.fetch_order("BTCUSDT", ids.stop_id(1, 1)) == resting

        canceled = await exchange.cancel_order("BTCUSDT", ids.stop_id(1, 1))
        assert (canceled.status, canceled.side, canceled.quantity) == (OrderStatus.CANCELED, OrderSide.SELL, 0.01)
        assert await exchange.fetch_open_orders() == []
        assert fake.exchange.open_orders_snapshot() == []

        closed = await exchange.place_order(close(OrderSide.SELL, 0.01))
        assert (closed.status, closed.kind, closed.reduce_only) == (OrderStatus.FILLED, OrderKind.CLOSE, True)
        assert await exchange.fetch_positions() == []


async def test_triggered_stop_reports_its_fill() -> None:
    async with connected() as (fake, exchange):
        await exchange.place_order(entry(OrderSide.SELL, 0.01))
        await exchange.place_order(stop(OrderSide.BUY, 0.01, 51_000.0))
        fake.exchange.set_price("BTCUSDT", 51_500.0)
        fired = await exchange.fetch_order("BTCUSDT", ids.stop_id(1, 1))
        assert fired is not None
        assert (fired.status, fired.filled_quantity, fired.average_price) == (OrderStatus.FILLED, 0.01, 51_500.0)
        assert await exchange.fetch_positions() == []
        assert await exchange.fetch_open_orders() == []


async def test_unknown_orders() -> None:
    async with connected() as (_, exchange):
        for cid in (ids.entry_id(9), ids.stop_id(9, 1), ids.close_id(9), "foreign-1"):
            assert await exchange.fetch_order("BTCUSDT", cid) is None
        with pytest.raises(PermanentError, match="-2011"):
            await exchange.cancel_order("BTCUSDT", ids.stop_id(9, 1))
        with pytest.raises(PermanentError, match="-2011"):
            await exchange.cancel_order("BTCUSDT", "foreign-1")


async def test_foreign_stop_is_found_in_the_algo_book() -> None:
    async with connected() as (fake, exchange):
        await fake.exchange.place_order(OrderRequest("FORMUSDT", OrderSide.BUY, OrderKind.ENTRY, 100, "manual-e"))
        await fake.exchange.place_order(OrderRequest("FORMUSDT", OrderSide.SELL, OrderKind.STOP, 100, "manual-s", 0.7))
        found = await exchange.fetch_order("FORMUSDT", "manual-s")
        assert found is not None and (found.kind, found.status, found.stop_price) == (OrderKind.STOP, OrderStatus.NEW,
                                                                                      0.7)
        canceled = await exchange.cancel_order("FORMUSDT", "manual-s")
        assert canceled.status is OrderStatus.CANCELED


async def test_refusals_are_permanent() -> None:
    async with connected() as (_, exchange):
        with pytest.raises(PermanentError, match="-4164"):
            await exchange.place_order(entry(OrderSide.BUY, 5, symbol="FORMUSDT"))  # 4 USDT
        with pytest.raises(PermanentError, match="minimum amount precision"):
            await exchange.place_order(entry(OrderSide.BUY, 0.0004))  # truncates to 0 on a 0.001 step
        with pytest.raises(PermanentError, match="-2022"):
            await exchange.place_order(close(OrderSide.SELL, 0.01))
        with pytest.raises(PermanentError, match="-2021"):
            await exchange.place_order(stop(OrderSide.SELL, 0.01, 60_000.0))
        with pytest.raises(PermanentError, match="-1102"):
            await exchange.place_order(OrderRequest("BTCUSDT", OrderSide.SELL, OrderKind.STOP, 0.01, "tb-1-stop1"))
        with pytest.raises(PermanentError, match="-1121"):
            await exchange.place_order(entry(OrderSide.BUY, 1.0, symbol="NOPEUSDT"))
        with pytest.raises(PermanentError, match="-2019"):
            await exchange.place_order(entry(OrderSide.BUY, 5.0))  # 250k notional at Binance's default 20x


async def test_duplicate_client_ids_only_among_open_orders() -> None:
    async with connected() as (fake, exchange):
        await exchange.place_order(entry(OrderSide.BUY, 0.01))
        # Filled, so no longer open: Binance takes the same id again and fills a second entry.
        # The engine must never rely on a duplicate refusal to protect it from a re-sent entry.
        again = await exchange.place_order(entry(OrderSide.BUY, 0.01))
        assert again.status is OrderStatus.FILLED and len(fake.exchange.fills) == 2
        await exchange.place_order(stop(OrderSide.SELL, 0.02, 49_000.0))
        with pytest.raises(DuplicateOrderError, match="-20132"):
            await exchange.place_order(stop(OrderSide.SELL, 0.02, 49_000.0))


async def test_bad_gateway_is_transient_and_places_nothing() -> None:
    async with connected() as (fake, exchange):
        await exchange.load_markets()
        fake.plan.add(FaultSpec("exchange.entry_order", "error", times=1))
        with pytest.raises(TransientError, match="ExchangeNotAvailable"):
            await exchange.place_order(entry(OrderSide.BUY, 0.01))
        assert await exchange.fetch_order("BTCUSDT", ids.entry_id(1)) is None


async def test_hang_is_cut_by_a_deadline() -> None:
    async with connected() as (fake, exchange):
        await exchange.load_markets()
        fake.plan.add(FaultSpec("exchange.query", "hang", times=1))
        with trio.move_on_after(0.5) as scope:
            await exchange.fetch_balance()
        assert scope.cancelled_caught
        assert await exchange.fetch_balance() == Balance(10_000.0, 10_000.0)  # the client still works


async def test_lost_response_then_lookup_by_client_id() -> None:
    async with connected() as (fake, exchange):
        await exchange.load_markets()
        fake.plan.add(FaultSpec("exchange.entry_order", "lost_response", times=1))
        fake.plan.add(FaultSpec("exchange.stop_order", "lost_response", times=1))
        with trio.move_on_after(2.0) as scope:
            with pytest.raises(TransientError):  # the socket closes without an answer
                await exchange.place_order(entry(OrderSide.BUY, 0.01))
        assert not scope.cancelled_caught
        found = await exchange.fetch_order("BTCUSDT", ids.entry_id(1))
        assert found is not None and (found.status, found.filled_quantity) == (OrderStatus.FILLED, 0.01)
        with pytest.raises(TransientError):
            await exchange.place_order(stop(OrderSide.SELL, 0.01, 49_000.0))
        found = await exchange.fetch_order("BTCUSDT", ids.stop_id(1, 1))
        assert found is not None and found.status is OrderStatus.NEW
        with pytest.raises(DuplicateOrderError):  # the retry of a landed order
            await exchange.place_order(stop(OrderSide.SELL, 0.01, 49_000.0))


async def test_wrong_secret_stops_start_up() -> None:
    async with connected(secret="not-the-secret-XYZ") as (_, exchange):
        with pytest.raises(ExchangeAuthError, match="-1022") as caught:
            await exchange.load_markets()
    assert "not-the-secret-XYZ" not in str(caught.value)


async def test_wrong_key_is_an_auth_error() -> None:
    async with connected(key="wrong-key-ABCDEFG") as (_, exchange):
        with pytest.raises(ExchangeAuthError, match="-2015") as caught:
            await exchange.fetch_balance()
    assert "wrong-key-ABCDEFG" not in str(caught.value)


async def test_secrets_never_reach_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    async with connected() as (fake, exchange):
        assert SECRET not in repr(exchange) and KEY not in repr(exchange)
        await exchange.load_markets()
        await exchange.place_order(entry(OrderSide.BUY, 0.01))
        fake.plan.add(FaultSpec("exchange.query", "error", times=1))
        for call in (lambda: exchange.fetch_balance(), lambda: exchange.place_order(entry(OrderSide.BUY, 5.0)),
                     lambda: exchange.cancel_order("BTCUSDT", "nope")):
            try:
                await call()
            except Exception as exc:
                errors.append(exc)
    assert len(errors) == 3
    assert any("Request" in r.getMessage() for r in caplog.records)  # ccxt did log its requests
    for text in [caplog.text, *(str(e) for e in errors), *(repr(e) for e in errors)]:
        assert SECRET not in text and KEY not in text


async def test_stream_prices_polls() -> None:
    async with connected(interval=0.05) as (fake, exchange):
        seen: list[tuple[str, float]] = []
        first_poll = trio.Event()

        def on_price(symbol: str, price: float) -> None:
            seen.append((symbol, price))
            if len(seen) >= 2:
                first_poll.set()
            if price == 51_000.0:
                scope.cancel()

        with trio.move_on_after(5.0) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(exchange.stream_prices, on_price)
                with trio.fail_after(4.0):
                    await first_poll.wait()  # however long a busy machine takes
                fake.exchange.set_price("BTCUSDT", 51_000.0)
        assert ("BTCUSDT", 50_000.0) in seen and ("FORMUSDT", 0.8) in seen and ("BTCUSDT", 51_000.0) in seen


async def test_aclose_closes_even_when_cancelled() -> None:
    async with connected() as (_, exchange):
        await exchange.fetch_balance()  # opens the HTTP session
        assert exchange.client.session is not None
        with trio.CancelScope() as scope:
            scope.cancel()
            await exchange.aclose()
        assert exchange.client.session is None


def _raw_market(native: str, **overrides: Any) -> dict[str, Any]:
    market: dict[str, Any] = {"id": native, "swap": True, "linear": True, "settle": "USDT", "active": True,
                              "precision": {"price": 0.1, "amount": 0.001},
                              "limits": {"cost": {"min": 5.0}, "amount": {"min": 0.001, "max": 1000.0},
                                         "market": {"min": 0.001, "max": 120.0}}}
    for key, value in overrides.items():
        section, name = key.split("__")
        market[section] = {**market[section], name: value}
    return market


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"precision__price": 1e-300}, "BTCUSDT: the exchange's tick size is 1e-300, expected a number in [1e-12, 1e+06]"),
    ({"precision__amount": None}, "BTCUSDT: the exchange's step size is missing"),
    ({"precision__price": "nan"}, "BTCUSDT: the exchange's tick size is 'nan'"),
    ({"limits__cost": {"min": -5.0}}, "BTCUSDT: the exchange's minimum notional is -5.0"),
    ({"limits__cost": {}}, "BTCUSDT: the exchange's minimum notional is missing"),
    ({"limits__market": {"max": 0.0}}, "BTCUSDT: the exchange's maximum market order quantity is 0.0"),
    ({"limits__market": {"max": 0.0001}}, "maximum market order quantity is 0.0001, below its step size"),
])
def test_market_data_out_of_range_refuses_the_symbol_with_one_line(overrides: dict[str, Any], expected: str) -> None:
    from adapters.ccxt_markets import tradable_markets

    good = _raw_market("ETHUSDT")
    raw = {"BTC/USDT:USDT": _raw_market("BTCUSDT", **overrides), "ETH/USDT:USDT": good}
    book = tradable_markets(raw, {})
    assert list(book.markets) == ["ETHUSDT"] and book.market_max_qty == {"ETHUSDT": 120.0}
    (why,) = book.refused.values()
    assert expected in why and why.endswith("the symbol is not traded") and "\n" not in why
