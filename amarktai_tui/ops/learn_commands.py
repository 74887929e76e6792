"""``amarktai learn BOT [--json]``: a bot's self-learning review, read from the ledger.

Prints what ``autonomy.learning.review`` finds for the bot (by name, else by id): win rate,
win/loss ratio, average win and loss, net PnL, best and worst entry hours (UTC) and pairs, and the
changes the learning job would submit now (with their reasons), or why it would change nothing.
Works without an engine (a read-only connection); "now" is the ledger's newest time (its latest
equity snapshot or fill), so a replayed ledger is reviewed at its own time. Like the job, only the
trades entered since learning last changed the bot count. ``--json``: the review as one JSON
object (``LearningReview.to_json`` plus ``mode``).

Exit codes: 0 shown; 1 no ledger or an unreadable one; 2 no such bot.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from amarktai_tui.autonomy import adjust_store
from amarktai_tui.autonomy.learning import BotView, LearningReview, bot_trades, last_change_ts, pct, review
from amarktai_tui.config import Settings
from amarktai_tui.ledger import reader
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.locations import db_path

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _NoBot(Exception):
    """The named bot does not exist (exit 2)."""


def run_learn(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """Run ``amarktai learn``; returns the exit code (module doc)."""
    try:
        conn = connect_readonly(str(db_path(data_dir)))
    except FileNotFoundError as exc:
        print(f"amarktai: {exc}", file=sys.stderr)
        return EXIT_FAIL
    try:
        rv = learning_review(conn, args.bot, settings)
    except _NoBot as exc:
        print(f"amarktai learn: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (sqlite3.DatabaseError, reader.LedgerDataError) as exc:
        print(f"amarktai: ledger {db_path(data_dir)} unreadable: {exc}", file=sys.stderr)
        return EXIT_FAIL
    finally:
        conn.close()
    mode = settings.autonomy.mode
    if args.json:
        json.dump({**rv.to_json(), "mode": mode}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for line in review_lines(rv, mode):
            print(line)
    return EXIT_OK


def learning_review(conn: sqlite3.Connection, ref: str, settings: Settings) -> LearningReview:
    """The review of bot ``ref`` (name, else id) from the ledger behind ``conn``; _NoBot when unknown."""
    bots = reader.bots(conn)
    row = next((b for b in bots if b.name == ref), None)
    if row is None and ref.isdigit():
        row = next((b for b in bots if b.id == int(ref)), None)
    if row is None:
        raise _NoBot(f"no bot named or numbered {ref!r}")
    mult = conn.execute("SELECT size_multiplier FROM bots WHERE id = ?", (row.id,)).fetchone()[0]
    view = BotView(row.id, row.name, row.risk_mode, Decimal(mult), row.take_profit)
    snap = reader.latest_snapshot(conn)
    times = [t for t in (reader.last_fill_ts(conn), snap.ts if snap else None) if t is not None]
    now = max(times) if times else int(time.time() * 1000)
    since = last_change_ts(adjust_store.history(conn, bot_id=row.id, limit=1000))
    return review(
        bot_trades(reader.fills(conn, row.id), row.id), now, settings.autonomy, view, since_ts=since
    )


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _money(x: Decimal) -> str:
    return f"{x.quantize(Decimal('0.01')):+}"


def review_lines(rv: LearningReview, mode: str) -> list[str]:
    """The human-readable review."""
    head = f"learning review of {rv.bot} (id {rv.bot_id}) at {_utc(rv.now_ms)}: {rv.trades} closed trades"
    if rv.window_start_ms is not None:
        head += f" since {_utc(rv.window_start_ms)}"
    out = [head]
    if rv.trades:
        assert rv.win_rate is not None
        ratio = "-" if rv.wl_ratio is None else f"{rv.wl_ratio.quantize(Decimal('0.01'))}"
        avg_w = "-" if rv.avg_win is None else _money(rv.avg_win)
        avg_l = "-" if rv.avg_loss is None else _money(-rv.avg_loss)
        out.append(
            f"  win rate {pct(rv.win_rate)} ({rv.wins} won, {rv.losses} lost)  win/loss ratio {ratio}"
            f" (avg win {avg_w}, avg loss {avg_l})  net PnL {_money(rv.net_pnl)}"
        )
        for what, best, worst, unit in (
            ("hour", rv.best_hour, rv.worst_hour, " UTC"),
            ("pair", rv.best_pair, rv.worst_pair, ""),
        ):
            assert best is not None and worst is not None
            out.append(
                f"  best {what} {best.key}{unit}: {_money(best.pnl)} over {_trades(best.trades)}"
                f"   worst {what} {worst.key}{unit}: {_money(worst.pnl)} over {_trades(worst.trades)}"
            )
    how = "proposals to accept" if mode == "expert" else "applied within the bounds"
    if rv.changes:
        out.append(f"  would change ({mode} mode: {how}):")
        out += [f"    {s.field} {_text(s.before)} -> {_text(s.after)}: {s.reason}" for s in rv.changes]
    else:
        out.append("  would change nothing")
    out += [f"  note: {n}" for n in rv.notes]
    return out


def _trades(n: int) -> str:
    return f"{n} trade" if n == 1 else f"{n} trades"


def _text(v: object) -> str:
    return "none" if v is None else str(getattr(v, "value", v))
