"""The operator API over real HTTP: shapes equal to the CLI's --json, auth, errors, pause and close."""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from engine.model import Outcome, PositionStatus
from engine.report import position_json, reportable_positions, wave_json
from tests.apiutil import TOKEN, quick_config, running_api
from tests.conftest import wave_signals
from trio_bot.api.settings import ApiSettings


async def test_ping_needs_no_token_and_everything_else_does(tmp_path):
    async with running_api(tmp_path) as h, httpx.AsyncClient(base_url=h.api.url, timeout=5) as anonymous:
        assert (await anonymous.get("/api/v1/ping")).json() == {"status": "pong"}
        for path in ("/api/v1/status", "/api/v1/waves", "/api/v1/positions", "/api/v1/events", "/metrics"):
            answer = await anonymous.get(path)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"].startswith("Bearer")
        wrong = {"authorization": "Bearer " + "x" * len(TOKEN)}
        assert (await anonymous.get("/api/v1/status", headers=wrong)).status_code == 401
        assert (await anonymous.post("/api/v1/pause", headers=wrong)).status_code == 401
        assert h.engine.pause_state is None
        # The spec and the page itself are public: the page gets its token from the URL fragment.
        assert (await anonymous.get("/api/v1/openapi.json")).json()["openapi"].startswith("3.")
        assert (await anonymous.get("/")).headers["content-type"].startswith("text/html")


async def test_waves_positions_and_events_are_shaped_like_the_cli(tmp_path):
    async with running_api(tmp_path) as h:
        record = await h.engine.process_wave(wave_signals())
        assert await h.engine.flush()
        store = h.engine.ctx.storage
        positions = {p.id: p for p in await store.positions(include_closed=True)}

        waves = (await h.get("/api/v1/waves")).json()
        assert waves == {"waves": [wave_json(record, positions)]}
        assert (await h.get(f"/api/v1/waves/{record.id}")).json() == wave_json(record, positions)
        assert (await h.get("/api/v1/waves", params={"last": 0})).json() == {"waves": []}

        shaped = [position_json(p) for p in reportable_positions(positions.values())]
        assert (await h.get("/api/v1/positions", params={"all": "true"})).json() == {"positions": shaped}
        one = (await h.get("/api/v1/positions/1")).json()
        assert {k: one[k] for k in shaped[0]} == shaped[0]
        assert one["trailing_state"] == "waiting" and one["best_price"] == one["entry_price"]

        events = (await h.get("/api/v1/events", params={"wave": record.id})).json()["events"]
        kinds = [e["kind"] for e in events]
        assert kinds[0] == "wave_started" and "wave_finished" in kinds
        assert {"intent_stored", "entry_sent", "entry_filled", "stop_placed", "signal_outcome"} <= set(kinds)
        signal = record.outcomes[0].signal_id
        only = (await h.get("/api/v1/events", params={"signal": signal})).json()["events"]
        assert only and {e["signal_id"] for e in only} == {signal}
        later = (await h.get("/api/v1/events", params={"since": events[-1]["at"]})).json()["events"]
        assert all(e["at"] >= events[-1]["at"] for e in later)
        iso = (await h.get("/api/v1/events", params={"since": "2000-01-01T00:00:00Z"})).json()["events"]
        assert len(iso) >= len(events)


async def test_unknown_ids_are_404_and_bad_parameters_are_400_naming_them(tmp_path):
    async with running_api(tmp_path) as h:
        assert (await h.get("/api/v1/waves/w404")).status_code == 404
        missing = await h.get("/api/v1/positions/404")
        assert missing.status_code == 404 and missing.json() == {"error": "no position 404"}
        assert (await h.post("/api/v1/positions/404/close")).status_code == 404
        bad = await h.get("/api/v1/waves", params={"last": "-1"})
        assert bad.status_code == 400 and bad.json()["error"] == "last = '-1': expected an integer >= 0"
        assert "since" in (await h.get("/api/v1/events", params={"since": "yesterday"})).json()["error"]
        assert "all" in (await h.get("/api/v1/positions", params={"all": "maybe"})).json()["error"]
        huge = await h.post("/api/v1/pause", content=b"x" * 70_000)
        assert huge.status_code == 413
        assert (await h.post("/api/v1/pause", content=b"{not json")).status_code == 400


async def test_pause_skips_valid_signals_keeps_rejecting_bad_ones_and_survives_a_restart(tmp_path):
    async with running_api(tmp_path) as h:
        paused = await h.post("/api/v1/pause", json={"reason": "CPI release"})
        assert paused.status_code == 200
        assert paused.json()["state"] == "paused" and paused.json()["paused"]["reason"] == "CPI release"
        signals = [*wave_signals(3), {"id": "bad", "symbol": "NOPEUSDT", "side": "long", "score": 1}]
        record = await h.engine.process_wave(signals)
        by = {o.signal_id: o for o in record.outcomes}
        assert by["bad"].outcome is Outcome.REJECTED
        valid = [o for o in record.outcomes if o.signal_id != "bad"]
        assert {o.outcome for o in valid} == {Outcome.SKIPPED}
        assert {o.reason for o in valid} == {"entries paused by the operator: CPI release"}
        assert h.exchange.positions_snapshot() == []
        status = (await h.get("/api/v1/status")).json()
        assert status["state"] == "paused" and status["last_wave"]["counts"]["skipped"] == 3

    async with running_api(tmp_path) as h:  # same database: a restart
        assert (await h.get("/api/v1/status")).json()["paused"]["reason"] == "CPI release"
        record = await h.engine.process_wave(wave_signals(2, start=100))
        assert {o.reason for o in record.outcomes} == {"entries paused by the operator: CPI release"}
        resumed = await h.post("/api/v1/resume")
        assert resumed.json()["state"] == "running" and resumed.json()["paused"] is None
        record = await h.engine.process_wave(wave_signals(2, start=200))
        assert {o.outcome for o in record.outcomes} == {Outcome.OPENED}

    async with running_api(tmp_path) as h:
        assert (await h.get("/api/v1/status")).json()["state"] == "running"


async def test_a_pause_during_a_wave_lets_running_signals_finish_and_starts_no_more(tmp_path):
    config = quick_config(max_concurrent_signals=1)
    async with running_api(tmp_path, config=config, latency=0.05) as h:
        records = []
        async with trio.open_nursery() as nursery:
            async def wave() -> None:
                records.append(await h.engine.process_wave(wave_signals(4)))

            started = trio.Event()
            h.engine.ctx.event_observers.append(lambda e: started.set() if e.kind == "signal_started" else None)
            nursery.start_soon(wave)
            with trio.fail_after(5):
                await started.wait()
            assert (await h.get("/api/v1/status")).json()["wave_running"] == "w1"
            assert (await h.post("/api/v1/pause", json={"reason": "halt"})).status_code == 200
        outcomes = records[0].outcomes
        assert outcomes[0].outcome is Outcome.OPENED  # it was running: it finishes, protected
        assert [o.outcome for o in outcomes[1:]] == [Outcome.SKIPPED] * 3
        assert {o.reason for o in outcomes[1:]} == {"entries paused by the operator: halt"}


async def test_close_is_reduce_only_records_operator_and_cancels_the_stop_after_the_fill(tmp_path):
    async with running_api(tmp_path) as h:
        await h.engine.process_wave(wave_signals(2))
        position = h.engine.book[1]
        assert position.status is PositionStatus.OPEN
        closed = await h.post("/api/v1/positions/1/close")
        assert closed.status_code == 200, closed.text
        body = closed.json()
        assert body["status"] == "closed" and body["exit_reason"] == "operator" and body["realized_pnl"] is not None
        assert all(p.symbol != position.symbol for p in h.exchange.positions_snapshot())
        assert all(o.symbol != position.symbol for o in h.exchange.open_orders_snapshot())
        assert len(h.exchange.positions_snapshot()) == 1  # the other position is untouched
        kinds = [e["kind"] for e in (await h.get("/api/v1/events", params={"position": 1})).json()["events"]]
        assert kinds.index("operator_close") < kinds.index("position_closed") < kinds.index("order_cancelled")
        again = await h.post("/api/v1/positions/1/close")
        assert again.status_code == 409 and "closed" in again.json()["error"]
        assert await h.engine.flush()
        stored = await h.engine.ctx.storage.position(1)
        assert stored is not None and stored.exit_reason == "operator"
        orders = await h.engine.ctx.storage.orders(1)
        assert [o.kind.value for o in orders if o.status == "filled"] == ["entry", "close"]


async def test_a_close_the_exchange_refuses_is_502_and_the_stop_stays(tmp_path):
    from adapters.sim.faults import FaultPlan
    from adapters.sim.scenario import FaultSpec

    plan = FaultPlan([FaultSpec("exchange.close_order", "reject", message="ReduceOnly Order is rejected.")])
    config = quick_config(protect_attempts=2, exchange_retry_backoff=0.01, cleanup_timeout=5)
    async with running_api(tmp_path, faults=plan, config=config) as h:
        await h.engine.process_wave(wave_signals(1))
        answer = await h.post("/api/v1/positions/1/close")
        assert answer.status_code == 502, answer.text
        assert "position 1 was not closed" in answer.json()["error"]
        position = h.engine.book[1]
        assert position.status is PositionStatus.OPEN and position.stop_price is not None
        stops = [o for o in h.exchange.open_orders_snapshot() if o.client_order_id == position.stop_client_id]
        assert len(stops) == 1  # still protected
        kinds = [e["kind"] for e in (await h.get("/api/v1/events", params={"position": 1})).json()["events"]]
        assert "operator_close_failed" in kinds and "position_closed" not in kinds


async def test_the_event_stream_needs_the_token_then_sends_every_event(tmp_path):
    from trio_websocket import ConnectionClosed, open_websocket_url

    async with running_api(tmp_path) as h:
        ws_url = h.api.url.replace("http://", "ws://") + "/api/v1/ws"
        async with open_websocket_url(ws_url) as ws:
            await ws.send_message(json.dumps({"token": "wrong" * 5}))
            with pytest.raises(ConnectionClosed):  # closed with 4401
                with trio.fail_after(5):
                    await ws.get_message()
            assert ws.closed is not None and ws.closed.code == 4401
        async with open_websocket_url(ws_url) as ws:
            await ws.send_message(json.dumps({"token": TOKEN}))
            with trio.fail_after(5):
                assert json.loads(await ws.get_message()) == {"type": "hello"}
            await h.engine.process_wave(wave_signals(1))
            seen = []
            with trio.fail_after(5):
                while "wave_finished" not in seen:
                    message = json.loads(await ws.get_message())
                    if message["type"] == "events":
                        seen.extend(e["kind"] for e in message["events"])
            assert seen[0] == "wave_started" and "stop_placed" in seen


async def test_the_server_lives_beside_the_trio_asyncio_loop_with_postgresql(tmp_path, pg_url):
    """Live mode: PostgreSQL (triopg) and ccxt run on trio-asyncio; the server shares the Trio loop."""
    from trio_bot.aio import asyncio_loop

    async with asyncio_loop(), running_api(tmp_path, db_url=pg_url) as h:
        async with trio.open_nursery() as nursery:  # requests while the wave runs
            statuses = []

            async def poll() -> None:
                for _ in range(10):
                    statuses.append((await h.get("/api/v1/status")).status_code)

            nursery.start_soon(poll)
            record = await h.engine.process_wave(wave_signals(3))
        assert statuses == [200] * 10
        assert await h.engine.flush()
        waves = (await h.get("/api/v1/waves")).json()["waves"]
        assert [w["id"] for w in waves] == [record.id] and waves[0]["counts"]["opened"] == 3
        events = (await h.get("/api/v1/events", params={"wave": record.id})).json()["events"]
        assert "stop_placed" in {e["kind"] for e in events}
        assert (await h.post("/api/v1/pause", json={"reason": "pg"})).json()["paused"]["reason"] == "pg"
        assert await h.engine.ctx.storage.setting("entries_paused") is not None
        assert (await h.post("/api/v1/positions/1/close")).json()["exit_reason"] == "operator"


async def test_the_openapi_description_covers_every_route(tmp_path):
    from trio_bot.api.app import build_app

    async with running_api(tmp_path) as h:
        spec = (await h.get("/api/v1/openapi.json")).json()
        guard = build_app(h.api.operator, ApiSettings(), TOKEN, hub=h.api.hub, metrics=h.api.metrics)
        served = {route.path.replace(":int", "") for route in guard.app.routes} - {"/"}  # type: ignore[attr-defined]
        assert set(spec["paths"]) == served
        for path, methods in spec["paths"].items():
            for operation in methods.values():
                assert operation["summary"] and operation["responses"], path


async def test_metrics_can_be_public_and_count_calls_and_events(tmp_path):
    settings = ApiSettings(port=0, listen_given=True, metrics_public=True)
    async with running_api(tmp_path, settings=settings) as h:
        await h.engine.process_wave(wave_signals(2))
        async with httpx.AsyncClient(base_url=h.api.url, timeout=5) as anonymous:
            text = (await anonymous.get("/metrics")).text
            assert (await anonymous.get("/api/v1/status")).status_code == 401  # only the metrics are public
        assert 'triobot_call_duration_seconds_count{point="exchange.stop_order"} 2.0' in text
        assert 'triobot_events_total{kind="entry_filled"} 2.0' in text
        assert "triobot_open_positions 2.0" in text and "triobot_entries_paused 0.0" in text


async def test_closed_positions_the_engine_no_longer_keeps_are_served_from_the_store(tmp_path, monkeypatch):
    """A long run keeps only the newest closed positions in memory; the API still answers for the
    older ones (by id, in `?all=true`, and in their waves), and the realised PnL counts them all."""
    from engine.nursery import position_book

    monkeypatch.setattr(position_book, "CLOSED_KEPT", 1)
    async with running_api(tmp_path) as h:
        record = await h.engine.process_wave(wave_signals(3))
        for pid in (1, 2, 3):
            assert (await h.post(f"/api/v1/positions/{pid}/close")).status_code == 200
        assert await h.engine.flush()
        assert [p.id for p in h.engine.positions(include_closed=True)] == [3]  # 1 and 2: the store's only
        store = h.engine.ctx.storage
        stored = {p.id: p for p in await store.positions(include_closed=True)}

        old = await h.get("/api/v1/positions/1")
        assert old.status_code == 200 and old.json() == position_json(stored[1])
        assert (await h.post("/api/v1/positions/1/close")).status_code == 409  # closed, not unknown
        everything = (await h.get("/api/v1/positions", params={"all": "true"})).json()["positions"]
        assert [p["id"] for p in everything] == [1, 2, 3]
        assert (await h.get(f"/api/v1/waves/{record.id}")).json() == wave_json(record, stored)
        pnl = sum(p.realized_pnl or 0.0 for p in stored.values())
        assert h.engine.book.realized_pnl == pytest.approx(pnl)
