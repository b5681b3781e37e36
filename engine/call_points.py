"""The names of the engine's calls across its edges: one spelling for the engine, the
fault plans, the scenario format and the local exchange server.

A call point names *where* a call crosses an edge (an entry order, a read, a stored
batch). The engine labels its deadlines with it (`CallTimeout` messages), fault
injection picks faults by it, and scenario files name it (`point = "exchange.query"`),
so the strings are a public contract: they never change. `StrEnum` members are
strings, so stored and printed text stays what it always was.
"""

from __future__ import annotations

from enum import StrEnum

from engine.model import OrderKind


class CallPoint(StrEnum):
    ENTRY_ORDER = "exchange.entry_order"
    STOP_ORDER = "exchange.stop_order"
    CLOSE_ORDER = "exchange.close_order"
    CANCEL_ORDER = "exchange.cancel_order"
    QUERY = "exchange.query"  # any read: an order, positions, open orders, prices, balance
    STOP_TRIGGER = "exchange.stop_trigger"  # a resting stop reached its price (exchange side only)
    LOAD_MARKETS = "exchange.load_markets"
    STORAGE_WRITE = "storage.write"
    STORAGE_READ = "storage.read"
    STORAGE_TRAILING = "storage.trailing"
    RECORD_INTENT = "storage.record_intent"  # a write; faults pick it as `storage.write`
    CLAIM_SIGNALS = "storage.claim_signals"  # a write; faults pick it as `storage.write`

    @classmethod
    def placing(cls, kind: OrderKind) -> CallPoint:
        """The point of placing an order of `kind`."""
        return _PLACING[kind]


_PLACING = {OrderKind.ENTRY: CallPoint.ENTRY_ORDER, OrderKind.STOP: CallPoint.STOP_ORDER,
            OrderKind.CLOSE: CallPoint.CLOSE_ORDER}

# The points a scenario's faults may name, in the order SCENARIOS.md lists them.
FAULT_POINTS: tuple[CallPoint, ...] = (
    CallPoint.ENTRY_ORDER,
    CallPoint.STOP_ORDER,
    CallPoint.CLOSE_ORDER,
    CallPoint.CANCEL_ORDER,
    CallPoint.QUERY,
    CallPoint.STOP_TRIGGER,
    CallPoint.STORAGE_WRITE,
    CallPoint.STORAGE_READ,
    CallPoint.STORAGE_TRAILING,
)
