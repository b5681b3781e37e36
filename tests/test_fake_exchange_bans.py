"""The local exchange's IP bans (418) under a client that keeps sending."""

from __future__ import annotations

from adapters.sim.fake_binance.limits import Limited, Limiter, RateLimits


async def test_hammering_through_a_ban_lengthens_it_up_to_three_days_never_past(autojump_clock):
    """Found by the HTTP fuzz: each request during a ban doubled it, until the float overflowed
    and the server answered 500. Binance's bans grow from 2 minutes to 3 days."""
    limiter = Limiter(RateLimits(weight=1, ban_seconds=120.0))
    answers = []
    for _ in range(2000):
        try:
            limiter.admit("GET", "/fapi/v1/time", None, None)
        except Limited as refused:
            answers.append((refused.status, int(dict(refused.headers)["Retry-After"])))
    assert answers[0][0] == 429 and {status for status, _ in answers[1:]} == {418}
    assert max(retry for _, retry in answers) == 3 * 86_400
