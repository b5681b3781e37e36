"""The one retry policy: attempts, doubling pauses, a cap; and the config keys that set it."""

from __future__ import annotations

import math

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from engine.config import EngineConfig
from engine.errors import ConfigError
from engine.nursery.retrying import Attempts
from engine.retry import RetryPolicy


def test_pauses_double_up_to_the_cap() -> None:
    policy = RetryPolicy(5, 0.5, cap=1.5)
    assert [policy.delay(n) for n in range(1, 5)] == [0.5, 1.0, 1.5, 1.5]
    assert not policy.is_last(4) and policy.is_last(5)


@given(st.integers(min_value=1, max_value=100_000), st.floats(min_value=0, max_value=1e6))
def test_a_pause_is_finite_and_never_above_the_cap(failed: int, backoff: float) -> None:
    delay = RetryPolicy(None, backoff, cap=30.0).delay(failed)
    assert 0 <= delay <= 30.0 and math.isfinite(delay)


async def test_attempts_sleep_between_tries_only(autojump_clock: trio.abc.Clock) -> None:
    seen: list[tuple[int, float]] = []
    start = trio.current_time()
    async for attempt in Attempts(RetryPolicy(3, 0.5)):
        seen.append((attempt, trio.current_time() - start))
    assert seen == [(1, 0.0), (2, 0.5), (3, 1.5)]  # no pause after the last attempt


async def test_an_unbounded_policy_goes_on_until_stopped(autojump_clock: trio.abc.Clock) -> None:
    count = 0
    async for attempt in Attempts(RetryPolicy(None, 1.0, cap=2.0)):
        count = attempt
        if attempt == 50:
            break
    assert count == 50 and trio.current_time() == pytest.approx(1 + 2 * 48)


def test_each_operation_has_its_own_attempts() -> None:
    cfg = EngineConfig.from_mapping({"read_attempts": 5, "protect_attempts": 4, "cancel_attempts": 2,
                                     "exchange_retry_backoff": 0.25, "exchange_max_backoff": 2})
    assert cfg.read_retry == RetryPolicy(5, 0.25, 2.0)
    assert cfg.protect_retry == RetryPolicy(4, 0.25, 2.0)
    assert cfg.cancel_retry == RetryPolicy(2, 0.25, 2.0)
    defaults = EngineConfig()
    assert defaults.read_retry == defaults.protect_retry == defaults.cancel_retry == RetryPolicy(3, 0.5, 30.0)
    assert defaults.writer_retry == RetryPolicy(None, 1.0, 30.0)
    assert defaults.price_stream_retry == RetryPolicy(None, 1.0, 30.0)


def test_old_keys_still_work_as_aliases() -> None:
    """`stop_loss_retries` sets every attempt count not given; `retry_backoff` is the old backoff name."""
    cfg = EngineConfig.from_mapping({"stop_loss_retries": 6, "read_attempts": 2, "retry_backoff": 0.1})
    assert cfg.protect_retry == cfg.cancel_retry == RetryPolicy(6, 0.1, 30.0)
    assert cfg.read_retry == RetryPolicy(2, 0.1, 30.0)
    with pytest.raises(ConfigError, match=r"retry_backoff = 0\.1: expected absent when exchange_retry_backoff"):
        EngineConfig.from_mapping({"retry_backoff": 0.1, "exchange_retry_backoff": 0.2})


@pytest.mark.parametrize(("key", "value"), [("read_attempts", 0), ("cancel_attempts", 1.5),
                                            ("stop_loss_retries", True), ("exchange_retry_backoff", -1)])
def test_bad_retry_values_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"{key} = {value!r}"):
        EngineConfig.from_mapping({key: value})
