"""`trio-bot run`: the engine on the paper exchange (default) or, with `live = true`, a real one.

Ctrl-C / SIGTERM: no new wave starts, the running wave is cancelled (its
shielded cleanup still protects or closes every fill), queued state is
flushed for at most `shutdown_timeout`, and the process exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TextIO

import attrs
import trio
from starlette.routing import BaseRoute

from adapters.binance_account import AccountSettings
from adapters.ccxt_exchange import CcxtExchange
from adapters.db_url import redact
from adapters.signals import Arrival, WaveFeed
from adapters.signals.webhook import WebhookIntake
from adapters.sim.exchange import SimExchange
from adapters.sim.paper_account import open_paper_exchange
from adapters.sim.scenario import ExchangeSpec, MarketSpec, parse_exchange
from adapters.textfile import read_text
from engine.config import EngineConfig
from engine.errors import ConfigError
from engine.model import SignalOutcome, WaveRecord
from engine.nursery.engine import Engine
from engine.ports import Exchange
from engine.rate_windows import bucket_for
from engine.report import wave_json
from trio_bot.api.address import address_path, record_address, remove_address
from trio_bot.api.settings import ApiSettings, Token, parse_api_settings, resolve_token
from trio_bot.api.wiring import RunningApi, start_api
from trio_bot.exchange_config import (
    Credentials,
    ExchangeSettings,
    account_name,
    load_credentials,
    parse_exchange_settings,
)
from trio_bot.paper_markets import PAPER_PRICES
from trio_bot.signal_feeds import open_feed
from trio_bot.signals_config import SignalSettings, parse_signal_settings
from trio_bot.stopping import Stopper, one_error
from trio_bot.storage import account_lease, open_storage
from trio_bot.tables import LAST_CELL_MAX, cell, grouped_notes, positions_table, wave_table
from trio_bot.webhook_route import webhook_route

log = logging.getLogger("trio_bot.run")


@attrs.frozen
class RunSettings:
    engine: EngineConfig
    paper: ExchangeSpec
    exchange: ExchangeSettings = attrs.field(factory=ExchangeSettings)
    signals: SignalSettings = attrs.field(factory=SignalSettings)
    api: ApiSettings = attrs.field(factory=ApiSettings)
    engine_keys: frozenset[str] = frozenset()  # the [engine] keys the config set explicitly


def load_run_config(path: str | None) -> RunSettings:
    """`--config FILE.toml`: `[engine]` keys, an optional `[paper]` exchange table, and an optional
    `[exchange]` table choosing a live exchange (see `trio_bot.exchange_config`), and an optional
    `[signals]` table choosing where waves come from (see `trio_bot.signals_config`)."""
    default_paper = ExchangeSpec(markets=tuple(MarketSpec(s, p) for s, p in PAPER_PRICES.items()))
    if path is None:
        return RunSettings(EngineConfig(), default_paper)
    text = read_text(path, key="--config", where="config", what="TOML file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", path, f"valid TOML ({exc})") from None
    for key, value in data.items():
        if key not in ("engine", "paper", "exchange", "signals", "api") or not isinstance(value, dict):
            raise ConfigError(key, value, "a table named engine, paper, exchange, signals or api", where=path)
    try:
        engine = EngineConfig.from_mapping(data.get("engine", {}))
        paper = parse_exchange(data["paper"], "paper") if "paper" in data else default_paper
        exchange = parse_exchange_settings(data.get("exchange", {}), path)
        api = parse_api_settings(data.get("api", {}), path)
        signals = parse_signal_settings(data.get("signals", {}), path)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.value, exc.expected, where=path) from None
    if not paper.markets:
        paper = attrs.evolve(paper, markets=default_paper.markets)
    return RunSettings(engine, paper, exchange, signals, api, frozenset(data.get("engine", {})))


async def random_walk(exchange: SimExchange, symbols: list[str], *, seed: int | None,
                      interval: float = 1.0, volatility: float = 0.0008) -> None:
    """Moves every price each `interval` seconds (real time): stops trigger as they would."""
    rng = random.Random(seed)
    while True:
        await trio.sleep(interval)
        for symbol in symbols:
            exchange.set_price(symbol, exchange.price(symbol) * math.exp(rng.gauss(0.0, volatility)))


@attrs.define
class TradingAccount:
    """What `run` trades on: the exchange port, its symbols, and the account's housekeeping."""

    exchange: Exchange
    label: str
    symbols: list[str]
    background: Callable[[], Awaitable[None]] | None = None  # e.g. the paper price walk
    after_wave: Callable[[], None] = lambda: None
    notes: tuple[str, ...] = ()  # what was checked and set on the account, shown at start-up


@asynccontextmanager
async def open_account(settings: RunSettings, db_url: str, credentials: Credentials | None,
                       seed: int | None) -> AsyncIterator[TradingAccount]:
    ex = settings.exchange
    if ex.is_paper:
        # Kept change by change in a file next to the store (adapters.sim.paper_account).
        with open_paper_exchange(settings.paper, db_url) as paper:
            symbols = [m.symbol for m in settings.paper.markets]
            yield TradingAccount(paper, "paper exchange", symbols,
                                 background=partial(random_walk, paper, symbols, seed=seed),
                                 after_wave=paper.sync)
        return
    assert credentials is not None
    live = CcxtExchange(ex.name, api_key=credentials.api_key, api_secret=credentials.api_secret,
                        base_url=ex.base_url, symbols=list(ex.symbols) or None,
                        price_poll_interval=ex.price_poll_interval, stop_working_type=ex.stop_working_type,
                        ws_url=ex.ws_url)
    try:
        where = f" at {ex.base_url}" if ex.base_url else ""
        symbols = list(ex.symbols) or list(DEMO_LIVE_SYMBOLS)
        wanted = AccountSettings(settings.engine.leverage, ex.margin_type, change=ex.account_settings == "set")
        with trio.fail_after(settings.engine.call_timeout * (2 + 2 * len(symbols))):
            notes = await live.prepare_account(symbols, wanted)
        label = f"LIVE {ex.name}{where} (one-way, {ex.margin_type} {settings.engine.leverage}x, " \
                f"stops on {ex.stop_working_type})"
        yield TradingAccount(live, label, symbols, notes=tuple(notes))
    finally:
        await live.aclose()


# Used by the demo signal generator on a live exchange when the config lists no symbols.
DEMO_LIVE_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT")


async def engine_config_for(settings: RunSettings, trading: TradingAccount) -> EngineConfig:
    """The engine config, with the rate limiter set from the exchange's published order limits
    unless [engine] sets `order_rate_per_second` or `order_burst` itself.

    On the paper exchange `unknown_outcome_window` defaults to 0: it applies an order in this
    process and commits it to its file before answering, so after a crash an entry it does not
    hold never reached it, and waiting a minute for it to appear (as a real exchange may make it
    appear) would only hold up the restart's shutdown. A value the config sets is kept.
    """
    if not isinstance(trading.exchange, CcxtExchange):
        if "unknown_outcome_window" in settings.engine_keys:
            return settings.engine
        return attrs.evolve(settings.engine, unknown_outcome_window=0.0)
    if {"order_rate_per_second", "order_burst"} & settings.engine_keys:
        return settings.engine
    with trio.fail_after(settings.engine.call_timeout):
        bucket = bucket_for(await trading.exchange.published_order_limits())
    if bucket is None:
        return settings.engine
    return attrs.evolve(settings.engine, order_rate_per_second=bucket[0], order_burst=bucket[1])


async def run(
    *,
    settings: RunSettings,
    db_url: str,
    signals_file: str | None,
    wave_interval: float,
    waves: int | None,
    seed: int | None,
    standby: bool = False,
    out: TextIO | None = None,
    ready: Callable[[], None] | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    signals: AsyncIterator[int] | None = None,
) -> int:
    """`extra_routes`: Starlette routes other wiring adds to the operator's server (behind its token).
    `out` defaults to the current `sys.stdout` (looked up at call time). `signals`: a SIGINT/SIGTERM
    receiver the caller opened as early as it could (the CLI, first thing in its Trio run); without
    it `run` opens its own. `ready` is called once start-up is done."""
    out = sys.stdout if out is None else out
    # Everything a user can get wrong is checked before the lease, the store or the exchange.
    credentials = None if settings.exchange.is_paper else load_credentials(settings.exchange)
    token = resolve_token(settings.api) if settings.api.enabled else None
    account = account_name(settings.exchange, credentials)
    symbols = ([m.symbol for m in settings.paper.markets] if settings.exchange.is_paper
               else list(settings.exchange.symbols) or list(DEMO_LIVE_SYMBOLS))
    signal_settings = (attrs.evolve(settings.signals, source="file", path=signals_file)
                       if signals_file is not None else settings.signals)
    source = open_feed(signal_settings, account=account, symbols=symbols, wave_interval=wave_interval,
                       seed=seed, first_id=_id_base())
    if isinstance(source, WebhookIntake):
        if token is None:
            raise ConfigError("signals.source", "webhook", "the operator's HTTP server, which serves the webhook "
                              "at POST /api/v1/signals (remove --no-api or [api] enabled = false)")
        extra_routes = (*extra_routes, webhook_route(source, timeout=settings.api.request_timeout))
    wiring = _Wiring(account, token, tuple(extra_routes))
    with contextlib.ExitStack() as stack:
        if signals is None:
            signals = stack.enter_context(trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM))
        stopper = Stopper(out)
        with one_error():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stopper.watch, signals)
                try:
                    # Waiting for the lease (--standby) or setting up the account: a signal stops at once.
                    with trio.CancelScope() as startup:
                        stopper.on_signal = startup.cancel
                        async with account_lease(db_url, account, standby=standby), \
                                open_account(settings, db_url, credentials, seed) as trading:
                            stopper.on_signal = None  # the reconciliation ahead is not cut short
                            return await _run_leased(settings=settings, db_url=db_url, source=source,
                                                     trading=trading, waves=waves, out=out, ready=ready,
                                                     wiring=wiring, stopper=stopper)
                finally:
                    nursery.cancel_scope.cancel()
    print("trio-bot: stopped before start-up finished; nothing was traded", file=out, flush=True)
    return 0


def print_restart_summary(engine: Engine, out: TextIO) -> None:
    """What start-up found and did (reconciled, completed, resumed, repaired by the first sweep)."""
    for line in engine.summary.lines():
        print(f"trio-bot: restart: {line}", file=out, flush=True)


@attrs.frozen
class _Wiring:
    account: str
    token: Token | None
    extra_routes: tuple[BaseRoute, ...] = ()


async def _run_leased(*, settings: RunSettings, db_url: str, source: WaveFeed, trading: TradingAccount,
                      waves: int | None, out: TextIO, ready: Callable[[], None] | None, wiring: _Wiring,
                      stopper: Stopper) -> int:
    """Everything that needs to be the account's only instance: the account's state and the store."""
    storage = await open_storage(db_url, call_timeout=settings.engine.call_timeout)
    api: RunningApi | None = None
    address: Path | None = None
    if isinstance(source, WebhookIntake):
        source.handled = storage.handled_signals  # a re-posted alert is answered as a duplicate
    try:
        # A signal during start-up must not abort the reconciliation half-way (it protects positions);
        # the stopper holds it, and it stops the run once start-up is done.
        with stopper.until_done():
            def progress(wave_id: str, outcome: SignalOutcome) -> None:
                if api is not None:
                    api.metrics.on_outcome(outcome)
                where = f" position {outcome.position_id}" if outcome.position_id is not None else ""
                why = f" — {cell(outcome.reason, LAST_CELL_MAX)}" if outcome.reason else ""
                print(f"  [{wave_id}] {cell(outcome.signal_id):>10} {cell(outcome.symbol):<10} {cell(outcome.side):<5} "
                      f"{outcome.outcome}{where}{why}", file=out, flush=True)

            config = await engine_config_for(settings, trading)
            async with Engine.open(config, trading.exchange, storage, listener=progress) as engine:
                print(f"trio-bot: {trading.label}, {len(engine.markets)} markets, store {redact(db_url)}; "
                      f"{len(engine.positions())} open positions loaded. Ctrl-C to stop.", file=out, flush=True)
                print_restart_summary(engine, out)
                for note in grouped_notes(trading.notes):
                    print(f"trio-bot: account: {note}", file=out, flush=True)
                done = 0
                async with trio.open_nursery() as nursery:
                    if trading.background is not None:
                        nursery.start_soon(trading.background)
                    if wiring.token is not None:
                        api = await start_api(nursery, engine, settings.api, wiring.token, account=wiring.account,
                                              exchange=trading.label, extra_routes=wiring.extra_routes)
                        address = address_path(db_url, wiring.account)  # for `trio-bot status` & co.
                        record_address(address, api.url)
                        print(f"trio-bot: dashboard {api.dashboard}", file=out, flush=True)
                    if engine.pause_state is not None:
                        print(f"trio-bot: {engine.pause_state.skip_reason} (resume: trio-bot resume)", file=out,
                              flush=True)
                    stopping = trio.CancelScope()

                    def stop_now() -> None:
                        engine.stop_current_wave("the engine is shutting down")
                        stopping.cancel()

                    if ready is not None:
                        ready()
                    stopper.on_signal = stop_now
                    stopper.on_repeat = engine.resolver.abandon_for_shutdown
                    if stopper.received is not None:  # received during start-up: stop now that it is done
                        stop_now()
                    send, arrivals = trio.open_memory_channel[Arrival](16)
                    nursery.start_soon(source.feed, send)
                    with stopping:
                        async for arrival in arrivals:
                            await _trade(engine, arrival, trading, out, api)
                            done += 1
                            if waves is not None and done >= waves:
                                break
                    nursery.cancel_scope.cancel()
            return 0
    finally:
        remove_address(address)
        with trio.CancelScope(shield=True):
            await storage.aclose()


async def _trade(engine: Engine, arrival: Arrival, trading: TradingAccount, out: TextIO,
                 api: RunningApi | None) -> None:
    """One wave: run it, wait until its outcomes are stored, then (and only then) acknowledge it."""
    origin = f" from {arrival.source}" + (f" (wave {arrival.key})" if arrival.key else "")
    repeats = f", {arrival.duplicates} already handled" if arrival.duplicates else ""
    print(f"trio-bot: wave of {len(arrival.signals)} signals{origin}{repeats}", file=out, flush=True)
    if api is not None:
        api.metrics.on_wave_received(arrival.source, len(arrival.signals))
    record = await engine.process_wave(arrival.signals)
    if api is not None:
        api.metrics.on_wave_done(record)
    trading.after_wave()
    _print_wave(record, engine, out)
    if not arrival.awaits_ack:
        return
    if await engine.flush():
        await arrival.ack()
    else:
        print(f"trio-bot: wave {record.id}: outcomes not yet stored; not acknowledged "
              "(the service may deliver it again: handled ids are not traded twice)", file=out, flush=True)


def _id_base() -> int:
    # Demo ids should not collide across runs on the same store; wall time only names them.
    return int(time.time()) % 10_000_000 * 100


def _print_wave(record: WaveRecord, engine: Engine, out: TextIO) -> None:
    positions = {p.id: p for p in engine.positions(include_closed=True)}
    stops = {pid: p.stop_price for pid, p in positions.items()}
    print(wave_table(wave_json(record, positions), stops), file=out)
    trail = {pid: (f.state.value, f.best_price) for pid, f in engine.trailing.snapshot().items()}
    print(positions_table(engine.positions(), trail), file=out, flush=True)


def print_error(exc: Exception) -> None:
    print(f"trio-bot: error: {exc}", file=sys.stderr)

