"""What a follower does on the exchange for its position: move the stop, confirm an exit,
repair from a fresh read, close on the operator's word, record the exit.

Apart from the trailing manager because the manager is the service (prices in,
one follower task per position, who is followed) and this is the one job of
changing a position's orders. Every method here runs inside the position's
follower task — the only task that touches that position's orders — so two of
them never overlap for one position, and nothing else (the sweep included) ever
cancels or replaces a followed position's stop: the sweep only asks.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import trio

from engine import ids
from engine.allocation import allocate
from engine.call_points import CallPoint
from engine.events import EventKind
from engine.model import (
    ExitReason,
    OrderKind,
    OrderRecord,
    OrderRequest,
    OrderState,
    OrderStatus,
    Position,
    PositionStatus,
)
from engine.nursery import orders
from engine.nursery.context import EngineContext
from engine.nursery.follower import Follower
from engine.nursery.position_book import PositionBook
from engine.sizing import initial_stop_price, realized_pnl
from engine.trailing import TrailState


class FollowerActions:
    def __init__(self, ctx: EngineContext, book: PositionBook, prices: Mapping[str, float],
                 min_interval: float) -> None:
        self.ctx = ctx
        self.book = book
        self._prices = prices  # the manager's newest price per symbol (read only here)
        self._min_interval = min_interval

    def emit(self, f: Follower) -> orders.Emit:
        return lambda kind, detail: self.ctx.event(kind, detail, position_id=f.position.id)

    async def move(self, f: Follower, stop_price: float) -> None:
        """New stop first, then cancel the old: never a moment without one."""
        ctx, p = self.ctx, f.position
        seq = f.stop_seq + 1
        request = OrderRequest(p.symbol, p.side.exit_order_side, OrderKind.STOP, p.quantity,
                               ids.stop_id(p.id, seq), stop_price)
        with trio.move_on_after(ctx.config.cleanup_timeout, shield=True):
            placed = await orders.place(ctx, request, self.emit(f))
            if placed.state is None:
                ctx.event(EventKind.STOP_MOVE_FAILED,
                          f"to {stop_price:g}: {placed.error}; stop stays at {f.ts.live_stop:g}", position_id=p.id)
                # The old stop stays live. Try again after a backoff, whatever the prices say,
                # so a refused level (e.g. "would immediately trigger") is never hammered.
                f.retry_at = trio.current_time() + max(ctx.config.protect_retry.backoff, self._min_interval, 0.1)
                return
            old = f.stop_cid
            f.stop_cid, f.stop_seq, f.moves = request.client_order_id, seq, f.moves + 1
            if placed.state.status is OrderStatus.FILLED:
                await self.closed(f, placed.state.average_price, ExitReason.TRAILING_STOP)
                return
            f.ts = f.ts.moved(stop_price, trio.current_time())
            self.save(f, attrs.evolve(p, stop_price=stop_price, stop_client_id=f.stop_cid),
                       OrderRecord(f.stop_cid, p.id, p.symbol, OrderKind.STOP, p.side.exit_order_side, p.quantity,
                                   OrderStatus.NEW, stop_price=stop_price, updated_at=ctx.clock.now()))
            ctx.event(EventKind.STOP_MOVED, f"{old} -> {f.stop_cid} @ {stop_price:g}", position_id=p.id)
            if not await orders.cancel(ctx, p.symbol, old, self.emit(f)):
                f.stale.add(old)  # still protected (two stops); the sweep cancels it later
                ctx.event(EventKind.STALE_STOP, f"{old} could not be cancelled yet", position_id=p.id)

    def save(self, f: Follower, position: Position, *records: OrderRecord) -> None:
        f.changes += 1
        f.position = position
        self.book.save(position)
        self.ctx.writer.submit(*records)
        self.ctx.writer.submit_trailing(f.position.id, f)

    async def confirm_exit(self, f: Follower) -> None:
        """Our feed crossed the stop: ask the exchange whether the stop really filled."""
        state, known = await orders.lookup(self.ctx, f.position.symbol, f.stop_cid, self.emit(f))
        if known and state is not None and state.filled_quantity > 0:
            await self.stop_filled(f, state)
        elif known and (state is None or state.status is not OrderStatus.NEW):
            await self.repair(f)
        # Still resting: the exchange has not crossed it yet; the next price decides.

    async def stop_filled(self, f: Follower, state: OrderState) -> None:
        """The stop filled: the position is closed, or (its market order filled in part, the rest
        expired in the price band) smaller, and what is left gets a new stop."""
        p = f.position
        if orders.fills_all(state, p.quantity):
            await self.closed(f, state.average_price, self.stop_exit(f))
            return
        left = p.quantity - state.filled_quantity
        self.ctx.event(EventKind.SIZE_CHANGED, f"{p.quantity:g} -> {left:g} (stop {f.stop_cid} filled "
                                               f"{state.filled_quantity:g} @ {state.average_price}; the rest expired)",
                       position_id=p.id)
        self.save(f, attrs.evolve(p, quantity=left))
        await self.replace_missing_stop(f)

    async def repair(self, f: Follower) -> None:
        """Make the exchange match, from a fresh read of it.

        A filled stop closes the position. Otherwise the position's share of what the
        exchange holds on the symbol (`engine.allocation`: oldest stored position first)
        decides: nothing left is an exit (`manual`); less than stored (closed in part
        outside trio-bot) shrinks the position and its stop to what is held. More than
        stored is never taken here: the sweep adopts the excess as a position of its own.
        Then a missing stop is replaced, a stop for another size than held is replaced by
        one for exactly the held size (new first, then the old goes), and older stops
        still live are cancelled.
        """
        ctx, p = self.ctx, f.position
        state, known = await orders.lookup(ctx, p.symbol, f.stop_cid, self.emit(f))
        if not known:
            return
        if state is not None and state.filled_quantity > 0:
            await self.stop_filled(f, state)
            return
        try:
            held = [x for x in await ctx.read(CallPoint.QUERY, ctx.exchange.fetch_positions) if x.symbol == p.symbol]
        except Exception:
            return  # the next repair request (or sweep) tries again
        step = ctx.markets[p.symbol].step_size
        siblings = [x for x in self.book.with_status(PositionStatus.OPEN) if x.symbol == p.symbol and x.id != p.id]
        share = allocate(held[0] if held else None, [*siblings, p], step).share(p.id)
        if share <= step / 2:
            await self.closed(f, self._prices.get(p.symbol), ExitReason.MANUAL)
            return
        if share < p.quantity - step / 2:
            ctx.event(EventKind.SIZE_CHANGED, f"{p.quantity:g} -> {share:g} (the exchange holds less: closed in "
                      "part outside trio-bot)", position_id=p.id)
            self.save(f, attrs.evolve(p, quantity=share))
        live = state is not None and state.status is OrderStatus.NEW
        if live and state is not None and abs(state.quantity - f.position.quantity) > step / 2:
            await self.move(f, f.ts.live_stop)  # a stop for the held size first, then the other one goes
        elif not live:
            await self.replace_missing_stop(f)
        await self.cancel_stale(f)

    async def cancel_stale(self, f: Follower) -> None:
        for cid in sorted(f.stale):
            if cid == f.stop_cid or await orders.cancel(self.ctx, f.position.symbol, cid, self.emit(f)):
                f.stale.discard(cid)

    async def replace_missing_stop(self, f: Follower) -> None:
        ctx, p = self.ctx, f.position
        price = self._prices.get(p.symbol)
        if price is None:  # the feed has said nothing yet (start-up): ask, a stale level could be refused
            try:
                price = (await ctx.read(CallPoint.QUERY, ctx.exchange.fetch_prices, [p.symbol])).get(p.symbol)
            except Exception:
                price = None
        stop = f.ts.live_stop
        if price is not None and f.ts.crossed(price):
            # The old level is already through the market: protect from the current price.
            stop = initial_stop_price(p.side, price, ctx.config.stop_loss_percent, ctx.markets[p.symbol].tick_size)
        seq = f.stop_seq + 1
        request = OrderRequest(p.symbol, p.side.exit_order_side, OrderKind.STOP, p.quantity,
                               ids.stop_id(p.id, seq), stop)
        close = OrderRequest(p.symbol, p.side.exit_order_side, OrderKind.CLOSE, p.quantity, ids.close_id(p.id, seq))
        ctx.event(EventKind.STOP_MISSING, f"{f.stop_cid} is not live; placing {request.client_order_id} @ {stop:g}",
                  position_id=p.id)
        with trio.move_on_after(ctx.config.cleanup_timeout, shield=True):
            result = await orders.protect_or_close(ctx, request, close, self.emit(f))
            if result.protected:
                f.stop_cid, f.stop_seq = request.client_order_id, seq
                f.ts = attrs.evolve(f.ts, live_stop=stop, wanted_stop=stop) if stop != f.ts.live_stop else f.ts
                self.save(f, attrs.evolve(p, stop_price=stop, stop_client_id=f.stop_cid),
                           OrderRecord(f.stop_cid, p.id, p.symbol, OrderKind.STOP, p.side.exit_order_side,
                                       p.quantity, OrderStatus.NEW, stop_price=stop, updated_at=ctx.clock.now()))
            elif result.stopped_out:
                assert result.stop is not None
                f.stop_cid, f.stop_seq = request.client_order_id, seq
                await self.closed(f, result.stop.average_price, self.stop_exit(f))
            elif result.closed:
                await self.closed(f, result.close_price, ExitReason.EMERGENCY_CLOSE)

    async def operator_close(self, f: Follower) -> None:
        ctx, p = self.ctx, f.position
        f.stop_seq += 1  # the close takes a fresh, deterministic id; later stops never reuse it
        close = OrderRequest(p.symbol, p.side.exit_order_side, OrderKind.CLOSE, p.quantity,
                             ids.close_id(p.id, f.stop_seq))
        ctx.event(EventKind.OPERATOR_CLOSE, f"reduce-only market close {close.client_order_id}", position_id=p.id)
        error: str | None = None
        with trio.move_on_after(ctx.config.cleanup_timeout, shield=True):
            placed = await orders.place(ctx, close, self.emit(f), retry_refused=True)
            filled = placed.state.filled_quantity if placed.state is not None else 0.0
            if placed.state is not None and filled > 0:
                ctx.writer.submit(OrderRecord(close.client_order_id, p.id, p.symbol, OrderKind.CLOSE, close.side,
                                              filled, OrderStatus.FILLED,
                                              fill_price=placed.state.average_price, updated_at=ctx.clock.now()))
            if placed.state is not None and orders.fills_all(placed.state, p.quantity):
                await self.closed(f, placed.state.average_price, ExitReason.OPERATOR)
            elif filled > 0:  # the rest expired (price band): still held, still protected by its stop
                error = f"closed only {filled:g} of {p.quantity:g}; the rest stays, protected by its stop"
                ctx.event(EventKind.SIZE_CHANGED, f"{p.quantity:g} -> {p.quantity - filled:g} ({error})",
                          position_id=p.id)
                self.save(f, attrs.evolve(p, quantity=p.quantity - filled))
                await self.repair(f)
            else:
                error = placed.error or "the close did not fill"
                ctx.event(EventKind.OPERATOR_CLOSE_FAILED, f"{error}; the stop stays in place", position_id=p.id)
                await self.repair(f)  # e.g. the stop fired meanwhile: record that exit
        if not f.closed and error is None:
            error = f"no answer within cleanup_timeout ({ctx.config.cleanup_timeout:g}s); the stop stays in place"
        requests, f.close_requests = f.close_requests, []
        for request in requests:
            request.closed = f.closed
            request.exit_price = f.position.exit_price
            request.error = None if f.closed else error
            request.done.set()

    async def closed(self, f: Follower, exit_price: float | None, reason: ExitReason) -> None:
        """The position is gone from the exchange: record the exit, clear its leftover orders."""
        ctx, p = self.ctx, f.position
        f.closed = True
        f.ts = attrs.evolve(f.ts, state=TrailState.TRIGGERED)
        pnl = realized_pnl(p.side, p.entry_price, exit_price, p.quantity) \
            if exit_price is not None and p.entry_price is not None else None
        closed = attrs.evolve(p, status=PositionStatus.CLOSED, exit_price=exit_price, exit_reason=reason,
                              realized_pnl=pnl, closed_at=ctx.clock.now())
        self.save(f, closed)
        ctx.event(EventKind.POSITION_CLOSED, f"{reason} @ {exit_price}, pnl {pnl}", position_id=p.id)
        with trio.move_on_after(ctx.config.cleanup_timeout, shield=True):
            try:
                left = await ctx.read(CallPoint.QUERY, ctx.exchange.fetch_open_orders, p.symbol)
            except Exception as exc:
                ctx.event(EventKind.CLEANUP_FAILED, f"could not list orders left on {p.symbol}: {exc}",
                          position_id=p.id)
                return
            for order in left:
                # Only this position's own orders: another position on the symbol (opened by a
                # later wave meanwhile) keeps its stop. Strangers' orders are the sweep's to judge.
                if order.reduce_only and ids.position_of(order.client_order_id) == p.id:
                    await orders.cancel(ctx, p.symbol, order.client_order_id, self.emit(f))

    @staticmethod
    def stop_exit(f: Follower) -> ExitReason:
        return ExitReason.TRAILING_STOP if f.ts.activated else ExitReason.STOP_LOSS
