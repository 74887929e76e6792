"""``amarktai bots stages [--json]``, ``bots promote NAME_OR_ID [--yes]``, ``bots demote NAME_OR_ID --reason TEXT``.

``stages`` reads the ledger (read-only, engine running or not) and measures
every bot's progress as the engine does (``engine.stage_report``). The write
commands follow ``halt``/``breakers reset`` (``ops.risk_commands``): with an
engine running they go over its control socket ("engine running: applied
live"); with none, the CLI takes the engine lock and records the change in the
ledger itself ("recorded; applied when the engine starts"), stamped with ledger
time, after the same checks the engine makes (``engine.stages``).

``promote`` asks for confirmation on a terminal; without one it needs
``--yes``. Only an eligible_for_live bot can be promoted. A user's mistake (no
such bot, not eligible, no terminal and no ``--yes``) is one line on stderr
and exit 2; a failure to reach or write the ledger is exit 1.

Control requests (``ops.control``): ``{"cmd": "promote" | "demote", "bot": ID | "NAME",
"reason": str, "actor": "cli"}``; replies ``{"ok": true, "change": CHANGE}`` or
``{"ok": false, "error": str, "refused": bool}`` (``refused``: the engine said no).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amarktai_tui.config import Settings
from amarktai_tui.ledger import reader
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.locations import db_path
from amarktai_tui.ops.control import ControlError, send_or_record
from amarktai_tui.ops.risk_commands import COMMAND_TIMEOUT_S, CONNECT_WAIT_S, LIVE, RECORDED

if TYPE_CHECKING:
    from amarktai_tui.engine.engine import TradingEngine
    from amarktai_tui.engine.stages import StageRules
    from amarktai_tui.ledger.store import StageChange

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
STAGE_COMMANDS = ("promote", "demote")
PROMOTE_REASON = "confirmed on the command line"


class _Refused(Exception):
    """A user's mistake: one line, exit 2."""


def run_bots(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """``amarktai bots ...``; returns the exit code."""
    from amarktai_tui.engine.stages import rules_from

    rules = rules_from(settings.promotion)
    try:
        if args.bots_command == "stages":
            return _show(data_dir, rules, as_json=args.json)
        return _write(args, data_dir, rules)
    except _Refused as exc:
        print(f"amarktai bots {args.bots_command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (sqlite3.DatabaseError, reader.LedgerDataError) as exc:
        print(f"amarktai: ledger {db_path(data_dir)} unreadable: {exc}", file=sys.stderr)
        return EXIT_FAIL


def change_json(change: StageChange, bot: str) -> dict[str, Any]:
    """A stage change as JSON-ready data: ``{"bot_id", "bot", "ts" (ms UTC), "from", "to", "actor",
    "reason", "figures"}`` (figures: ``engine.stages.change_figures``)."""
    return {
        "bot_id": change.bot_id,
        "bot": bot,
        "ts": change.ts,
        "from": change.from_stage.value,
        "to": change.to_stage.value,
        "actor": change.actor,
        "reason": change.reason,
        "figures": change.figures,
    }


# -- amarktai bots stages ----------------------------------------------------------------------


def stages_report(conn: sqlite3.Connection, rules: StageRules, *, engine_running: bool) -> dict[str, Any]:
    """``amarktai bots stages --json``: ``{"engine_running", "criteria": {key: str}, "floors": {key: str},
    "bots": [BOT]}`` with BOT as ``engine.stage_report.BotStage.as_json`` (fractions as strings)."""
    from amarktai_tui.engine.stage_report import bot_stages

    c, f = rules.criteria, rules.floors
    return {
        "engine_running": engine_running,
        "criteria": {
            "min_days": str(c.min_days),
            "min_trades": str(c.min_trades),
            "min_win_rate": str(c.min_win_rate),
            "min_return": str(c.min_return),
            "max_drawdown": str(c.max_drawdown),
            "min_profit_factor": str(c.min_profit_factor),
        },
        "floors": {"live_max_drawdown": str(f.max_drawdown), "live_min_return": str(f.min_return)},
        "bots": [b.as_json() for b in bot_stages(conn, rules)],
    }


def _show(data_dir: Path, rules: StageRules, *, as_json: bool) -> int:
    from amarktai_tui.ops.commands import _engine_running

    try:
        conn = connect_readonly(str(db_path(data_dir)))
    except FileNotFoundError as exc:
        print(f"amarktai: {exc}", file=sys.stderr)
        return EXIT_FAIL
    try:
        rep = stages_report(conn, rules, engine_running=_engine_running(data_dir))
    finally:
        conn.close()
    if as_json:
        json.dump(rep, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    c = rep["criteria"]
    print(
        f"engine {'running' if rep['engine_running'] else 'stopped'}  promotion: trades >= {c['min_trades']}, "
        f"win rate >= {c['min_win_rate']}, days >= {c['min_days']}, return >= {c['min_return']}, "
        f"max drawdown <= {c['max_drawdown']}, profit factor >= {c['min_profit_factor']}"
    )
    print(f"  {'ID':>3}  {'BOT':<16}  {'STAGE':<17}  {'SINCE (UTC)':<16}  {'MET':>3}  PROGRESS")
    for b in rep["bots"]:
        met = "-" if b["met"] is None else f"{b['met']}/{b['of']}"
        since = "-" if b["stage_ts"] is None else _ts(b["stage_ts"])
        print(
            f"  {b['id']:>3}  {b['name'][:16]:<16}  {b['stage']:<17}  {since:<16}  {met:>3}  {b['progress'] or '-'}"
        )
    if not rep["bots"]:
        print("  no bots yet")
    return EXIT_OK


def _ts(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%d %H:%M}"


# -- amarktai bots promote | demote --------------------------------------------------------------


def _write(args: argparse.Namespace, data_dir: Path, rules: StageRules) -> int:
    from amarktai_tui.engine.stage_report import bot_stages
    from amarktai_tui.engine.stages import promotion_refusal
    from amarktai_tui.ledger.schema import SchemaTooNewError

    cmd = args.bots_command
    db = db_path(data_dir)
    if not db.exists():
        print(f"amarktai: no ledger at {db}: run the engine first (amarktai --daemon ...)", file=sys.stderr)
        return EXIT_FAIL
    conn = connect_readonly(str(db))
    try:
        bot = _find(conn, args.bot)
        [where] = bot_stages(conn, rules, bot.id)
    finally:
        conn.close()
    reason = (args.reason if args.reason is not None else PROMOTE_REASON).strip()
    if cmd == "promote":
        refusal = promotion_refusal(bot.name, where.stage, "cli", reason, where.verdict)
        if refusal is not None:
            raise _Refused(refusal)
        if not args.yes:
            _confirm(bot.name, where.verdict.summary() if where.verdict is not None else "")
    req = {"cmd": cmd, "bot": bot.id, "reason": reason, "actor": "cli"}  # the id the ledger resolved
    try:
        reply, applied = _apply(data_dir, req, rules)
    except (ControlError, SchemaTooNewError) as exc:
        print(f"amarktai: {exc}", file=sys.stderr)
        return EXIT_FAIL
    if not reply.get("ok"):
        print(f"amarktai: {reply.get('error', 'failed')}", file=sys.stderr)
        return EXIT_USAGE if reply.get("refused") else EXIT_FAIL
    change = reply["change"]
    how = LIVE if applied == "live" else RECORDED
    message = f"{change['bot']}: {change['from']} -> {change['to']} by {change['actor']}: {change['reason']} ({how})"
    if args.json:
        out = {"ok": True, "action": cmd, "applied": applied, "change": change, "message": message}
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(message)
    return EXIT_OK


def _find(conn: sqlite3.Connection, ref: str) -> reader.BotRow:
    """A bot by name, else by id; _Refused when there is none."""
    bots = reader.bots(conn)
    found = next((b for b in bots if b.name == ref), None)
    if found is None and ref.isdigit():
        found = next((b for b in bots if b.id == int(ref)), None)
    if found is None:
        raise _Refused(f"no bot named or numbered {ref!r} (see `amarktai bots stages`)")
    return found


def _confirm(name: str, progress: str) -> None:
    """Ask on the terminal (prompt on stderr, so stdout stays the result); _Refused unless answered yes."""
    if not sys.stdin.isatty():
        raise _Refused(f"stdin is not a terminal: add --yes to confirm promoting {name} to live")
    print(
        f"{name} is eligible_for_live ({progress}).\n"
        f"Promote {name} to live? It trades real money once the account is in live mode. [y/N] ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise _Refused(f"not confirmed: {name} stays eligible_for_live")


def _apply(data_dir: Path, req: dict[str, Any], rules: StageRules) -> tuple[dict[str, Any], str]:
    """(reply, "live" | "recorded"): the engine's answer over its socket, or the change recorded
    under the engine lock when no engine runs (``control.send_or_record``)."""
    return send_or_record(
        data_dir,
        req,
        lambda: _record(data_dir, req, rules),
        connect_wait_s=CONNECT_WAIT_S,
        timeout_s=COMMAND_TIMEOUT_S,
    )


async def _record(data_dir: Path, req: dict[str, Any], rules: StageRules) -> dict[str, Any]:
    """No engine runs (we hold its lock): check and record the change in the ledger, in ledger time."""
    from amarktai_tui.domain.enums import LifecycleStage
    from amarktai_tui.engine.promotion import Basis
    from amarktai_tui.engine.stage_report import bot_stages
    from amarktai_tui.engine.stages import change_figures, demotion_refusal, promotion_refusal
    from amarktai_tui.ledger.store import LedgerStore, StageChange, StageConflictError
    from amarktai_tui.ops.commands import ledger_now_ms

    store = await LedgerStore.open(db_path(data_dir))  # migrates an older ledger first
    try:
        conn = connect_readonly(str(db_path(data_dir)))
        try:
            now = ledger_now_ms(conn)
            found = bot_stages(conn, rules, int(req["bot"]))
        finally:
            conn.close()
        if not found:
            return {"ok": False, "error": f"no bot with id {req['bot']}", "refused": True}
        b = found[0]
        actor, reason = str(req["actor"]), str(req.get("reason") or "")
        if req["cmd"] == "promote":
            refusal, to = promotion_refusal(b.name, b.stage, actor, reason, b.verdict), LifecycleStage.LIVE
        else:
            refusal, to = demotion_refusal(b.name, b.stage, reason), LifecycleStage.PAPER_TRAINING
        if refusal is not None:
            return {"ok": False, "error": refusal, "refused": True}
        ts = max(now, b.stage_ts or 0)
        figures = change_figures(b.verdict, Basis(ts, b.pnl, b.equity), b.pnl, b.equity)
        change = StageChange(b.bot_id, ts, b.stage, to, actor, reason.strip(), figures)
        try:
            await store.change_stage(change)
        except StageConflictError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "change": change_json(change, b.name)}
    finally:
        await store.close()


# -- the engine's side of the control channel ---------------------------------------------------


async def run_stage_command(
    engine: TradingEngine, cmd: str, req: dict[str, Any], actor: str, reason: str | None
) -> dict[str, Any]:
    """A ``promote``/``demote`` control request against the running engine (``ops.control``)."""
    from amarktai_tui.engine.spec import EngineError

    ref = req.get("bot")
    if isinstance(ref, bool) or not isinstance(ref, str | int) or not str(ref).strip():
        return {"ok": False, "error": f"{cmd} needs a bot (name or id)", "refused": True}
    try:
        runner = engine.bot_by_ref(ref)
    except EngineError as exc:
        only = getattr(engine, "run_stages", None)  # a live session runs only its live bots
        hint = f" (it runs only bots at stage {', '.join(sorted(s.value for s in only))})" if only else ""
        return {"ok": False, "error": f"{exc}{hint}", "refused": True}
    try:
        if cmd == "promote":
            change = await engine.promote_bot(runner.rec.id, actor, reason or "")
        else:
            change = await engine.demote_bot(runner.rec.id, actor, reason or "")
    except EngineError as exc:
        return {"ok": False, "error": str(exc).strip().splitlines()[0], "refused": True}
    return {"ok": True, "change": change_json(change, runner.rec.name)}
