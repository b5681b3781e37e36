"""The read-only report commands over the store (`waves`, `positions`, `events`, `export`,
`report`) and `db migrate`: each opens the store, reads, closes it, and prints a table or
the JSON shape from `engine.report` that the operator's API serves too.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import trio

from engine.errors import ConfigError
from trio_bot.cli import EXIT_OK


def store_command(args: argparse.Namespace) -> int:
    """Run one of this module's commands inside Trio, with the asyncio loop the drivers need."""
    commands = {"waves": _waves, "positions": _positions, "events": _events, "db": _migrate,
                "export": _export, "report": _report}
    return trio.run(_with_loop, commands[args.command], args)


def positions_text(rows: list[dict[str, Any]]) -> str:
    from trio_bot.tables import render_table

    if not rows:
        return "no positions"
    return render_table(["id", "signal", "symbol", "side", "status", "qty", "entry", "stop", "exit", "exit reason"],
                  [[r["id"], r["signal_id"], r["symbol"], r["side"], r["status"], r["quantity"],
                    r["entry_price"], r["stop_price"], r["exit_price"], r["exit_reason"]] for r in rows])


async def _with_loop(command: Any, args: argparse.Namespace) -> int:
    from trio_bot.aio import asyncio_loop

    async with asyncio_loop():
        result: int = await command(args)
        return result


async def _migrate(args: argparse.Namespace) -> int:
    from trio_bot.storage import open_storage

    store = await open_storage(args.db, call_timeout=30.0)  # opening migrates
    try:
        version = await store.verify_schema()  # what is there, not just what schema_version says
    finally:
        await store.aclose()
    print(f"trio-bot: schema at version {version}")
    return EXIT_OK


async def _waves(args: argparse.Namespace) -> int:
    from engine.report import wave_json
    from trio_bot.storage import open_storage_read_only
    from trio_bot.tables import wave_table

    store = await open_storage_read_only(args.db, call_timeout=10.0)
    try:
        records = await store.waves(last=args.last)
        positions = {p.id: p for p in await store.positions(include_closed=True)}
    finally:
        await store.aclose()
    shaped = [wave_json(w, positions) for w in records]
    if args.json:
        print(json.dumps({"waves": shaped}, indent=2))
    else:
        stops = {pid: p.stop_price for pid, p in positions.items()}
        print("\n\n".join(wave_table(w, stops) for w in shaped) or "no waves")
    return EXIT_OK


async def _events(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from engine.report import event_json
    from trio_bot.storage import open_storage_read_only
    from trio_bot.tables import render_table

    store = await open_storage_read_only(args.db, call_timeout=10.0)
    try:
        found = await store.events(position_id=args.position, signal_id=args.signal)
    finally:
        await store.aclose()
    if args.json:
        print(json.dumps({"events": [event_json(e) for e in found]}, indent=2))
    elif not found:
        print("no events")
    else:
        print(render_table(["time (UTC)", "event", "wave", "signal", "position", "detail"],
                           [[datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], e.kind,
                             e.wave_id, e.signal_id, e.position_id, e.detail] for e in found]))
    return EXIT_OK


async def _stored_positions(db: str) -> list[Any]:
    from trio_bot.storage import open_storage_read_only

    store = await open_storage_read_only(db, call_timeout=30.0)  # a report never migrates
    try:
        return await store.positions(include_closed=True)
    finally:
        await store.aclose()


async def _export(args: argparse.Namespace) -> int:
    from trio_bot import exports
    from trio_bot.api.app import BadParameter, parse_since

    try:
        since = parse_since(args.since, "--since")
    except BadParameter as exc:
        raise ConfigError("--since", args.since, "an ISO 8601 date like 2026-01-31 or epoch seconds") from exc
    rows = exports.trades(await _stored_positions(args.db), since=since)
    print(exports.to_csv(rows) if args.format == "csv" else exports.to_json(rows), end="" if args.format == "csv"
          else "\n")
    return EXIT_OK


async def _report(args: argparse.Namespace) -> int:
    import time

    from trio_bot import exports
    from trio_bot.tables import render_table

    if not 1 <= args.days <= 3660:
        raise ConfigError("--days", args.days, "an integer between 1 and 3660")
    report = exports.daily_report(await _stored_positions(args.db), days=args.days, now=time.time())
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK

    def rate(x: float | None) -> str:
        return "—" if x is None else f"{x:.0%}"

    rows = [[d["date"], d["trades"], d["wins"], d["losses"], rate(d["win_rate"]), f"{d['realized_pnl']:+.4f}"]
            for d in report["days"]]
    t = report["total"]
    rows.append(["total", t["trades"], t["wins"], t["losses"], rate(t["win_rate"]), f"{t['realized_pnl']:+.4f}"])
    print(render_table(["day (UTC)", "trades", "wins", "losses", "win rate", "realized PnL"], rows))
    return EXIT_OK


async def _positions(args: argparse.Namespace) -> int:
    from engine.report import position_json, reportable_positions
    from trio_bot.storage import open_storage_read_only

    store = await open_storage_read_only(args.db, call_timeout=10.0)
    try:
        rows = reportable_positions(await store.positions(include_closed=args.all))
    finally:
        await store.aclose()
    shaped = [position_json(p) for p in rows]
    if args.json:
        print(json.dumps({"positions": shaped}, indent=2))
    else:
        print(positions_text(shaped))
    return EXIT_OK
