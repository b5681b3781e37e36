import pytest

from engine.config import EngineConfig
from engine.errors import ConfigError


def test_defaults_are_valid_and_nest_deadlines():
    cfg = EngineConfig()
    assert cfg.call_timeout < cfg.signal_timeout <= cfg.wave_timeout


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("max_positions_per_wave", 0, "an integer in [1, 10000]"),
        ("max_concurrent_signals", 2.5, "an integer in [1, 10000]"),
        ("max_concurrent_signals", True, "an integer in [1, 10000]"),
        ("signal_timeout", -1.0, "a number in (0, 86400]"),
        ("call_timeout", float("inf"), "a number in (0, 3600]"),
        ("stop_loss_percent", 100.0, "a number in (0, 100)"),
        ("stop_loss_percent", "2", "a number in (0, 100)"),
        ("trailing_activation_percent", -0.5, "a number in [0, 1000]"),
    ],
)
def test_bad_value_names_key_value_and_expectation(key, value, expected):
    with pytest.raises(ConfigError) as info:
        EngineConfig.from_mapping({key: value})
    message = str(info.value)
    assert key in message and repr(value) in message and expected in message


def test_unknown_key_is_an_error_listing_the_known_ones():
    with pytest.raises(ConfigError, match=r"stop_los_percent = 2.*max_positions_per_wave"):
        EngineConfig.from_mapping({"stop_los_percent": 2})


def test_deadlines_must_nest():
    with pytest.raises(ConfigError, match=r"call_timeout = 30.0: expected less than signal_timeout"):
        EngineConfig.from_mapping({"call_timeout": 30.0, "signal_timeout": 30.0})
    with pytest.raises(ConfigError, match=r"signal_timeout = 200.0: expected at most wave_timeout"):
        EngineConfig.from_mapping({"signal_timeout": 200.0})


def test_whole_numbers_accepted_for_float_keys():
    cfg = EngineConfig.from_mapping({"signal_timeout": 20, "position_size_usdt": 100})
    assert cfg.signal_timeout == 20.0 and isinstance(cfg.signal_timeout, float)


def test_an_entry_deadline_is_its_own_and_never_longer_than_call_timeout():
    assert EngineConfig().entry_deadline == 5.0 and EngineConfig(call_timeout=2.0).entry_deadline == 2.0
    assert EngineConfig.from_mapping({"entry_timeout": 8}).entry_deadline == 8.0
    with pytest.raises(ConfigError, match=r"entry_timeout = 12.0: expected at most call_timeout \(10\)"):
        EngineConfig.from_mapping({"entry_timeout": 12.0})
    with pytest.raises(ConfigError, match=r"entry_timeout = 0: expected a number in \(0, 3600\]"):
        EngineConfig.from_mapping({"entry_timeout": 0})
