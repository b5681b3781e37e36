import pytest
import trio
import trio.testing

from engine.nursery.ratelimit import RateLimiter
from tests.scheduling import scheduling


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
        await limiter.acquire(priority=priority, key=name)
        order.append(name)

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(take, f"entry{i}", False)
        await trio.sleep(0.1)
        nursery.start_soon(take, "stop", True)
    assert order[0] == "stop"
    assert order[1:] == ["entry0", "entry1", "entry2"]


async def test_waiters_are_served_in_the_order_they_asked(autojump_clock):
    """All of them wake at the same token instants; the one that asked first goes first."""
    limiter = RateLimiter(rate=2.0, burst=1)
    await limiter.acquire()
    served = []

    async def take(name):
        await limiter.acquire(key=name)  # keys in the opposite order: time asked wins
        served.append((name, trio.current_time()))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i, name in enumerate("edcba"):
            nursery.start_soon(take, name)
            await trio.sleep(0.01 * (i + 1) / 10)
    assert [name for name, _ in served] == list("edcba")
    assert [round(at - start, 6) for _, at in served] == [0.5, 1.0, 1.5, 2.0, 2.5]


def served_order(seed: int, settle: bool) -> list[tuple[float, str]]:
    """Ten tasks ask at one instant, reaching the limiter after 0-2 extra checkpoints."""

    async def main() -> list[tuple[float, str]]:
        limiter = RateLimiter(rate=1.0, burst=3, settle=trio.testing.wait_all_tasks_blocked if settle else None)
        served: list[tuple[float, str]] = []

        async def take(key: str, hops: int, priority: bool) -> None:
            for _ in range(hops):
                await trio.lowlevel.checkpoint()
            await limiter.acquire(key=key, priority=priority)
            served.append((trio.current_time(), key))

        async with trio.open_nursery() as nursery:
            for i in range(10):
                # The later a key sorts, the sooner its task reaches the limiter.
                nursery.start_soon(take, f"k{i}", 2 - i % 3, i == 7)
        return sorted(served)  # by the time each was served

    with scheduling(seed):
        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_requests_of_one_instant_are_served_by_lane_then_key_whatever_the_scheduling():
    # k7 is protective; three tokens at once, then one a second.
    expected = [(0.0, "k0"), (0.0, "k1"), (0.0, "k7"), (1.0, "k2"), (2.0, "k3"), (3.0, "k4"), (4.0, "k5"),
                (5.0, "k6"), (6.0, "k8"), (7.0, "k9")]
    for seed in range(6):
        assert served_order(seed, settle=True) == expected


def test_without_settling_the_first_to_arrive_at_an_instant_is_served_first():
    """What `settle` is for: a live limiter serves whoever asked first (k2, k5, k8 hop least)."""
    assert {key for at, key in served_order(0, settle=False) if at == 0.0} == {"k2", "k5", "k8"}


@pytest.mark.parametrize("which", [0, 1, 2])
async def test_a_cancelled_waiter_leaves_the_queue_and_the_rest_are_served(autojump_clock, which):
    limiter = RateLimiter(rate=1.0, burst=1)
    await limiter.acquire()
    served = []

    async def take(name, scope_box=None):
        with trio.CancelScope() as scope:
            if scope_box is not None:
                scope_box.append(scope)
            await limiter.acquire(key=name)
            served.append(name)

    box: list[trio.CancelScope] = []
    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(take, f"w{i}", box if i == which else None)
            await trio.sleep(0.01)
        box[0].cancel()
        await trio.sleep(0.01)
        assert limiter.waiting == 2
    assert served == [f"w{i}" for i in range(3) if i != which]
    assert limiter.waiting == 0


async def test_waiting_is_cancellable(autojump_clock):
    limiter = RateLimiter(rate=0.1, burst=1)
    await limiter.acquire()
    with trio.move_on_after(1.0) as scope:
        await limiter.acquire(priority=True)
    assert scope.cancelled_caught
    assert limiter.waiting == 0
    with trio.move_on_after(10.0) as scope:  # the token it did not take is still there
        await limiter.acquire()
    assert not scope.cancelled_caught


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
