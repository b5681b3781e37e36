"""Signal sources: where waves come from (demo, file, websocket, webhook, NATS JetStream).

Every source sends the same thing to `run`: an `Arrival` holding a raw wave
(unvalidated: the engine rejects a malformed signal with its reason) and, for
sources that need it, how to acknowledge the wave once its outcomes are stored.
"""

from adapters.signals.arrival import Arrival, RawWave, WaveFeed
from adapters.signals.files import DemoSignalSource, JsonlSignalSource

__all__ = ["Arrival", "DemoSignalSource", "JsonlSignalSource", "RawWave", "WaveFeed"]
