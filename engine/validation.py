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

from engine.model import HandledSignal, Market, Outcome, Side, Signal, SignalOutcome
from engine.sizing import order_quantity

_SIDES = {"long": Side.LONG, "buy": Side.LONG, "short": Side.SHORT, "sell": Side.SHORT}


@attrs.frozen
class Screened:
    candidates: tuple[Signal, ...]  # valid, best rank first
    rejected: tuple[SignalOutcome, ...]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _score_key(raw: Mapping[str, Any]) -> float:
    score = raw.get("score") if isinstance(raw, Mapping) else None
    ok = isinstance(score, int | float) and not isinstance(score, bool) and math.isfinite(score)
    return -float(score) if ok else math.inf  # type: ignore[arg-type]


def _ranking(raw_signals: Sequence[Any]) -> list[int]:
    """Indexes of the signals, best score first (stable; unusable scores last)."""
    return sorted(range(len(raw_signals)), key=lambda i: _score_key(raw_signals[i]))


def _valid_id(raw: Any) -> str | None:
    if not isinstance(raw, Mapping):
        return None
    raw_id = raw.get("id")
    if raw_id is None or isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        return None
    return _text(raw_id) or None


def claims_of(raw_signals: Sequence[Any]) -> dict[str, int]:
    """The ids a wave handles, each with the rank of the copy it handles (the best-ranked one).

    Every well-formed id counts, rejected or not: the signal service sent it, the
    engine answered it, and a repeat must be recognised as one.
    """
    claims: dict[str, int] = {}
    for rank, index in enumerate(_ranking(raw_signals)):
        signal_id = _valid_id(raw_signals[index])
        if signal_id is not None and signal_id not in claims:
            claims[signal_id] = rank
    return claims


def repeat_reason(earlier: HandledSignal) -> str:
    how = f" ({earlier.outcome})" if earlier.outcome is not None else " (its outcome is not stored)"
    return f"signal id {earlier.signal_id} was already handled in wave {earlier.wave_id}{how}"


def screen_wave(
    raw_signals: Sequence[Any],
    markets: Mapping[str, Market],
    busy_symbols: set[str] | frozenset[str],
    handled: Mapping[str, HandledSignal] | None = None,
) -> Screened:
    """Rank by score (stable, best first; unusable scores last) and reject what can't trade.

    `handled` holds the ids earlier waves handled (the stored memory): a repeat is
    rejected, naming the wave that handled it, so a redelivered signal never trades twice.
    """
    handled = handled or {}
    order = _ranking(raw_signals)
    seen_ids: set[str] = set()
    claimed: dict[str, str] = {}
    candidates: list[Signal] = []
    rejected: list[SignalOutcome] = []
    for rank, index in enumerate(order):
        raw = raw_signals[index]
        if not isinstance(raw, Mapping):
            rejected.append(SignalOutcome(
                signal_id="", rank=rank, symbol="", side="", outcome=Outcome.REJECTED,
                reason=f"signal #{index + 1} is not an object: {raw!r}"))
            continue
        signal_id, symbol, side_text = _text(raw.get("id")), _text(raw.get("symbol")), _text(raw.get("side"))
        score = raw.get("score")

        def reject(reason: str, *, _id: str = signal_id, _sym: str = symbol,
                   _side: str = side_text, _rank: int = rank, _score: Any = score) -> None:
            number = (float(_score) if isinstance(_score, int | float) and not isinstance(_score, bool)
                      and math.isfinite(_score) else None)
            rejected.append(SignalOutcome(signal_id=_id, rank=_rank, symbol=_sym, side=_side,
                                          outcome=Outcome.REJECTED, reason=reason, score=number))

        raw_id = raw.get("id")
        if raw_id is None or isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not signal_id:
            reject(f"signal id {raw_id!r} is missing or not a string/integer")
            continue
        if signal_id in seen_ids:
            reject(f"duplicate signal id {signal_id} in this wave")
            continue
        seen_ids.add(signal_id)
        if signal_id in handled:
            reject(repeat_reason(handled[signal_id]))
            continue
        if not isinstance(raw.get("symbol"), str) or not symbol.strip():
            reject("empty or missing symbol")
            continue
        if symbol not in markets:
            reject(f"unknown symbol {symbol!r}: not listed by the exchange")
            continue
        side = _SIDES.get(side_text.lower()) if isinstance(raw.get("side"), str) else None
        if side is None:
            reject(f"side {raw.get('side')!r} is not one of long, short, buy, sell")
            continue
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            reject(f"score {score!r} is not a finite number")
            continue
        if symbol in busy_symbols:
            reject(f"a position is already open or opening on {symbol}")
            continue
        if symbol in claimed:
            reject(f"{symbol} is already targeted by higher-ranked signal {claimed[symbol]} in this wave")
            continue
        claimed[symbol] = signal_id
        candidates.append(Signal(id=signal_id, symbol=symbol, side=side, score=float(score), rank=rank))
    return Screened(tuple(candidates), tuple(rejected))


def screen_size(
    size_usdt: float, leverage: int, price: float, market: Market, free_margin: float
) -> tuple[float, str | None]:
    """Quantity to order, or a rejection reason (below min notional, not enough margin)."""
    quantity = order_quantity(size_usdt, price, market)
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
