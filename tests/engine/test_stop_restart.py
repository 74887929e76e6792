"""A bot stopped while it holds a position closes it at the next open, even across a restart
(the stop is in the ledger as the bot's state; the sell it asks for must survive the process)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from lifecycle_helpers import SLIP, Scripted, candles, feed, spec

from amarktai_tui.domain.enums import BotState, Side
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.exchanges.paper import PaperBroker
from amarktai_tui.ledger.store import LedgerStore
from amarktai_tui.locations import db_path


async def _engine(tmp: Path) -> TradingEngine:
    store = await LedgerStore.open(db_path(tmp))
    engine = TradingEngine(store, PaperBroker(Decimal(5)), slippage=SLIP, wall_clock_ms=lambda: 1)
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
