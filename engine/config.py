"""Engine configuration: every key, its default, and validation that names the problem."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from engine.errors import ConfigError
from engine.retry import RetryPolicy


def _positive_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "an integer >= 1", where="engine")


def _non_negative_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(key, value, "an integer >= 0", where="engine")


def _positive(key: str, value: Any) -> None:
    if not _is_number(value) or not value > 0 or not math.isfinite(value):
        raise ConfigError(key, value, "a finite number > 0", where="engine")


def _non_negative(key: str, value: Any) -> None:
    if not _is_number(value) or not value >= 0 or not math.isfinite(value):
        raise ConfigError(key, value, "a finite number >= 0", where="engine")


def _percent(key: str, value: Any) -> None:
    if not _is_number(value) or not 0 < value < 100:
        raise ConfigError(key, value, "a percentage between 0 and 100 (exclusive)", where="engine")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_CHECKS = {
    "max_positions_per_wave": _positive_int,
    "max_concurrent_signals": _positive_int,
    "signal_timeout": _positive,
    "wave_timeout": _positive,
    "call_timeout": _positive,
    "cleanup_timeout": _positive,
    "position_size_usdt": _positive,
    "leverage": _positive_int,
    "stop_loss_percent": _percent,
    "exchange_max_backoff": _non_negative,
    "trailing_activation_percent": _non_negative,
    "trailing_callback_percent": _percent,
    "trailing_min_step_percent": _non_negative,
    "trailing_min_interval": _non_negative,
    "writer_retry_backoff": _positive,
    "writer_max_backoff": _positive,
    "price_stream_retry_backoff": _positive,
    "price_stream_max_backoff": _positive,
    "shutdown_timeout": _positive,
    "order_rate_per_second": _positive,
    "order_burst": _positive_int,
    "sweep_interval": _non_negative,
    "signal_memory_retention": _non_negative,
    "unknown_outcome_window": _non_negative,
}


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
    # How long an entry whose answer was lost keeps being looked up before "not found" is
    # believed (capped at half of cleanup_timeout).
    unknown_outcome_window: float = 10.0
    # Deprecated aliases (README: Configuration), still honoured: `stop_loss_retries` sets
    # every attempt count not given explicitly, `retry_backoff` is `exchange_retry_backoff`.
    stop_loss_retries: int | None = None
    retry_backoff: float | None = None

    def __attrs_post_init__(self) -> None:
        for key, check in _CHECKS.items():
            check(key, getattr(self, key))
        for key in ("exchange_retry_backoff", "retry_backoff"):
            if getattr(self, key) is not None:
                _non_negative(key, getattr(self, key))
        if self.retry_backoff is not None and self.exchange_retry_backoff is not None:
            raise ConfigError("retry_backoff", self.retry_backoff,
                              "absent when exchange_retry_backoff is given (it is that key's old name)",
                              where="engine")
        for key in ("read_attempts", "protect_attempts", "cancel_attempts", "stop_loss_retries"):
            if getattr(self, key) is not None:
                _positive_int(key, getattr(self, key))
        if not self.call_timeout < self.signal_timeout:
            raise ConfigError(
                "call_timeout", self.call_timeout,
                f"less than signal_timeout ({self.signal_timeout:g})", where="engine",
            )
        for key in ("read_timeout", "protect_timeout"):
            value = getattr(self, key)
            if value is None:
                continue
            _positive(key, value)
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
            # TOML writes 30 for 30.0; accept whole numbers for float keys.
            if key not in ints and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            coerced[key] = value
        return cls(**coerced)
