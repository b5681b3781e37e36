"""A local Binance USDⓈ-M Futures REST server backed by `SimExchange`.

It lets the real ccxt client (and so a ccxt-based exchange adapter) run against
the simulator over real HTTP, in the same Trio run as the code under test, with
the scenario's faults showing up on the wire as the live exchange's would.

    fake = FakeBinance(spec_or_scenario)
    port = await nursery.start(fake.serve)
    client = ccxt.async_support.binanceusdm({"apiKey": fake.api_key, "secret": fake.api_secret,
                                             "enableRateLimit": False, "options": dict(CCXT_OPTIONS)})
    configure_ccxt(client, fake.base_url)

Faults (`fake.plan`, a `FaultPlan`) are picked per request: POST order/algoOrder
by kind (MARKET → entry, MARKET reduceOnly → close, STOP_MARKET → stop), DELETE
→ cancel, every GET → query. `error` answers 502, `reject` a 400 Binance error
(code taken from a message like "-2019 ...", else -2010), `hang` never answers,
`delay` answers late, `lost_response` applies the request then closes the socket.
"""

from adapters.ccxt_setup import CCXT_OPTIONS, ccxt_urls, configure_ccxt
from adapters.sim.fake_binance.params import Rejection
from adapters.sim.fake_binance.server import FakeBinance

__all__ = ["CCXT_OPTIONS", "FakeBinance", "Rejection", "ccxt_urls", "configure_ccxt"]
