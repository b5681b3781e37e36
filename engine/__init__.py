"""trio-bot's pure core: the vocabulary and the decisions, no I/O and no tasks.

Importing any module of this package loads neither Trio nor the nursery, so
the model, config, validation, sizing and trailing logic can be used (and
tested exhaustively) on their own. The engine that owns tasks and time lives
in `engine.nursery`; embedders import it from the `trio_bot` package::

    from trio_bot import Engine, EngineConfig
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

__all__ = [
    "ConfigError",
    "Counts",
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
