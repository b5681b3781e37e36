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
