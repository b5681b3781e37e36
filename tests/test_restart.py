"""A restart resumes from the store: ids continue, and `opening` intents left by a crash are
resolved against the exchange before anything else happens."""

from adapters.sim.exchange import SimExchange
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from engine.ids import entry_id
from engine.model import (
    OrderKind,
    OrderRecord,
    OrderRequest,
    OrderSide,
    OrderStatus,
    Position,
    PositionStatus,
    Side,
    TrailingStatus,
)
from tests.conftest import PRICES, wave_signals
from trio_bot import Engine

SPEC = ExchangeSpec(latency=0.05, markets=tuple(MarketSpec(s, p) for s, p in PRICES.items()))


def intent(pid: int, symbol: str, qty: float) -> tuple[Position, OrderRecord]:
    position = Position(id=pid, signal_id=f"s{pid}", wave_id="w1", symbol=symbol, side=Side.LONG,
                        status=PositionStatus.OPENING, quantity=qty, entry_client_id=entry_id(pid))
    order = OrderRecord(entry_id(pid), pid, symbol, OrderKind.ENTRY, OrderSide.BUY, qty, OrderStatus.PENDING)
    return position, order


async def test_opening_rows_are_resolved_at_start(autojump_clock, tmp_path):
    db = str(tmp_path / "bot.db")
    exchange = SimExchange.from_spec(SPEC)
    store = await SQLiteStore.open(db)
    # The crash: two intents stored; only the first entry reached the exchange.
    await store.record_intent(*intent(1, "FORMUSDT", 245.0))
    await store.record_intent(*intent(2, "NEOUSDT", 35.0))
    await exchange.place_order(OrderRequest("FORMUSDT", OrderSide.BUY, OrderKind.ENTRY, 245.0, entry_id(1)))
    await store.aclose()

    store = await SQLiteStore.open(db)
    async with Engine.open(EngineConfig(), exchange, store) as engine:
        live = {p.id: p for p in engine.positions(include_closed=True)}
        assert live[1].status is PositionStatus.OPEN and live[1].stop_price == 0.7969
        assert live[2].status is PositionStatus.CLOSED
        assert exchange.unprotected_positions() == []
        record = await engine.process_wave(wave_signals(3))
        # Ids continue after the stored ones; FORMUSDT is busy, so it is rejected.
        assert sorted(o.position_id for o in record.outcomes if o.position_id) == [3, 4]
        assert record.outcomes[0].reason == "a position is already open or opening on FORMUSDT"
        assert record.id == "w1"
    stored = {p.id: p for p in await store.positions(include_closed=True)}
    assert stored[1].status is PositionStatus.OPEN and stored[1].trailing is TrailingStatus.ACTIVE
    assert stored[2].status is PositionStatus.CLOSED
    await store.aclose()


async def test_second_engine_continues_wave_numbering_and_open_positions(autojump_clock, tmp_path):
    db = str(tmp_path / "bot.db")
    exchange = SimExchange.from_spec(SPEC)
    store = await SQLiteStore.open(db)
    async with Engine.open(EngineConfig(max_positions_per_wave=2), exchange, store) as engine:
        first = await engine.process_wave(wave_signals(2))
    await store.aclose()
    assert first.counts.opened == 2

    store = await SQLiteStore.open(db)
    async with Engine.open(EngineConfig(), exchange, store) as engine:
        assert [p.symbol for p in engine.positions()] == ["FORMUSDT", "ALICEUSDT"]
        second = await engine.process_wave(wave_signals(2))
        assert second.id == "w2"
        assert second.counts.rejected == 2
    assert [w.id for w in await store.waves()] == ["w1", "w2"]
    await store.aclose()
