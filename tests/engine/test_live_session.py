"""A live session runs only the bots at stage live (``ops.mode``): the others are not loaded, and a
bot that leaves stage live during the session is paused and opens nothing new.

A paper broker stands in for the exchange: which bots run and which orders are allowed is the
engine's decision, the same whatever broker is behind it.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from lifecycle_helpers import SLIP, Recorder, Scripted, candles, feed, spec

from amarktai_tui.domain.enums import BotState, LifecycleStage, Side
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.events import EventBus, StageChanged
from amarktai_tui.exchanges.paper import PaperBroker
from amarktai_tui.ledger.store import LedgerStore, StageChange
from amarktai_tui.locations import db_path


async def _ledger_with_a_live_bot(tmp: Path) -> int:
    store = await LedgerStore.open(db_path(tmp))
    engine = TradingEngine(store, PaperBroker(Decimal(5)), slippage=SLIP, wall_clock_ms=lambda: 1)
    await engine.start([spec("live-one"), spec("paper-one", pair="ETH/USDT")])
    bot_id = next(r.rec.id for r in engine.runners.values() if r.rec.name == "live-one")
    await store.change_stage(
        StageChange(bot_id, 1, LifecycleStage.PAPER_TRAINING, LifecycleStage.LIVE, "user", "test", {})
    )
    await store.close()
    return bot_id


async def test_a_live_session_runs_the_live_bot_only_and_pauses_it_when_it_leaves_stage_live(
    tmp_path: Path,
) -> None:
    bot_id = await _ledger_with_a_live_bot(tmp_path)
    store = await LedgerStore.open(db_path(tmp_path))
    bus = EventBus()
    rec = Recorder(bus)
    engine = TradingEngine(
        store,
        PaperBroker(Decimal(5)),
        bus=bus,
        slippage=SLIP,
        wall_clock_ms=lambda: 1,
        run_stages=frozenset({LifecycleStage.LIVE}),
    )
    try:
        await engine.start([])
        assert [r.rec.name for r in engine.runners.values()] == ["live-one"]
        cs = candles()
        runner = engine.runners[bot_id]
        runner.strategy = Scripted(enter_from=cs[10].ts)  # enters whenever flat from candle 10 on
        feed(engine, cs[:40])
        assert runner.long and runner.stats.fills >= 1
        await engine.demote_bot(bot_id, "cli", "test: live floor")
        assert [e.new for e in rec.of(StageChanged)] == [LifecycleStage.PAPER_TRAINING]
        assert runner.rec.state is BotState.PAUSED and "live session" in runner.rec.state_reason
        runner.rec.state = BotState.RUNNING  # even if something resumed it, the entry guard holds
        runner.strategy = Scripted(enter_from=cs[42].ts, exit={cs[41].ts})  # exit, then ask to enter
        feed(engine, cs[40:80])
        assert not runner.long  # its exit still went out
        buys_after = sum(1 for f in engine.fill_log if f.bot_id == bot_id and f.side is Side.BUY)
        assert buys_after == sum(
            1 for f in engine.fill_log if f.bot_id == bot_id and f.side is Side.BUY and f.ts < cs[40].ts
        )
        assert any("no new entry in a live session" in r[3].reason for r in engine.refusals)
    finally:
        await engine.flush(final=True)
        await store.close()
