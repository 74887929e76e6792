"""``amarktai breakers [reset ID --reason TEXT]``, ``amarktai halt``, ``amarktai resume``.

``breakers`` reads the ledger (read-only, engine running or not). The write
commands go to the engine when one runs (it is the ledger's only writer): over
its control socket (``ops.control``), "engine running: applied live". When no
engine runs they take the engine lock themselves and record the trip or the
reset in the ledger, "recorded; applied when the engine starts": the next
engine loads unreset trips at start-up, sets its bots accordingly and
re-evaluates the breakers on its own marks.

Offline records use ledger time (the newest fill or snapshot, else the wall
clock), as the engine stamps its own records with its clock (market time in a
replay); a reset is never stamped before its trip.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from amarktai_tui.config import Settings
from amarktai_tui.ledger import reader
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.locations import db_path
from amarktai_tui.ops.control import ControlError, send_or_record, trip_json

LIVE = "engine running: applied live"
RECORDED = "recorded; applied when the engine starts"
HISTORY_LIMIT = 20  # trips shown by `amarktai breakers` (newest first) unless --limit says otherwise
CONNECT_WAIT_S = 5.0  # an engine that holds the lock but has no socket yet (starting up): wait this long
COMMAND_TIMEOUT_S = 10.0
_DAY_MS = 86_400_000
HALT_REASON = "no reason given"  # `amarktai halt` without --reason


# -- amarktai breakers ----------------------------------------------------------------------


def breakers_report(
    conn: sqlite3.Connection, *, engine_running: bool, limit: int = HISTORY_LIMIT
) -> dict[str, Any]:
    """``amarktai breakers --json``: ``{"engine_running": bool, "active": [TRIP], "history": [TRIP],
    "gauges": {"bots": {"<bot id>": [hwm]}, "account_hwm": float, "day": int, "day_start": str|null}|null}``.

    ``active``: unreset trips, oldest first. ``history``: the latest ``limit`` trips, newest
    first, each with its reset (``{"ts", "actor", "reason"}``) or null. TRIP is
    ``control.trip_json``'s shape. ``gauges``: what the engine saved with its last tick
    (high-water marks in quote currency; ``day`` = UTC days since the epoch).
    Raises LedgerDataError when a stored figure is malformed.
    """
    raw = reader.kv_get(conn, "risk.gauges")
    gauges = None
    if raw is not None:
        try:
            gauges = json.loads(raw)
        except ValueError:
            raise reader.LedgerDataError(f"kv risk.gauges: expected JSON, found {raw[:40]!r}") from None
    return {
        "engine_running": engine_running,
        "active": [trip_json(t, t.bot) for t in reader.active_trips(conn)],
        "history": [trip_json(t, t.bot, t.reset) for t in reader.breaker_trips(conn, limit)],
        "gauges": gauges,
    }


def show_breakers(conn: sqlite3.Connection, *, engine_running: bool, as_json: bool, limit: int) -> int:
    """Print ``breakers_report`` as JSON or as compact tables; exit code."""
    rep = breakers_report(conn, engine_running=engine_running, limit=limit)
    if as_json:
        json.dump(rep, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    active, history = rep["active"], rep["history"]
    halted = any(t["breaker"] == "halt" for t in active)
    print(
        f"engine {'running' if engine_running else 'stopped'}  "
        f"{'HALTED  ' if halted else ''}{len(active)} active trip{'' if len(active) == 1 else 's'}"
    )
    print("\nActive trips")
    _table(active, reset_column=False)
    print(f"\nRecent trips (newest {limit}, newest first)")
    _table(history, reset_column=True)
    print("\nGauges (saved with the engine's last tick)")
    g = rep["gauges"]
    if not g:
        print("  none yet")
        return 0
    day = g.get("day")
    day_text = "" if day is None else f" on {datetime.fromtimestamp(day * _DAY_MS / 1000, UTC):%Y-%m-%d}"
    start = g.get("day_start")
    print(
        f"  account high-water mark {_money(g.get('account_hwm'))}"
        f"  day start{day_text} {'-' if start is None else _money(start)}"
    )
    names = {b.id: b.name for b in reader.bots(conn)}
    for bot_id, marks in sorted(g.get("bots", {}).items(), key=lambda kv: int(kv[0])):
        name = names.get(int(bot_id), f"bot {bot_id}")
        print(f"  {name:<20} high-water mark {_money(marks[0] if marks else None)}")
    return 0


def _table(trips: list[dict[str, Any]], *, reset_column: bool) -> None:
    if not trips:
        print("  none")
        return
    last = "RESET" if reset_column else "MESSAGE"
    print(
        f"  {'ID':>4}  {'TIME (UTC)':<16}  {'SCOPE':<7}  {'BOT':<16}  {'BREAKER':<18}  {'VALUE':>9}  {'LIMIT':>9}  {last}"
    )
    for t in trips:
        if reset_column:
            r = t["reset"]
            tail = "active" if r is None else f"{_ts(r['ts'])} by {r['actor']}: {r['reason']}"
        else:
            tail = t["message"]
        print(
            f"  {t['id']:>4}  {_ts(t['ts']):<16}  {t['scope']:<7}  {(t['bot'] or '-')[:16]:<16}  "
            f"{t['breaker']:<18}  {_figure(t['value']):>9}  {_figure(t['threshold']):>9}  {tail}"
        )


def _ts(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%d %H:%M}"


def _figure(text: str) -> str:
    return f"{Decimal(text).normalize():f}"


def _money(x: Any) -> str:
    return "-" if x is None else f"{Decimal(str(x)):.2f}"


# -- amarktai halt | resume | breakers reset -------------------------------------------------


def request_of(args: argparse.Namespace) -> dict[str, Any]:
    """The control request for the parsed command line (reason already checked non-empty by the CLI)."""
    reason = getattr(args, "reason", None)
    if args.command == "breakers":
        return {"cmd": "reset", "trip_id": args.trip_id, "reason": reason, "actor": "cli"}
    if reason is None:
        reason = HALT_REASON if args.command == "halt" else "resumed"
    return {"cmd": args.command, "reason": reason, "actor": "cli"}


def write_command(args: argparse.Namespace, data_dir: Path, *, settings: Settings) -> int:
    """Apply halt / resume / reset live (engine running) or record it (no engine); exit code.

    A reset or a resume needs the TOTP second factor when it is enabled (``--totp CODE``, or
    the prompt on a terminal; ``ops.totp_commands.second_factor``); halting never does.
    """
    from amarktai_tui.ledger.schema import SchemaTooNewError
    from amarktai_tui.ops.totp_commands import second_factor

    req = request_of(args)
    if req["cmd"] in ("reset", "resume"):
        what = "breakers reset" if req["cmd"] == "reset" else "resume"
        refused = second_factor(getattr(args, "totp", None), settings, data_dir, what)
        if refused is not None:
            return refused
    db = db_path(data_dir)
    if not db.exists():
        print(f"amarktai: no ledger at {db}: run the engine first (amarktai --daemon ...)", file=sys.stderr)
        return 1
    try:
        reply, applied = _apply(data_dir, req)
    except (ControlError, SchemaTooNewError) as exc:
        print(f"amarktai: {exc}", file=sys.stderr)
        return 1
    except (sqlite3.DatabaseError, reader.LedgerDataError) as exc:
        print(f"amarktai: ledger {db} unreadable: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"amarktai: {reply.get('error', 'failed')}", file=sys.stderr)
        return 1
    out = {
        "ok": True,
        "action": req["cmd"],
        "applied": applied,
        "changed": bool(reply.get("changed")),
        "trip": reply.get("trip"),
        "retripped": reply.get("retripped"),
    }
    out["message"] = _describe(out)
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(out["message"])
    return 0


def _apply(data_dir: Path, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(reply, "live" | "recorded"). Takes the engine lock, or talks to the engine that holds it."""
    return send_or_record(
        data_dir,
        req,
        lambda: _record(data_dir, req),
        connect_wait_s=CONNECT_WAIT_S,
        timeout_s=COMMAND_TIMEOUT_S,
    )


async def _record(data_dir: Path, req: dict[str, Any]) -> dict[str, Any]:
    """No engine runs (we hold its lock): record the halt trip or the reset in the ledger."""
    from amarktai_tui.ledger.store import LedgerStore, TripReset, WriteBatch
    from amarktai_tui.ops.commands import ledger_now_ms
    from amarktai_tui.risk.breakers import Breaker, Scope, Trip

    store = await LedgerStore.open(db_path(data_dir))  # migrates an older ledger first
    try:
        conn = connect_readonly(str(db_path(data_dir)))
        try:
            now = ledger_now_ms(conn)
            halt = next((t for t in reader.active_trips(conn) if t.breaker == Breaker.HALT), None)
            cmd, reason = req["cmd"], req.get("reason")
            if cmd == "halt":
                if halt is not None:
                    return {"ok": True, "changed": False, "trip": trip_json(halt), "retripped": None}
                why = reason or HALT_REASON
                trip = Trip(
                    reader.max_trip_id(conn) + 1, now, Scope.ACCOUNT, None, Breaker.HALT, Decimal(0),
                    Decimal("0.000000"), "cli", f"emergency stop: {why} (by cli)",
                )  # fmt: skip
                await store.write(WriteBatch(trips=[trip]))
                return {"ok": True, "changed": True, "trip": trip_json(trip), "retripped": None}
            if cmd == "resume":
                if halt is None:
                    return {"ok": True, "changed": False, "trip": None, "retripped": None}
                row: reader.TripRow | None = halt
                reason = reason if reason is not None else "resumed"
            else:
                row = reader.breaker_trip(conn, int(req["trip_id"]))
            if row is None:
                return {"ok": False, "error": f"no trip with id {req['trip_id']}"}
            if row.reset is not None:
                r = row.reset
                return {
                    "ok": False,
                    "error": f"trip {row.id} was already reset at {_ts(r.ts)} UTC by {r.actor}: {r.reason}",
                }
            if not (reason or "").strip():
                return {"ok": False, "error": "a reset needs a reason"}
            reset = TripReset(row.id, max(now, row.ts), "cli", str(reason).strip())
            await store.write(WriteBatch(resets=[reset]))
            done = {"ts": reset.ts, "actor": reset.actor, "reason": reset.reason}
            return {"ok": True, "changed": True, "trip": trip_json(row, row.bot, done), "retripped": None}
        finally:
            conn.close()
    finally:
        await store.close()


def _describe(out: dict[str, Any]) -> str:
    """One line for people: what happened, and which path was taken."""
    how = LIVE if out["applied"] == "live" else RECORDED
    trip, again = out["trip"], out["retripped"]
    action = out["action"]
    if action == "halt":
        if not out["changed"]:
            return f"already halted (trip {trip['id']}: {trip['message']})" if trip else "already halted"
        return f"halted: trip {trip['id']}: {trip['message']} ({how})"
    if action == "resume" and not out["changed"]:
        return "not halted: nothing to resume (reset other trips with `amarktai breakers reset ID --reason TEXT`)"
    r = trip.get("reset") or {}
    what = "resumed" if action == "resume" else "reset"
    line = f"{what}: trip {trip['id']} ({trip['breaker']}) reset by {r.get('actor', 'cli')}: {r.get('reason', '')} ({how})"
    if again is not None:
        line += f"; it still holds and tripped again as trip {again['id']}: {again['message']}"
    return line
