"""Helpers of the AI console's engine-side tests: a real engine on a real SQLite file, real candles.

The engine is built directly (real LedgerStore in a tmp dir, real PaperBroker) and driven
candle by candle with ``engine.process`` (the run loop's own per-candle entry point), so a
test acts between two candles as the console would. Candles are Binance's recorded 1h
BTC/USDT and ETH/USDT (``../shared/data``). The proposals' clock is injected (``Clock``):
expiry is tested by moving it, never by sleeping.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from amarktai_tui.ai.proposals import ProposalBook
from amarktai_tui.ai.toolbox import ToolBox
from amarktai_tui.domain.enums import RiskMode, TradingMode
from amarktai_tui.domain.types import Candle
from amarktai_tui.engine.engine import BotSpec, TradingEngine
from amarktai_tui.engine.events import Event, EventBus
from amarktai_tui.exchanges.paper import PaperBroker
from amarktai_tui.ledger.store import LedgerStore
from amarktai_tui.locations import db_path
from amarktai_tui.market.loaders import load_candles
from amarktai_tui.risk.breakers import BreakerSettings
from amarktai_tui.risk.pipeline import PipelineSettings

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"
BTC_1H = DATA / "BTC_USDT-1h.json"
ETH_1H = DATA / "ETH_USDT-1h.json"
START_MS = 1_800_000_000_000  # the proposals' wall clock at the start of a test (ms UTC)


@functools.lru_cache(maxsize=4)
def candles(path: Path) -> tuple[Candle, ...]:
    return tuple(load_candles(path))


@functools.lru_cache(maxsize=2)
def both(n: int) -> tuple[Candle, ...]:
    """The first ``n`` hours of BTC and ETH, interleaved in time (BTC first at each hour)."""
    out = [c for path in (BTC_1H, ETH_1H) for c in candles(path)[:n]]
    return tuple(sorted(out, key=lambda c: (c.ts, c.pair)))


def spec(
    name: str,
    pair: str = "BTC/USDT",
    *,
    params: dict[str, object] | None = None,
    strategy: str = "sma_cross",
    capital: str = "1000",
) -> BotSpec:
    return BotSpec(
        name=name,
        exchange="binance",
        pair=pair,
        timeframe="1h",
        strategy=strategy,
        params={"fast": 5, "slow": 20} if params is None else params,
        risk_mode=RiskMode.BALANCED,
        capital=Decimal(capital),
    )


FLEET = [
    spec("btc-fast"),
    spec("btc-slow", params={"fast": 12, "slow": 48, "kind": "ema"}),
    spec("eth-fast", "ETH/USDT"),
    spec(
        "eth-rsi",
        "ETH/USDT",
        strategy="rsi_reversion",
        params={"period": 7, "oversold": 25, "overbought": 65},
    ),
]


@dataclass
class Clock:
    """An injected wall clock (ms UTC) for proposals: tests move it instead of sleeping."""

    ms: int = START_MS

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


class Recorder:
    def __init__(self, bus: EventBus) -> None:
        self.events: list[Event] = []
        bus.subscribe(Event, self.events.append)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@dataclass
class Console:
    """One engine with its tool box, proposal book, injected clock and event recorder."""

    engine: TradingEngine
    box: ToolBox
    book: ProposalBook
    clock: Clock
    seen: Recorder
    data_dir: Path

    def feed(self, cs: Iterable[Candle]) -> None:
        for c in cs:
            self.engine.process(c)

    async def close(self) -> None:
        self.box.close()
        await self.engine.flush()
        await self.engine.store.close()


async def console(
    tmp: Path,
    specs: list[BotSpec],
    *,
    max_losses: int = 1000,
    mode: TradingMode = TradingMode.PAPER,
) -> Console:
    """A started engine on ``tmp``'s ledger (paper broker, 5 bps slippage) and its console parts."""
    store = await LedgerStore.open(db_path(tmp))
    bus = EventBus()
    seen = Recorder(bus)
    risk = PipelineSettings(breakers=BreakerSettings(max_consecutive_losses=max_losses))
    engine = TradingEngine(
        store, PaperBroker(Decimal(5)), bus=bus, slippage=Decimal("0.0005"), wall_clock_ms=lambda: 1,
        risk=risk, mode=mode,
    )  # fmt: skip
    await engine.start(specs)
    clock = Clock()
    book = ProposalBook(engine, clock=clock)
    return Console(engine, ToolBox(engine, book), book, clock, seen, tmp)


def connect(data_dir: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db_path(data_dir)}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def rows(data_dir: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    conn = connect(data_dir)
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def audit(data_dir: Path, proposal: str | None = None) -> list[tuple[str, str, str, str]]:
    """``ai_actions`` as (proposal, event, tool, actor), in insertion order (one proposal if given)."""
    where, params = ("WHERE proposal = ?", (proposal,)) if proposal else ("", ())
    return [
        (r["proposal"], r["event"], r["tool"], r["actor"])
        for r in rows(data_dir, f"SELECT * FROM ai_actions {where} ORDER BY id", params)
    ]
