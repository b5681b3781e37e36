"""The webhook's logic, independent of any HTTP framework: a request body in, an answer out.

The HTTP layer (a route on the operator's server) only reads at most
`MAX_BODY + 1` bytes, passes the body and the `Authorization` header here, and
writes back `WebhookAnswer`. Everything a sender can get wrong is answered here:

* 413 over 64 KiB, 429 when flooded (a request rate over `rate_limit`, or the
  engine more than `QUEUE` waves behind), 400 for a body that is not JSON or
  not a signal / list / wave, 401 for a missing or wrong secret (compared in
  constant time, from the bearer header or a `secret` field in the body);
* otherwise 202 at once — the wave is traded after the answer, so a sender's
  3-second timeout (TradingView's) is never at risk — with
  `{"accepted": n, "duplicates": m, "rejected": [{"id": …, "reason": …}]}`.

A posted wave (a list, or `{"wave", "signals"}`) is handed on at once; single
signals are gathered by their `wave` field (or all together, without one) for
`wave_window` seconds and then traded as one wave, so they are ranked together.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import trio

from adapters.signals.arrival import Arrival
from adapters.signals.assembly import Delivered, WaveAssembler
from adapters.signals.webhook_body import BodyError, map_signal, parse_body

log = logging.getLogger("trio_bot.signals.webhook")

MAX_BODY = 64 * 1024
QUEUE = 64  # waves accepted but not yet taken by the engine
UNKEYED = "webhook"  # the gathering key of single signals posted without a wave

# Ids the store already handled (the signal-id memory), when the wiring has one.
HandledLookup = Callable[[Sequence[str]], Awaitable[Iterable[str]]]


@attrs.frozen
class WebhookAnswer:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


class _Bucket:
    """Requests per second with a burst, on Trio's clock."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._at = trio.current_time()

    def take(self) -> float:
        """0 if a request may pass now, else seconds until one may."""
        now = trio.current_time()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


class WebhookIntake:
    def __init__(self, secret: str, *, max_lag: float = 60.0, rate_limit: float = 100.0, burst: int = 200,
                 wave_window: float = 2.0, handled: HandledLookup | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._secret = secret.encode()
        self.max_lag = max_lag
        self.delivered = Delivered()
        self.handled = handled
        self._wall = wall_clock
        self._bucket: _Bucket | None = None
        self._rate = (rate_limit, burst)
        self._assembler = WaveAssembler(wave_window)
        self._gathering = trio.Event()
        self._send, self._receive = trio.open_memory_channel[Arrival](QUEUE)

    def __repr__(self) -> str:  # never shows the secret
        return "WebhookIntake(***)"

    # -- the source side: what `run` consumes --------------------------------------------------

    async def feed(self, send: trio.MemorySendChannel[Arrival]) -> None:
        async with send, trio.open_nursery() as nursery:
            nursery.start_soon(self._deliver_gathered)
            async for arrival in self._receive:
                await send.send(arrival)

    async def _deliver_gathered(self) -> None:
        while True:
            deadline = self._assembler.next_deadline()
            if deadline is None:
                self._gathering = trio.Event()
                await self._gathering.wait()
                continue
            await trio.sleep_until(deadline)
            for key, signals, first_at in self._assembler.due(trio.current_time()):
                await self._send.send(Arrival(signals, "webhook", key=None if key == UNKEYED else key,
                                              received_at=first_at))

    # -- the HTTP side -------------------------------------------------------------------------

    async def handle(self, body: bytes, authorization: str | None) -> WebhookAnswer:
        received_at = trio.current_time()
        if len(body) > MAX_BODY:
            return _error(413, f"the body is over {MAX_BODY // 1024} KiB")
        if self._bucket is None:
            self._bucket = _Bucket(*self._rate)
        wait = self._bucket.take()
        if wait:
            return _error(429, "too many requests", retry_after=wait)
        try:
            posted = parse_body(body)
        except BodyError as exc:
            return _error(400, str(exc))
        if not self._authorized(authorization, posted.secret, posted.signals):
            return _error(401, "missing or wrong secret")
        now = self._wall()
        mapped = [map_signal(s, now=now, max_lag=self.max_lag) for s in posted.signals]
        rejected = [{"id": m.signal_id, "reason": m.reason} for m in mapped if m.signal is None]
        fresh, duplicates = await self._new_signals([m.signal for m in mapped if m.signal is not None])
        if fresh:
            if posted.whole_wave:
                try:
                    self._send.send_nowait(Arrival(fresh, "webhook", key=posted.key, received_at=received_at,
                                                   duplicates=duplicates))
                except trio.WouldBlock:
                    self.delivered.forget(s["id"] for s in fresh)
                    return _error(429, f"the engine is {QUEUE} waves behind", retry_after=1.0)
            else:
                first = self._assembler.next_deadline() is None
                for signal in fresh:
                    self._assembler.add(posted.key or UNKEYED, signal, received_at)
                if first:
                    self._gathering.set()
        for item in rejected:
            log.info("webhook: signal %s rejected: %s", item["id"], item["reason"])
        return WebhookAnswer(202, {"accepted": len(fresh), "duplicates": duplicates, "rejected": rejected})

    def _authorized(self, authorization: str | None, body_secret: str | None,
                    signals: Sequence[Any]) -> bool:
        if authorization is not None and authorization.startswith("Bearer "):
            return hmac.compare_digest(authorization.removeprefix("Bearer ").strip().encode(), self._secret)
        if body_secret is not None:
            return hmac.compare_digest(body_secret.encode(), self._secret)
        secrets = [s.get("secret") if isinstance(s, Mapping) else None for s in signals]
        return bool(secrets) and all(isinstance(s, str) and hmac.compare_digest(s.encode(), self._secret)
                                     for s in secrets)

    async def _new_signals(self, signals: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """Drop repeats: ids posted before (this run) or handled before (the store), and repeats within
        the body itself. The new ids are claimed before the store is asked, so two posts of the same
        alert racing each other (a sender re-sending on its timeout) cannot both be accepted."""
        claimed: dict[str, dict[str, Any]] = {}
        for signal in signals:
            if signal["id"] not in self.delivered and signal["id"] not in claimed:
                claimed[signal["id"]] = signal
        self.delivered.remember(claimed)
        if self.handled is not None and claimed:
            for signal_id in set(await self.handled(list(claimed))):
                claimed.pop(signal_id, None)  # stays remembered: it is handled
        fresh = list(claimed.values())
        return fresh, len(signals) - len(fresh)


def _error(status: int, message: str, *, retry_after: float | None = None) -> WebhookAnswer:
    headers = (("Retry-After", str(max(1, round(retry_after + 0.5)))),) if retry_after is not None else ()
    return WebhookAnswer(status, {"error": message}, headers)
