"""Protective exits: exact thresholds, conventions and a property check against a naive model."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amarktai_tui.domain.enums import SignalAction
from amarktai_tui.domain.types import Candle
from amarktai_tui.strategies import ExitRules, PositionExitTracker

D = Decimal
UP = math.inf
DOWN = -math.inf


def bar(high: float, low: float, ts: int = 0) -> Candle:
    mid = (high + low) / 2
    return Candle("BTC/USDT", "1h", ts, mid, high, low, mid, 1.0)


def tracker(entry: float | Decimal = 100.0, **rules: Decimal) -> PositionExitTracker:
    t = PositionExitTracker(ExitRules(**rules))
    t.on_entry(entry)
    return t


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("field", ["stop_loss", "take_profit", "trailing_stop"])
@pytest.mark.parametrize("bad", [D(0), D(1), D("-0.05"), D("1.5"), D("NaN"), D("Infinity"), 0.05, "0.05", 1])
def test_rules_validated(field: str, bad: object) -> None:
    with pytest.raises(ValueError, match=field):
        ExitRules(**{field: bad})  # type: ignore[arg-type]


def test_rules_accept_fractions_and_none() -> None:
    r = ExitRules(D("0.05"), D("0.1"), D("0.999"))
    assert (r.stop_loss, r.take_profit, r.trailing_stop) == (D("0.05"), D("0.1"), D("0.999"))
    assert r.active
    assert not ExitRules().active


def test_parse_from_config_values() -> None:
    r = ExitRules.parse(stop_loss=0.05, take_profit="0.1", trailing_stop=D("0.02"))
    assert r == ExitRules(D("0.05"), D("0.1"), D("0.02"))
    assert ExitRules.parse() == ExitRules()
    for bad in (1.5, "five", True, 0, [0.1]):
        with pytest.raises(ValueError, match="stop_loss"):
            ExitRules.parse(stop_loss=bad)  # type: ignore[arg-type]


def test_bad_entry_price() -> None:
    t = PositionExitTracker(ExitRules(stop_loss=D("0.05")))
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="entry_price"):
            t.on_entry(bad)


# ---------------------------------------------------------------- thresholds


def test_stop_loss_exact_threshold_and_just_over() -> None:
    t = tracker(stop_loss=D("0.05"))
    assert t.stop_loss_price == 95.0
    assert t.check(bar(101.0, math.nextafter(95.0, UP))) is None  # just above the stop: holds
    sig = t.check(bar(101.0, 95.0))  # touching the stop triggers
    assert sig is not None
    assert sig.action is SignalAction.EXIT
    assert sig.reason == "stop-loss 5.0% hit (low 95 <= 95)"
    assert sig.edge_bps == 0.0
    assert t.check(bar(101.0, 94.99)) is not None  # through it


def test_stop_loss_level_is_the_exactly_rounded_decimal_product() -> None:
    entry = 19500.317
    t = tracker(entry, stop_loss=D("0.05"))
    level = float(D(entry) * D("0.95"))
    assert t.stop_loss_price == level
    assert t.check(bar(entry, math.nextafter(level, UP))) is None
    sig = t.check(bar(entry, level))
    assert sig is not None
    assert sig.reason == f"stop-loss 5.0% hit (low {level:.1f} <= {level:.1f})"
    assert sig.reason == "stop-loss 5.0% hit (low 18525.3 <= 18525.3)"


def test_take_profit_exact_threshold_and_just_over() -> None:
    t = tracker(take_profit=D("0.1"))
    assert t.take_profit_price == 110.0
    assert t.check(bar(math.nextafter(110.0, DOWN), 100.0)) is None
    sig = t.check(bar(110.0, 100.0))
    assert sig is not None
    assert sig.action is SignalAction.EXIT
    assert sig.reason == "take-profit 10.0% hit (high 110 >= 110)"
    assert t.check(bar(110.01, 100.0)) is not None


def test_trailing_stop_follows_the_peak() -> None:
    t = tracker(trailing_stop=D("0.1"))
    assert t.trailing_stop_price == 90.0
    assert t.check(bar(120.0, 110.0)) is None  # peak 120 -> trigger 108
    assert t.peak == 120.0
    assert t.trailing_stop_price == 108.0
    assert t.check(bar(115.0, math.nextafter(108.0, UP))) is None  # peak stays 120
    sig = t.check(bar(115.0, 108.0))
    assert sig is not None
    assert sig.reason == "trailing stop 10.0% hit (low 108 <= 108, peak 120)"


def test_trailing_stop_uses_this_candles_high_before_checking() -> None:
    # The documented conservative convention: a candle that spikes to 130 and falls back to
    # 117 (= 130 * 0.9) triggers on that same candle.
    t = tracker(trailing_stop=D("0.1"))
    assert t.check(bar(130.0, math.nextafter(117.0, UP))) is None
    assert t.trailing_stop_price == 117.0
    t2 = tracker(trailing_stop=D("0.1"))
    sig = t2.check(bar(130.0, 117.0))
    assert sig is not None and "peak 130" in sig.reason


def test_trailing_never_below_entry_based_level() -> None:
    t = tracker(trailing_stop=D("0.2"))
    assert t.check(bar(99.0, 80.5)) is None  # peak stays the entry price 100 -> 80
    assert t.check(bar(99.0, 80.0)) is not None


def test_pessimistic_order_when_several_trigger_on_one_candle() -> None:
    t = tracker(stop_loss=D("0.05"), take_profit=D("0.05"), trailing_stop=D("0.02"))
    sig = t.check(bar(106.0, 94.0))
    assert sig is not None and sig.reason.startswith("stop-loss")
    t = tracker(take_profit=D("0.05"), trailing_stop=D("0.02"))
    sig = t.check(bar(106.0, 103.0))  # peak 106 -> trail 103.88: trailing reported before take-profit
    assert sig is not None and sig.reason.startswith("trailing stop")


def test_flat_tracker_is_silent_and_exit_resets() -> None:
    t = PositionExitTracker(ExitRules(D("0.05"), D("0.05"), D("0.05")))
    assert not t.in_position
    assert t.check(bar(1e9, 1e-9)) is None
    t.on_entry(100.0)
    assert t.in_position
    t.check(bar(150.0, 149.0))
    t.on_exit()
    assert not t.in_position
    assert t.peak is None and t.stop_loss_price is None and t.trailing_stop_price is None
    assert t.check(bar(1e9, 1e-9)) is None
    t.on_entry(D("200"))  # a Decimal fill price is taken exactly
    assert t.peak == 200.0 and t.stop_loss_price == 190.0 and t.take_profit_price == 210.0
    assert t.trailing_stop_price == 190.0


def test_no_rules_never_exit() -> None:
    t = tracker()
    for lo, hi in ((1e-9, 1e9), (50.0, 200.0)):
        assert t.check(bar(hi, lo)) is None


# ---------------------------------------------------------------- property: matches a naive model

fractions = st.one_of(st.none(), st.integers(1, 999).map(lambda n: Decimal(n) / 1000))
prices = st.floats(min_value=50.0, max_value=200.0, allow_nan=False)


@settings(max_examples=300, deadline=None, database=None)
@given(
    sl=fractions,
    tp=fractions,
    tr=fractions,
    entry=prices,
    path=st.lists(st.tuples(prices, prices), min_size=1, max_size=40),
)
def test_first_exit_matches_naive_model(
    sl: Decimal | None, tp: Decimal | None, tr: Decimal | None, entry: float, path: list[tuple[float, float]]
) -> None:
    t = PositionExitTracker(ExitRules(sl, tp, tr))
    t.on_entry(entry)
    candles = [bar(max(a, b), min(a, b), i) for i, (a, b) in enumerate(path)]
    got = None
    for i, c in enumerate(candles):
        sig = t.check(c)
        if sig is not None:
            got = (i, sig.reason.split(" ")[0])
            break
    # naive: recompute everything from the entry for each candle
    want = None
    for i, c in enumerate(candles):
        peak = max([entry] + [x.high for x in candles[: i + 1]])
        hits = []
        if sl is not None and c.low <= float(Decimal(entry) * (1 - sl)):
            hits.append("stop-loss")
        if tr is not None and c.low <= float(Decimal(peak) * (1 - tr)):
            hits.append("trailing")
        if tp is not None and c.high >= float(Decimal(entry) * (1 + tp)):
            hits.append("take-profit")
        if hits:
            want = (i, hits[0])
            break
    assert got == want
