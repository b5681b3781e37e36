"""Binance USDⓈ-M user data streams on the fake server: listenKeys and the account's events.

`POST /fapi/v1/listenKey` (API key, no signature) gives the account's key — the same one
again, extended, while it is valid, as Binance does; `PUT` keeps it alive for another
60 minutes (-1125 once it has expired); `DELETE` ends it. `/ws/<listenKey>` on the
streams port then pushes, as they happen:

* `ORDER_TRADE_UPDATE` for every plain order placed, filled or cancelled, and for the
  market order a triggered algo order became;
* `ALGO_UPDATE` for every algo (conditional) order's status: NEW, CANCELED, TRIGGERING,
  TRIGGERED, FINISHED (with `ai`/`ap`/`aq`: the order it became, its price and quantity),
  REJECTED, EXPIRED;
* `ACCOUNT_UPDATE` after every fill, with the symbol's position.

A connection whose key expires gets `listenKeyExpired` and is closed.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import trio

from adapters.sim.fake_binance import shapes
from adapters.sim.fake_binance.params import Rejection
from adapters.sim.fake_binance.shapes import JSON, OrderMeta
from adapters.sim.fake_binance.wire import WebSocket
from engine.model import OrderState, OrderStatus

VALIDITY = 3600.0  # a listenKey lives 60 minutes after its creation or last keep-alive
BUFFER = 1024


class UserStreams:
    """listenKeys per account and the connections listening on them."""

    def __init__(self, validity: float = VALIDITY) -> None:
        self.validity = validity
        self._keys: dict[str, tuple[str, float]] = {}  # listenKey -> (api key, expires at)
        self._clients: dict[str, list[trio.MemorySendChannel[JSON]]] = {}  # api key -> connections
        self.pushed = 0

    def create(self, api_key: str) -> str:
        now = trio.current_time()
        for key, (owner, expires) in self._keys.items():
            if owner == api_key and expires > now:
                self._keys[key] = (owner, now + self.validity)
                return key
        key = secrets.token_hex(32)
        self._keys[key] = (api_key, now + self.validity)
        return key

    def keepalive(self, api_key: str, listen_key: str | None) -> str:
        key = self._valid(api_key, listen_key)
        self._keys[key] = (api_key, trio.current_time() + self.validity)
        return key

    def delete(self, api_key: str, listen_key: str | None) -> None:
        self._keys.pop(self._valid(api_key, listen_key))

    def _valid(self, api_key: str, listen_key: str | None) -> str:
        now = trio.current_time()
        for key, (owner, expires) in self._keys.items():
            if owner == api_key and expires > now and listen_key in (None, key):
                return key
        raise Rejection(-1125, "This listenKey does not exist.")

    def owner(self, listen_key: str) -> str | None:
        found = self._keys.get(listen_key)
        return found[0] if found is not None and found[1] > trio.current_time() else None

    def push(self, api_key: str, event: JSON) -> None:
        for send in list(self._clients.get(api_key, ())):
            try:
                send.send_nowait(event)
                self.pushed += 1
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def serve(self, listen_key: str, socket: WebSocket) -> None:
        api_key = self.owner(listen_key)
        if api_key is None:
            await socket.close()
            return
        send, receive = trio.open_memory_channel[JSON](BUFFER)
        self._clients.setdefault(api_key, []).append(send)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forward, receive, socket, listen_key)
                await _read_until_closed(socket)
                nursery.cancel_scope.cancel()
        finally:
            self._clients[api_key].remove(send)
            send.close()

    async def _forward(self, receive: trio.MemoryReceiveChannel[JSON], socket: WebSocket, listen_key: str) -> None:
        try:
            while True:
                expires = self._keys.get(listen_key, ("", 0.0))[1]
                with trio.move_on_at(expires) as expiry:
                    event = await receive.receive()
                if expiry.cancelled_caught:
                    if self._keys.get(listen_key, ("", 0.0))[1] > trio.current_time():
                        continue  # kept alive meanwhile
                    now = now_ms()
                    await socket.send_json({"e": "listenKeyExpired", "E": now, "listenKey": listen_key})
                    await socket.close()
                    return
                await socket.send_json(event)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel):
            return
        except Exception as exc:  # wsproto's protocol errors once the client has gone
            if type(exc).__name__ in ("LocalProtocolError", "RemoteProtocolError"):
                return
            raise

    async def drop_all(self) -> None:
        for senders in self._clients.values():
            for send in list(senders):
                send.close()


async def _read_until_closed(socket: WebSocket) -> None:
    try:
        while await socket.receive() is not None:
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    except Exception as exc:
        if type(exc).__name__ in ("LocalProtocolError", "RemoteProtocolError"):
            return
        raise


def _status(order: OrderState, meta: OrderMeta) -> str:
    if order.status is OrderStatus.NEW:
        return "NEW"
    if order.status is OrderStatus.FILLED:
        return "FILLED"
    return "CANCELED" if meta.canceled else "EXPIRED"


def order_trade_update(order: OrderState, meta: OrderMeta, *, actual: bool = False) -> JSON:
    """One plain order's change (`actual`: the market order a triggered algo order became)."""
    now = now_ms()
    filled = order.filled_quantity if order.status is OrderStatus.FILLED else 0.0
    price = order.average_price or 0.0
    status = _status(order, meta)
    if meta.orig_qty is not None and filled:
        status = "PARTIALLY_FILLED"  # the trade; an EXPIRED event for the rest follows (`expired_rest`)
    execution = "TRADE" if filled else status
    order_id = meta.actual_order_id if actual and meta.actual_order_id is not None else meta.order_id
    return {"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": {
        "s": order.symbol, "c": order.client_order_id, "S": order.side.value.upper(), "o": "MARKET",
        "f": "GTC", "q": shapes.fmt(meta.orig_qty or order.quantity), "p": "0",
        "ap": shapes.fmt(price) if filled else "0",
        "sp": "0", "x": execution, "X": status, "i": order_id, "l": shapes.fmt(filled), "z": shapes.fmt(filled),
        "L": shapes.fmt(price) if filled else "0", "n": "0", "N": "USDT", "T": now, "t": order_id if filled else 0,
        "b": "0", "a": "0", "m": False, "R": order.reduce_only, "wt": meta.working_type,
        "ot": meta.type if actual else "MARKET", "ps": "BOTH", "cp": False, "rp": "0", "pP": False, "si": 0,
        "ss": 0, "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0}}


def expired_rest(order: OrderState, meta: OrderMeta) -> JSON:
    """The rest of a market order its price band stopped: expired, what did fill stays filled."""
    event = order_trade_update(order, meta)
    event["o"] |= {"x": "EXPIRED", "X": "EXPIRED", "l": "0", "L": "0"}
    return event


def algo_update(order: OrderState, meta: OrderMeta, status: str) -> JSON:
    now = now_ms()
    filled = order.status is OrderStatus.FILLED
    return {"e": "ALGO_UPDATE", "T": now, "E": now, "o": {
        "caid": order.client_order_id, "aid": meta.order_id, "at": "CONDITIONAL", "o": meta.type,
        "s": order.symbol, "S": order.side.value.upper(), "ps": "BOTH", "f": "GTC",
        "q": shapes.fmt(order.quantity), "X": status,
        "ai": str(meta.actual_order_id) if meta.actual_order_id is not None else "",
        "ap": shapes.fmt(order.average_price or 0.0) if filled else "0",
        "aq": shapes.fmt(order.filled_quantity) if filled else "0", "act": "MARKET",
        "tp": shapes.fmt(order.stop_price or 0.0), "p": "0", "V": "EXPIRE_MAKER", "wt": meta.working_type,
        "pm": "NONE", "cp": False, "pP": False, "R": order.reduce_only, "tt": meta.triggered_ms or 0, "gtd": 0}}


def account_update(symbol: str, amount: float, entry: float, unrealized: float, wallet: float) -> JSON:
    now = now_ms()
    return {"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": {
        "m": "ORDER", "B": [{"a": "USDT", "wb": shapes.fmt(wallet), "cw": shapes.fmt(wallet), "bc": "0"}],
        "P": [{"s": symbol, "pa": shapes.fmt(amount), "ep": shapes.fmt(entry), "bep": shapes.fmt(entry),
               "cr": "0", "up": shapes.fmt(unrealized), "mt": "cross", "iw": "0", "ps": "BOTH"}]}}


Emit = Callable[[JSON], None]


def now_ms() -> int:
    return int(time.time() * 1000)
