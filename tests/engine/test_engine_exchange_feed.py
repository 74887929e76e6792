"""The engine on the exchange feed: real ccxt against a loopback Binance server.

The server (tests/market/test_market_ccxt_feed.py) serves the real BTC/USDT
5m candles up to a fake "now" that moves only when the feed sleeps. The
engine backfills each strategy's warm-up history, then trades live candles;
fills land at the next candle's open plus slippage, as in a replay.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "market"))

from test_market_ccxt_feed import START_INDEX, candles_of, env, make_feed  # noqa: F401 (env is a fixture)

from amarktai_tui.domain.enums import RiskMode, Side
from amarktai_tui.domain.types import Candle
from amarktai_tui.engine.engine import BotSpec, TradingEngine
from amarktai_tui.engine.events import EngineTick
from amarktai_tui.exchanges.paper import PaperBroker
from amarktai_tui.ledger.store import LedgerStore

LIVE_CANDLES = 400


async def test_backfill_then_live_candles_trade_like_a_replay(env, tmp_path: Path) -> None:  # noqa: F811
    feed, _ex, closed = make_feed(env, [("BTC/USDT", "5m")])
    store = await LedgerStore.open(tmp_path / "amarktai.sqlite3")
    engine = TradingEngine(store, PaperBroker(Decimal(5)), slippage=Decimal("0.0005"))
    spec = BotSpec("live-sma", "binance", "BTC/USDT", "5m", "sma_cross", {"fast": 5, "slow": 20},
                   RiskMode.BALANCED, Decimal(1000))  # fmt: skip
    await engine.start([spec])
    runner = engine.runner_by_name("live-sma")
    warmed: list[int] = []
    original_history = feed.history

    async def history(pair: str, timeframe: str, limit: int) -> list[Candle]:
        got = await original_history(pair, timeframe, limit)
        warmed.extend(c.ts for c in got)
        return got

    feed.history = history  # type: ignore[method-assign]
    live: list[Candle] = []

    def on_tick(e: EngineTick) -> None:
        live.append(e.candle)
        if len(live) == LIVE_CANDLES:
            engine.stop()

    engine.bus.subscribe(EngineTick, on_tick)
    await engine.run(feed)
    await store.close()

    file = candles_of("BTC/USDT", "5m")
    by_ts = {c.ts: i for i, c in enumerate(file)}
    # warm-up: exactly the strategy's warm-up length, contiguous, ending right before the first live candle
    assert len(warmed) == runner.strategy.warmup
    assert warmed == sorted(warmed)
    first_live = by_ts[live[0].ts]
    assert [by_ts[t] for t in warmed] == list(range(first_live - len(warmed), first_live))
    assert first_live >= START_INDEX - 1  # nothing before the feed's start is traded live
    assert runner.last_ts == live[-1].ts
    # live candles are the file's, in order, no gaps, each once
    assert [by_ts[c.ts] for c in live] == list(range(first_live, first_live + len(live)))
    assert live[0] == file[first_live]
    # it traded, and every fill is at the open of the candle after its decision, plus/minus slippage
    fills = engine.fill_log
    assert len(fills) >= 4, "a 5/20 SMA cross over 400 live 5m candles should trade"
    for f in fills:
        candle = file[by_ts[f.ts]]
        slip = Decimal("1.0005") if f.side is Side.BUY else Decimal("0.9995")
        assert f.price == (Decimal(repr(candle.open)) * slip).quantize(Decimal("1e-8"))
        assert by_ts[f.ts] > first_live  # decided on a live candle, filled on a later one
    assert closed, "the feed closed its ccxt exchange on stop"
