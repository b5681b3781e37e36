"""The fake server's order history (GET /fapi/v1/allOrders, /fapi/v1/allAlgoOrders) read by ccxt:
what an auditor uses to find an order the exchange executed that its sender never heard of."""

from __future__ import annotations

import ccxt.async_support as ccxt
import pytest

from adapters.sim.fake_binance.account import now_ms
from tests.test_fake_binance import FORM, open_long, place_stop, running


async def test_all_orders_lists_filled_entries_and_the_order_a_triggered_stop_became() -> None:
    async with running() as (fake, ex):
        await open_long(ex, cid="tb-1-entry")
        await place_stop(ex, cid="tb-1-stop1")
        fake.exchange.set_price("FORMUSDT", 0.74)  # the stop triggers and closes the position
        await open_long(ex, cid="tb-2-entry")
        orders = await ex.fetch_orders(FORM)  # GET /fapi/v1/allOrders
        assert sorted((o["clientOrderId"], o["status"], o["filled"]) for o in orders) == [
            ("tb-1-entry", "closed", 100), ("tb-1-stop1", "closed", 100), ("tb-2-entry", "closed", 100)]
        assert [o["info"]["type"] for o in orders] == ["MARKET", "MARKET", "MARKET"]
        (became,) = [o for o in orders if o["clientOrderId"] == "tb-1-stop1"]
        assert became["info"]["origType"] == "STOP_MARKET" and became["reduceOnly"]
        raw = [int(o["orderId"]) for o in await ex.fapiPrivateGetAllOrders({"symbol": "FORMUSDT"})]
        assert len(raw) == 3 and raw == sorted(raw)  # the wire is ascending by orderId (ccxt sorts by time)
        algo = await ex.fapiPrivateGetAllAlgoOrders({"symbol": "FORMUSDT"})
        assert [(a["clientAlgoId"], a["algoStatus"]) for a in algo] == [("tb-1-stop1", "FINISHED")]
        assert ("GET", "/fapi/v1/allOrders", 200) in fake.hits


async def test_all_orders_follows_binance_order_id_limit_and_window_rules() -> None:
    async with running() as (_fake, ex):
        for i in range(1, 4):
            await open_long(ex, qty=10, cid=f"tb-{i}-entry")
        everything = await ex.fapiPrivateGetAllOrders({"symbol": "FORMUSDT"})
        ids = [int(o["orderId"]) for o in everything]
        assert len(ids) == 3 and ids == sorted(ids)
        from_second = await ex.fapiPrivateGetAllOrders({"symbol": "FORMUSDT", "orderId": ids[1]})
        assert [o["clientOrderId"] for o in from_second] == ["tb-2-entry", "tb-3-entry"]
        newest = await ex.fapiPrivateGetAllOrders({"symbol": "FORMUSDT", "limit": 2})
        assert [o["clientOrderId"] for o in newest] == ["tb-2-entry", "tb-3-entry"]  # most recent, ascending
        first = await ex.fapiPrivateGetAllOrders({"symbol": "FORMUSDT", "orderId": ids[0], "limit": 1})
        assert [o["clientOrderId"] for o in first] == ["tb-1-entry"]
        future = now_ms() + 3_600_000
        assert await ex.fapiPrivateGetAllOrders({"symbol": "FORMUSDT", "startTime": future}) == []
        assert await ex.fapiPrivateGetAllOrders({"symbol": "BTCUSDT"}) == []
        week_and_a_bit = 7 * 24 * 3_600_000 + 1
        with pytest.raises(ccxt.BadRequest, match="-1127"):
            await ex.fapiPrivateGetAllOrders({"symbol": "FORMUSDT", "startTime": future - week_and_a_bit,
                                              "endTime": future})
        with pytest.raises(ccxt.BadRequest, match="-1130"):
            await ex.fapiPrivateGetAllOrders({"symbol": "FORMUSDT", "limit": 1001})
        with pytest.raises(ccxt.BadRequest, match="-1102"):
            await ex.fapiPrivateGetAllOrders({})
