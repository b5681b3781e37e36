"""Starting the operator's server beside a running engine (used by `trio_bot.run`)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import trio
from starlette.routing import BaseRoute

from engine.nursery.engine import Engine
from trio_bot.api.app import build_app
from trio_bot.api.metrics import Metrics
from trio_bot.api.operator import Operator
from trio_bot.api.server import serve_api
from trio_bot.api.settings import ApiSettings, Token
from trio_bot.api.stream import EventHub


@attrs.frozen
class RunningApi:
    url: str
    token: Token = attrs.field(repr=False)
    operator: Operator
    metrics: Metrics
    hub: EventHub

    @property
    def dashboard(self) -> str:
        """What to print: with a generated token, the link carries it in the fragment."""
        if self.token.generated:
            return f"{self.url}/#token={self.token.value}"
        return f"{self.url}/ (token: the configured one)"


async def start_api(nursery: trio.Nursery, engine: Engine, settings: ApiSettings, token: Token, *,
                    account: str, exchange: str, extra_routes: Sequence[BaseRoute] = ()) -> RunningApi:
    """Observe the engine, build the app and serve it in `nursery` (which owns its lifetime)."""
    operator = Operator(engine, account=account, exchange=exchange)
    hub = EventHub()
    metrics = Metrics()
    metrics.attach(engine)
    metrics.api_clients.set_function(lambda: hub.clients)
    engine.ctx.event_observers.append(hub.publish)
    app = build_app(operator, settings, token.value, hub=hub, metrics=metrics, extra_routes=extra_routes)
    url = await nursery.start(serve_api, app, settings)
    return RunningApi(url, token, operator, metrics, hub)
