"""Builds the signal source `run` was configured with, and tells it what the store already handled."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from adapters.signals import DemoSignalSource, JsonlSignalSource, WaveFeed
from adapters.signals.assembly import Delivered
from adapters.signals.websocket import WebsocketSource
from engine.ports import Storage
from trio_bot.signals_config import SignalSettings, read_secret

log = logging.getLogger("trio_bot.signals")

# How far back the store is read at start-up for signal ids already handled.
HANDLED_WAVES = 500


def open_feed(settings: SignalSettings, *, account: str, symbols: Sequence[str], wave_interval: float,
              seed: int | None, first_id: int) -> WaveFeed:
    """The configured source, ready to `feed`. Reads its secret now, so a missing one stops start-up."""
    if settings.source == "file":
        assert settings.path is not None
        return JsonlSignalSource(settings.path, interval=wave_interval)
    if settings.source == "websocket":
        assert settings.url is not None
        return WebsocketSource(settings.url, token=read_secret(settings, "token_env"),
                               heartbeat=settings.heartbeat, idle_timeout=settings.idle_timeout,
                               connect_timeout=settings.connect_timeout, wave_window=settings.wave_window,
                               reconnect_min=settings.reconnect_min, reconnect_max=settings.reconnect_max)
    return DemoSignalSource(symbols, interval=wave_interval, seed=seed, first_id=first_id)


async def remember_handled(feed: WaveFeed, storage: Storage) -> None:
    """Seed a live source's memory with the signal ids the store already has (its recent waves and every
    position's signal), so a service re-sending after our restart is not traded again."""
    delivered: Delivered | None = getattr(feed, "delivered", None)
    if delivered is None:
        return
    ids = {o.signal_id for wave in await storage.waves(last=HANDLED_WAVES) for o in wave.outcomes if o.signal_id}
    ids |= {p.signal_id for p in await storage.positions(include_closed=True)}
    delivered.remember(sorted(ids))
    if ids:
        log.info("signals: %d signal ids already handled will not be traded again", len(ids))
