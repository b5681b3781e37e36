"""Builds the signal source `run` was configured with."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from adapters.signals import DemoSignalSource, JsonlSignalSource, WaveFeed
from adapters.signals.jetstream import NatsSource
from adapters.signals.webhook import WebhookIntake
from adapters.signals.websocket import WebsocketSource
from trio_bot.signals_config import SignalSettings, durable_for, read_secret

log = logging.getLogger("trio_bot.signals")


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
    if settings.source == "webhook":
        secret = read_secret(settings, "secret_env")
        assert secret is not None
        return WebhookIntake(secret, max_lag=settings.max_lag, rate_limit=settings.rate_limit,
                             burst=settings.burst, wave_window=settings.wave_window)
    if settings.source == "nats":
        assert settings.url is not None
        return NatsSource(settings.url, stream=settings.stream, subject=settings.subject,
                          durable=durable_for(settings, account), ack_wait=settings.ack_wait,
                          max_lag=settings.max_lag, connect_timeout=settings.connect_timeout,
                          reconnect_min=settings.reconnect_min, reconnect_max=settings.reconnect_max,
                          create_stream=settings.create_stream)
    return DemoSignalSource(symbols, interval=wave_interval, seed=seed, first_id=first_id)
