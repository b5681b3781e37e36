"""What a crash trial checks once `trio-bot run` has exited: the exchange (read over its REST API,
as any Binance client reads it) and the store (read the way the CLI reads it) must agree.

`snapshot` reads both; `problems` names every broken invariant in words:

- every position held on the exchange has reduce-only stops on the closing side covering its size;
- store sizes equal exchange sizes, symbol by symbol;
- no reduce-only order rests unless it is the stop the store records for an open position there;
- every order on the exchange (the full history, GET /fapi/v1/allOrders) carries a client id of a
  position the store knows, and a filled entry belongs to a position the store says was opened;
- no signal traded twice (by the store's positions, the waves' outcomes and the exchange's fills);
- every wave has an end, every signal one outcome, and each wave's counts add up.

One change the store cannot know is legitimate: a stop that triggers after the bot exited (prices
keep moving) closes a position the store still holds as open. It is told apart by the exchange's
own record (the stored stop FINISHED with its market order FILLED) and returned in `closed_while_down`:
the next restart must then record that position closed (`still_open_after_restart`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import time
import urllib.parse
import urllib.request
from collections import Counter
from typing import Any

KEY, SECRET = "chaos-key", "chaos-secret-0123456789"
EPS = 1e-9


def signed_get(port: int, path: str, **params: str) -> Any:
    """A signed GET on the exchange's REST API, as any Binance client sends it."""
    query = urllib.parse.urlencode({**params, "timestamp": str(int(time.time() * 1000)), "recvWindow": "5000"})
    signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}?{query}&signature={signature}",
                                     headers={"X-MBX-APIKEY": KEY})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def cli_json(*args: str) -> Any:
    """A read-only CLI command's JSON, run in this process (a new interpreter per read costs seconds)."""
    from trio_bot.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json"])
    assert code == 0, f"trio-bot {' '.join(args)} exited {code}"
    return json.loads(out.getvalue())


def read_store(db: str) -> list[dict[str, Any]]:
    """Every stored position with the client ids the CLI does not show (entry, stop, all orders)."""
    import trio

    from trio_bot.aio import asyncio_loop
    from trio_bot.storage import open_storage_read_only

    async def read() -> list[dict[str, Any]]:
        async with asyncio_loop():
            store = await open_storage_read_only(db, call_timeout=20.0)
            try:
                rows = []
                for p in await store.positions(include_closed=True):
                    orders = await store.orders(p.id)
                    rows.append({"id": p.id, "signal_id": p.signal_id, "symbol": p.symbol, "side": p.side.value,
                                 "status": p.status.value, "quantity": p.quantity, "entry_id": p.entry_client_id,
                                 "filled": p.entry_price is not None,
                                 "stop_id": p.stop_client_id,
                                 "order_ids": sorted({o.client_order_id for o in orders})})
                return rows
            finally:
                with trio.CancelScope(shield=True):
                    await store.aclose()

    return trio.run(read)


def _exchange(port: int, symbols: tuple[str, ...]) -> dict[str, Any]:
    held = {p["symbol"]: float(p["positionAmt"]) for p in signed_get(port, "/fapi/v2/positionRisk")
            if float(p["positionAmt"]) != 0}
    return {"held": held, "algo": signed_get(port, "/fapi/v1/openAlgoOrders"),
            "plain": signed_get(port, "/fapi/v1/openOrders"),
            "history": [o for s in symbols for o in signed_get(port, "/fapi/v1/allOrders", symbol=s, limit="1000")],
            "algo_history": [o for s in symbols
                             for o in signed_get(port, "/fapi/v1/allAlgoOrders", symbol=s, limit="1000")]}


def snapshot(port: int, db: str, symbols: tuple[str, ...]) -> dict[str, Any]:
    """The exchange read until two reads agree (a stop may trigger while we read), then the store."""
    for _ in range(10):
        first = _exchange(port, symbols)
        again = _exchange(port, symbols)
        if first["held"] == again["held"] and first["algo"] == again["algo"] and len(first["history"]) == len(
                again["history"]):
            break
    else:
        raise AssertionError("the exchange never held still for two reads in a row")
    return {**again, "store": read_store(db), "waves": cli_json("waves", "--db", db)["waves"]}


def _reduce_only(order: dict[str, Any]) -> bool:
    return str(order.get("reduceOnly", "")).lower() == "true" or str(order.get("closePosition", "")).lower() == "true"


def _client_id(order: dict[str, Any]) -> str:
    return str(order.get("clientAlgoId") or order.get("clientOrderId") or "")


def closed_while_down(found: dict[str, Any]) -> dict[int, str]:
    """Stored-open positions the exchange closed by their stored stop: position id -> stop id."""
    flat = {p["id"]: p for p in found["store"] if p["status"] == "open" and p["symbol"] not in found["held"]}
    finished = {o["clientAlgoId"] for o in found["algo_history"] if o["algoStatus"] == "FINISHED"}
    filled = {o["clientOrderId"] for o in found["history"] if o["status"] == "FILLED"}
    return {pid: p["stop_id"] for pid, p in flat.items() if p["stop_id"] in finished and p["stop_id"] in filled}


def problems(found: dict[str, Any], *, expect_closed: tuple[int, ...] = ()) -> list[str]:
    """Every invariant broken, in words (empty: the exchange and the store agree). `expect_closed`:
    positions an earlier check saw closed by their stop while the bot was down; the restart since
    must have recorded them closed."""
    out: list[str] = []
    held: dict[str, float] = found["held"]
    store: list[dict[str, Any]] = found["store"]
    by_id = {p["id"]: p for p in store}
    legit = closed_while_down(found)
    open_rows = [p for p in store if p["status"] == "open" and p["id"] not in legit]

    for symbol, amount in held.items():
        closing = "SELL" if amount > 0 else "BUY"
        cover = sum(float(o["quantity"]) for o in found["algo"]
                    if o["symbol"] == symbol and _reduce_only(o) and o["side"] == closing)
        if cover + EPS < abs(amount):
            out.append(f"{symbol}: {amount} held, reduce-only stops cover only {cover}")

    stored: dict[str, float] = {}
    for p in open_rows:
        stored[p["symbol"]] = stored.get(p["symbol"], 0.0) + (1.0 if p["side"] == "long" else -1.0) * p["quantity"]
    for symbol in sorted(set(held) | set(stored)):
        if abs(held.get(symbol, 0.0) - stored.get(symbol, 0.0)) > EPS:
            out.append(f"{symbol}: exchange holds {held.get(symbol, 0.0)}, store says {stored.get(symbol, 0.0)}")

    recorded_stops = {p["stop_id"] for p in open_rows}
    for o in found["algo"] + found["plain"]:
        if _reduce_only(o) and _client_id(o) not in recorded_stops:
            out.append(f"{o['symbol']}: stray reduce-only order {_client_id(o)} (not the stop of an open position)")

    known = {cid for p in store for cid in (p["entry_id"], p["stop_id"], *p["order_ids"]) if cid}
    fills: Counter[str] = Counter()
    for o in found["history"]:
        cid = _client_id(o)
        if cid not in known:
            # An entry, or any order that traded, must be known. A stop that ended without a fill (a
            # trailing move in flight at a kill, placed while no bot ran, expired when its position
            # closed) changed nothing the store must answer for.
            if not _reduce_only(o) or float(o["executedQty"]) > 0:
                out.append(f"{o['symbol']}: order {cid} ({o['status']}) on the exchange is unknown to the store")
            continue
        if not _reduce_only(o) and float(o["executedQty"]) > 0:
            owner = next(p for p in store if p["entry_id"] == cid)
            fills[owner["signal_id"]] += 1
            if owner["status"] == "opening" or not owner["filled"]:
                out.append(f"entry {cid} filled on the exchange, but the store has position {owner['id']} "
                           f"{owner['status']}{'' if owner['filled'] else ' without a fill'}")

    traded = Counter(p["signal_id"] for p in store if p["status"] != "opening" and p["filled"])
    opened = Counter(s["id"] for w in found["waves"] for s in w["signals"] if s["outcome"] == "opened")
    for signal_id in sorted(set(traded) | set(opened) | set(fills)):
        times = max(traded[signal_id], opened[signal_id], fills[signal_id])
        if times > 1:
            out.append(f"signal {signal_id} traded {times} times")

    for wave in found["waves"]:
        if wave.get("duration") is None:
            out.append(f"wave {wave['id']} has no end")
        outcomes = Counter(s.get("outcome") for s in wave["signals"])
        for s in wave["signals"]:
            if not s.get("outcome"):
                out.append(f"wave {wave['id']}: signal {s['id']} without an outcome")
        c = wave["counts"]
        if (c["candidates"] != len(wave["signals"])
                or c["candidates"] != c["rejected"] + c["skipped"] + c["attempted"]
                or c["attempted"] != c["opened"] + c["failed"] + c["timed_out"]
                or any(c[k] != outcomes[k] for k in ("rejected", "skipped", "opened", "failed", "timed_out"))):
            out.append(f"wave {wave['id']}: counts {c} do not add up to its outcomes {dict(outcomes)}")

    for pid in expect_closed:
        if by_id.get(pid, {}).get("status") == "open":
            out.append(f"position {pid}: its stop closed it while the bot was down; the restart did not record it")
    return out
