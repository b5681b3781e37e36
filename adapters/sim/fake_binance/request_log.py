"""What the fake server tells its log about orders, as each request arrives (`trio-bot -v fake-exchange`).

A test that must act at a precise moment (kill the client while its entry is held by a delay
fault, before the answer) watches these lines: "received POST /fapi/v1/order tb-7-entry" is
written before any fault or delay is applied. Only order requests are logged, by client id;
never a signature, a key or any other parameter.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from adapters.sim.fake_binance.wire import Request

log = logging.getLogger("trio_bot.fake_binance")

ORDER_PATHS = ("/fapi/v1/order", "/fapi/v1/algoOrder")
ID_KEYS = ("newClientOrderId", "clientAlgoId", "origClientOrderId")


def received(request: Request) -> None:
    """Log an order placement or cancel as it arrives, named by its client id."""
    if request.method not in ("POST", "DELETE") or request.path not in ORDER_PATHS:
        return
    params = dict(parse_qsl(request.body, keep_blank_values=True))
    params.update(parse_qsl(request.query, keep_blank_values=True))
    client_id = next((params[k] for k in ID_KEYS if params.get(k)), "-")
    log.info("received %s %s %s", request.method, request.path, client_id[:64])
