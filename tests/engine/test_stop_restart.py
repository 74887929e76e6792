"""A bot stopped while it holds a position closes it at the next open, even across a restart
(the stop is in the ledger as the bot's state; the sell it asks for must survive the process).
What a restarted replay records before its first candle is stamped in its market time."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

from lifecycle_helpers import SLIP, Scripted, candles, feed, spec

from amarktai_tui.autonomy.changes import Adjuster, Change
from amarktai_tui.autonomy.settings import AutonomySettings
from amarktai_tui.domain.enums import BotState, Side
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.exchanges.paper import PaperBroker
from amarktai_tui.ledger.store import LedgerStore
from amarktai_tui.ledger.verify import verify
from amarktai_tui.locations import db_path


async def _engine(tmp: Path, wall_ms: int = 1) -> TradingEngine:
    store = await LedgerStore.open(db_path(tmp))
    engine = TradingEngine(store, PaperBroker(Decimal(5)), slippage=SLIP, wall_clock_ms=lambda: wall_ms)
    await engine.start([spec("holder")])
    return engine


async def test_a_stop_asked_before_a_restart_still_closes_the_position(tmp_path: Path) -> None:
    cs = candles()
    engine = await _engine(tmp_path)
    (runner,) = engine.runners.values()
    runner.strategy = Scripted(enter={cs[10].ts})
    feed(engine, cs[:20])
    assert runner.long
    await engine.set_bot_state(runner.rec.id, BotState.STOPPED, "stopped from the chat")
    await engine.flush(final=True)
    await engine.store.close()  # the process ends before the next candle: no sell was sent

    engine = await _engine(tmp_path)
    try:
        (runner,) = engine.runners.values()
        assert runner.rec.state is BotState.STOPPED and runner.long
        runner.strategy = Scripted()
        feed(engine, cs[20:30])
        assert not runner.long
        sells = [f for f in engine.fill_log if f.side is Side.SELL]
        assert len(sells) == 1 and sells[0].ts >= cs[20].ts
    finally:
        await engine.flush(final=True)
        await engine.store.close()


async def test_a_capital_move_before_a_restarted_replays_first_candle_is_in_market_time(
    tmp_path: Path,
) -> None:
    """The move is stamped just after the ledger's time (the last close), not with the wall clock
    (2026, years after the candles): it is in the next snapshot, not in one already written, and
    the ledger verifies."""
    cs = candles()
    engine = await _engine(tmp_path)
    (runner,) = engine.runners.values()
    runner.strategy = Scripted()
    feed(engine, cs[:20])
    await engine.flush(final=True)
    await engine.store.close()

    now_2026 = 1_795_000_000_000
    engine = await _engine(tmp_path, wall_ms=now_2026)
    try:
        (runner,) = engine.runners.values()
        assert engine.now_ms == 0 and engine.ledger_time() == cs[19].ts + 3_600_000  # the last close
        adjuster = Adjuster(engine, AutonomySettings(mode="autonomous"))
        adj = await adjuster.submit(Change(runner.rec.id, "user", "capital", Decimal("600"), "smaller"))
        assert adj.status == "applied" and adj.ts == engine.ledger_time() + 1  # after its snapshot
        runner.strategy = Scripted()
        feed(engine, cs[20:30])
        await engine.flush(final=True)
    finally:
        await engine.store.close()
    conn = sqlite3.connect(f"file:{db_path(tmp_path)}?mode=ro", uri=True)
    try:
        moves = conn.execute("SELECT ts FROM ledger_events WHERE kind = 'allocation'").fetchall()
        result = verify(conn)
    finally:
        conn.close()
    assert moves and all(ts < now_2026 for (ts,) in moves)
    assert result.ok, result.first_discrepancy
