"""A directly built engine (real LedgerStore in tmp, real PaperBroker) driven candle by candle.

``engine.process(candle)`` is the engine's synchronous per-candle entry point (the run loop
calls it for every candle), so a test can act between two candles exactly as the UI would.
A scripted strategy object replaces a bot's built-in strategy through ``engine.runners``
(the bot's runner is public): it says ENTER/EXIT on given candle times, HOLD otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from engine_helpers import BTC_1H

from amarktai_tui.domain.enums import RiskMode, SignalAction
from amarktai_tui.domain.types import HOLD, Candle, Signal
from amarktai_tui.engine.engine import BotSpec, TradingEngine
from amarktai_tui.engine.events import Event, EventBus
from amarktai_tui.exchanges.paper import PaperBroker
from amarktai_tui.ledger.store import LedgerStore
from amarktai_tui.locations import db_path
from amarktai_tui.market.loaders import load_candles

SLIP = Decimal("0.0005")


@functools.lru_cache(maxsize=4)
def candles(path: Path = BTC_1H) -> tuple[Candle, ...]:
    return tuple(load_candles(path))


class Scripted:
    """A Strategy whose signals are given by candle open time."""

    name: ClassVar[str] = "scripted"

    def __init__(
        self, enter: Iterable[int] = (), exit: Iterable[int] = (), enter_from: int | None = None
    ) -> None:
        self.enter = set(enter)
        self.exit = set(exit)
        self.enter_from = enter_from
        self.calls = 0

    @property
    def warmup(self) -> int:
        return 1

    @property
    def params(self) -> Mapping[str, Any]:
        return {}

    def on_candle(self, candle: Candle) -> Signal:
        self.calls += 1
        if candle.ts in self.enter or (self.enter_from is not None and candle.ts >= self.enter_from):
            return Signal(SignalAction.ENTER, edge_bps=100.0, reason="scripted enter")  # clears the fee gate
        if candle.ts in self.exit:
            return Signal(SignalAction.EXIT, reason="scripted exit")
        return HOLD


def spec(
    name: str, *, stop_loss: str | None = None, pair: str = "BTC/USDT", capital: str = "1000"
) -> BotSpec:
    return BotSpec(
        name=name,
        exchange="binance",
        pair=pair,
        timeframe="1h",
        strategy="sma_cross",
        params={},
        risk_mode=RiskMode.BALANCED,
        capital=Decimal(capital),
        stop_loss=None if stop_loss is None else Decimal(stop_loss),
    )


class Recorder:
    def __init__(self, bus: EventBus) -> None:
        self.events: list[Event] = []
        bus.subscribe(Event, self.events.append)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


async def make_engine(tmp: Path, specs: list[BotSpec]) -> tuple[TradingEngine, Recorder]:
    store = await LedgerStore.open(db_path(tmp))
    bus = EventBus()
    rec = Recorder(bus)
    engine = TradingEngine(store, PaperBroker(Decimal(5)), bus=bus, slippage=SLIP, wall_clock_ms=lambda: 1)
    await engine.start(specs)
    return engine, rec


def feed(engine: TradingEngine, cs: Iterable[Candle]) -> None:
    for c in cs:
        engine.process(c)
