"""The fake Binance USDⓈ-M server, driven by the real ccxt client over real sockets.

Real time throughout (sockets do not follow a mock clock); each test starts its
own server on an ephemeral port inside one trio-asyncio loop.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import ccxt.async_support as ccxt
import h11
import pytest
import trio
import trio_asyncio

from adapters.sim.fake_binance import CCXT_OPTIONS, FakeBinance, ccxt_urls, configure_ccxt
from adapters.sim.scenario import ExchangeSpec, FaultSpec, MarketSpec, parse_scenario
from trio_bot.aio import asyncio_loop

FORM, BTC = "FORM/USDT:USDT", "BTC/USDT:USDT"
SPEC = ExchangeSpec(balance_usdt=10_000.0, markets=(
    MarketSpec("FORMUSDT", 0.8132),
    MarketSpec("BTCUSDT", 50_000.0, tick_size=0.1, step_size=0.001, min_notional=100.0, max_leverage=20),
))


class Client:
    """ccxt calls made from Trio: `await ex.fetch_balance()` runs it on the asyncio side."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def __getattr__(self, name: str) -> Callable[..., Any]:
        call: Callable[..., Any] = trio_asyncio.aio_as_trio(getattr(self.raw, name))
        return call


@asynccontextmanager
async def running(fake: FakeBinance | None = None, *, configure: bool = True,
                  **config: Any) -> AsyncIterator[tuple[FakeBinance, Client]]:
    fake = fake or FakeBinance(SPEC)
    async with asyncio_loop(), trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        raw = ccxt.binanceusdm({"apiKey": fake.api_key, "secret": fake.api_secret, "enableRateLimit": False,
                                "timeout": 5000, "options": dict(CCXT_OPTIONS), **config})
        if configure:
            configure_ccxt(raw, fake.base_url)
        else:
            raw.urls["api"] = ccxt_urls(fake.base_url)
        try:
            yield fake, Client(raw)
        finally:
            await trio_asyncio.aio_as_trio(raw.close)()
            nursery.cancel_scope.cancel()


async def open_long(ex: Client, qty: float = 100, cid: str = "tb-1-entry") -> dict[str, Any]:
    order: dict[str, Any] = await ex.create_order(FORM, "market", "buy", qty, None, {"newClientOrderId": cid})
    return order


async def place_stop(ex: Client, price: float = 0.75, qty: float = 100, cid: str = "tb-1-stop1") -> dict[str, Any]:
    order: dict[str, Any] = await ex.create_order(
        FORM, "market", "sell", qty, None, {"triggerPrice": price, "reduceOnly": True, "clientOrderId": cid})
    return order


def fault(point: str, effect: str, **kw: Any) -> FaultSpec:
    return FaultSpec(point, effect, **kw)


# --- markets, prices, account ---

async def test_load_markets_gives_the_spec_grid_and_touches_only_fapi() -> None:
    async with running() as (fake, ex):
        markets = await ex.load_markets()
        form, btc = markets[FORM], markets[BTC]
        assert (form["id"], form["type"], form["linear"], form["settle"]) == ("FORMUSDT", "swap", True, "USDT")
        assert form["precision"] == {"amount": 1.0, "price": 0.0001, "base": 1e-08, "quote": 1e-08}
        assert (form["limits"]["amount"]["min"], form["limits"]["cost"]["min"]) == (1.0, 5.0)
        assert (btc["precision"]["price"], btc["precision"]["amount"]) == (0.1, 0.001)
        assert (btc["limits"]["amount"]["min"], btc["limits"]["cost"]["min"]) == (0.001, 100.0)
        assert btc["limits"]["price"]["min"] == 0.1
        assert btc["active"] and btc["contract"]
        assert [(m, p) for m, p, _ in fake.hits] == [("GET", "/fapi/v1/exchangeInfo")]
        assert await ex.fetch_time() == pytest.approx(time.time() * 1000, abs=5000)


async def test_tickers_and_mark_prices_follow_set_price() -> None:
    async with running() as (fake, ex):
        ticker = await ex.fetch_ticker(FORM)
        assert ticker["last"] == 0.8132
        fake.exchange.set_price("BTCUSDT", 51_000.0)
        tickers = await ex.fetch_tickers([FORM, BTC])
        assert {s: t["last"] for s, t in tickers.items()} == {FORM: 0.8132, BTC: 51_000.0}
        assert tickers[BTC]["open"] == 50_000.0
        assert (await ex.fetch_mark_price(BTC))["markPrice"] == 51_000.0
        assert (await ex.fetch_last_prices([BTC]))[BTC]["price"] == 51_000.0


async def test_balance_starts_at_the_spec() -> None:
    async with running() as (fake, ex):
        balance = await ex.fetch_balance()
        assert (balance["USDT"]["total"], balance["USDT"]["free"], balance["USDT"]["used"]) == (10_000, 10_000, 0)
        assert ("GET", "/fapi/v3/account", 200) in fake.hits


# --- orders ---

async def test_market_entry_fills_and_opens_a_position() -> None:
    async with running() as (fake, ex):
        order = await open_long(ex)
        assert (order["status"], order["filled"], order["average"]) == ("closed", 100, 0.8132)
        assert (order["clientOrderId"], order["side"], order["type"]) == ("tb-1-entry", "buy", "market")
        again = await ex.fetch_order(None, FORM, {"clientOrderId": "tb-1-entry"})
        assert (again["id"], again["status"], again["amount"]) == (order["id"], "closed", 100)
        assert (await ex.fetch_order(order["id"], FORM))["clientOrderId"] == "tb-1-entry"
        (position,) = await ex.fetch_positions()
        assert (position["symbol"], position["side"], position["contracts"]) == (FORM, "long", 100)
        assert position["entryPrice"] == 0.8132
        fake.exchange.set_price("FORMUSDT", 0.9132)
        (position,) = await ex.fetch_positions([FORM])
        assert position["unrealizedPnl"] == pytest.approx(10.0)
        balance = await ex.fetch_balance()
        assert balance["USDT"]["free"] == pytest.approx(10_000 - 81.32 / 20)  # Binance's default leverage
        assert ("GET", "/fapi/v1/leverageBracket", 200) in fake.hits
        assert ("GET", "/fapi/v3/positionRisk", 200) in fake.hits


async def test_reduce_only_market_order_closes_the_position() -> None:
    async with running() as (_fake, ex):
        await open_long(ex)
        close = await ex.create_order(FORM, "market", "sell", 100, None,
                                      {"newClientOrderId": "tb-1-close1", "reduceOnly": True})
        assert (close["status"], close["reduceOnly"], close["filled"]) == ("closed", True, 100)
        assert await ex.fetch_positions() == []
        with pytest.raises(ccxt.InvalidOrder, match="-2022"):  # nothing left to reduce
            await ex.create_order(FORM, "market", "sell", 100, None, {"reduceOnly": True})


async def test_stop_is_an_algo_order_listed_fetched_and_cancelled_by_client_id() -> None:
    async with running() as (fake, ex):
        await open_long(ex)
        stop = await place_stop(ex)
        assert ("POST", "/fapi/v1/algoOrder", 200) in fake.hits
        assert (stop["status"], stop["clientOrderId"], stop["triggerPrice"]) == ("open", "tb-1-stop1", 0.75)
        assert await ex.fetch_open_orders(FORM) == []  # plain open orders: the stop is not one
        (listed,) = await ex.fetch_open_orders(FORM, None, None, {"trigger": True})
        assert (listed["id"], listed["reduceOnly"], listed["side"], listed["amount"]) == (stop["id"], True, "sell", 100)
        assert [o["id"] for o in await ex.fetch_open_orders(None, None, None, {"trigger": True})] == [stop["id"]]
        fetched = await ex.fetch_order(None, FORM, {"trigger": True, "clientOrderId": "tb-1-stop1"})
        assert (fetched["id"], fetched["status"]) == (stop["id"], "open")
        assert (await ex.fetch_order(stop["id"], FORM, {"trigger": True}))["clientOrderId"] == "tb-1-stop1"
        await ex.cancel_order(None, FORM, {"trigger": True, "clientOrderId": "tb-1-stop1"})
        fetched = await ex.fetch_order(None, FORM, {"trigger": True, "clientOrderId": "tb-1-stop1"})
        assert fetched["status"] == "canceled"
        assert await ex.fetch_open_orders(FORM, None, None, {"trigger": True}) == []
        with pytest.raises(ccxt.OrderNotFound):
            await ex.cancel_order(None, FORM, {"trigger": True, "clientOrderId": "tb-1-stop1"})
        with pytest.raises(ccxt.OrderNotFound):
            await ex.fetch_order(None, FORM, {"trigger": True, "clientOrderId": "never-sent"})


async def test_algoStatus_FINISHED_carries_no_fill_its_actualOrderId_does() -> None:
    """Query Algo Order has no executedQty/avgPrice: ccxt reads a fired stop as closed, filled 0."""
    async with running() as (fake, ex):
        await open_long(ex)
        stop = await place_stop(ex)
        fake.exchange.set_price("FORMUSDT", 0.74)
        fired = await ex.fetch_order(None, FORM, {"trigger": True, "clientOrderId": "tb-1-stop1"})
        assert fired["status"] == "closed" and not fired["filled"]
        info = fired["info"]
        assert (info["algoStatus"], info["actualPrice"]) == ("FINISHED", "0.74") and info["actualOrderId"]
        assert "executedQty" not in info and "avgPrice" not in info
        actual = await ex.fetch_order(info["actualOrderId"], FORM)  # the order it became
        assert (actual["status"], actual["filled"], actual["average"]) == ("closed", 100, 0.74)
        assert actual["id"] != stop["id"] and actual["clientOrderId"] == "tb-1-stop1"
        assert await ex.fetch_positions() == []


async def test_algoStatus_FINISHED_without_a_fill_when_nothing_was_left_to_reduce() -> None:
    async with running() as (fake, ex):
        await open_long(ex)
        await place_stop(ex)
        await ex.create_order(FORM, "market", "sell", 100, None, {"reduceOnly": True})
        fake.exchange.set_price("FORMUSDT", 0.7)
        fired = await ex.fetch_order(None, FORM, {"trigger": True, "clientOrderId": "tb-1-stop1"})
        assert fired["info"]["algoStatus"] == "FINISHED" and fired["status"] == "closed"  # ccxt: "closed"!
        actual = await ex.fetch_order(fired["info"]["actualOrderId"], FORM)
        assert (actual["status"], actual["filled"], actual["info"]["status"]) == ("expired", 0, "EXPIRED")


async def test_minus_4120_conditional_types_on_the_order_endpoint() -> None:
    async with running() as (fake, ex):
        await open_long(ex)
        for order_type in ("STOP_MARKET", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET", "STOP"):
            with pytest.raises(ccxt.InvalidOrder, match="-4120"):
                await ex.fapiPrivatePostOrder({"symbol": "FORMUSDT", "side": "SELL", "type": order_type,
                                               "quantity": "100", "stopPrice": "0.75", "reduceOnly": "true"})
        assert fake.exchange.open_orders_snapshot() == []


# --- refusals and their ccxt mapping ---

async def test_client_ids_are_unique_among_open_orders_only_minus_4116_minus_20132() -> None:
    async with running() as (fake, ex):
        await open_long(ex, qty=10)
        await open_long(ex, qty=10)  # the first is filled, not open: Binance takes the id again
        assert [f.quantity for f in fake.exchange.fills] == [10, 10]
        await place_stop(ex, qty=20)
        with pytest.raises(ccxt.BadRequest, match="-20132"):
            await place_stop(ex, qty=20)
        await ex.cancel_order(None, FORM, {"trigger": True, "clientOrderId": "tb-1-stop1"})
        again = await place_stop(ex, qty=20, price=0.7)  # cancelled: the id is free again
        assert (again["status"], again["triggerPrice"]) == ("open", 0.7)


async def test_insufficient_margin_is_insufficient_funds() -> None:
    async with running() as (_fake, ex):
        with pytest.raises(ccxt.InsufficientFunds, match="-2019"):
            await ex.create_order(BTC, "market", "buy", 5.0)  # 250 000 USDT at 20x
        assert await ex.fetch_positions() == []


async def test_without_the_linear_error_table_ccxt_maps_futures_codes_to_plain_exchange_error() -> None:
    """Why `configure_ccxt` merges tables: ccxt picks them by the live fapi hostname."""
    async with running(configure=False) as (_fake, ex):
        ex.raw.options.update(CCXT_OPTIONS)
        with pytest.raises(ccxt.ExchangeError, match="-2019") as raised:
            await ex.create_order(BTC, "market", "buy", 5.0)
        assert type(raised.value) is ccxt.ExchangeError


async def test_stop_that_would_trigger_at_once_is_order_immediately_fillable() -> None:
    async with running() as (_fake, ex):
        await open_long(ex)
        with pytest.raises(ccxt.OrderImmediatelyFillable, match="-2021"):
            await place_stop(ex, price=0.9)


async def test_wrong_secret_or_key_is_authentication_error() -> None:
    async with running(FakeBinance(SPEC, api_secret="other")) as (fake, ex):
        ex.raw.secret = "test-secret"
        with pytest.raises(ccxt.AuthenticationError, match="-1022"):
            await ex.fetch_balance()
        ex.raw.apiKey = "nobody"
        with pytest.raises(ccxt.AuthenticationError, match="-2015"):
            await ex.fetch_balance()
        assert ("GET", "/fapi/v3/account", 401) in fake.hits


async def test_timestamp_outside_recv_window_is_invalid_nonce() -> None:
    async with running() as (_fake, ex):
        await ex.load_markets()
        ex.raw.nonce = lambda: ex.raw.milliseconds() - 11_000  # ccxt sends recvWindow=10000
        with pytest.raises(ccxt.InvalidNonce, match="-1021"):
            await ex.fetch_balance()
        ex.raw.nonce = lambda: ex.raw.milliseconds() + 2_000  # ahead of the server by more than 1 s
        with pytest.raises(ccxt.InvalidNonce, match="-1021"):
            await ex.fetch_balance()


async def test_unknown_path_is_a_404_exchange_error() -> None:
    async with running() as (fake, ex):
        with pytest.raises(ccxt.ExchangeError, match="-5000"):
            await ex.fapiPublicGetFundingInfo()
        assert fake.hits[-1] == ("GET", "/fapi/v1/fundingInfo", 404)


# --- faults on the wire ---

async def test_error_fault_is_502_exchange_not_available_and_nothing_happens() -> None:
    async with running() as (fake, ex):
        await ex.load_markets()
        fake.plan.add(fault("exchange.entry_order", "error", times=1))
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await open_long(ex)
        assert fake.hits[-1] == ("POST", "/fapi/v1/order", 502)
        assert await ex.fetch_positions() == []
        assert (await open_long(ex))["status"] == "closed"  # used up: the retry goes through


async def test_reject_fault_uses_its_code_or_minus_2010() -> None:
    async with running() as (fake, ex):
        await ex.load_markets()
        fake.plan.add(fault("exchange.entry_order", "reject", message="-2019 Margin is insufficient.", times=1))
        fake.plan.add(fault("exchange.entry_order", "reject", times=1))
        with pytest.raises(ccxt.InsufficientFunds):
            await open_long(ex)
        with pytest.raises(ccxt.InvalidOrder, match="-2010"):
            await open_long(ex)
        assert await ex.fetch_positions() == []


async def test_hang_fault_never_answers_until_the_caller_gives_up() -> None:
    async with running() as (fake, ex):
        await ex.load_markets()
        fake.plan.add(fault("exchange.query", "hang", times=1))
        with trio.move_on_after(0.3) as scope:
            await ex.fetch_balance()
        assert scope.cancelled_caught
        assert fake.hits[-1] == ("GET", "/fapi/v3/account", "hang")
        assert (await ex.fetch_balance())["USDT"]["total"] == 10_000


async def test_delay_fault_answers_late() -> None:
    async with running() as (fake, ex):
        await ex.load_markets()
        fake.plan.add(fault("exchange.query", "delay", seconds=0.3, times=1))
        start = trio.current_time()
        await ex.fetch_balance()
        assert trio.current_time() - start >= 0.3


async def test_lost_response_applies_the_order_then_drops_the_connection() -> None:
    async with running() as (fake, ex):
        await ex.load_markets()
        fake.plan.add(fault("exchange.entry_order", "lost_response", times=1))
        with pytest.raises(ccxt.NetworkError):
            await open_long(ex)
        assert fake.hits[-1] == ("POST", "/fapi/v1/order", "drop")
        found = await ex.fetch_order(None, FORM, {"clientOrderId": "tb-1-entry"})
        assert (found["status"], found["filled"]) == ("closed", 100)


async def test_faults_match_point_symbol_and_position_side() -> None:
    async with running() as (fake, ex):
        await open_long(ex)
        fake.plan.add(fault("exchange.stop_order", "reject", match={"symbol": "FORMUSDT", "side": "short"}))
        fake.plan.add(fault("exchange.cancel_order", "error", match={"side": "long"}, times=1))
        fake.plan.add(fault("exchange.query", "error", match={"symbol": "BTCUSDT"}))
        stop = await place_stop(ex)  # closes a long: the short-side fault does not apply
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await ex.cancel_order(None, FORM, {"trigger": True, "clientOrderId": "tb-1-stop1"})
        (listed,) = await ex.fetch_open_orders(FORM, None, None, {"trigger": True})
        assert listed["id"] == stop["id"]
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await ex.fetch_ticker(BTC)
        assert (await ex.fetch_ticker(FORM))["last"] == 0.8132
        assert fake.plan.fired == {"exchange.cancel_order": 1, "exchange.query": 1}


# --- price drivers ---

async def test_scenario_ticks_and_faults_are_used() -> None:
    scenario = parse_scenario({
        "exchange": {"markets": {"FORMUSDT": {"price": 0.8132}}},
        "faults": [{"point": "exchange.close_order", "effect": "error", "times": 1}],
        "ticks": [{"at": 0.2, "symbol": "FORMUSDT", "price": 0.85}],
    })
    async with running(FakeBinance(scenario)) as (fake, ex):
        assert fake.exchange.price("FORMUSDT") == 0.8132  # read at once: an HTTP call may outlast 0.2 s
        await trio.sleep(0.4)
        assert (await ex.fetch_ticker(FORM))["last"] == 0.85
        await open_long(ex)
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await ex.create_order(FORM, "market", "sell", 100, None, {"reduceOnly": True})


async def test_walk_moves_prices_every_second_reproducibly() -> None:
    paths = []
    for _ in range(2):
        fake = FakeBinance(SPEC, walk=True, seed=7)
        async with running(fake) as (_, ex):
            await trio.sleep(1.1)
            paths.append((await ex.fetch_ticker(BTC))["last"])
    assert paths[0] == paths[1] != 50_000.0


# --- the wire itself ---

def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


async def exchange_raw(stream: trio.SocketStream, conn: h11.Connection, method: str, target: str,
                       body: str = "", key: str = "test-key") -> tuple[int, Any]:
    headers = [("Host", "fake"), ("X-MBX-APIKEY", key), ("Content-Length", str(len(body))),
               ("Content-Type", "application/x-www-form-urlencoded")]
    for sent in (h11.Request(method=method, target=target, headers=headers), h11.Data(data=body.encode()),
                 h11.EndOfMessage()):
        await stream.send_all(conn.send(sent) or b"")
    status, data = 0, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            data += event.data
        elif isinstance(event, h11.EndOfMessage):
            conn.start_next_cycle()
            return status, json.loads(data)


async def test_signature_covers_query_then_body_on_one_keep_alive_connection() -> None:
    fake = FakeBinance(SPEC)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(fake.serve)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        conn = h11.Connection(h11.CLIENT)
        query = f"symbol=FORMUSDT&timestamp={int(time.time() * 1000)}"
        body = "side=BUY&type=MARKET&quantity=10&newClientOrderId=raw-1"
        good = f"{query}&signature={sign('test-secret', query + body)}"
        status, order = await exchange_raw(stream, conn, "POST", f"/fapi/v1/order?{good}", body)
        assert (status, order["status"], order["clientOrderId"]) == (200, "FILLED", "raw-1")
        tampered = body.replace("raw-1", "raw-2").replace("=10", "=20")
        status, error = await exchange_raw(stream, conn, "POST", f"/fapi/v1/order?{good}", tampered)
        assert (status, error) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
        status, error = await exchange_raw(stream, conn, "GET", f"/fapi/v3/account?{good}", key="wrong")
        assert (status, error["code"]) == (401, -2015)
        status, info = await exchange_raw(stream, conn, "GET", "/fapi/v1/exchangeInfo")
        assert status == 200 and [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "FORMUSDT"]
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_several_accounts_one_per_api_key_share_the_market() -> None:
    fake = FakeBinance(SPEC, accounts=2)
    assert sorted(fake.accounts) == ["test-key", "test-key-2"]
    async with running(fake) as (_fake, first):
        second = Client(ccxt.binanceusdm({"apiKey": "test-key-2", "secret": "test-secret-2", "enableRateLimit": False,
                                          "timeout": 5000, "options": dict(CCXT_OPTIONS)}))
        configure_ccxt(second.raw, fake.base_url)
        try:
            await open_long(first, qty=100)
            assert await second.fetch_positions() == []  # its own account
            await open_long(second, qty=50)  # the same client id: another account's orders are not its own
            fake.exchange.set_price("FORMUSDT", 0.9)  # one market for both
            (mine,) = await second.fetch_positions()
            assert (mine["contracts"], mine["markPrice"]) == (50, 0.9)
            assert fake.accounts["test-key-2"].exchange.price("FORMUSDT") == 0.9
            second.raw.secret = "test-secret"  # the first account's secret does not sign for the second
            with pytest.raises(ccxt.AuthenticationError):
                await second.fetch_balance()
        finally:
            await trio_asyncio.aio_as_trio(second.raw.close)()
