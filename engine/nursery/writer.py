"""The state writer: a long-lived service that persists engine state off the hot path.

Lifetime: started by `Engine.open`, lives until the engine closes, then gets
`shutdown_timeout` to drain. Restart policy: a failed batch is retried with
exponential backoff (`writer_retry_backoff` doubling up to
`writer_max_backoff`) until it lands or the engine closes; it is never dropped
silently — what is still queued at close is logged.

Two lanes, so a hanging trailing-state save (the incident) cannot hold up
position and outcome records, and vice versa:

* records — positions, orders, waves, outcomes, events: FIFO, batched, one
  transaction per batch (order matters: an `open` must not overtake its
  `opening`).
* trailing — newest state per position wins; a retry writes the latest state,
  so a slow store never builds a backlog of stale stops.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Protocol

import trio

from engine.config import EngineConfig
from engine.model import OrderRecord, Position, TrailingRecord
from engine.nursery.calls import CallObserver, bounded, observed
from engine.nursery.retrying import Attempts
from engine.ports import Record, Storage

log = logging.getLogger("trio_bot.writer")

MAX_BATCH = 500


def _key(record: Record) -> tuple[str, object] | None:
    """Records that overwrite by key (upserts); events and outcomes are kept as they are."""
    if isinstance(record, Position):
        return ("position", record.id)
    if isinstance(record, OrderRecord):
        return ("order", record.client_order_id)
    return None


def compact(batch: list[Record]) -> list[Record]:
    """Drop upserts superseded later in the same batch: the last one wins anyway.

    Keeps the order of what remains, so a batch still lands as the sequence it was.
    """
    last: dict[tuple[str, object], int] = {}
    for i, record in enumerate(batch):
        key = _key(record)
        if key is not None:
            last[key] = i
    if len(last) == sum(1 for r in batch if _key(r) is not None):
        return batch
    return [r for i, r in enumerate(batch) if (k := _key(r)) is None or last[k] == i]


class TrailingSource(Protocol):
    """What the trailing lane writes: a position's trailing state, built when it is written,
    and told when it was stored (a restart can resume it from then on)."""

    def trailing_record(self) -> TrailingRecord: ...

    def trailing_saved(self, record: TrailingRecord) -> None: ...


class StateWriter:
    def __init__(self, storage: Storage, config: EngineConfig) -> None:
        self._storage = storage
        self._config = config
        self._send, self._receive = trio.open_memory_channel[Record](math.inf)
        self._records: list[Record] = []
        self._trailing: dict[int, TrailingSource] = {}
        self._trailing_wake = trio.Event()
        self._busy = {"records": False, "trailing": False}
        self._idle = trio.Event()
        self.failures = 0
        self.call_observers: list[CallObserver] = []  # the engine context shares its list here

    # --- producers (synchronous: callable from a cancelled child's cleanup) ---

    def submit(self, *records: Record) -> None:
        for record in records:
            self._send.send_nowait(record)

    def submit_trailing(self, position_id: int, source: TrailingSource) -> None:
        """Mark a position's trailing state dirty; `source.trailing_record()` is called when the
        lane writes it.

        A price flood marks the same position thousands of times; only the state current at
        write time is built and stored.
        """
        self._trailing[position_id] = source
        self._trailing_wake.set()

    @property
    def backlog(self) -> int:
        return self._receive.statistics().current_buffer_used + len(self._records) + len(self._trailing)

    # --- service ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._records_lane)
            nursery.start_soon(self._trailing_lane)
            task_status.started()

    async def drain(self) -> None:
        """Wait until everything submitted so far is stored (callers bound this)."""
        while self.backlog or any(self._busy.values()):
            self._idle = trio.Event()
            await self._idle.wait()

    def _maybe_idle(self) -> None:
        if not self.backlog and not any(self._busy.values()):
            self._idle.set()

    async def _records_lane(self) -> None:
        while True:
            if not self._records:
                self._maybe_idle()
                self._records.append(await self._receive.receive())
            while len(self._records) < MAX_BATCH:
                try:
                    self._records.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            self._records = compact(self._records)
            self._busy["records"] = True
            try:
                await self._write_with_retry("records", self._records)
            finally:
                self._busy["records"] = False
            self._records = []

    async def _trailing_lane(self) -> None:
        while True:
            if not self._trailing:
                self._maybe_idle()
                await self._trailing_wake.wait()
                self._trailing_wake = trio.Event()
                continue
            marked, self._trailing = self._trailing, {}
            batch = [source.trailing_record() for source in marked.values()]
            self._busy["trailing"] = True
            try:
                await self._write_with_retry("trailing", batch)
            except BaseException:
                for pid, latest in marked.items():  # not stored: still dirty (unless marked again since)
                    self._trailing.setdefault(pid, latest)
                raise
            finally:
                self._busy["trailing"] = False
            for source, record in zip(marked.values(), batch, strict=True):
                source.trailing_saved(record)

    async def _write_with_retry(self, lane: str, batch: Sequence[Record]) -> None:
        policy = self._config.writer_retry
        async for attempt in Attempts(policy):
            try:
                await observed(self.call_observers, f"storage.write_{lane}", lambda: bounded(
                    f"storage write ({lane})", self._config.call_timeout, self._storage.write, list(batch)))
                if attempt > 1:
                    log.warning("state writer: %s batch of %d stored after %d attempts", lane, len(batch), attempt)
                return
            except Exception as exc:  # any storage failure: keep the data, retry later
                self.failures += 1
                # Say it loudly once; repeats of the same outage only at INFO (visible with -v).
                log.log(logging.WARNING if attempt == 1 else logging.INFO,
                        "state writer: %s batch of %d failed (%s); retrying in %.1fs",
                        lane, len(batch), exc, policy.delay(attempt))
