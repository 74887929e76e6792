"""``amarktai autonomy``: the mode, the bounds, proposals and the history of automatic changes.

- ``autonomy status [--json]``: the mode (``[autonomy] mode``), the bounds, the pending proposals;
- ``autonomy list [--bot B] [--status S] [--limit N] [--json]``: ``bot_adjustments``, newest first;
- ``autonomy accept ID`` / ``reject ID`` / ``revert ID`` [``--json``]: answer a proposal, undo a change;
- ``autonomy mode [expert|autonomous]``: the mode is config (``[autonomy] mode``, or
  ``AMARKTAI_AUTONOMY__MODE``): shown, never written here; asking for the other mode prints the
  line to put in the config and exits 2 (nothing changed).

Reads use a read-only connection (engine running or not). The write commands follow ``bots
promote`` (``ops.stage_commands``): with an engine running they go over its control socket and its
``Adjuster`` applies them ("engine running: applied live"); with none, the CLI takes the engine lock
and applies them to the ledger itself (``Adjuster.offline``: params, risk mode, size multiplier,
exits and state are written to ``bots`` and loaded by the next engine; a capital move or a
replacement needs the engine: refused, "start the engine"), the audit entry written alongside.

Exit codes: 0 done; 2 a user's mistake or a refusal (no such adjustment, not pending, out of bounds
now, the engine refused it; one line); 1 the ledger or the engine could not be reached.

Control request (``ops.control``): ``{"cmd": "autonomy", "action": "accept" | "reject" | "revert",
"id": int, "actor": "cli"}`` or ``{"cmd": "autonomy", "action": "submit", "change": {"bot_id",
"source", "field", "after", "reason"}, "actor": str}``; reply ``{"ok": true, "adjustment": ADJ}``
(``Adjustment.to_json``) or ``{"ok": false, "error": str, "refused": bool}``.

``submit_change(settings, data_dir, change)`` is the same door for other commands
(``amarktai optimize --apply``): the running engine's Adjuster, else the offline one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amarktai_tui.config import Settings
from amarktai_tui.locations import db_path

if TYPE_CHECKING:  # the rest is imported when a command runs: building the CLI's parser stays cheap
    from amarktai_tui.autonomy.adjust_store import Adjustment
    from amarktai_tui.autonomy.changes import Change
    from amarktai_tui.engine.engine import TradingEngine

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
ACTIONS = ("accept", "reject", "revert")
MODES = ("expert", "autonomous")
STATUSES = ("applied", "proposed", "accepted", "rejected", "reverted", "refused")  # adjust_store.STATUSES


class _Refused(Exception):
    """A user's mistake or a refusal: one line, exit 2."""


def add_parser(sub: Any, common: Any) -> None:
    """``amarktai autonomy ...`` on the CLI's subparsers (``common(p, top=False)`` adds --config/--data-dir)."""
    a = sub.add_parser("autonomy", help="expert/autonomous mode, bounds, proposals and automatic changes")
    common(a, top=False)
    asub = a.add_subparsers(dest="autonomy_command", metavar="ACTION", required=True)
    st = asub.add_parser("status", help="the mode, the bounds and the pending proposals")
    ls = asub.add_parser("list", help="automatic changes, newest first")
    ls.add_argument("--bot", metavar="NAME_OR_ID", help="only this bot")
    ls.add_argument("--status", choices=STATUSES, help="only rows with this status")
    ls.add_argument("--limit", type=int, default=50, metavar="N", help="at most N rows (default 50)")
    acts = {
        "accept": "apply a pending proposal (clamped to the bounds)",
        "reject": "reject a pending proposal",
        "revert": "put back what an applied or accepted change replaced",
    }
    parsers = [st, ls]
    for name, text in acts.items():
        p = asub.add_parser(name, help=text)
        p.add_argument("id", type=int, metavar="ID", help="the adjustment's id (`amarktai autonomy list`)")
        parsers.append(p)
    md = asub.add_parser("mode", help="show the mode; how to switch it (it is config: [autonomy] mode)")
    md.add_argument("target", nargs="?", choices=MODES, help="the mode wanted")
    for p in (*parsers, md):
        common(p, top=False)
        p.add_argument("--json", action="store_true", help="machine-readable output")


def run_autonomy(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """``amarktai autonomy ...``; returns the exit code."""
    cmd = args.autonomy_command
    try:
        if cmd == "mode":
            return _mode(args, settings)
        if cmd == "status":
            return _status(args, settings, data_dir)
        if cmd == "list":
            return _list(args, data_dir)
        return _write(args, settings, data_dir)
    except _Refused as exc:
        print(f"amarktai autonomy {cmd}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as exc:
        print(f"amarktai: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except sqlite3.DatabaseError as exc:
        print(f"amarktai: ledger {db_path(data_dir)} unreadable: {exc}", file=sys.stderr)
        return EXIT_FAIL


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _ts(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%d %H:%M}"


def _short(v: Any, width: int = 40) -> str:
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def _line(a: Adjustment) -> str:
    ref = f" (#{a.ref_id})" if a.ref_id is not None else ""
    return (
        f"  #{a.id:<4} {_ts(a.ts)}  {a.bot[:16]:<16}  {a.source:<9}  {a.field:<15}  {a.status + ref:<15}"
        f"  {_short(a.before)} -> {_short(a.after)}  {a.reason}"
    )


# -- reads ---------------------------------------------------------------------------------------


def _mode(args: argparse.Namespace, settings: Settings) -> int:
    mode = settings.autonomy.mode
    if args.target is None or args.target == mode:
        if args.json:
            _print_json({"mode": mode})
        else:
            print(f"autonomy mode: {mode}" + (" (already)" if args.target else ""))
        return EXIT_OK
    raise _Refused(
        f'the mode is config: put `mode = "{args.target}"` under [autonomy] in the config file '
        f"(or set AMARKTAI_AUTONOMY__MODE={args.target}) and restart the engine; it is {mode} now"
    )


def _status(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    from amarktai_tui.autonomy import adjust_store
    from amarktai_tui.autonomy.bounds import Bounds
    from amarktai_tui.ops.commands import _engine_running

    bounds = Bounds.from_settings(settings.autonomy.bounds)
    pending: list[Adjustment] = []
    if db_path(data_dir).exists():
        conn = adjust_store.connect(db_path(data_dir))
        try:
            pending = adjust_store.pending(conn)
        finally:
            conn.close()
    out: dict[str, Any] = {
        "mode": settings.autonomy.mode,
        "engine_running": _engine_running(data_dir),
        "bounds": bounds.as_json(),
        "pending": [a.to_json() for a in pending],
    }
    if args.json:
        _print_json(out)
        return EXIT_OK
    b = out["bounds"]
    print(f"autonomy mode: {out['mode']}  (engine {'running' if out['engine_running'] else 'stopped'})")
    print(
        "bounds: " + ", ".join(f"{name} {lo}-{hi}" for name, (lo, hi) in b.items())
        + "  (risk per trade = risk mode's max notional x size multiplier x stop-loss)"
    )  # fmt: skip
    print(f"pending proposals: {len(pending)}")
    for a in pending:
        print(_line(a))
    return EXIT_OK


def _list(args: argparse.Namespace, data_dir: Path) -> int:
    from amarktai_tui.autonomy import adjust_store

    if args.limit < 0:
        raise _Refused(f"--limit must be >= 0, got {args.limit}")
    conn = adjust_store.connect(db_path(data_dir))
    try:
        bot_id = _bot_id(conn, args.bot) if args.bot else None
        rows = adjust_store.history(conn, bot_id=bot_id, status=args.status, limit=args.limit)
    finally:
        conn.close()
    if args.json:
        _print_json([a.to_json() for a in rows])
        return EXIT_OK
    for a in rows:
        print(_line(a))
    if not rows:
        print("  no automatic changes yet")
    return EXIT_OK


def _bot_id(conn: sqlite3.Connection, ref: str) -> int:
    row = conn.execute("SELECT id FROM bots WHERE name = ?", (ref,)).fetchone()
    if row is None and ref.isdigit():
        row = conn.execute("SELECT id FROM bots WHERE id = ?", (int(ref),)).fetchone()
    if row is None:
        raise _Refused(f"no bot named or numbered {ref!r}")
    return int(row[0])


# -- writes --------------------------------------------------------------------------------------


def _write(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    from amarktai_tui.ledger.schema import SchemaTooNewError
    from amarktai_tui.ops.control import ControlError
    from amarktai_tui.ops.risk_commands import LIVE, RECORDED

    cmd = args.autonomy_command
    if not db_path(data_dir).exists():
        print(f"amarktai: no ledger at {db_path(data_dir)}: run the engine first", file=sys.stderr)
        return EXIT_FAIL
    req = {"cmd": "autonomy", "action": cmd, "id": args.id, "actor": "cli"}
    try:
        reply, how = _send(settings, data_dir, req)
    except (ControlError, SchemaTooNewError) as exc:
        print(f"amarktai: {exc}", file=sys.stderr)
        return EXIT_FAIL
    if not reply.get("ok"):
        print(f"amarktai autonomy {cmd}: {reply.get('error', 'failed')}", file=sys.stderr)
        return EXIT_USAGE if reply.get("refused") else EXIT_FAIL
    adj = reply["adjustment"]
    message = (
        f"#{adj['id']} {adj['status']}: {adj['bot']} {adj['field']} {_short(adj['before'], 60)} -> "
        f"{_short(adj['after'], 60)} ({LIVE if how == 'live' else RECORDED})"
    )
    if args.json:
        _print_json({"ok": True, "action": cmd, "applied": how, "adjustment": adj, "message": message})
    else:
        print(message)
    return EXIT_OK


def _send(settings: Settings, data_dir: Path, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(reply, "live" | "recorded"): the running engine's answer, or the offline Adjuster's under the lock."""
    from amarktai_tui.ops.control import send_or_record
    from amarktai_tui.ops.risk_commands import COMMAND_TIMEOUT_S, CONNECT_WAIT_S

    return send_or_record(
        data_dir,
        req,
        lambda: _offline(settings, data_dir, req),
        connect_wait_s=CONNECT_WAIT_S,
        timeout_s=COMMAND_TIMEOUT_S,
    )


def _change_json(change: Change) -> dict[str, Any]:
    from amarktai_tui.autonomy import adjust_store

    return {
        "bot_id": change.bot_id,
        "source": change.source,
        "field": change.field,
        "after": json.loads(adjust_store.dumps(change.after)),
        "reason": change.reason,
    }


def _change_of(obj: object) -> Change:
    """A ``Change`` from a request's JSON; AdjustmentError naming what is wrong."""
    from amarktai_tui.autonomy.changes import AdjustmentError, Change

    if not isinstance(obj, dict):
        raise AdjustmentError("change must be a JSON object")
    bot_id = obj.get("bot_id")
    if not isinstance(bot_id, int) or isinstance(bot_id, bool):
        raise AdjustmentError("change.bot_id must be an integer")
    for key in ("source", "field", "reason"):
        if not isinstance(obj.get(key), str):
            raise AdjustmentError(f"change.{key} must be a string")
    try:
        return Change(bot_id, obj["source"], obj["field"], obj.get("after"), obj["reason"])
    except ValueError as exc:
        raise AdjustmentError(str(exc)) from None


async def _act(adjuster: Any, req: dict[str, Any], actor: str) -> dict[str, Any]:
    """Run one request against ``adjuster``: the reply (module doc)."""
    from amarktai_tui.autonomy.changes import AdjustmentError

    action = req.get("action")
    try:
        if action == "submit":
            adj = await adjuster.submit(_change_of(req.get("change")), actor)
        elif action in ACTIONS:
            raw = req.get("id")
            if not isinstance(raw, int) or isinstance(raw, bool):
                return {"ok": False, "error": f"{action} needs an integer id", "refused": True}
            adj = await getattr(adjuster, action)(raw, actor)
        else:
            return {
                "ok": False,
                "error": f"unknown action {action!r}: use submit, {', '.join(ACTIONS)}",
                "refused": True,
            }
    except AdjustmentError as exc:
        return {"ok": False, "error": str(exc).strip().splitlines()[0], "refused": True}
    return {"ok": True, "adjustment": adj.to_json()}


async def run_autonomy_control(engine: TradingEngine, req: dict[str, Any], actor: str) -> dict[str, Any]:
    """The ``autonomy`` control command against the running engine's Adjuster (``ops.control``)."""
    from amarktai_tui.autonomy.changes import adjuster_for

    adjuster = adjuster_for(engine)
    if adjuster is None:
        return {"ok": False, "error": "this engine runs no autonomy service", "refused": True}
    return await _act(adjuster, req, actor)


async def _offline(settings: Settings, data_dir: Path, req: dict[str, Any]) -> dict[str, Any]:
    """No engine runs (we hold its lock): the offline Adjuster over the ledger, audit entries written too."""
    from amarktai_tui.autonomy.changes import Adjuster
    from amarktai_tui.engine.events import BotAdjusted
    from amarktai_tui.ledger.schema import connect_readonly
    from amarktai_tui.ledger.store import LedgerStore
    from amarktai_tui.ops import audit_store
    from amarktai_tui.ops.audit import classify, wall_ms
    from amarktai_tui.ops.commands import ledger_now_ms

    path = db_path(data_dir)
    store = await LedgerStore.open(path)  # migrates an older ledger first
    try:
        conn = connect_readonly(str(path))
        try:
            now = ledger_now_ms(conn)
        finally:
            conn.close()
        adjuster = await Adjuster.offline(store, settings.autonomy, now)
        events: list[BotAdjusted] = []
        adjuster.bus.subscribe(BotAdjusted, events.append)
        reply = await _act(adjuster, req, str(req.get("actor") or "cli"))
        entries = [e for e in (classify(ev, now_ms=wall_ms()) for ev in events) if e is not None]
        if entries:
            await asyncio.to_thread(audit_store.write, path, entries)
        return reply
    finally:
        await store.close()


def submit_change(settings: Settings, data_dir: Path, change: Change, actor: str = "cli") -> Adjustment:
    """Submit ``change`` through the one door from a CLI process: the running engine's Adjuster over
    its control socket, else an offline Adjuster under the engine lock (``Adjuster.offline``). Blocks;
    call it outside an event loop. Returns the row (status applied | proposed | refused). Raises
    AdjustmentError (the engine refused the request, e.g. no such bot), ControlError (nothing answers),
    FileNotFoundError (no ledger yet)."""
    from amarktai_tui.autonomy.changes import AdjustmentError

    if not db_path(data_dir).exists():
        raise FileNotFoundError(f"no ledger at {db_path(data_dir)}: run the engine first")
    req = {"cmd": "autonomy", "action": "submit", "change": _change_json(change), "actor": actor}
    reply, _ = _send(settings, data_dir, req)
    if not reply.get("ok"):
        raise AdjustmentError(str(reply.get("error", "refused")))
    return _adjustment_of(reply["adjustment"])


def _adjustment_of(obj: dict[str, Any]) -> Adjustment:
    from amarktai_tui.autonomy.adjust_store import Adjustment

    return Adjustment(
        int(obj["id"]), int(obj["ts"]), int(obj["bot_id"]), str(obj["bot"]), str(obj["source"]), str(obj["field"]),
        obj["before"], obj["after"], str(obj["reason"]), str(obj["status"]), str(obj["actor"]),
        None if obj.get("ref_id") is None else int(obj["ref_id"]),
    )  # fmt: skip
