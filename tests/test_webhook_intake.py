"""The webhook's logic: bodies, field mapping, secret, duplicates, staleness, size and flood answers."""

from __future__ import annotations

import json

import pytest
import trio

from adapters.signals.webhook import MAX_BODY, QUEUE, WebhookIntake
from adapters.signals.webhook_body import map_signal, symbol_of
from tests.signalutil import feeding

SECRET = "whs-7Hq2Lp9Xz"
NOW = 1_760_000_000.0


def intake(**kw) -> WebhookIntake:
    return WebhookIntake(SECRET, wall_clock=lambda: NOW, **({"wave_window": 0.2} | kw))


def post(hook: WebhookIntake, body: object, auth: str | None = f"Bearer {SECRET}"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return hook.handle(raw, auth)


@pytest.mark.parametrize(("fields", "symbol"), [
    ({"symbol": "BTCUSDT"}, "BTCUSDT"),
    ({"ticker": "BINANCE:BTCUSDT.P"}, "BTCUSDT"),
    ({"ticker": "BYBIT:ETHUSDT.P"}, "ETHUSDT"),
    ({"ticker": "SOLUSDTPERP"}, "SOLUSDT"),
    ({"symbol": "BTC/USDT:USDT"}, "BTCUSDT"),
    ({"pair": "USDT_BTC"}, "BTCUSDT"),
])
def test_symbols_in_tradingview_3commas_and_ccxt_spellings(fields, symbol):
    assert symbol_of(fields) == symbol


def test_a_tradingview_alert_maps_to_a_signal_and_a_resent_one_gets_the_same_id():
    alert = {"ticker": "BINANCE:BTCUSDT.P", "action": "sell", "timestamp": "2025-10-09T08:53:10Z",
             "secret": SECRET}
    now = 1_759_999_990.0 + 10  # ten seconds after it was sent
    first = map_signal(alert, now=now, max_lag=60)
    assert first.signal == {"id": first.signal_id, "symbol": "BTCUSDT", "side": "short", "score": 1.0}
    assert SECRET not in json.dumps(first.signal)
    assert map_signal(dict(alert), now=now, max_lag=60).signal_id == first.signal_id
    stale = map_signal(alert, now=now + 120, max_lag=60)
    assert stale.signal is None and stale.reason == "stale: sent 130s ago, more than max_lag (60s)"
    assert "no time zone" in (map_signal(alert | {"timestamp": "2025-10-09T08:53:10"}, now=now,
                                         max_lag=60).reason or "")
    assert map_signal(alert | {"timestamp": 1_759_999_990_000}, now=now, max_lag=60).signal is not None


async def test_one_signal_a_list_and_a_keyed_wave_are_accepted_and_traded():
    hook = intake()
    async with feeding(hook) as arrivals:
        answer = await post(hook, {"wave": "W1", "signals": [
            {"id": "a", "symbol": "BTCUSDT", "side": "long", "score": 3},
            {"id": "b", "symbol": "ETHUSDT", "side": "buy", "score": 2}]})
        assert (answer.status, answer.body) == (202, {"accepted": 2, "duplicates": 0, "rejected": []})
        with trio.fail_after(2):
            wave = await arrivals.receive()
        assert (wave.key, [s["id"] for s in wave.signals]) == ("W1", ["a", "b"])
        # Single alerts are gathered for wave_window, then traded as one wave.
        for alert in ({"id": "c", "ticker": "BINANCE:SOLUSDT.P", "action": "buy", "secret": SECRET},
                      {"id": "d", "ticker": "BINANCE:XRPUSDT.P", "action": "sell", "secret": SECRET}):
            assert (await post(hook, alert, auth=None)).body["accepted"] == 1
        with trio.fail_after(2):
            gathered = await arrivals.receive()
        assert [s["id"] for s in gathered.signals] == ["c", "d"] and gathered.key is None
        assert all("secret" not in s for s in gathered.signals)


async def test_duplicates_within_a_body_across_posts_and_in_the_store_are_counted_not_traded():
    async def handled(ids):
        return [i for i in ids if i == "old"]

    hook = intake(handled=handled)
    sig = {"symbol": "BTCUSDT", "side": "long", "score": 1}
    async with feeding(hook) as arrivals:
        first = await post(hook, [sig | {"id": "x"}, sig | {"id": "x"}, sig | {"id": "old"}])
        assert first.body == {"accepted": 1, "duplicates": 2, "rejected": []}
        again = await post(hook, [sig | {"id": "x"}])
        assert again.body == {"accepted": 0, "duplicates": 1, "rejected": []}
        with trio.fail_after(2):
            assert [s["id"] for s in (await arrivals.receive()).signals] == ["x"]
        with trio.move_on_after(0.3):
            await arrivals.receive()
            pytest.fail("a duplicate was handed to the engine")


async def test_wrong_or_missing_secret_is_401_and_the_answer_never_echoes_it():
    hook = intake()
    sig = {"id": "1", "symbol": "BTCUSDT", "side": "long"}
    for auth, body in ((None, sig), ("Bearer nope-123", sig), (None, sig | {"secret": "nope-123"}),
                       (None, [sig | {"secret": SECRET}, sig | {"id": "2"}])):
        answer = await post(hook, body, auth)
        assert answer.status == 401 and "nope-123" not in json.dumps(answer.body)
    assert (await post(hook, sig | {"secret": SECRET}, None)).status == 202
    assert (await post(hook, [sig | {"id": "3", "secret": SECRET}], None)).status == 202


async def test_malformed_oversize_and_rejected_signals_get_their_answers():
    hook = intake()
    assert (await post(hook, b"{not json")).status == 400
    assert (await post(hook, [])).status == 400
    assert (await post(hook, {"signals": "x"})).status == 400
    big = [{"id": str(i), "symbol": "BTCUSDT", "side": "long", "pad": "x" * 100} for i in range(700)]
    assert len(json.dumps(big)) > MAX_BODY
    assert (await post(hook, big)).status == 413
    answer = await post(hook, [{"id": "ok", "symbol": "BTCUSDT", "side": "long"},
                               {"id": "bad", "symbol": "BTCUSDT", "side": "up"},
                               {"id": "old", "symbol": "BTCUSDT", "side": "long", "timestamp": NOW - 600},
                               "junk"])
    assert answer.status == 202 and answer.body["accepted"] == 1
    assert answer.body["rejected"] == [
        {"id": "bad", "reason": "side 'up' is not one of long, short, buy, sell"},
        {"id": "old", "reason": "stale: sent 600s ago, more than max_lag (60s)"},
        {"id": "", "reason": "not an object: 'junk'"}]


async def test_a_flood_is_answered_429_with_retry_after():
    hook = intake(rate_limit=5, burst=3)
    answers = [await post(hook, {"id": f"f{i}", "symbol": "BTCUSDT", "side": "long"}) for i in range(5)]
    assert [a.status for a in answers] == [202, 202, 202, 429, 429]
    assert dict(answers[3].headers)["Retry-After"] == "1"
    # An engine that is QUEUE waves behind: the next wave is refused, not lost silently, and can be re-sent.
    backlog = intake(rate_limit=1000, burst=1000)
    for i in range(QUEUE):
        assert (await post(backlog, [{"id": f"q{i}", "symbol": "BTCUSDT", "side": "long"}])).status == 202
    refused = await post(backlog, [{"id": "late", "symbol": "BTCUSDT", "side": "long"}])
    assert refused.status == 429
    async with feeding(backlog) as arrivals:
        await arrivals.receive()
        assert (await post(backlog, [{"id": "late", "symbol": "BTCUSDT", "side": "long"}])).status == 202


async def test_the_same_alert_posted_twice_at_once_is_accepted_once():
    async def slow_store(ids):
        await trio.sleep(0.05)  # the store lookup yields: the second post arrives meanwhile
        return []

    hook = intake(handled=slow_store)
    body = [{"id": "race", "symbol": "BTCUSDT", "side": "long"}]
    answers = []

    async def send() -> None:
        answers.append((await post(hook, body)).body)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        nursery.start_soon(send)
    assert sorted(a["accepted"] for a in answers) == [0, 1]
    assert sorted(a["duplicates"] for a in answers) == [0, 1]
