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

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # `typing` is not imported here: it alone takes a noticeable part of start-up
if TYPE_CHECKING:
    from typing import Any

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


def __getattr__(name: str) -> Any:
    """The public names load on first use: `trio-bot` itself starts on the standard library
    alone, so a Ctrl-C while it loads is answered in one line (see `trio_bot.cli`)."""
    if name == "Engine":
        return importlib.import_module("engine.nursery.engine").Engine
    if name in __all__:
        return getattr(importlib.import_module("engine"), name)
    raise AttributeError(f"module 'trio_bot' has no attribute {name!r}")


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
