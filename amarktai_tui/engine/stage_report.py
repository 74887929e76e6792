"""Every bot's lifecycle stage and its progress, measured from the ledger (``amarktai bots stages``).

Read-only over a ``sqlite3`` connection (``ledger.reader``), engine running or
not. The figures are the ones the engine keeps (``engine.stages``), rebuilt the
way a restarting engine rebuilds them: the track's basis from the newest stage
change, the closed trades (``ledger.pnl.trades_from_fills``) and equity snapshots
since then, the bot's pnl at its latest snapshot (realised + unrealised).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from amarktai_tui.domain.enums import LifecycleStage
from amarktai_tui.domain.types import timeframe_to_ms
from amarktai_tui.engine.promotion import Basis, StageTally, Verdict, tally_from_history
from amarktai_tui.engine.stages import StageRules, track_basis, verdict_for
from amarktai_tui.ledger import reader
from amarktai_tui.ledger.pnl import trades_from_fills
from amarktai_tui.ledger.store import StageChange


@dataclass(frozen=True, slots=True)
class BotStage:
    """One bot's stage (``stage_ts``: ms UTC it began, None = not started), its track's start
    (``since``), its pnl and equity at its latest snapshot (quote), and the verdict that applies
    (promotion criteria on a paper track, live floors when live, None when quarantined)."""

    bot_id: int
    name: str
    stage: LifecycleStage
    stage_ts: int | None
    since: int | None
    pnl: Decimal
    equity: Decimal
    verdict: Verdict | None

    def as_json(self) -> dict[str, Any]:
        """``{"id", "name", "stage", "stage_ts", "since", "pnl", "equity", "ok", "met", "of",
        "progress", "checks": [CHECK]}`` (CHECK: ``promotion.Check.as_json``; money as strings)."""
        v = self.verdict
        return {
            "id": self.bot_id,
            "name": self.name,
            "stage": self.stage.value,
            "stage_ts": self.stage_ts,
            "since": self.since,
            "pnl": str(self.pnl),
            "equity": str(self.equity),
            "ok": None if v is None else v.ok,
            "met": None if v is None else v.met,
            "of": None if v is None else len(v.checks),
            "progress": "" if v is None else v.summary(),
            "checks": [] if v is None else v.as_json(),
        }


def _change(row: reader.StageChangeRow) -> StageChange:
    return StageChange(
        row.bot_id, row.ts, LifecycleStage(row.from_stage), LifecycleStage(row.to_stage), row.actor, row.reason,
        row.figures,
    )  # fmt: skip


def bot_stages(conn: sqlite3.Connection, rules: StageRules, bot_id: int | None = None) -> list[BotStage]:
    """Every bot (or one), by id, with its stage and progress. Raises LedgerDataError on malformed rows."""
    starts = reader.bot_stage_starts(conn)
    latest: dict[int, reader.StageChangeRow] = {}
    for row in reader.stage_changes(conn, bot_id):  # newest first: the first seen per bot is its newest
        latest.setdefault(row.bot_id, row)
    snaps = reader.latest_snapshots(conn)
    funding = reader.funding_by_bot(conn)
    out: list[BotStage] = []
    for b in reader.bots(conn):
        if bot_id is not None and b.id != bot_id:
            continue
        fills = reader.fills(conn, b.id)
        last = latest.get(b.id)
        stage_ts = starts.get(b.id)
        basis = track_basis(
            stage_ts, None if last is None else _change(last), min((f.ts for f in fills), default=None)
        )
        snap = snaps.get(b.id)
        pnl = Decimal(0) if snap is None else snap.realised + snap.unrealised
        equity = funding.get(b.id, Decimal(0)) + pnl if snap is None else snap.equity
        stage = LifecycleStage(b.stage)
        if basis is None:
            tally, last_close = StageTally(Basis(0)), None
        else:
            tally = tally_from_history(basis, trades_from_fills(fills), reader.equity_series(conn, b.id))
            last_close = None if b.last_candle_ts is None else b.last_candle_ts + timeframe_to_ms(b.timeframe)
        fig_args = {"last_close_ts": last_close, "pnl": pnl, "capital": b.capital}
        verdict = verdict_for(stage, tally, fig_args, rules)
        out.append(
            BotStage(
                b.id, b.name, stage, stage_ts, None if basis is None else basis.since, pnl, equity, verdict
            )
        )
    return out
