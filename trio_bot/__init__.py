"""trio-bot: a signal-execution engine for crypto futures on Trio.

This package is the wiring: the `trio-bot` command line, `run`, `simulate`,
storage chosen by URL, exchange settings from the environment. It is the only
code that puts the core (`engine`), the nursery (`engine.nursery`) and the
adapters (`adapters`) together.

Public API for embedding::

    from trio_bot import Engine, EngineConfig

    async with Engine.open(EngineConfig(), exchange, storage) as engine:
        record = await engine.process_wave(signals)
        print(record.counts)
"""

from engine import (
    ConfigError,
    Counts,
    EngineConfig,
    Outcome,
    PermanentError,
    Position,
    PositionStatus,
    SignalOutcome,
    StorageError,
    TrailingStatus,
    TransientError,
    WaveRecord,
)
from engine.nursery.engine import Engine

__all__ = [
    "ConfigError",
    "Counts",
    "Engine",
    "EngineConfig",
    "Outcome",
    "PermanentError",
    "Position",
    "PositionStatus",
    "SignalOutcome",
    "StorageError",
    "TrailingStatus",
    "TransientError",
    "WaveRecord",
]
