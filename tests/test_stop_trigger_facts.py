"""A triggered stop is an exit only with its fill found. A stop the exchange reports as
triggered but not (yet) filled — Binance's TRIGGERING / TRIGGERED, which the adapter reads as
`unknown` (tests/test_binance_conformance.py) — leaves a held position without a working stop:
the engine must not record it closed, and must protect it at once."""

from __future__ import annotations

import attrs
import trio

from adapters.sim.exchange import SimExchange
from engine.model import OrderKind, OrderState, OrderStatus, PositionStatus
from tests.test_restart import SPEC
from tests.test_trailing_manager import trading


class TriggeringExchange(SimExchange):
    """Holds a crossed stop without filling it, and reports it as triggered-but-unfilled."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.triggering: set[str] = set()
        self.trigger_gate = self._hold

    def _hold(self, order: OrderState, price: float) -> bool:
        self.triggering.add(order.client_order_id)
        return False  # the exchange has it, and has not filled it

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        found = await super().fetch_order(symbol, client_order_id)
        if found is not None and client_order_id in self.triggering and found.status is OrderStatus.NEW:
            return attrs.evolve(found, status=OrderStatus.UNKNOWN)  # TRIGGERING: neither resting nor filled
        return found

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        return [o for o in await super().fetch_open_orders(symbol) if o.client_order_id not in self.triggering]


async def test_a_stop_triggered_without_a_fill_is_not_an_exit_and_the_position_is_protected_at_once(
        autojump_clock):
    exchange = TriggeringExchange.from_spec(SPEC)
    async with trading(exchange=exchange) as (engine, _, _store):
        (before,) = engine.positions()
        exchange.set_price("FORMUSDT", 0.7960)  # through the stop (0.7969): triggered, not filled
        await trio.sleep(2)
        (position,) = engine.positions(include_closed=True)
        assert position.status is PositionStatus.OPEN and position.exit_reason is None  # still held
        assert [p.symbol for p in exchange.positions_snapshot()] == ["FORMUSDT"]
        working = [o for o in await exchange.fetch_open_orders("FORMUSDT") if o.kind is OrderKind.STOP]
        assert [o.client_order_id for o in working] == [position.stop_client_id] != [before.stop_client_id]
        assert working[0].quantity >= position.quantity  # a working stop covers all of it again
