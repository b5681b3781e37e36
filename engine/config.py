"""Engine configuration: every key, its default, and validation that names the problem."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from engine.errors import ConfigError


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
    "stop_loss_retries": _positive_int,
    "retry_backoff": _non_negative,
    "trailing_activation_percent": _non_negative,
    "trailing_callback_percent": _percent,
    "trailing_min_step_percent": _non_negative,
    "trailing_min_interval": _non_negative,
    "writer_retry_backoff": _positive,
    "writer_max_backoff": _positive,
    "shutdown_timeout": _positive,
    "order_rate_per_second": _positive,
    "order_burst": _positive_int,
    "sweep_interval": _non_negative,
    "signal_memory_retention": _non_negative,
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
    stop_loss_retries: int = 3
    retry_backoff: float = 0.5
    trailing_activation_percent: float = 1.5
    trailing_callback_percent: float = 0.5
    trailing_min_step_percent: float = 0.1
    trailing_min_interval: float = 1.0
    writer_retry_backoff: float = 1.0
    writer_max_backoff: float = 30.0
    shutdown_timeout: float = 10.0
    order_rate_per_second: float = 10.0
    order_burst: int = 10
    sweep_interval: float = 30.0
    # How long a handled signal id is remembered (a repeat within it is rejected); 0 = forever.
    signal_memory_retention: float = 30 * 24 * 3600.0

    def __attrs_post_init__(self) -> None:
        for key, check in _CHECKS.items():
            check(key, getattr(self, key))
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
        ints = {a.name for a in attrs.fields(cls) if a.type in ("int", int)}
        coerced: dict[str, Any] = {}
        for key, value in values.items():
            # TOML writes 30 for 30.0; accept whole numbers for float keys.
            if key not in ints and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            coerced[key] = value
        return cls(**coerced)
