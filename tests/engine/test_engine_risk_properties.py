"""Properties of the pipeline inside a real engine, whatever the signals and prices (hypothesis).

- no buy order's notional exceeds the risk mode's cap on the bot's capital, nor the asset cap;
- no client order id reaches the broker twice;
- exits are never refused by gate B (fee coverage) or C (limits).
"""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amarktai_tui.domain.enums import OrderState, RiskMode, Side, SignalAction
from amarktai_tui.domain.types import Candle, Order, Signal
from amarktai_tui.engine.engine import BotSpec, TradingEngine
from amarktai_tui.engine.events import EventBus, OrderRejected
from amarktai_tui.exchanges.base import BrokerUpdate
from amarktai_tui.exchanges.paper import PaperBroker
from amarktai_tui.ledger.store import LedgerStore
from amarktai_tui.locations import db_path
from amarktai_tui.risk.gates import LimitSettings
from amarktai_tui.risk.pipeline import PipelineSettings
from amarktai_tui.risk.sizing import MAX_NOTIONAL_FRACTION

HOUR = 3_600_000
T0 = 1_600_000_000_000 // HOUR * HOUR


class Recording(PaperBroker):
    """The real paper broker, remembering every client order id it was given."""

    def __init__(self) -> None:
        super().__init__(Decimal(5))
        self.seen: list[Order] = []

    def accept(self, order: Order) -> BrokerUpdate:
        self.seen.append(order)
        return super().accept(order)


class Random:
    """Signals from a list (one per candle): 0 hold, 1 enter, 2 exit; edges from a list too."""

    name: ClassVar[str] = "random"
    warmup = 1
    params: ClassVar[dict[str, Any]] = {}

    def __init__(self, actions: list[int], edges: list[float]) -> None:
        self.actions, self.edges, self.i = actions, edges, 0

    def on_candle(self, candle: Candle) -> Signal:
        a = self.actions[self.i % len(self.actions)]
        e = self.edges[self.i % len(self.edges)]
        self.i += 1
        if a == 1:
            return Signal(SignalAction.ENTER, edge_bps=e, reason="r")
        if a == 2:
            return Signal(SignalAction.EXIT, edge_bps=e, reason="r")
        return Signal(SignalAction.HOLD)


async def _run(prices: list[float], bots: list[tuple[list[int], list[float], RiskMode]]) -> tuple[Any, ...]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await LedgerStore.open(db_path(Path(tmp)))
        broker = Recording()
        bus = EventBus()
        refused: list[OrderRejected] = []
        bus.subscribe(OrderRejected, refused.append)
        risk = PipelineSettings(limits=LimitSettings(bot_trades_per_day=4, account_trades_per_day=6))
        engine = TradingEngine(store, broker, bus=bus, wall_clock_ms=lambda: 1, risk=risk)
        specs = [
            BotSpec(f"b{i}", "binance", "BTC/USDT", "1h", "sma_cross", {}, mode, Decimal(1000))
            for i, (_, _, mode) in enumerate(bots)
        ]
        await engine.start(specs)
        for i, (actions, edges, _) in enumerate(bots):
            engine.runner_by_name(f"b{i}").strategy = Random(actions, edges)  # type: ignore[assignment]
        caps: list[tuple[Decimal, Decimal, Decimal]] = []  # (notional, bot cap, asset room left)
        room: dict[int, Decimal] = {}  # decision close -> asset room after that candle's fills
        try:
            for k, p in enumerate(prices):
                c = Candle("BTC/USDT", "1h", T0 + k * HOUR, p, p * 1.01, p * 0.99, p, 1.0)
                engine.process(c)
                held = sum((r.book.position_qty for r in engine.runners.values()), Decimal(0))
                price = Decimal(repr(p))
                room[c.ts + HOUR] = Decimal("0.35") * engine.account_equity() - held * price
            at = {T0 + (k + 1) * HOUR: Decimal(repr(p)) for k, p in enumerate(prices)}
            by_decision: dict[int, Decimal] = {}
            for o in broker.seen:
                if o.side is Side.BUY:
                    r = engine.runners[o.bot_id]
                    notional = o.quantity * at[o.created_ts]
                    by_decision[o.created_ts] = by_decision.get(o.created_ts, Decimal(0)) + notional
                    caps.append(
                        (notional, r.rec.capital * MAX_NOTIONAL_FRACTION[r.rec.risk_mode], Decimal(0))
                    )
            for ts, total in by_decision.items():
                caps.append((total, total, room[ts]))
            await engine.flush()
        finally:
            await store.close()
        return broker.seen, refused, caps


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prices=st.lists(st.floats(100, 200), min_size=5, max_size=60),
    bots=st.lists(
        st.tuples(
            st.lists(st.integers(0, 2), min_size=1, max_size=20),
            st.lists(st.floats(0, 200), min_size=1, max_size=5),
            st.sampled_from(list(RiskMode)),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_caps_no_duplicates_and_exits_never_refused_by_b_or_c(
    prices: list[float], bots: list[tuple[list[int], list[float], RiskMode]]
) -> None:
    seen, refused, caps = asyncio.run(_run(prices, bots))
    coids = [o.client_order_id for o in seen]
    assert len(coids) == len(set(coids))
    assert not [e for e in refused if e.side is Side.SELL and e.gate in ("fee_coverage", "limits")]
    for notional, bot_cap, asset_room in caps:
        assert notional <= bot_cap  # one order within its bot's risk-mode cap
        if asset_room:
            assert notional <= asset_room  # the buys of one candle within the asset cap
    # and the refusals that did happen are risk decisions with a gate named
    assert all(e.gate for e in refused if e.state is OrderState.REJECTED)
