"""Gates B and C, the staggerer, and the pipeline's order of gates, on their edges."""

from __future__ import annotations

from decimal import Decimal

from amarktai_tui.domain.enums import OrderState, OrderType, Side
from amarktai_tui.domain.types import OrderIntent
from amarktai_tui.risk.breakers import BreakerSettings
from amarktai_tui.risk.gates import DAY_MS, CostModel, Gate, LimitSettings, TradeCounter, fee_gate
from amarktai_tui.risk.pipeline import Outcome, Pipeline, PipelineSettings
from amarktai_tui.risk.staggerer import ExchangeLimits, Staggerer

BINANCE = CostModel(maker_fee=Decimal("0.001"), taker_fee=Decimal("0.001"), spread_bps=Decimal(1))
# market entry: 10 + 10 bps fees + 1 spread + 10 slippage + 5 safety = 36 bps; limit: 26 bps


def test_round_trip_cost_by_order_type() -> None:
    assert BINANCE.round_trip_bps(OrderType.MARKET) == Decimal(36)
    assert BINANCE.round_trip_bps(OrderType.LIMIT) == Decimal(26)
    luno = CostModel(Decimal("0.004"), Decimal("0.006"), Decimal(10))
    assert luno.round_trip_bps(OrderType.LIMIT) == Decimal(40 + 60 + 10 + 5)  # maker in, taker out


def test_fee_gate_exactly_at_and_just_below_the_cost() -> None:
    assert fee_gate(36.0, OrderType.MARKET, BINANCE, reduces=False) is None
    r = fee_gate(35.99, OrderType.MARKET, BINANCE, reduces=False)
    assert r is not None and r.gate is Gate.FEE_COVERAGE
    assert r.figures == {"edge_bps": "35.99", "round_trip_bps": "36", "min_edge_bps": "10"}
    assert "does not cover" in r.reason


def test_fee_gate_minimum_edge_applies_even_when_costs_are_lower() -> None:
    free = CostModel(Decimal(0), Decimal(0), Decimal(0), slippage_bps=Decimal(0), safety_bps=Decimal(0))
    assert fee_gate(10.0, OrderType.LIMIT, free, reduces=False) is None
    r = fee_gate(9.99, OrderType.LIMIT, free, reduces=False)
    assert r is not None and "below the minimum 10" in r.reason


def test_fee_gate_never_refuses_an_exit() -> None:
    assert fee_gate(0.0, OrderType.MARKET, BINANCE, reduces=True) is None
    assert fee_gate(-50.0, OrderType.MARKET, BINANCE, reduces=True) is None


def test_daily_limits_exactly_at_the_limit_and_on_the_next_utc_day() -> None:
    c = TradeCounter(LimitSettings(bot_trades_per_day=3, account_trades_per_day=5))
    day = 19_000 * DAY_MS
    for i in range(2):
        c.record_order(1, day + i)
    assert c.check(1, day + 10, reduces=False) is None  # 2 < 3
    c.record_order(1, day + 11)
    r = c.check(1, day + 12, reduces=False)
    assert r is not None and r.gate is Gate.LIMITS and r.figures["bot_orders_today"] == "3"
    assert c.check(1, day + 12, reduces=True) is None  # exits always pass
    assert c.check(1, day + DAY_MS, reduces=False) is None  # a new UTC day
    c.record_order(2, day + 20)
    c.record_order(2, day + 21)
    r = c.check(3, day + 22, reduces=False)
    assert r is not None and r.figures == {"account_orders_today": "5", "limit": "5"}


def test_cooldown_after_an_exit() -> None:
    c = TradeCounter(LimitSettings(cooldown_ms=600_000))
    c.record_exit(1, 1_000_000)
    r = c.check(1, 1_000_000 + 599_999, reduces=False)
    assert r is not None and "cooling down" in r.reason
    assert c.check(1, 1_000_000 + 600_000, reduces=False) is None
    assert c.check(2, 1_000_001, reduces=False) is None  # another bot


def test_staggerer_spaces_submissions_and_puts_exits_first() -> None:
    s: Staggerer[str] = Staggerer({"luno": ExchangeLimits(2, 10_000)}, max_wait_ms=60_000)
    assert s.offer("luno", "a", 0, exit_first=False) == 0
    assert s.offer("luno", "b", 0, exit_first=False) is None  # 10 s gap
    assert s.offer("luno", "x", 1, exit_first=True) is None
    assert s.release(9_999) == []
    out = s.release(10_000)
    assert [(r.item, r.at) for r in out] == [("x", 10_000)]  # the exit jumps the queue
    out = s.release(100_000)
    assert [(r.item, r.at, r.refusal) for r in out] == [("b", 20_000, None)]


def test_staggerer_refuses_an_entry_that_waited_too_long_but_never_an_exit() -> None:
    s: Staggerer[str] = Staggerer({"valr": ExchangeLimits(2, 8_000)}, max_wait_ms=10_000)
    s.offer("valr", "first", 0, exit_first=False)
    for name in ("e1", "e2"):
        s.offer("valr", name, 0, exit_first=False)
    s.offer("valr", "exit", 0, exit_first=True)
    out = s.release(10**9)
    got = [(r.item, r.at, r.refusal is not None) for r in out]
    # exit at 8 s, e1 at 16 s (waited 16 s > 10 s: refused, uses no slot), e2 then also at 16 s: refused
    assert got == [("exit", 8_000, False), ("e1", 16_000, True), ("e2", 16_000, True)]
    assert out[1].refusal is not None and out[1].refusal.gate is Gate.STAGGERING


def test_staggerer_burst_window_and_in_flight() -> None:
    s: Staggerer[int] = Staggerer({"binance": ExchangeLimits(1, 0)}, burst_orders=3, burst_window_ms=10_000)
    for t in (0, 1, 2):
        s.record_submit("binance", t)
    assert s.next_slot("binance", 3) == 10_000  # the 4th waits for the first to leave the window
    assert s.burst_usage("binance", 3) == 3
    s.begin("binance")
    assert s.next_slot("binance", 20_000) is None  # one in flight, max 1
    s.done("binance")
    assert s.next_slot("binance", 20_000) == 20_000


def _intent(coid: str, side: Side = Side.BUY, edge: float = 100.0, bot: int = 1) -> OrderIntent:
    return OrderIntent(
        client_order_id=coid, bot_id=bot, exchange="binance", pair="BTC/USDT", side=side,
        order_type=OrderType.MARKET, quantity=Decimal("0.01"), limit_price=None, decision_ts=0,
        reason="t", edge_bps=edge,
    )  # fmt: skip


def _pipeline(**kw: object) -> Pipeline:
    settings = PipelineSettings(limits=LimitSettings(bot_trades_per_day=1), breakers=BreakerSettings(), **kw)  # type: ignore[arg-type]
    return Pipeline(settings, lambda ex, pair: BINANCE, {"binance": ExchangeLimits(5, 2_000)})


def test_pipeline_order_first_refusal_wins_and_duplicates_report_the_first_state() -> None:
    p = _pipeline()
    p.board.add_bot(1, 1000.0)
    p.board.halt(0, "test")
    # a thin edge on a halted account: gate B speaks first
    d = p.check(_intent("a", edge=1.0), 0, reduces=False)
    assert d.outcome is Outcome.REFUSED and d.refusal is not None and d.refusal.gate is Gate.FEE_COVERAGE
    d = p.check(_intent("b"), 0, reduces=False)
    assert d.outcome is Outcome.REFUSED and d.refusal is not None and d.refusal.gate is Gate.BREAKER
    d = p.check(_intent("s", side=Side.SELL, edge=0.0), 0, reduces=True)
    assert d.outcome is Outcome.GO  # an exit passes B, C and D even while halted
    again = p.check(_intent("b"), 5, reduces=False)
    assert again.outcome is Outcome.DUPLICATE and again.first_state is OrderState.REJECTED
    p.known["s"] = OrderState.FILLED
    assert p.check(_intent("s", side=Side.SELL), 5, reduces=True).first_state is OrderState.FILLED


def test_pipeline_limits_before_breakers_and_staggering_holds() -> None:
    p = _pipeline()
    p.board.add_bot(1, 1000.0)
    assert p.check(_intent("a"), 0, reduces=False).outcome is Outcome.GO
    p.counter.record_order(1, 0)
    d = p.check(_intent("b"), 1, reduces=False)
    assert d.refusal is not None and d.refusal.gate is Gate.LIMITS
    d = p.check(_intent("c", bot=2), 1, reduces=False)
    assert d.outcome is Outcome.HOLD  # 2 s after the previous binance submission
