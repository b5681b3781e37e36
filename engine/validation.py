"""Signal screening: turn a raw wave into ranked candidates and reasoned rejections.

Pure functions. Two stages because they need different facts: `screen_wave`
needs only the wave, the markets and which symbols are busy; `screen_size`
needs the price and the free margin at the moment the signal would start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from engine.checks import ID_MAX, SCORE, SYMBOL_MAX, finite, identifier_problem
from engine.model import HandledSignal, Market, Outcome, Side, Signal, SignalOutcome
from engine.sizing import order_quantity
from engine.text import cut, shown

_SIDES = {"long": Side.LONG, "buy": Side.LONG, "short": Side.SHORT, "sell": Side.SHORT}


@attrs.frozen
class Screened:
    candidates: tuple[Signal, ...]  # valid, best rank first
    rejected: tuple[SignalOutcome, ...]


def _label(value: Any, limit: int) -> str:
    """What a rejected signal's id/symbol/side is stored and shown as: its text, bounded."""
    if value is None:
        return ""
    if isinstance(value, str):
        return cut(value, limit)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 200:
        return cut(str(value), limit)
    return shown(value, limit)


def _score_key(raw: Any) -> float:
    try:
        score = raw.get("score") if isinstance(raw, Mapping) else None
        number = finite(score)
    except Exception:  # a hostile mapping: it will be rejected below
        return math.inf
    return -number if number is not None and SCORE.contains(number) else math.inf


def _id_text(raw_id: Any) -> tuple[str, str | None]:
    """(the id as text, why it is unusable or None)."""
    if raw_id is None or isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        return _label(raw_id, ID_MAX), f"signal id {shown(raw_id, 40)} is missing or not a string/integer"
    if isinstance(raw_id, int) and raw_id.bit_length() > 200:
        return _label(raw_id, ID_MAX), f"signal id {shown(raw_id, 40)} is too long"
    text = str(raw_id)
    problem = identifier_problem(text)
    if problem is not None:
        return cut(text, ID_MAX), f"signal id {shown(text, 40)} {problem}"
    return text, None


def _ranking(raw_signals: Sequence[Any]) -> list[int]:
    """Indexes of the signals, best score first (stable; unusable scores last)."""
    return sorted(range(len(raw_signals)), key=lambda i: _score_key(raw_signals[i]))


def is_wave(raw_signals: Any) -> bool:
    """A list-like of signals (anything else is one rejection, never a crash)."""
    return isinstance(raw_signals, Sequence) and not isinstance(raw_signals, str | bytes)


def wave_size(raw_signals: Any) -> int:
    return len(raw_signals) if is_wave(raw_signals) else 0


def _valid_id(raw: Any) -> str | None:
    try:
        if not isinstance(raw, Mapping):
            return None
        signal_id, problem = _id_text(raw.get("id"))
    except Exception:  # a hostile mapping: screen_wave rejects it
        return None
    return signal_id if problem is None else None


def claims_of(raw_signals: Any) -> dict[str, int]:
    """The ids a wave handles, each with the rank of the copy it handles (the best-ranked one).

    Every well-formed id counts, rejected or not: the signal service sent it, the
    engine answered it, and a repeat must be recognised as one. An id outside the
    documented length or alphabet is not remembered (it is rejected for that).
    """
    claims: dict[str, int] = {}
    if not is_wave(raw_signals):
        return claims
    for rank, index in enumerate(_ranking(raw_signals)):
        signal_id = _valid_id(raw_signals[index])
        if signal_id is not None and signal_id not in claims:
            claims[signal_id] = rank
    return claims


def repeat_reason(earlier: HandledSignal) -> str:
    how = f" ({earlier.outcome})" if earlier.outcome is not None else " (its outcome is not stored)"
    return f"signal id {earlier.signal_id} was already handled in wave {earlier.wave_id}{how}"


def screen_wave(
    raw_signals: Any,
    markets: Mapping[str, Market],
    busy_symbols: set[str] | frozenset[str],
    handled: Mapping[str, HandledSignal] | None = None,
) -> Screened:
    """Rank by score (stable, best first; unusable scores last) and reject what can't trade.

    Total: whatever a signal source sends, every signal ends as a candidate or as a rejection
    with a reason. A bug while screening one signal rejects that signal, never the wave.
    `handled` holds the ids earlier waves handled (the stored memory): a repeat is
    rejected, naming the wave that handled it, so a redelivered signal never trades twice.
    """
    if not is_wave(raw_signals):
        return Screened((), (SignalOutcome(
            signal_id="", rank=0, symbol="", side="", outcome=Outcome.REJECTED,
            reason=f"the wave is not a list of signals: {shown(raw_signals, 60)}"),))
    state = _State(markets, busy_symbols, handled or {})
    for rank, index in enumerate(_ranking(raw_signals)):
        raw = raw_signals[index]
        try:
            state.screen(raw, index, rank)
        except Exception as exc:  # a bug here must cost this signal, not the wave
            state.reject(raw, rank, f"internal error while validating: {shown(exc, 120)}")
    return Screened(tuple(state.candidates), tuple(state.rejected))


class _State:
    def __init__(self, markets: Mapping[str, Market], busy: set[str] | frozenset[str],
                 handled: Mapping[str, HandledSignal]) -> None:
        self.markets = markets
        self.busy = busy
        self.handled = handled
        self.seen_ids: set[str] = set()
        self.claimed: dict[str, str] = {}
        self.candidates: list[Signal] = []
        self.rejected: list[SignalOutcome] = []

    def reject(self, raw: Any, rank: int, reason: str, signal_id: str | None = None) -> None:
        fields = raw if isinstance(raw, Mapping) else {}
        get = fields.get if isinstance(fields, dict) else (lambda key: None)
        score = finite(get("score"))
        self.rejected.append(SignalOutcome(
            signal_id=signal_id if signal_id is not None else _label(get("id"), ID_MAX), rank=rank,
            symbol=_label(get("symbol"), SYMBOL_MAX), side=_label(get("side"), 8), outcome=Outcome.REJECTED,
            reason=reason, score=score if score is not None and SCORE.contains(score) else None))

    def screen(self, raw: Any, index: int, rank: int) -> None:
        if not isinstance(raw, Mapping):
            self.rejected.append(SignalOutcome(
                signal_id="", rank=rank, symbol="", side="", outcome=Outcome.REJECTED,
                reason=f"signal #{index + 1} is not an object: {shown(raw, 60)}"))
            return
        raw = dict(raw)  # one read of each key, whatever kind of mapping this is
        signal_id, problem = _id_text(raw.get("id"))
        if problem is not None:
            self.reject(raw, rank, problem, signal_id)
            return
        if signal_id in self.seen_ids:
            self.reject(raw, rank, f"duplicate signal id {signal_id} in this wave", signal_id)
            return
        self.seen_ids.add(signal_id)
        if signal_id in self.handled:
            self.reject(raw, rank, repeat_reason(self.handled[signal_id]), signal_id)
            return
        symbol = raw.get("symbol")
        if not isinstance(symbol, str) or not symbol.strip():
            self.reject(raw, rank, "empty or missing symbol", signal_id)
            return
        problem = identifier_problem(symbol, what="symbol")
        if problem is not None:
            self.reject(raw, rank, f"symbol {shown(symbol, 40)} {problem}", signal_id)
            return
        if symbol not in self.markets:
            self.reject(raw, rank, f"unknown symbol {symbol!r}: not listed by the exchange", signal_id)
            return
        side_raw = raw.get("side")
        side = _SIDES.get(side_raw.lower()) if isinstance(side_raw, str) and len(side_raw) <= 8 else None
        if side is None:
            self.reject(raw, rank, f"side {shown(side_raw, 20)} is not one of long, short, buy, sell", signal_id)
            return
        score = raw.get("score")
        number = finite(score)
        if number is None:
            self.reject(raw, rank, f"score {shown(score, 30)} is not a finite number", signal_id)
            return
        if not SCORE.contains(number):
            self.reject(raw, rank, f"score {number:g} is not {SCORE.describe()}", signal_id)
            return
        if symbol in self.busy:
            self.reject(raw, rank, f"a position is already open or opening on {symbol}", signal_id)
            return
        if symbol in self.claimed:
            self.reject(raw, rank, f"{symbol} is already targeted by higher-ranked signal {self.claimed[symbol]} "
                        "in this wave", signal_id)
            return
        self.claimed[symbol] = signal_id
        self.candidates.append(Signal(id=signal_id, symbol=symbol, side=side, score=number, rank=rank))


def screen_size(
    size_usdt: float, leverage: int, price: float, market: Market, free_margin: float
) -> tuple[float, str | None]:
    """Quantity to order, or a rejection reason (unusable price, below min notional, not enough margin)."""
    if finite(price) is None or price <= 0:
        return 0.0, f"the exchange gave an unusable price {shown(price, 30)} for {market.symbol}"
    try:
        quantity = order_quantity(size_usdt, price, market)
    except (ValueError, ArithmeticError) as exc:  # e.g. a price so small the quantity is infinite
        return 0.0, f"cannot size an order at price {price:g} on {market.symbol}: {exc}"
    notional = quantity * price
    if quantity <= 0 or notional < market.min_notional:
        return quantity, (
            f"order of {quantity:g} {market.symbol} ({notional:.2f} USDT) is below the market's "
            f"min notional of {market.min_notional:g} USDT"
        )
    margin = notional / leverage
    if margin > free_margin:
        return quantity, f"not enough free margin: need {margin:.2f} USDT, {max(free_margin, 0):.2f} free"
    return quantity, None
