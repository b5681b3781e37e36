"""trio-bot: a signal-execution engine for crypto futures on Trio.

Public API for embedding::

    from engine import Engine, EngineConfig

    async with Engine.open(EngineConfig(), exchange, storage) as engine:
        record = await engine.process_wave(signals)
        print(record.counts)
"""

from engine.config import EngineConfig
from engine.errors import ConfigError, PermanentError, StorageError, TransientError
from engine.model import (
    Counts,
    Outcome,
    Position,
    PositionStatus,
    SignalOutcome,
    TrailingStatus,
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
