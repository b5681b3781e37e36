"""The load for `bench.api_load`, run as its own process: `python -m bench.api_client URL TOKEN CLIENTS`.

Prints `ready` once every client is running; then, given on stdin the number of events the engine
published, waits (at most 30 s) until the websocket delivered them all and prints one JSON object:
`{"latencies": [[wall time, seconds], ...], "streamed": N, "lag": seconds}`.
"""

from __future__ import annotations

import json
import sys
import time

import httpx
import trio
from trio_websocket import open_websocket_url


async def main(url: str, token: str, clients: int) -> None:
    latencies: list[tuple[float, float]] = []
    streamed = 0
    target = -1
    all_running = trio.Event()
    caught_up = trio.Event()
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    stdout = trio.lowlevel.FdStream(sys.stdout.fileno())

    async def hammer() -> None:
        async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=30) as c:
            while True:
                started = time.perf_counter()
                (await c.get("/api/v1/status")).raise_for_status()
                latencies.append((time.time(), time.perf_counter() - started))
                if len(latencies) >= clients:
                    all_running.set()

    async def stream(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal streamed
        async with open_websocket_url(url.replace("http://", "ws://") + "/api/v1/ws") as ws:
            await ws.send_message(json.dumps({"token": token}))
            await ws.get_message()  # hello
            task_status.started()
            while True:
                message = json.loads(await ws.get_message())
                if message["type"] == "events":
                    streamed += len(message["events"])
                    if 0 <= target <= streamed:
                        caught_up.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(stream)
        for _ in range(clients):
            nursery.start_soon(hammer)
        if clients:
            await all_running.wait()
        await stdout.send_all(b"ready\n")
        line = b""
        while not line.endswith(b"\n"):
            line += await stdin.receive_some()
        target = int(line)
        waited = trio.current_time()
        if streamed >= target:
            caught_up.set()
        with trio.move_on_after(30):
            await caught_up.wait()
        lag = trio.current_time() - waited
        nursery.cancel_scope.cancel()
    await stdout.send_all(json.dumps({"latencies": latencies, "streamed": streamed, "lag": lag}).encode())


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
