"""Binance USDⓈ-M behaviours the adapter must survive, one test per documented code or field,
each driven through the real ccxt client and the adapter over real HTTP against the fake server.

Named after what they cover (`algoStatus_TRIGGERING`, `minus_4120`, ...): a failure names
the Binance behaviour that broke.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import ccxt
import pytest
import trio
import trio_asyncio

from adapters.ccxt_exchange import CcxtExchange
from adapters.ccxt_routing import CcxtRoutingError, check_ccxt_routing, routing_problems
from adapters.sim.fake_binance import FakeBinance
from adapters.sim.scenario import ExchangeSpec, FaultSpec, MarketSpec
from engine import ids
from engine.errors import TransientError
from engine.model import OrderKind, OrderRequest, OrderSide, OrderState, OrderStatus

KEY, SECRET = "conformance-key", "conformance-secret"
SPEC = ExchangeSpec(balance_usdt=10_000.0, latency=0.0, markets=(
    MarketSpec("BTCUSDT", 50_000.0, tick_size=0.1, step_size=0.001, min_notional=5.0, max_leverage=50),
))


@asynccontextmanager
async def connected(*faults: FaultSpec) -> AsyncIterator[tuple[FakeBinance, CcxtExchange]]:
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        fake = FakeBinance(SPEC, api_key=KEY, api_secret=SECRET)
        for fault in faults:
            fake.plan.add(fault)
        port = await nursery.start(fake.serve)
        exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url=f"http://127.0.0.1:{port}")
        try:
            yield fake, exchange
        finally:
            await exchange.aclose()
            nursery.cancel_scope.cancel()


def entry(qty: float = 0.01) -> OrderRequest:
    return OrderRequest("BTCUSDT", OrderSide.BUY, OrderKind.ENTRY, qty, ids.entry_id(1))


def stop(price: float = 49_000.0, qty: float = 0.01, seq: int = 1) -> OrderRequest:
    return OrderRequest("BTCUSDT", OrderSide.SELL, OrderKind.STOP, qty, ids.stop_id(1, seq), price)


@asynccontextmanager
async def stopped_out(*faults: FaultSpec) -> AsyncIterator[tuple[FakeBinance, CcxtExchange, OrderState | None]]:
    """A long with its stop, then the price through the stop; yields the stop as the adapter reads it."""
    async with connected(*faults) as (fake, exchange):
        await exchange.place_order(entry())
        await exchange.place_order(stop())
        fake.exchange.set_price("BTCUSDT", 48_000.0)
        yield fake, exchange, await exchange.fetch_order("BTCUSDT", ids.stop_id(1, 1))


def trigger_fault(effect: str, seconds: float = 0.0) -> FaultSpec:
    return FaultSpec("exchange.stop_trigger", effect, seconds=seconds)


def algo_status(fake: FakeBinance) -> str:
    return fake.primary.orders[ids.stop_id(1, 1)].algo_status or "derived"


# --- -4120 and the ccxt version floor ---

async def test_minus_4120_the_adapter_places_stops_on_the_algo_endpoint() -> None:
    async with connected() as (fake, exchange):
        await exchange.place_order(entry())
        placed = await exchange.place_order(stop())
        assert placed.status is OrderStatus.NEW
        assert ("POST", "/fapi/v1/algoOrder", 200) in fake.hits
        assert not any(path == "/fapi/v1/order" and method == "POST" and status != 200
                       for method, path, status in fake.hits)


def test_ccxt_version_floor_the_installed_ccxt_routes_stops_to_the_algo_endpoints() -> None:
    assert routing_problems() == []
    check_ccxt_routing()  # does not raise


def test_ccxt_version_floor_a_ccxt_sending_stops_to_the_order_endpoint_is_refused() -> None:
    class OldBinance(ccxt.binanceusdm):  # type: ignore[misc]
        """How ccxt before the algo migration built these requests."""

        def create_order(self, symbol: str, type: str, side: str, amount: float, price: Any = None,
                         params: Any = None) -> Any:
            return self.fapiPrivatePostOrder({"symbol": "BTCUSDT", "type": "STOP_MARKET",
                                              "newClientOrderId": (params or {}).get("clientOrderId")})

        def cancel_order(self, id: str, symbol: Any = None, params: Any = None) -> Any:
            return self.fapiPrivateDeleteOrder({"symbol": "BTCUSDT",
                                                "origClientOrderId": (params or {}).get("clientOrderId")})

    problems = routing_problems(OldBinance)
    assert problems == [
        "create_order (a reduce-only stop) goes to POST /fapi/v1/order, Binance takes it at POST /fapi/v1/algoOrder",
        "cancel_order (a stop, by client id) goes to DELETE /fapi/v1/order, Binance takes it at DELETE "
        "/fapi/v1/algoOrder",
    ]
    assert issubclass(CcxtRoutingError, Exception)


# --- algoStatus: a stop is an exit only with its fill found ---

async def test_algoStatus_FINISHED_with_a_fill_is_a_filled_stop_at_the_actual_orders_price() -> None:
    async with stopped_out() as (_fake, exchange, fired):
        assert fired is not None
        assert (fired.status, fired.filled_quantity, fired.average_price) == (OrderStatus.FILLED, 0.01, 48_000.0)
        assert await exchange.fetch_positions() == []


async def test_algoStatus_TRIGGERING_is_neither_resting_nor_filled() -> None:
    async with stopped_out(trigger_fault("hang")) as (fake, exchange, fired):
        assert algo_status(fake) == "TRIGGERING"
        assert fired is not None and (fired.status, fired.filled_quantity) == (OrderStatus.UNKNOWN, 0.0)
        # ccxt itself calls TRIGGERING "open"; the adapter must not list it as a resting stop.
        raw = await trio_asyncio.aio_as_trio(exchange.client.fetch_open_orders)(
            "BTC/USDT:USDT", None, None, {"trigger": True})
        assert [o["status"] for o in raw] == ["open"]
        assert await exchange.fetch_open_orders("BTCUSDT") == []
        assert len(await exchange.fetch_positions()) == 1  # still held, without a working stop


async def test_algoStatus_TRIGGERING_then_filled_after_a_delay() -> None:
    async with stopped_out(trigger_fault("delay", seconds=0.2)) as (_fake, exchange, fired):
        assert fired is not None and fired.status is OrderStatus.UNKNOWN
        await trio.sleep(0.4)
        later = await exchange.fetch_order("BTCUSDT", ids.stop_id(1, 1))
        assert later is not None and (later.status, later.filled_quantity) == (OrderStatus.FILLED, 0.01)


async def test_algoStatus_TRIGGERED_resting_in_the_matching_engine_is_not_a_fill() -> None:
    async with stopped_out(trigger_fault("stall")) as (fake, exchange, fired):
        assert algo_status(fake) == "TRIGGERED"
        assert fired is not None and (fired.status, fired.filled_quantity) == (OrderStatus.UNKNOWN, 0.0)
        assert len(await exchange.fetch_positions()) == 1


async def test_algoStatus_FINISHED_without_a_fill_is_a_stop_gone_not_an_exit() -> None:
    async with stopped_out(trigger_fault("unfilled")) as (fake, exchange, fired):
        assert algo_status(fake) == "FINISHED"
        assert fired is not None
        assert (fired.status, fired.filled_quantity, fired.average_price) == (OrderStatus.CANCELED, 0.0, None)
        assert len(await exchange.fetch_positions()) == 1


async def test_algoStatus_REJECTED() -> None:
    async with stopped_out(trigger_fault("reject")) as (_fake, _exchange, fired):
        assert fired is not None and (fired.status, fired.filled_quantity) == (OrderStatus.REJECTED, 0.0)


async def test_algoStatus_EXPIRED() -> None:
    async with stopped_out(trigger_fault("expire")) as (_fake, _exchange, fired):
        assert fired is not None and (fired.status, fired.filled_quantity) == (OrderStatus.CANCELED, 0.0)


async def test_actualOrderId_look_up_failing_raises_rather_than_guessing_a_fill() -> None:
    async with connected() as (fake, exchange):
        await exchange.place_order(entry())
        await exchange.place_order(stop())
        fake.exchange.set_price("BTCUSDT", 48_000.0)
        fake.plan.add(FaultSpec("exchange.query", "delay", times=1))  # the algo order read goes through,
        fake.plan.add(FaultSpec("exchange.query", "error", times=1))  # the read of the order it became fails
        with pytest.raises(TransientError):
            await exchange.fetch_order("BTCUSDT", ids.stop_id(1, 1))
        fired = await exchange.fetch_order("BTCUSDT", ids.stop_id(1, 1))
        assert fired is not None and fired.status is OrderStatus.FILLED


async def test_a_triggering_algo_order_cannot_be_cancelled_minus_2011() -> None:
    async with stopped_out(trigger_fault("hang")) as (_fake, exchange, _fired):
        with pytest.raises(Exception, match="-2011"):
            await exchange.cancel_order("BTCUSDT", ids.stop_id(1, 1))


# --- 503 / -1007: execution status unknown ---

async def test_http_503_unknown_error_the_entry_executes_after_the_first_look_up() -> None:
    async with connected(FaultSpec("exchange.entry_order", "unknown", times=1)) as (fake, exchange):
        with pytest.raises(TransientError, match="ExchangeNotAvailable"):
            await exchange.place_order(entry())
        assert fake.exchange.fills == []
        assert await exchange.fetch_order("BTCUSDT", ids.entry_id(1)) is None  # "does not exist" ...
        assert len(fake.exchange.fills) == 1  # ... and then it executed
        found = await exchange.fetch_order("BTCUSDT", ids.entry_id(1))
        assert found is not None and found.status is OrderStatus.FILLED


async def test_minus_1007_timeout_the_entry_executes_seconds_later() -> None:
    fault = FaultSpec("exchange.entry_order", "unknown", message="-1007", seconds=0.2, times=1)
    async with connected(fault) as (fake, exchange):
        with pytest.raises(TransientError, match="-1007"):
            await exchange.place_order(entry())
        assert fake.exchange.fills == []
        await trio.sleep(0.4)
        found = await exchange.fetch_order("BTCUSDT", ids.entry_id(1))
        assert found is not None and (found.status, found.filled_quantity) == (OrderStatus.FILLED, 0.01)


# --- workingType: mark price against last price ---

async def test_workingType_MARK_PRICE_a_wick_on_the_last_price_does_not_stop_the_position_out() -> None:
    async with connected() as (fake, exchange):
        assert exchange.stop_working_type == "MARK_PRICE"  # the default
        await exchange.place_order(entry())
        await exchange.place_order(stop())
        assert fake.primary.orders[ids.stop_id(1, 1)].working_type == "MARK_PRICE"
        fake.set_tick("BTCUSDT", 48_000.0, mark=49_500.0)  # the last price wicks through the stop
        held = await exchange.fetch_order("BTCUSDT", ids.stop_id(1, 1))
        assert held is not None and held.status is OrderStatus.NEW
        fake.set_mark("BTCUSDT", 48_900.0)  # now the mark crosses too
        fired = await exchange.fetch_order("BTCUSDT", ids.stop_id(1, 1))
        assert fired is not None and (fired.status, fired.average_price) == (OrderStatus.FILLED, 48_000.0)


async def test_workingType_CONTRACT_PRICE_triggers_on_the_wick() -> None:
    async with connected() as (fake, exchange):
        exchange.stop_working_type = "CONTRACT_PRICE"
        await exchange.place_order(entry())
        await exchange.place_order(stop())
        fake.set_tick("BTCUSDT", 48_000.0, mark=49_500.0)
        fired = await exchange.fetch_order("BTCUSDT", ids.stop_id(1, 1))
        assert fired is not None and fired.status is OrderStatus.FILLED


# --- account settings: position mode, leverage, margin type ---

async def test_minus_4061_hedge_mode_refuses_orders_without_positionSide_and_start_up_switches_it() -> None:
    from adapters.binance_account import AccountSettings, AccountSettingsError

    async with connected() as (fake, exchange):
        fake.primary.dual_side = True
        with pytest.raises(Exception, match="-4061"):
            await exchange.place_order(entry())
        with pytest.raises(AccountSettingsError, match="hedge mode"):
            await exchange.prepare_account(["BTCUSDT"], AccountSettings(3, "isolated", change=False))
        notes = await exchange.prepare_account(["BTCUSDT"], AccountSettings(3, "isolated"))
        assert notes == ["position mode: hedge -> one-way (set)",
                         "BTCUSDT: isolated, 3x (set: margin CROSSED -> ISOLATED, leverage 20x -> 3x)"]
        assert (fake.primary.dual_side, fake.primary.leverages["BTCUSDT"],
                fake.primary.margin_type["BTCUSDT"]) == (False, 3, "ISOLATED")
        assert await exchange.prepare_account(["BTCUSDT"], AccountSettings(3, "isolated", change=False)) == [
            "position mode: one-way", "BTCUSDT: isolated, 3x"]
        await exchange.place_order(entry())  # one-way now: accepted


async def test_minus_4046_and_minus_4048_margin_type_with_a_position_cannot_change() -> None:
    from adapters.binance_account import AccountSettings, AccountSettingsError

    async with connected() as (_fake, exchange):
        await exchange.place_order(entry())
        with pytest.raises(AccountSettingsError, match="-4048"):
            await exchange.prepare_account(["BTCUSDT"], AccountSettings(20, "isolated"))
        assert await exchange.prepare_account(["BTCUSDT"], AccountSettings(20, "cross")) == [
            "position mode: one-way", "BTCUSDT: cross, 20x"]


# --- rate limits: X-MBX-USED-WEIGHT-1M, 429 Retry-After, 418 ---

async def test_X_MBX_USED_WEIGHT_1M_and_X_MBX_ORDER_COUNT_headers() -> None:
    async with connected() as (_fake, exchange):
        await exchange.place_order(entry())
        headers = {k.lower(): v for k, v in exchange.client.last_response_headers.items()}
        assert int(headers["x-mbx-used-weight-1m"]) > 0
        await exchange.place_order(stop())
        headers = {k.lower(): v for k, v in exchange.client.last_response_headers.items()}
        assert headers["x-mbx-order-count-10s"] == "2" and headers["x-mbx-order-count-1m"] == "2"


async def test_http_429_retry_after_holds_every_call_and_protective_orders_go_first() -> None:
    from adapters.sim.fake_binance.limits import RateLimits

    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        fake = FakeBinance(SPEC, api_key=KEY, api_secret=SECRET,
                           rate_limits=RateLimits(orders_10s=2, orders_window_10s=1.0))
        port = await nursery.start(fake.serve)
        exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url=f"http://127.0.0.1:{port}")
        try:
            await exchange.place_order(entry())
            await exchange.place_order(stop())
            with pytest.raises(TransientError, match="429 rate limited, retry-after=1"):
                await exchange.place_order(stop(48_000.0, seq=2))
            order: list[str] = []
            start = trio.current_time()

            async def call(name: str, fn: Any) -> None:
                await fn()
                order.append(name)

            async with trio.open_nursery() as calls:
                calls.start_soon(call, "balance", exchange.fetch_balance)
                await trio.sleep(0.01)
                calls.start_soon(call, "stop", lambda: exchange.place_order(stop(48_000.0, seq=3)))
            assert trio.current_time() - start >= 0.5  # nobody called before Retry-After passed
            assert order == ["stop", "balance"]  # the protective order first
            statuses = [s for m, p, s in fake.hits if p == "/fapi/v1/algoOrder" and m == "POST"]
            assert statuses == [200, 429, 200]
        finally:
            await exchange.aclose()
            nursery.cancel_scope.cancel()


async def test_http_418_a_client_that_keeps_sending_after_a_429_is_banned() -> None:
    from adapters.sim.fake_binance.limits import RateLimits

    async with trio.open_nursery() as nursery:
        fake = FakeBinance(SPEC, rate_limits=RateLimits(weight=3, weight_window=60.0, ban_seconds=120.0))
        port = await nursery.start(fake.serve)
        statuses = []
        for _ in range(5):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(b"GET /fapi/v1/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            raw = b""
            while chunk := await stream.receive_some(65536):
                raw += chunk
            await stream.aclose()
            statuses.append((int(raw.split(b" ")[1]), b"Retry-After" in raw))
        assert statuses == [(200, False), (200, False), (200, False), (429, True), (418, True)]
        nursery.cancel_scope.cancel()


# --- market streams: bookTicker over a websocket, polling while it is down ---

async def until(condition: Any, seconds: float = 5.0) -> None:
    """Wait (bounded) for a state another task brings about."""
    with trio.fail_after(seconds):
        while True:
            if condition():
                return
            await trio.sleep(0.01)


async def test_bookTicker_stream_pushes_each_price_change_and_survives_a_drop() -> None:
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        fake = FakeBinance(SPEC, api_key=KEY, api_secret=SECRET)
        port = await nursery.start(fake.serve)
        exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url=f"http://127.0.0.1:{port}",
                                ws_url=fake.ws_url, price_poll_interval=0.05)
        seen: list[float] = []
        arrived = trio.Event()
        want = [0.0]

        def on_price(symbol: str, price: float) -> None:
            seen.append(price)
            if price == want[0]:
                arrived.set()

        async def expect(price: float) -> None:
            nonlocal arrived
            arrived, want[0] = trio.Event(), price
            with trio.fail_after(5):
                await arrived.wait()

        try:
            nursery.start_soon(exchange.stream_prices, on_price)
            await expect(50_000.0)  # the REST poll made on connecting
            await until(lambda: fake.streams.connected > 0)
            await until(lambda: exchange.user_stream is not None and exchange.user_stream.connects > 0)
            await trio.sleep(0.1)  # the REST poll each stream makes on connecting
            polls = sum(1 for _, path, _ in fake.hits if "ticker/price" in path)
            fake.exchange.set_price("BTCUSDT", 50_100.0)
            await expect(50_100.0)  # pushed, not polled:
            assert sum(1 for _, path, _ in fake.hits if "ticker/price" in path) == polls
            assert exchange.price_stream is not None and exchange.price_stream.connects == 1

            await fake.streams.drop_all()  # the stream goes away: polling carries on, then a reconnect
            fake.exchange.set_price("BTCUSDT", 50_200.0)
            await expect(50_200.0)
            stream = exchange.price_stream
            await until(lambda: stream.connects >= 2 and fake.streams.connected > 0)
            fake.exchange.set_price("BTCUSDT", 50_300.0)
            await expect(50_300.0)
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await exchange.aclose()


# --- user data stream: listenKey, ALGO_UPDATE, ORDER_TRADE_UPDATE, ACCOUNT_UPDATE ---

async def test_listenKey_user_stream_pushes_ALGO_UPDATE_ORDER_TRADE_UPDATE_ACCOUNT_UPDATE() -> None:
    import trio_websocket

    async with connected() as (fake, exchange):
        create = trio_asyncio.aio_as_trio(exchange.client.fapiPrivatePostListenKey)
        key = (await create())["listenKey"]
        assert (await create())["listenKey"] == key  # the active key again, extended
        await trio_asyncio.aio_as_trio(exchange.client.fapiPrivatePutListenKey)({"listenKey": key})
        async with trio_websocket.open_websocket_url(f"{fake.ws_url}/ws/{key}") as ws:
            await until(lambda: fake.user_streams._clients.get(KEY))
            await exchange.place_order(entry())
            await exchange.place_order(stop())
            fake.exchange.set_price("BTCUSDT", 48_000.0)
            events = []
            with trio.fail_after(5):
                while len(events) < 6:
                    events.append(json.loads(await ws.get_message()))
        kinds = [(e["e"], e["o"].get("X") if "o" in e else None) for e in events]
        assert kinds == [("ORDER_TRADE_UPDATE", "FILLED"), ("ACCOUNT_UPDATE", None), ("ALGO_UPDATE", "NEW"),
                         ("ALGO_UPDATE", "FINISHED"), ("ORDER_TRADE_UPDATE", "FILLED"), ("ACCOUNT_UPDATE", None)]
        assert events[-1]["a"]["P"][0]["pa"] == "0"  # flat after the stop
        finished = next(e["o"] for e in events if e["e"] == "ALGO_UPDATE" and e["o"]["X"] == "FINISHED")
        assert (finished["caid"], finished["ap"], finished["aq"]) == (ids.stop_id(1, 1), "48000", "0.01")
        assert finished["ai"]


async def test_user_stream_tells_the_engine_of_a_stop_the_mark_price_triggered() -> None:
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        fake = FakeBinance(SPEC, api_key=KEY, api_secret=SECRET)
        port = await nursery.start(fake.serve)
        exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url=f"http://127.0.0.1:{port}",
                                ws_url=fake.ws_url, price_poll_interval=60.0)
        seen: list[float] = []
        try:
            await exchange.place_order(entry())
            await exchange.place_order(stop(49_000.0))
            nursery.start_soon(exchange.stream_prices, lambda symbol, price: seen.append(price))
            await until(lambda: fake.user_streams._clients.get(KEY) and fake.streams.connected)
            fake.set_mark("BTCUSDT", 48_900.0)  # the mark crosses; the last price (the book) stays at 50 000
            await until(lambda: 49_000.0 in seen)  # the stop's trigger price, pushed by ALGO_UPDATE
            fired = await exchange.fetch_order("BTCUSDT", ids.stop_id(1, 1))
            assert fired is not None and (fired.status, fired.average_price) == (OrderStatus.FILLED, 50_000.0)
            assert all(price != 48_900.0 for price in seen)
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await exchange.aclose()


# --- -4131 PERCENT_PRICE, partial fills, MARKET_LOT_SIZE, -2021 by workingType ---

SPEC2 = ExchangeSpec(balance_usdt=10_000.0, latency=0.0, markets=(
    *SPEC.markets, MarketSpec("ETHUSDT", 3_000.0, tick_size=0.01, step_size=0.001, min_notional=5.0),
))


@asynccontextmanager
async def engine_on(fake: FakeBinance, **config: Any) -> AsyncIterator[tuple[CcxtExchange, Any]]:
    """The engine trading through the adapter against `fake` (already serving)."""
    from adapters.sqlite_store import SQLiteStore
    from engine.config import EngineConfig
    from trio_bot import Engine

    exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url=fake.base_url)
    store = await SQLiteStore.open(":memory:")
    settings = dict(position_size_usdt=500.0, sweep_interval=0.0, shutdown_timeout=1.0, cleanup_timeout=5.0,
                    protect_attempts=3, exchange_retry_backoff=0.1) | config
    try:
        async with Engine.open(EngineConfig(**settings), exchange, store) as engine:
            yield exchange, engine
    finally:
        await exchange.aclose()
        await store.aclose()


@asynccontextmanager
async def serving(spec: ExchangeSpec = SPEC) -> AsyncIterator[FakeBinance]:
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        fake = FakeBinance(spec, api_key=KEY, api_secret=SECRET)
        await nursery.start(fake.serve)
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()


async def test_minus_4131_PERCENT_PRICE_a_market_entry_beyond_the_band_is_rejected_with_the_reason() -> None:
    async with serving() as fake, engine_on(fake) as (_exchange, engine):
        fake.set_tick("BTCUSDT", 50_000.0, mark=47_000.0)  # the book 6 % above the mark: buys are refused
        record = await engine.process_wave([{"id": "a", "symbol": "BTCUSDT", "side": "long", "score": 1.0}])
        (outcome,) = record.outcomes
        assert outcome.outcome.value == "failed" and "-4131" in (outcome.reason or ""), outcome.reason
        assert fake.exchange.positions_snapshot() == []


async def test_minus_4131_PERCENT_PRICE_a_refused_operator_close_is_retried_until_the_band_allows_it() -> None:
    async with serving() as fake, engine_on(fake) as (_exchange, engine):
        record = await engine.process_wave([{"id": "a", "symbol": "BTCUSDT", "side": "long", "score": 1.0}])
        (position,) = [p for p in engine.positions() if p.symbol == "BTCUSDT"]
        fake.set_tick("BTCUSDT", 47_500.0, mark=50_100.0)  # the book 5.2 % below the mark: sells refused
        assert record.counts.opened == 1

        async def band_back() -> None:
            await trio.sleep(0.15)
            fake.set_tick("BTCUSDT", 49_900.0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(band_back)
            with trio.fail_after(10):
                closed = await engine.trailing.close(position.id)
        assert closed.closed, closed.error
        refusals = [s for m, p, s in fake.hits if (m, p) == ("POST", "/fapi/v1/order") and s == 400]
        assert refusals, "the close met -4131 at least once"
        assert fake.exchange.positions_snapshot() == []


async def test_PARTIALLY_FILLED_entry_the_rest_expires_and_the_engine_protects_and_records_what_filled() -> None:
    async with serving() as fake, engine_on(fake) as (_exchange, engine):
        fake.primary.depth["BTCUSDT"] = 0.004  # the book holds 0.004 BTC inside the price band
        record = await engine.process_wave([{"id": "a", "symbol": "BTCUSDT", "side": "long", "score": 1.0}])
        assert record.counts.opened == 1
        (position,) = engine.positions()
        assert position.quantity == 0.004
        (held,) = fake.exchange.positions_snapshot()
        (stop_order,) = fake.exchange.open_orders_snapshot()
        assert held.quantity == 0.004 and stop_order.quantity == 0.004
        entry_meta = fake.primary.orders[ids.entry_id(position.id)]
        assert entry_meta.orig_qty == 0.01  # asked 0.01: EXPIRED with executedQty 0.004


async def test_PARTIALLY_FILLED_the_order_answer_says_EXPIRED_with_the_executed_quantity() -> None:
    async with connected() as (fake, exchange):
        fake.primary.depth["BTCUSDT"] = 0.004
        placed = await exchange.place_order(entry())
        assert (placed.status, placed.filled_quantity, placed.quantity) == (OrderStatus.CANCELED, 0.004, 0.01)
        raw = await trio_asyncio.aio_as_trio(exchange.client.fapiPrivateGetOrder)(
            {"symbol": "BTCUSDT", "origClientOrderId": ids.entry_id(1)})
        assert (raw["status"], raw["executedQty"], raw["origQty"]) == ("EXPIRED", "0.004", "0.01")


async def test_MARKET_LOT_SIZE_maxQty_a_larger_close_is_sent_as_several_reduce_only_orders() -> None:
    from adapters.sim.fake_binance.params import Limits

    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        fake = FakeBinance(SPEC, api_key=KEY, api_secret=SECRET)
        fake.limits["BTCUSDT"] = Limits(max_qty=1_000.0, market_max_qty=0.004, max_price=10_000_000)
        await nursery.start(fake.serve)
        exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url=fake.base_url)
        try:
            for n in (1, 2, 3):  # one-way mode: three entries of 0.004 make one long of 0.012
                await exchange.place_order(OrderRequest("BTCUSDT", OrderSide.BUY, OrderKind.ENTRY, 0.004,
                                                        ids.entry_id(n)))
            with pytest.raises(Exception, match="-4005"):  # one order above maxQty is refused, as on Binance
                await exchange.place_order(OrderRequest("BTCUSDT", OrderSide.BUY, OrderKind.ENTRY, 0.005,
                                                        ids.entry_id(9)))
            close = OrderRequest("BTCUSDT", OrderSide.SELL, OrderKind.CLOSE, 0.01, ids.close_id(1))
            closed = await exchange.place_order(close)
            assert (closed.status, closed.filled_quantity, closed.client_order_id) == (
                OrderStatus.FILLED, 0.01, ids.close_id(1))
            sent = [m for m in fake.primary.orders.values() if m.kind is OrderKind.CLOSE]
            assert [m.client_id for m in sent] == [ids.close_id(1), f"{ids.close_id(1)}.2", f"{ids.close_id(1)}.3"]
            assert [o.quantity for o in fake.exchange.positions_snapshot()] == [0.002]
            found = await exchange.fetch_order("BTCUSDT", ids.close_id(1))  # a lost answer, looked up again
            assert found is not None and (found.status, found.filled_quantity) == (OrderStatus.FILLED, 0.01)
        finally:
            await exchange.aclose()
            nursery.cancel_scope.cancel()


async def test_minus_2021_is_judged_on_the_price_the_workingType_names() -> None:
    async with connected() as (fake, exchange):
        await exchange.place_order(entry())
        fake.set_tick("BTCUSDT", 48_500.0, mark=50_000.0)  # a wick: the last price is below the stop
        placed = await exchange.place_order(stop(49_000.0))  # MARK_PRICE: the mark is above it, accepted
        assert placed.status is OrderStatus.NEW
        exchange.stop_working_type = "CONTRACT_PRICE"
        with pytest.raises(Exception, match="-2021"):  # on the last price it would fire at once
            await exchange.place_order(stop(49_000.0, seq=2))
        exchange.stop_working_type = "MARK_PRICE"
        fake.set_mark("BTCUSDT", 48_900.0)  # now the mark fires the first stop ...
        with pytest.raises(Exception, match="-2021"):  # ... and a new one above the mark is refused
            await exchange.place_order(stop(49_000.0, seq=3))


# --- user data stream figures: a stop-out recorded without a REST look-up ---

async def test_ALGO_UPDATE_and_ORDER_TRADE_UPDATE_figures_answer_the_stop_look_up_without_REST() -> None:
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        fake = FakeBinance(SPEC, api_key=KEY, api_secret=SECRET)
        await nursery.start(fake.serve)
        exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url=fake.base_url,
                                ws_url=fake.ws_url, price_poll_interval=60.0)
        try:
            await exchange.place_order(entry())
            await exchange.place_order(stop(49_000.0))
            seen: list[float] = []
            nursery.start_soon(exchange.stream_prices, lambda symbol, price: seen.append(price))
            await until(lambda: fake.user_streams._clients.get(KEY) and fake.streams.connected)
            fake.set_tick("BTCUSDT", 48_000.0)
            await until(lambda: 49_000.0 in seen)  # ALGO_UPDATE arrived
            reads_before = sum(1 for m, _p, _s in fake.hits if m == "GET")
            fired = await exchange.fetch_order("BTCUSDT", ids.stop_id(1, 1))
            assert fired is not None
            assert (fired.status, fired.filled_quantity, fired.average_price) == (OrderStatus.FILLED, 0.01, 48_000.0)
            assert sum(1 for m, _p, _s in fake.hits if m == "GET") == reads_before  # no REST call
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await exchange.aclose()


async def test_ALGO_UPDATE_a_stop_not_completely_filled_is_looked_up_by_REST() -> None:
    from adapters.binance_fills import StreamFills

    fills = StreamFills()
    algo = {"caid": "tb-1-stop1", "s": "BTCUSDT", "S": "SELL", "q": "0.01", "tp": "49000", "ai": "77"}
    fills.on_event({"e": "ALGO_UPDATE", "o": algo | {"X": "TRIGGERED"}})
    assert fills.filled_stop("tb-1-stop1") is None  # triggered: resting in the matching engine
    fills.on_event({"e": "ALGO_UPDATE", "o": algo | {"X": "FINISHED", "aq": "0.004", "ap": "48000"}})
    assert fills.filled_stop("tb-1-stop1") is None  # finished with a partial fill: REST decides
    fills.on_event({"e": "ORDER_TRADE_UPDATE", "o": {"i": 77, "X": "FILLED", "z": "0.01", "ap": "47990"}})
    found = fills.filled_stop("tb-1-stop1")
    assert found is not None and (found.filled_quantity, found.average_price) == (0.01, 47_990.0)
    fills.on_event({"e": "ALGO_UPDATE", "o": "garbage"})  # ignored
    assert StreamFills(limit=1).filled_stop("unknown") is None


# --- account settings for a symbol a signal brings ---

async def test_symbolConfig_a_symbol_outside_the_configured_list_gets_the_settings_before_its_first_entry() -> None:
    from adapters.binance_account import AccountSettings

    async with serving(SPEC2) as fake:
        exchange = CcxtExchange("binanceusdm", api_key=KEY, api_secret=SECRET, base_url=fake.base_url)
        try:
            await exchange.prepare_account(["BTCUSDT"], AccountSettings(3, "isolated"))
            assert fake.primary.leverages["ETHUSDT"] == 20  # untouched at start-up
            eth = OrderRequest("ETHUSDT", OrderSide.BUY, OrderKind.ENTRY, 0.1, ids.entry_id(5))
            await exchange.place_order(eth)
            assert (fake.primary.leverages["ETHUSDT"], fake.primary.margin_type["ETHUSDT"]) == (3, "ISOLATED")
            settings_calls = sum(1 for _m, p, _s in fake.hits if p == "/fapi/v1/symbolConfig")
            await exchange.place_order(OrderRequest("ETHUSDT", OrderSide.BUY, OrderKind.ENTRY, 0.1, ids.entry_id(6)))
            assert sum(1 for _m, p, _s in fake.hits if p == "/fapi/v1/symbolConfig") == settings_calls  # cached
        finally:
            await exchange.aclose()


async def test_symbolConfig_a_symbol_whose_settings_may_not_change_refuses_the_signal_with_the_reason() -> None:
    from adapters.binance_account import AccountSettings

    async with serving(SPEC2) as fake, engine_on(fake) as (exchange, engine):
        fake.primary.margin_type["BTCUSDT"] = "ISOLATED"
        await exchange.prepare_account(["BTCUSDT"], AccountSettings(20, "isolated", change=False))
        record = await engine.process_wave([{"id": "e", "symbol": "ETHUSDT", "side": "long", "score": 1.0}])
        (outcome,) = record.outcomes
        assert outcome.outcome.value == "failed"  # refused before any order was sent
        assert "ETHUSDT: margin type is CROSSED, the config says ISOLATED" in (outcome.reason or "")
        assert fake.exchange.positions_snapshot() == []
