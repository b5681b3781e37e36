"""Binance's request-weight and order-count limits, with its headers, 429s and 418 bans.

Binance counts request weight per IP in fixed one-minute windows and new orders per
account in ten-second and one-minute windows, reports the counts on every answer
(`X-MBX-USED-WEIGHT-1M`, `X-MBX-ORDER-COUNT-10S`, `X-MBX-ORDER-COUNT-1M`), answers
429 with `Retry-After` once a limit is passed, and bans the IP with 418 (two
minutes at first, longer for repeat offenders) when a client keeps sending after a
429. A ban blocks everything, closing orders and stops included. The windows and
limits are parameters so a test can reach them in a fraction of a second.
"""

from __future__ import annotations

import math

import attrs
import trio

from adapters.sim.fake_binance.params import Rejection

# Request weights of the endpoints trio-bot calls (Binance's documented values).
WEIGHTS = {
    "/fapi/v1/exchangeInfo": 1, "/fapi/v2/account": 5, "/fapi/v3/account": 5, "/fapi/v2/balance": 5,
    "/fapi/v3/balance": 5, "/fapi/v2/positionRisk": 5, "/fapi/v3/positionRisk": 5, "/fapi/v1/leverageBracket": 1,
    "/fapi/v1/ticker/24hr": 1, "/fapi/v1/premiumIndex": 1, "/fapi/v1/symbolConfig": 5,
    "/fapi/v1/positionSide/dual": 30,
}
ORDER_PATHS = frozenset({"/fapi/v1/order", "/fapi/v1/algoOrder"})


@attrs.frozen
class RateLimits:
    weight: int = 2400  # REQUEST_WEIGHT per weight_window
    weight_window: float = 60.0
    orders_10s: int = 300  # ORDERS per orders_window_10s
    orders_window_10s: float = 10.0
    orders_1m: int = 1200
    orders_window_1m: float = 60.0
    ban_seconds: float = 120.0  # the first ban; each repeat doubles it


def weight_of(method: str, path: str, symbol: str | None) -> int:
    if path in ("/fapi/v1/ticker/price", "/fapi/v2/ticker/price", "/fapi/v1/ticker/bookTicker"):
        return 1 if symbol else 2
    if path in ("/fapi/v1/openOrders", "/fapi/v1/openAlgoOrders"):
        return 1 if symbol else 40
    return WEIGHTS.get(path, 1)


class _Window:
    """A fixed window (as Binance's are: they reset on the minute, not a sliding sum)."""

    def __init__(self, length: float) -> None:
        self.length = length
        self.start = 0.0
        self.used = 0

    def roll(self, now: float) -> None:
        start = math.floor(now / self.length) * self.length
        if start != self.start:
            self.start, self.used = start, 0

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(self.start + self.length - now))


MAX_BAN_SECONDS = 3 * 86_400.0


class Limiter:
    """One IP's weight and ban, and each account's order counts."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self.weight = _Window(limits.weight_window)
        self.orders: dict[str, tuple[_Window, _Window]] = {}
        self.banned_until = 0.0
        self.bans = 0
        self.throttled = False  # answered 429 in this window: one more request is a ban

    def admit(self, method: str, path: str, symbol: str | None, account: str | None) -> list[tuple[str, str]]:
        """Count one request; the headers to send, or a 429/418 `Rejection` carrying them."""
        now = trio.current_time()
        if now < self.banned_until:
            self._ban(now)  # hammering during a ban extends it
        self.weight.roll(now)
        if self.weight.used == 0:
            self.throttled = False
        self.weight.used += weight_of(method, path, symbol)
        headers = [("X-MBX-USED-WEIGHT-1M", str(self.weight.used))]
        if self.weight.used > self.limits.weight:
            if self.throttled:
                self._ban(now)
            self.throttled = True
            raise Limited(429, -1003, f"Too many requests; current limit is {self.limits.weight} request weight "
                                      "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling "
                                      "the API.", self.weight.retry_after(now), headers)
        if method == "POST" and path in ORDER_PATHS and account is not None:
            short, long = self.orders.setdefault(account, (_Window(self.limits.orders_window_10s),
                                                           _Window(self.limits.orders_window_1m)))
            short.roll(now)
            long.roll(now)
            short.used += 1
            long.used += 1
            headers += [("X-MBX-ORDER-COUNT-10S", str(short.used)), ("X-MBX-ORDER-COUNT-1M", str(long.used))]
            for window, limit, name in ((short, self.limits.orders_10s, "10 SECONDS"),
                                        (long, self.limits.orders_1m, "1 MINUTE")):
                if window.used > limit:
                    raise Limited(429, -1015, f"Too many new orders; current limit is {limit} orders per {name}.",
                                  window.retry_after(now), headers)
        return headers

    def _ban(self, now: float) -> None:
        self.bans += 1
        # Binance's bans grow "from 2 minutes to 3 days" for repeat offenders; the doubling stops
        # there (uncapped, a client hammering through its ban overflowed the float).
        seconds = min(self.limits.ban_seconds * 2.0 ** min(self.bans - 1, 64), MAX_BAN_SECONDS)
        self.banned_until = max(self.banned_until, now + seconds)
        until_ms = int((trio.current_time() - now + seconds) * 1000)  # relative: the clock may be a test's
        raise Limited(418, -1003, f"Way too much request weight used; IP banned for {until_ms} ms. Please use "
                                  "WebSocket Streams for live updates to avoid bans.",
                      max(1, math.ceil(self.banned_until - now)), [])


class Limited(Rejection):
    """A 429 or 418 answer: Binance's body, `Retry-After` and the usage headers."""

    def __init__(self, status: int, code: int, msg: str, retry_after: int, headers: list[tuple[str, str]]) -> None:
        super().__init__(code, msg, status=status)
        self.headers = [*headers, ("Retry-After", str(retry_after))]
