"""Engine configuration: every key, its default, and validation that names the problem."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from engine.checks import Range, integer, positive_up_to
from engine.errors import ConfigError
from engine.retry import RetryPolicy

# Every key's accepted range (the README's configuration table shows the same). Bounds are
# generous for any real account and tight enough that arithmetic on them stays exact and every
# deadline, backoff and rate still lets protection happen. Keys whose default is None (derived
# from another key) are checked only when given.
_DAY = 86_400.0
RANGES: dict[str, Range] = {
    "max_positions_per_wave": integer(1, 10_000),
    "max_concurrent_signals": integer(1, 10_000),
    "signal_timeout": positive_up_to(_DAY),
    "wave_timeout": positive_up_to(_DAY),
    "call_timeout": positive_up_to(3_600.0),
    "read_timeout": positive_up_to(3_600.0),
    "protect_timeout": positive_up_to(3_600.0),
    "entry_timeout": positive_up_to(3_600.0),
    "cleanup_timeout": positive_up_to(_DAY),
    "position_size_usdt": Range(0.01, 1e9),
    "leverage": integer(1, 125),
    "stop_loss_percent": Range(0.0, 100.0, low_open=True, high_open=True),
    "read_attempts": integer(1, 100),
    "protect_attempts": integer(1, 100),
    "cancel_attempts": integer(1, 100),
    "exchange_retry_backoff": Range(0.0, 60.0),
    "exchange_max_backoff": Range(0.0, 3_600.0),
    "trailing_activation_percent": Range(0.0, 1_000.0),
    "trailing_callback_percent": Range(0.0, 100.0, low_open=True, high_open=True),
    "trailing_min_step_percent": Range(0.0, 100.0, high_open=True),
    "trailing_min_interval": Range(0.0, _DAY),
    "writer_retry_backoff": positive_up_to(3_600.0),
    "writer_max_backoff": positive_up_to(_DAY),
    "price_stream_retry_backoff": positive_up_to(3_600.0),
    "price_stream_max_backoff": positive_up_to(_DAY),
    "shutdown_timeout": positive_up_to(3_600.0),
    "order_rate_per_second": Range(0.01, 1e9),
    "order_burst": integer(1, 1_000_000_000),
    "sweep_interval": Range(0.0, _DAY),
    "signal_memory_retention": Range(0.0, 3_650 * _DAY),
    "unknown_outcome_window": Range(0.0, 3_600.0),
    "stop_loss_retries": integer(1, 100),
    "retry_backoff": Range(0.0, 60.0),
}
# Below this a sweep would run back to back and starve everything else (0 turns it off).
MIN_SWEEP_INTERVAL = 1.0


@attrs.frozen(kw_only=True)
class EngineConfig:
    """All engine keys. Times are seconds; deadlines nest call < signal <= wave."""

    max_positions_per_wave: int = 5
    max_concurrent_signals: int = 5
    signal_timeout: float = 30.0
    wave_timeout: float = 120.0
    call_timeout: float = 10.0
    read_timeout: float | None = None  # default: min(3, call_timeout)
    protect_timeout: float | None = None  # default: min(3, call_timeout)
    # Deadline of the entry request itself (after its rate-limit token): an unanswered entry is
    # resolved in the background (unknown_outcome_window), so the wave need not wait long for it.
    entry_timeout: float | None = None  # default: min(5, call_timeout)
    cleanup_timeout: float = 60.0
    position_size_usdt: float = 200.0
    leverage: int = 1
    stop_loss_percent: float = 2.0
    # Attempts per operation; None means `stop_loss_retries` if given, else 3.
    read_attempts: int | None = None
    protect_attempts: int | None = None
    cancel_attempts: int | None = None
    exchange_retry_backoff: float | None = None  # None: `retry_backoff` if given, else 0.5
    exchange_max_backoff: float = 30.0
    trailing_activation_percent: float = 1.5
    trailing_callback_percent: float = 0.5
    trailing_min_step_percent: float = 0.1
    trailing_min_interval: float = 1.0
    writer_retry_backoff: float = 1.0
    writer_max_backoff: float = 30.0
    price_stream_retry_backoff: float = 1.0
    price_stream_max_backoff: float = 30.0
    shutdown_timeout: float = 10.0
    order_rate_per_second: float = 10.0
    order_burst: int = 10
    sweep_interval: float = 30.0
    # How long a handled signal id is remembered (a repeat within it is rejected); 0 = forever.
    signal_memory_retention: float = 30 * 24 * 3600.0
    # How long an entry whose answer was lost keeps being looked up (in the background, by the
    # resolver) before "not found" is believed. Binance gives no bound for when an order of
    # unknown status may still execute; 60 s is its largest recvWindow (README: Configuration).
    unknown_outcome_window: float = 60.0
    # Deprecated aliases (README: Configuration), still honoured: `stop_loss_retries` sets
    # every attempt count not given explicitly, `retry_backoff` is `exchange_retry_backoff`.
    stop_loss_retries: int | None = None
    retry_backoff: float | None = None

    def __attrs_post_init__(self) -> None:
        for key, allowed in RANGES.items():
            value = getattr(self, key)
            if value is not None or not _OPTIONAL.get(key, False):
                allowed.check(key, value, where="engine")
        if 0 < self.sweep_interval < MIN_SWEEP_INTERVAL:
            raise ConfigError("sweep_interval", self.sweep_interval,
                              f"0 (off) or at least {MIN_SWEEP_INTERVAL:g} seconds", where="engine")
        if self.order_rate_per_second * self.call_timeout < 1:
            # An order waiting for a token would time out before one arrives: no stop could be placed.
            raise ConfigError(
                "order_rate_per_second", self.order_rate_per_second,
                f"at least 1/call_timeout ({1 / self.call_timeout:g}) so a queued stop gets a token in time",
                where="engine")
        backoff_key = "exchange_retry_backoff" if self.exchange_retry_backoff is not None else "retry_backoff"
        if not self.protect_retry.backoff < self.cleanup_timeout:
            raise ConfigError(backoff_key, self.protect_retry.backoff,
                              f"less than cleanup_timeout ({self.cleanup_timeout:g}) so a retry can happen",
                              where="engine")
        if self.retry_backoff is not None and self.exchange_retry_backoff is not None:
            raise ConfigError("retry_backoff", self.retry_backoff,
                              "absent when exchange_retry_backoff is given (it is that key's old name)",
                              where="engine")
        if not self.call_timeout < self.signal_timeout:
            raise ConfigError(
                "call_timeout", self.call_timeout,
                f"less than signal_timeout ({self.signal_timeout:g})", where="engine",
            )
        for key in ("read_timeout", "protect_timeout", "entry_timeout"):
            value = getattr(self, key)
            if value is None:
                continue
            if not value <= self.call_timeout:
                raise ConfigError(key, value, f"at most call_timeout ({self.call_timeout:g})", where="engine")
        if not self.signal_timeout <= self.wave_timeout:
            raise ConfigError(
                "signal_timeout", self.signal_timeout,
                f"at most wave_timeout ({self.wave_timeout:g})", where="engine",
            )

    @property
    def read_deadline(self) -> float:
        """Deadline of one read attempt: reads are retried, so a hung one is abandoned early."""
        return self.read_timeout if self.read_timeout is not None else min(3.0, self.call_timeout)

    @property
    def entry_deadline(self) -> float:
        """Deadline of the entry request once it has its rate-limit token. It is sent once (never
        retried); an answer that does not come in time is looked up by the resolver."""
        return self.entry_timeout if self.entry_timeout is not None else min(5.0, self.call_timeout)

    @property
    def protect_deadline(self) -> float:
        """Deadline of one attempt at a protective order (stop, close, cancel). They are retried
        with the same client id, so a hung attempt is abandoned early and protection comes sooner."""
        return self.protect_timeout if self.protect_timeout is not None else min(3.0, self.call_timeout)

    def _attempts(self, explicit: int | None) -> int:
        if explicit is not None:
            return explicit
        return self.stop_loss_retries if self.stop_loss_retries is not None else 3

    def _exchange_retry(self, explicit: int | None) -> RetryPolicy:
        backoff = self.exchange_retry_backoff if self.exchange_retry_backoff is not None else self.retry_backoff
        return RetryPolicy(self._attempts(explicit), 0.5 if backoff is None else backoff, self.exchange_max_backoff)

    @property
    def read_retry(self) -> RetryPolicy:
        """Reads (order look-ups, positions, open orders, prices, balance): safe to repeat."""
        return self._exchange_retry(self.read_attempts)

    @property
    def protect_retry(self) -> RetryPolicy:
        """Placing a stop-loss or an emergency close, always with the same client id."""
        return self._exchange_retry(self.protect_attempts)

    @property
    def cancel_retry(self) -> RetryPolicy:
        return self._exchange_retry(self.cancel_attempts)

    @property
    def writer_retry(self) -> RetryPolicy:
        """A failed state write is retried until it lands or the engine closes."""
        return RetryPolicy(None, self.writer_retry_backoff, self.writer_max_backoff)

    @property
    def price_stream_retry(self) -> RetryPolicy:
        """A failed price stream is restarted for as long as the engine runs."""
        return RetryPolicy(None, self.price_stream_retry_backoff, self.price_stream_max_backoff)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(a.name for a in attrs.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> EngineConfig:
        """Build from a TOML table; unknown keys are errors, not silently ignored."""
        known = set(cls.keys())
        for key, value in values.items():
            if key not in known:
                raise ConfigError(key, value, f"one of the engine keys: {', '.join(sorted(known))}",
                                  where="engine")
        ints = {a.name for a in attrs.fields(cls) if a.type in ("int", int, "int | None")}
        coerced: dict[str, Any] = {}
        for key, value in values.items():
            RANGES[key].check(key, value, where="engine")  # the message shows the value as written
            # TOML writes 30 for 30.0; accept whole numbers for float keys.
            if key not in ints and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            coerced[key] = value
        return cls(**coerced)


# Keys whose default is None: derived from another key unless given.
_OPTIONAL = {a.name: a.default is None for a in attrs.fields(EngineConfig)}
