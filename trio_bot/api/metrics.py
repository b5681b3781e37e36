"""Prometheus metrics at `/metrics` (prometheus-client), every name prefixed `triobot_`.

Counters and histograms are fed by the engine's observers (every timeline
event, every port call) and by `run` (signals received, outcomes, waves);
gauges that describe current state (open and unprotected positions, writer
queue, pause, sweep repairs, realised PnL) are read from the engine when
Prometheus scrapes, so they can never drift from it. One registry per engine,
not the process-global one: two engines in one process never mix numbers.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from engine.errors import CallTimeout, PermanentError, StorageError, TransientError
from engine.model import Event, OutcomeResolved, PositionStatus, SignalOutcome, WaveRecord
from engine.nursery.engine import Engine

_CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_WAVE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


def error_kind(error: BaseException) -> str:
    if isinstance(error, CallTimeout):
        return "timeout"
    if isinstance(error, TransientError):
        return "transient"
    if isinstance(error, PermanentError):
        return "rejected"
    if isinstance(error, StorageError):
        return "storage"
    return "other"


class _EngineState(Collector):
    """Gauges read from the engine at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        engine = self.engine
        open_ = [p for p in engine.positions() if p.status is PositionStatus.OPEN]
        yield GaugeMetricFamily("triobot_open_positions", "Open positions", value=len(open_))
        yield GaugeMetricFamily("triobot_unprotected_positions", "Open positions without a stop-loss",
                                value=sum(1 for p in open_ if p.stop_price is None))
        yield GaugeMetricFamily("triobot_writer_queue_depth", "State records waiting to be stored",
                                value=engine.ctx.writer.backlog)
        yield GaugeMetricFamily("triobot_entries_paused", "1 while the operator paused new entries",
                                value=1 if engine.pause_state is not None else 0)
        yield GaugeMetricFamily("triobot_entries_being_resolved",
                                "Entries whose answer was lost, still looked up by the resolver",
                                value=sum(1 for p in engine.resolver.pending() if not p.settled.is_set()))
        yield GaugeMetricFamily("triobot_realized_pnl_usdt", "Realised PnL of the positions this engine knows",
                                value=engine.book.realized_pnl)
        repairs = CounterMetricFamily("triobot_sweep_repairs", "Protection sweep repairs by kind", labels=["kind"])
        for kind, count in sorted(engine.sweep.repairs.items()):
            repairs.add_metric([kind], count)
        yield repairs


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.signals = Counter("triobot_signals_received", "Signals received, by source", ["source"], registry=r)
        self.outcomes = Counter("triobot_signal_outcomes", "Signal outcomes, by outcome", ["outcome"], registry=r)
        # A signal reported `timed_out` ("being resolved") is counted there once; when the resolver
        # decides it, the decision is counted here (counters never go back, so the two are apart:
        # final timed_out = timed_out - sum of resolved).
        self.resolved = Counter("triobot_signal_outcomes_resolved",
                                "Outcomes decided by the resolver after the signal was reported timed_out",
                                ["outcome"], registry=r)
        self.waves = Counter("triobot_waves", "Waves processed", registry=r)
        self.wave_duration = Histogram("triobot_wave_duration_seconds", "Wave duration", buckets=_WAVE_BUCKETS,
                                       registry=r)
        self.calls = Histogram("triobot_call_duration_seconds", "Exchange and storage call latency by call point",
                               ["point"], buckets=_CALL_BUCKETS, registry=r)
        self.errors = Counter("triobot_call_errors", "Exchange and storage call errors by call point and kind",
                              ["point", "kind"], registry=r)
        self.trailing_moves = Counter("triobot_trailing_moves", "Trailing stop moves on the exchange", registry=r)
        self.events = Counter("triobot_events", "Timeline events by kind", ["kind"], registry=r)
        self.api_clients = Gauge("triobot_api_stream_clients", "Connected event-stream clients", registry=r)

    def attach(self, engine: Engine) -> None:
        """Observe the engine's calls and events and read its state at scrape time."""
        engine.ctx.call_observers.append(self.on_call)
        engine.ctx.event_observers.append(self.on_event)
        engine.resolver.observers.append(self.on_resolved)
        self.registry.register(_EngineState(engine))

    def on_call(self, point: str, seconds: float, error: BaseException | None) -> None:
        self.calls.labels(point).observe(seconds)
        if error is not None:
            self.errors.labels(point, error_kind(error)).inc()

    def on_event(self, event: Event) -> None:
        self.events.labels(event.kind).inc()
        if event.kind == "stop_moved":
            self.trailing_moves.inc()

    def on_wave_received(self, source: str, signals: int) -> None:
        self.signals.labels(source).inc(signals)

    def on_outcome(self, outcome: SignalOutcome) -> None:
        self.outcomes.labels(outcome.outcome.value).inc()

    def on_resolved(self, resolved: OutcomeResolved) -> None:
        self.resolved.labels(resolved.outcome.value).inc()

    def on_wave_done(self, record: WaveRecord) -> None:
        self.waves.inc()
        if record.duration is not None:
            self.wave_duration.observe(record.duration)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
