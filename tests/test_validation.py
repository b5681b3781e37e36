import math
from collections.abc import Mapping

import pytest

from engine.model import Market, Outcome, Side
from engine.validation import screen_size, screen_wave

MARKETS = {
    "BTCUSDT": Market("BTCUSDT", 0.1, 0.001, 100.0),
    "FORMUSDT": Market("FORMUSDT", 0.0001, 1.0, 5.0),
    "NEOUSDT": Market("NEOUSDT", 0.001, 0.01, 5.0),
}


def sig(i, symbol="FORMUSDT", side="long", score=5.0, **extra):
    signal_id = i if isinstance(i, int) and i > 10**100 else str(i)  # giant ints stay ints
    return {"id": signal_id, "symbol": symbol, "side": side, "score": score, **extra}


@pytest.mark.parametrize(
    ("signal", "reason"),
    [
        (sig(1, symbol="NOPEUSDT"), "unknown symbol 'NOPEUSDT'"),
        (sig(1, symbol=""), "empty or missing symbol"),
        ({"id": "1", "side": "long", "score": 1.0}, "empty or missing symbol"),
        (sig(1, side="up"), "side 'up' is not one of long, short, buy, sell"),
        (sig(1, side=None), "side None is not one of"),
        (sig(1, score=math.nan), "score nan is not a finite number"),
        (sig(1, score=math.inf), "score inf is not a finite number"),
        (sig(1, score="9"), "score '9' is not a finite number"),
        ({"symbol": "FORMUSDT", "side": "long", "score": 1.0}, "signal id None is missing"),
        ("not a signal", "is not an object"),
    ],
)
def test_each_rejection_has_its_reason(signal, reason):
    screened = screen_wave([signal], MARKETS, set())
    assert screened.candidates == ()
    (rejected,) = screened.rejected
    assert rejected.outcome is Outcome.REJECTED
    assert reason in rejected.reason


def test_buy_and_sell_mean_long_and_short():
    screened = screen_wave([sig(1, side="BUY"), sig(2, "NEOUSDT", side="sell")], MARKETS, set())
    assert [c.side for c in screened.candidates] == [Side.LONG, Side.SHORT]


def test_duplicate_id_rejects_the_lower_ranked_copy():
    screened = screen_wave([sig(7, score=1.0), sig(7, "NEOUSDT", score=2.0)], MARKETS, set())
    assert [c.symbol for c in screened.candidates] == ["NEOUSDT"]
    assert "duplicate signal id 7" in screened.rejected[0].reason


def test_busy_symbol_and_same_symbol_twice():
    screened = screen_wave([sig(1, score=3.0), sig(2, "NEOUSDT", score=2.0), sig(3, "NEOUSDT", score=1.0)],
                           MARKETS, {"FORMUSDT"})
    reasons = {r.signal_id: r.reason for r in screened.rejected}
    assert "already open or opening on FORMUSDT" in reasons["1"]
    assert "already targeted by higher-ranked signal 2" in reasons["3"]
    assert [c.id for c in screened.candidates] == ["2"]


def test_ranked_by_score_with_unusable_scores_last():
    screened = screen_wave([sig(1, score=1.0), sig(2, "NEOUSDT", score=math.nan), sig(3, "BTCUSDT", score=9.0)],
                           MARKETS, set())
    assert [c.id for c in screened.candidates] == ["3", "1"]
    assert [c.rank for c in screened.candidates] == [0, 1]
    assert screened.rejected[0].rank == 2


def test_min_notional_and_margin():
    qty, why = screen_size(50.0, 1, 60_000.0, MARKETS["BTCUSDT"], 10_000.0)
    assert "below the market's min notional of 100 USDT" in why
    qty, why = screen_size(200.0, 1, 0.8132, MARKETS["FORMUSDT"], 150.0)
    assert qty == 245.0 and why == "not enough free margin: need 199.23 USDT, 150.00 free"
    qty, why = screen_size(200.0, 2, 0.8132, MARKETS["FORMUSDT"], 150.0)
    assert why is None


# --- whatever a signal source sends, every signal gets an outcome and the wave goes on ---

class HostileMapping(Mapping):
    """A mapping from an embedder's signal source whose every read fails."""

    def __getitem__(self, key):
        raise RuntimeError("boom")

    def __iter__(self):
        return iter(["id"])

    def __len__(self):
        return 1


@pytest.mark.parametrize(
    ("signal", "reason"),
    [
        (sig(1, score=int("9" * 400)), "is not a finite number"),
        (sig(1, score=-(10 ** 5000)), "an integer of about 5001 digits"),
        (sig(1, score=1e300), "score 1e+300 is not a number in [-1e+12, 1e+12]"),
        (sig(7 ** 6000), "is too long"),
        (sig("x" * 65), "is 65 characters long (at most 64)"),
        (sig("a b"), "has characters outside letters, digits"),
        (sig("\x1b[2J"), "signal id '\\x1b[2J' has characters outside"),
        (sig(1, symbol="\x1b]0;pwned\x07"), "symbol '\\x1b]0;pwned\\x07' has characters outside"),
        (sig(1, symbol="X" * 100_000), "is 100000 characters long (at most 32)"),
        (sig(1, side="l" * 10_000), "is not one of long, short, buy, sell"),
        (HostileMapping(), "internal error while validating: RuntimeError('boom')"),
        ({"id": [1] * 10, "symbol": "FORMUSDT"}, "is missing or not a string/integer"),
    ],
)
def test_hostile_signals_are_rejected_with_a_bounded_printable_reason(signal, reason):
    screened = screen_wave([signal, sig(2, "NEOUSDT")], MARKETS, set())
    assert [c.id for c in screened.candidates] == ["2"]
    (rejected,) = screened.rejected
    assert reason in rejected.reason, rejected.reason
    assert len(rejected.reason) < 400 and rejected.reason.isprintable()
    assert len(rejected.signal_id) <= 64 and len(rejected.symbol) <= 32 and len(rejected.side) <= 8


@pytest.mark.parametrize("wave", [None, "BTCUSDT", {"id": "1"}, 42, b"[]"])
def test_a_wave_that_is_not_a_list_is_one_rejection(wave):
    screened = screen_wave(wave, MARKETS, set())
    assert screened.candidates == ()
    assert "the wave is not a list of signals" in screened.rejected[0].reason


@pytest.mark.parametrize("price", [0.0, -1.0, math.nan, math.inf, 5e-324])
def test_an_unusable_exchange_price_rejects_the_signal(price):
    _, why = screen_size(200.0, 1, price, MARKETS["FORMUSDT"], 10_000.0)
    assert why is not None and ("unusable price" in why or "cannot size an order" in why)


def test_a_bug_in_sizing_one_signal_fails_that_signal_not_the_wave(monkeypatch):
    from engine.nursery import wave
    from tests.conftest import run, scenario

    real = wave.screen_size

    def buggy(size, leverage, price, market, free):
        if market.symbol == "ALICEUSDT":
            raise ArithmeticError("sizing bug")
        return real(size, leverage, price, market, free)

    monkeypatch.setattr(wave, "screen_size", buggy)
    report = run(scenario())
    signals = {s["symbol"]: s for s in report["waves"][0]["signals"]}
    assert signals["ALICEUSDT"]["outcome"] == "rejected"
    assert "internal error while sizing the order: ArithmeticError('sizing bug')" in signals["ALICEUSDT"]["reason"]
    assert sum(s["outcome"] == "opened" for s in signals.values()) == 5
    assert report["invariants"]["counts_consistent"]
