import trio

from engine.nursery.ratelimit import RateLimiter


async def test_rate_and_burst_in_virtual_time(autojump_clock):
    limiter = RateLimiter(rate=10.0, burst=5)
    start = trio.current_time()
    for _ in range(25):
        await limiter.acquire()
    # 5 at once from the burst, then 20 at 10/s.
    assert abs(trio.current_time() - start - 2.0) < 1e-6


async def test_priority_lane_goes_first(autojump_clock):
    limiter = RateLimiter(rate=1.0, burst=1)
    await limiter.acquire()  # empty the bucket
    order = []

    async def take(name, priority):
        await limiter.acquire(priority=priority)
        order.append(name)

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(take, f"entry{i}", False)
        await trio.sleep(0.1)
        nursery.start_soon(take, "stop", True)
    assert order[0] == "stop"


async def test_waiting_is_cancellable(autojump_clock):
    limiter = RateLimiter(rate=0.1, burst=1)
    await limiter.acquire()
    with trio.move_on_after(1.0) as scope:
        await limiter.acquire(priority=True)
    assert scope.cancelled_caught
    assert limiter._priority_waiting == 0


def test_bucket_for_published_limits_honours_every_window():
    from hypothesis import given
    from hypothesis import strategies as st

    from engine.rate_windows import bucket_for

    assert bucket_for([(1200, 60.0), (300, 10.0)]) == (15.0, 150)  # Binance USDⓈ-M
    assert bucket_for([]) is None

    @given(st.lists(st.tuples(st.integers(1, 10_000), st.floats(0.1, 3600)), min_size=1, max_size=4))
    def honours(windows):
        rate, burst = bucket_for(windows)
        for limit, seconds in windows:
            assert burst + rate * seconds <= max(limit, 1) + 1e-6 or burst == 1

    honours()
