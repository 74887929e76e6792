"""Each breaker exactly at its threshold and just over; resets; gate D."""

from __future__ import annotations

from decimal import Decimal

from amarktai_tui.risk.breakers import Breaker, BreakerBoard, BreakerSettings, Scope
from amarktai_tui.risk.gates import Gate

HOUR = 3_600_000


def board() -> BreakerBoard:
    b = BreakerBoard(BreakerSettings())
    b.add_bot(1, 1000.0)
    b.add_bot(2, 1000.0)
    b.set_account(2000.0)
    return b


def test_bot_drawdown_exactly_20_percent_holds_just_over_trips() -> None:
    b = board()
    assert b.mark_bot(1, 1250.0) is False  # a new high-water mark
    assert b.check_bot_drawdown(1, Decimal(1000), 1, "mark") is None  # exactly 20% below 1250
    trip = b.check_bot_drawdown(1, Decimal("999.99"), 2, "mark")
    assert trip is not None and trip.breaker is Breaker.BOT_DRAWDOWN and trip.scope is Scope.BOT
    assert trip.value == Decimal("0.200008") and trip.threshold == Decimal("0.20")
    assert "below its high-water mark 1250.00" in trip.message
    assert b.check_bot_drawdown(1, Decimal(500), 3, "mark") is None  # one active trip per breaker


def test_float_precheck_flags_exactly_the_marks_that_need_an_exact_check() -> None:
    b = board()
    b.mark_bot(1, 1250.0)
    assert b.mark_bot(1, 1000.5) is False
    assert b.mark_bot(1, 999.9999) is True  # within the tolerance of the trip level: check exactly
    assert b.mark_bot(1, 900.0) is True


def test_flows_move_the_high_water_mark_so_moving_capital_is_not_a_loss() -> None:
    b = board()
    b.flow(1, Decimal(-500))  # capital taken away: equity 500, mark 500
    assert b.bots[1].hwm == 500.0
    assert b.check_bot_drawdown(1, Decimal(500), 1, "mark") is None


def test_consecutive_losses_five_in_a_row_trip_a_win_resets_the_count() -> None:
    b = board()
    for i in range(4):
        assert b.on_trade_closed(1, Decimal("-1"), i, "fill") is None
    assert b.on_trade_closed(1, Decimal("0.01"), 4, "fill") is None  # a win
    for i in range(4):
        assert b.on_trade_closed(1, Decimal("-1"), 10 + i, "fill") is None
    assert b.on_trade_closed(1, Decimal(0), 15, "fill") is None  # breakeven is not a loss: count resets
    for i in range(4):
        assert b.on_trade_closed(1, Decimal("-1"), 20 + i, "fill") is None
    trip = b.on_trade_closed(1, Decimal("-0.0001"), 30, "fill x")
    assert trip is not None and trip.value == 5 and trip.cause == "fill x"
    # a reset starts the count again: the breaker does not re-trip on the same five losses
    b.reset(trip.id, 31)
    assert b.check_streak(1, 32, "re-evaluate") is None


def test_error_storm_ten_in_the_last_hour() -> None:
    b = board()
    for i in range(9):
        assert b.on_error(1, i * 1000, "broker error") is None
    assert b.on_error(1, HOUR + 1, "x") is None  # the first error left the window: 9 in the hour
    trip = b.on_error(1, HOUR + 2, "x")
    assert trip is not None and trip.breaker is Breaker.ERROR_STORM and trip.value == 10
    b.reset(trip.id, HOUR + 3)
    assert b.error_count(1, HOUR + 4) == 0  # counted since the reset
    assert b.check_errors(1, HOUR + 4, "re-evaluate") is None


def test_daily_loss_and_account_drawdown_edges() -> None:
    b = board()
    b.set_day_start(Decimal(2000))
    assert b.check_account(Decimal(1800), 1, "mark") == []  # exactly 10% down on the day
    trips = b.check_account(Decimal("1799.99"), 2, "mark")
    assert [t.breaker for t in trips] == [Breaker.DAILY_LOSS]
    b2 = board()
    b2.account.hwm = 2000.0
    b2.set_day_start(Decimal(1700))
    assert b2.check_account(Decimal(1700), 1, "mark") == []  # exactly 15% below the high
    trips = b2.check_account(Decimal("1699.99"), 2, "mark")
    assert [t.breaker for t in trips] == [Breaker.ACCOUNT_DRAWDOWN] and trips[0].scope is Scope.ACCOUNT


def test_gate_d_refuses_new_risk_under_any_covering_trip_but_never_an_exit() -> None:
    b = board()
    assert b.gate(1, reduces=False) is None
    trip = b.check_bot_drawdown(1, Decimal(1), 1, "mark")
    assert trip is not None
    r = b.gate(1, reduces=False)
    assert r is not None and r.gate is Gate.BREAKER and r.figures["trip_id"] == str(trip.id)
    assert b.gate(1, reduces=True) is None
    assert b.gate(2, reduces=False) is None  # another bot is not covered by a bot trip
    halt = b.halt(5, "test")
    assert halt is not None and b.gate(2, reduces=False) is not None  # account trips cover every bot
    assert b.halt(6, "again") is None  # already halted
    b.reset(halt.id, 7)
    assert b.gate(2, reduces=False) is None


def test_readings_status_ok_warning_tripped() -> None:
    b = board()
    b.mark_bot(1, 1000.0)
    b.mark_bot(1, 830.0)  # 17% down: above 80% of the 20% threshold
    b.mark_bot(2, 950.0)  # 5% down
    rows = {(r.bot_id, r.breaker): r for r in b.readings(0)}
    assert rows[(1, Breaker.BOT_DRAWDOWN)].status == "warning"
    assert rows[(1, Breaker.BOT_DRAWDOWN)].value == Decimal("0.170000")
    assert rows[(1, Breaker.BOT_DRAWDOWN)].headroom == Decimal("0.030000")
    assert rows[(2, Breaker.BOT_DRAWDOWN)].status == "ok"
    b.check_bot_drawdown(2, Decimal(700), 1, "mark")
    rows = {(r.bot_id, r.breaker): r for r in b.readings(0)}
    assert rows[(2, Breaker.BOT_DRAWDOWN)].status == "tripped" and rows[(2, Breaker.BOT_DRAWDOWN)].trip_id
    assert len(rows) == 3 + 3 * 2
