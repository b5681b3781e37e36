"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

The page loads with the token from the URL fragment, shows the waves and the timeline of a wave (one row
per signal), and the pause button changes the engine's state. Screenshots are saved next to the test's
files; `TRIO_BOT_SCREENSHOT=path.png` also writes the full-page one there (the README's picture).
"""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from adapters.sim.exchange import SimExchange
from adapters.sim.scenario import ExchangeSpec, MarketSpec
from adapters.sqlite_store import SQLiteStore
from engine.config import EngineConfig
from engine.nursery.engine import Engine
from trio_bot.api.settings import ApiSettings, Token
from trio_bot.api.wiring import start_api

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "browser-test-token-0123456789"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
                                reason="Chromium from Debian's packages is not installed (.ci/run installs it)")

PRICES = {"BTCUSDT": 67_000.0, "ETHUSDT": 2_600.0, "SOLUSDT": 150.0, "XRPUSDT": 0.55, "DOGEUSDT": 0.12,
          "LINKUSDT": 11.0, "ADAUSDT": 0.35}
WAVE = [
    {"id": "sig-1", "symbol": "BTCUSDT", "side": "long", "score": 9.1},
    {"id": "sig-2", "symbol": "ETHUSDT", "side": "short", "score": 8.7},
    {"id": "sig-3", "symbol": "NOPEUSDT", "side": "long", "score": 8.2},
    {"id": "sig-4", "symbol": "SOLUSDT", "side": "long", "score": 7.9},
    {"id": "sig-5", "symbol": "XRPUSDT", "side": "sideways", "score": 7.5},
    {"id": "sig-6", "symbol": "DOGEUSDT", "side": "short", "score": 7.0},
    {"id": "sig-7", "symbol": "LINKUSDT", "side": "long", "score": 6.4},
    {"id": "sig-8", "symbol": "ADAUSDT", "side": "long", "score": 6.1},
]


@contextmanager
def engine_with_api(tmp_path: Path) -> Iterator[str]:
    """A real engine (paper exchange, SQLite) and its operator server, in a Trio thread: one wave done,
    prices moved a little (so the positions show trailing state and unrealised PnL)."""
    handoff: queue.Queue[tuple[str, trio.lowlevel.TrioToken, trio.Event] | BaseException] = queue.Queue()

    async def main() -> None:
        try:
            exchange = SimExchange.from_spec(ExchangeSpec(
                latency=0.01, markets=tuple(MarketSpec(s, p) for s, p in PRICES.items())))
            storage = await SQLiteStore.open(str(tmp_path / "bot.db"))
            async with Engine.open(EngineConfig(sweep_interval=0), exchange, storage) as engine, \
                    trio.open_nursery() as nursery:
                api = await start_api(nursery, engine, ApiSettings(port=0, listen_given=True),
                                      Token(TOKEN, generated=False), account="paper", exchange="paper exchange")
                await engine.process_wave(WAVE)
                for symbol, move in {"BTCUSDT": 1.021, "ETHUSDT": 0.993, "SOLUSDT": 0.996, "DOGEUSDT": 1.004,
                                     "LINKUSDT": 1.008}.items():
                    exchange.set_price(symbol, PRICES[symbol] * move)
                await engine.flush()
                stop = trio.Event()
                handoff.put((api.url, trio.lowlevel.current_trio_token(), stop))
                await stop.wait()
                nursery.cancel_scope.cancel()
            await storage.aclose()
        except BaseException as exc:
            handoff.put(exc)
            raise

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    got = handoff.get(timeout=60)
    if isinstance(got, BaseException):
        raise got
    url, token, stop = got
    try:
        yield url
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join(timeout=30)


@contextmanager
def plain_asyncio() -> Iterator[None]:
    """Playwright's sync API runs its own asyncio loop; trio-asyncio (imported by other tests) replaces
    asyncio's loop policy with its own, so the standard one is put back while the browser runs."""
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(previous)


def test_dashboard_shows_the_wave_timeline_and_pauses(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with engine_with_api(tmp_path) as url, plain_asyncio(), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{url}/#token={TOKEN}")
            expect(page.locator("#state")).to_have_attribute("data-state", "running", timeout=10_000)
            assert "#token" not in page.url  # the fragment is dropped from the address bar
            expect(page.locator("#waves li")).to_have_count(1)
            rows = page.locator("#timeline .timeline-row")
            expect(rows).to_have_count(len(WAVE))
            outcomes = {rows.nth(i).get_attribute("data-signal"): rows.nth(i).get_attribute("data-outcome")
                        for i in range(len(WAVE))}
            assert outcomes["sig-3"] == "rejected" and outcomes["sig-5"] == "rejected"
            assert list(outcomes.values()).count("opened") == 5 and outcomes["sig-8"] == "skipped"
            kinds = page.eval_on_selector_all(
                '#timeline .timeline-row[data-signal="sig-1"] ~ .step, #timeline .step',
                "nodes => nodes.map(n => n.dataset.kind)")
            assert {"intent_stored", "entry_sent", "entry_filled", "stop_placed", "signal_outcome"} <= set(kinds)
            expect(page.locator("#positions tr[data-position]")).to_have_count(5)
            expect(page.locator("#live")).to_have_text("live")
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            if os.environ.get("TRIO_BOT_SCREENSHOT"):
                shutil.copy(tmp_path / "dashboard.png", os.environ["TRIO_BOT_SCREENSHOT"])

            page.fill("#pause-reason", "news at 14:30")
            page.click("#pause-button")
            expect(page.locator("#state")).to_have_attribute("data-state", "paused")
            expect(page.locator("#state")).to_contain_text("news at 14:30")
            expect(page.locator("#events")).to_contain_text("entries_paused")  # it came over the websocket
            page.screenshot(path=str(tmp_path / "dashboard-paused.png"))
            page.click("#resume-button")
            expect(page.locator("#state")).to_have_attribute("data-state", "running")

            asked: list[str] = []

            def answer(dialog) -> None:  # the close button asks before it sends anything
                asked.append(dialog.message)
                dialog.accept()

            page.once("dialog", answer)
            page.click('#positions button[data-close="1"]')
            expect(page.locator("#positions tr[data-position]")).to_have_count(4)
            expect(page.locator("#toast")).to_contain_text("position 1 closed")
            assert asked and "Close position #1" in asked[0]
            assert errors == []
        finally:
            browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
