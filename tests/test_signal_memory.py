"""A signal id is handled once: a re-sent id (a redelivery, a replay) is rejected, naming the
wave that handled it, in later waves and after a restart, for as long as the retention says."""

from adapters.sim.exchange import SimExchange
from adapters.sqlite_store import SQLiteStore
from engine import EngineConfig
from tests.conftest import assert_invariants, run, scenario, wave_signals
from tests.test_restart import SPEC
from trio_bot import Engine

FORM = wave_signals(1)[0]  # id 4974690, long FORMUSDT @ 0.8132, stop 0.7969


def resend_scenario(**engine):
    return scenario(
        engine={"max_positions_per_wave": 1, "max_concurrent_signals": 1, **engine},
        waves=[{"at": 0.0, "signals": [FORM]},
               {"at": 120.0, "signals": [FORM, {**FORM, "id": "fresh", "score": 1.0}]}],
        # The stop fills at t=60: by the re-send, FORMUSDT is free again.
        ticks=[{"at": 60.0, "symbol": "FORMUSDT", "price": 0.79}], until=200.0)


def test_a_resent_signal_after_its_position_closed_is_rejected_and_never_trades_again():
    report = run(resend_scenario())
    first, second = report["waves"]
    assert [s["outcome"] for s in first["signals"]] == ["opened"]
    again, fresh = second["signals"]
    assert (again["id"], again["outcome"]) == ("4974690", "rejected")
    assert again["reason"] == "signal id 4974690 was already handled in wave w1 (opened)"
    assert (fresh["id"], fresh["outcome"]) == ("fresh", "opened")  # the symbol itself was free
    assert [p["signal_id"] for p in report["positions"]] == ["4974690", "fresh"]
    assert_invariants(report)


def test_after_the_retention_an_id_is_forgotten():
    report = run(resend_scenario(signal_memory_retention=100.0))
    assert [s["outcome"] for s in report["waves"][1]["signals"]] == ["opened", "rejected"]  # fresh: FORMUSDT taken


async def test_a_resent_signal_is_rejected_after_a_restart(autojump_clock, tmp_path):
    db = str(tmp_path / "bot.db")
    exchange = SimExchange.from_spec(SPEC)
    config = EngineConfig(max_positions_per_wave=2)
    store = await SQLiteStore.open(db)
    async with Engine.open(config, exchange, store) as engine:
        first = await engine.process_wave(wave_signals(2))
    await store.aclose()
    assert first.counts.opened == 2

    store = await SQLiteStore.open(db)
    async with Engine.open(config, exchange, store) as engine:
        second = await engine.process_wave(wave_signals(3))
    assert [(o.signal_id, o.outcome.value, o.reason) for o in second.outcomes] == [
        ("4974690", "rejected", "signal id 4974690 was already handled in wave w1 (opened)"),
        ("4974691", "rejected", "signal id 4974691 was already handled in wave w1 (opened)"),
        ("4974692", "opened", None)]
    handled = await store.handled_signals(["4974690", "4974692"])
    assert {k: (h.wave_id, h.outcome) for k, h in handled.items()} == {
        "4974690": ("w1", "opened"), "4974692": ("w2", "opened")}
    await store.aclose()


def test_a_wave_whose_ids_cannot_be_checked_trades_nothing():
    report = run(scenario(faults=[{"point": "storage.write", "effect": "error"}]))
    signals = report["waves"][0]["signals"]
    assert {s["outcome"] for s in signals} == {"rejected"}
    assert all(s["reason"].startswith("could not check the signal ids against those already handled")
               for s in signals)
    assert report["exchange"]["positions"] == []
