"""Wave assembly and delivery memory: pure bookkeeping, no I/O, no clock of its own.

A service may send a wave whole, or one signal at a time tagged with the
wave's key. Single signals are gathered for `wave_window` seconds after the
first of their key arrives, then delivered as one wave, so the engine ranks
them together (the point of a wave) instead of trading the first to arrive.

`Delivered` remembers which wave keys and signal ids this source already
handed on, so a service that re-sends its recent waves after a reconnect does
not deliver them twice. It is bounded (oldest forgotten first) and lives only
as long as the process; the store's memory of handled ids (consulted by the
engine for every wave) covers restarts.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from adapters.signals.arrival import RawWave


@attrs.define
class _Pending:
    first_at: float
    signals: list[Mapping[str, Any]]


class WaveAssembler:
    def __init__(self, wave_window: float) -> None:
        self.wave_window = wave_window
        self._pending: dict[str, _Pending] = {}

    def add(self, key: str, signal: Mapping[str, Any], now: float) -> None:
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = _Pending(now, [signal])
        else:
            pending.signals.append(signal)

    def holds(self, key: str, signal_id: str) -> bool:
        """Whether the wave being gathered under `key` already has this signal id (a re-send)."""
        pending = self._pending.get(key)
        return pending is not None and any(signal_id_of(s) == signal_id for s in pending.signals)

    def next_deadline(self) -> float | None:
        """When the oldest pending wave is due, or None if nothing is pending."""
        if not self._pending:
            return None
        return min(p.first_at for p in self._pending.values()) + self.wave_window

    def due(self, now: float) -> list[tuple[str, list[Mapping[str, Any]], float]]:
        """Waves whose window has closed, oldest first: (key, signals, time of the first signal)."""
        ready = sorted(((p.first_at, k) for k, p in self._pending.items() if p.first_at + self.wave_window <= now))
        return [(key, self._pending.pop(key).signals, first_at) for first_at, key in ready]

    def flush(self) -> list[tuple[str, list[Mapping[str, Any]], float]]:
        """Everything pending, as if every window had closed (the feed is ending)."""
        return self.due(float("inf"))


def signal_id_of(signal: Any) -> str | None:
    if isinstance(signal, Mapping):
        raw = signal.get("id")
        if isinstance(raw, str | int) and not isinstance(raw, bool) and str(raw):
            return str(raw)
    return None


class Delivered:
    """Signal ids already handed on (bounded, oldest forgotten first)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, signal_id: str) -> bool:
        return signal_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def remember(self, ids: Iterable[str]) -> None:
        for signal_id in ids:
            self._ids[signal_id] = None
            self._ids.move_to_end(signal_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def forget(self, ids: Iterable[str]) -> None:
        """Undo `remember` for a delivery that could not be handed on after all."""
        for signal_id in ids:
            self._ids.pop(signal_id, None)

    def split(self, signals: RawWave) -> tuple[list[Mapping[str, Any]], int]:
        """The signals not delivered before (malformed ones included: the engine rejects them with a
        reason), and how many were dropped as repeats. Remembers the new ones."""
        fresh: list[Mapping[str, Any]] = []
        repeats = 0
        new_ids: list[str] = []
        for signal in signals:
            signal_id = signal_id_of(signal)
            if signal_id is not None and signal_id in self._ids:
                repeats += 1
                continue
            fresh.append(signal)
            if signal_id is not None:
                new_ids.append(signal_id)
        self.remember(new_ids)
        return fresh, repeats
