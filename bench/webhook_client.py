"""A webhook sender in its own process (`python -m bench.webhook_client URL SECRET BODIES.json CLIENTS`),
as a real signal service is: the benchmark's server side does not share its CPU time with the client.
Prints `{"accepted": n, "duplicates": m, "statuses": {...}}`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import trio


async def send(url: str, secret: str, bodies: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    totals: dict[str, Any] = {"accepted": 0, "duplicates": 0, "statuses": {}}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=10, limits=limits,
                                 headers={"authorization": f"Bearer {secret}"}) as client:
        async def worker(chunk: list[dict[str, Any]]) -> None:
            for body in chunk:
                answer = await client.post(url, json=body)
                totals["statuses"][str(answer.status_code)] = totals["statuses"].get(str(answer.status_code), 0) + 1
                if answer.status_code == 202:
                    totals["accepted"] += answer.json()["accepted"]
                    totals["duplicates"] += answer.json()["duplicates"]

        async with trio.open_nursery() as nursery:
            for c in range(clients):
                nursery.start_soon(worker, bodies[c::clients])
    return totals


def main() -> None:
    url, secret, path, clients = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    bodies = json.loads(Path(path).read_text())
    print(json.dumps(trio.run(send, url, secret, bodies, clients)))


if __name__ == "__main__":
    main()
