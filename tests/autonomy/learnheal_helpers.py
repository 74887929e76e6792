"""Helpers of the learning and healing tests: a real engine (real LedgerStore in tmp, real
PaperBroker) driven candle by candle over real candles, with the autonomy jobs run on engine time.

``drive`` feeds each candle to ``engine.process`` (the run loop's per-candle entry point) and
then awaits every job whose engine-time interval has passed, so a test sees exactly what a
replay would, with no sleeps and no wall clock.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from pathlib import Path

from amarktai_tui.autonomy.changes import Adjuster
from amarktai_tui.autonomy.settings import AutonomySettings
from amarktai_tui.domain.enums import RiskMode
from amarktai_tui.domain.types import Candle
from amarktai_tui.engine.engine import BotSpec, TradingEngine
from amarktai_tui.engine.events import Event, EventBus
from amarktai_tui.exchanges.paper import PaperBroker
from amarktai_tui.ledger.store import LedgerStore
from amarktai_tui.locations import db_path
from amarktai_tui.market.loaders import load_candles
from amarktai_tui.risk.pipeline import PipelineSettings

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"
BTC_1H = DATA / "BTC_USDT-1h.json"
HOUR = 3_600_000
Job = Callable[[int], Awaitable[None]]


@functools.lru_cache(maxsize=2)
def candles(path: Path = BTC_1H) -> tuple[Candle, ...]:
    return tuple(load_candles(path))


def spec(
    name: str,
    *,
    strategy: str = "sma_cross",
    params: dict[str, object] | None = None,
    capital: str = "1000",
    risk_mode: RiskMode = RiskMode.AGGRESSIVE,
    stop_loss: str | None = None,
    take_profit: str | None = None,
) -> BotSpec:
    return BotSpec(
        name=name,
        exchange="binance",
        pair="BTC/USDT",
        timeframe="1h",
        strategy=strategy,
        params=params or {},
        risk_mode=risk_mode,
        capital=Decimal(capital),
        stop_loss=None if stop_loss is None else Decimal(stop_loss),
        take_profit=None if take_profit is None else Decimal(take_profit),
    )


class Recorder:
    def __init__(self, bus: EventBus) -> None:
        self.events: list[Event] = []
        bus.subscribe(Event, self.events.append)

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events if isinstance(e, kind)]


async def make_engine(
    tmp: Path, specs: list[BotSpec], settings: AutonomySettings, risk: PipelineSettings | None = None
) -> tuple[TradingEngine, Adjuster, Recorder]:
    """A started engine over a new ledger in ``tmp`` (paper broker with 5 bps slippage), its Adjuster, and a
    recorder of every event it publishes."""
    store = await LedgerStore.open(db_path(tmp))
    bus = EventBus()
    rec = Recorder(bus)
    engine = TradingEngine(
        store,
        PaperBroker(Decimal(5)),
        bus=bus,
        slippage=Decimal("0.0005"),
        wall_clock_ms=lambda: 1,
        risk=risk,
    )
    await engine.start(specs)
    return engine, Adjuster(engine, settings), rec


async def drive(
    engine: TradingEngine,
    cs: Iterable[Candle],
    jobs: Iterable[tuple[int, Job]],
    until: Callable[[], bool] | None = None,
) -> int:
    """Process candles; after each, run every ``(interval_ms, job)`` whose time has come (engine
    time, at most once per candle, as ``AutonomyService.every`` does). Stops early when ``until()``
    holds after a candle; returns the candles processed."""
    plan = list(jobs)
    due: list[int | None] = [None] * len(plan)
    n = 0
    for c in cs:
        engine.process(c)
        n += 1
        now = engine.now_ms
        for i, (every, job) in enumerate(plan):
            if due[i] is None:
                due[i] = (now // every + 1) * every
            elif now >= due[i]:  # type: ignore[operator]
                due[i] = (now // every + 1) * every
                await job(now)
        if until is not None and until():
            break
    await engine.flush()
    return n
