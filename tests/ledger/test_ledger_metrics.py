"""Metrics against hand-computed examples and numpy (numpy in tests only)."""

from __future__ import annotations

import math
import random
from decimal import Decimal as D

import numpy as np
import pytest

from amarktai_tui.ledger import metrics as m
from amarktai_tui.ledger.pnl import Trade

DAY = m.DAY_MS
T0 = 1_609_459_200_000  # 2021-01-01T00:00Z


def trades(*pnls: str) -> list[Trade]:
    return [
        Trade(1, "BTC/USDT", i, i + 1, D(1), D(100), D(100) + D(p), D(p), D(0)) for i, p in enumerate(pnls)
    ]


def test_trade_metrics_hand_computed() -> None:
    ts = trades("10", "-5", "0", "20", "-15")
    assert m.win_rate(ts) == pytest.approx(2 / 5)
    assert m.profit_factor(ts) == pytest.approx(30 / 20)
    assert m.expectancy(ts) == D(2)
    assert m.avg_win(ts) == D(15)
    assert m.avg_loss(ts) == D(-10)
    assert m.expectancy(trades("1", "1", "2")) == D("1.333333333333333333333333333333333")


def test_trade_metrics_undefined_are_none() -> None:
    assert [m.win_rate([]), m.profit_factor([]), m.expectancy([]), m.avg_win([]), m.avg_loss([])] == [
        None
    ] * 5
    wins = trades("1", "2")
    assert m.profit_factor(wins) is None and m.avg_loss(wins) is None and m.win_rate(wins) == 1.0
    assert m.avg_win(trades("-1")) is None


def test_drawdowns() -> None:
    eq = [(i, D(x)) for i, x in enumerate(["100", "120", "90", "130", "117"])]
    cur, worst = m.drawdowns(eq)
    assert worst == pytest.approx(0.25) and cur == pytest.approx(0.1)
    assert m.max_drawdown(eq) == pytest.approx(0.25)
    assert m.drawdowns([]) == (None, None)
    assert m.drawdowns([(0, D(100)), (1, D(110))]) == (0.0, 0.0)


def test_daily_returns_use_the_last_point_per_utc_day_and_fill_gaps() -> None:
    eq = [
        (T0, D(100)),  # opening
        (T0 + 3_600_000, D(105)),
        (T0 + DAY - 1, D(110)),  # day 0 close
        (T0 + DAY + 5, D(99)),  # day 1 close
        (T0 + 3 * DAY + 7, D("108.9")),  # day 3 close; day 2 carried
    ]
    assert m.daily_returns(eq) == pytest.approx([0.10, -0.10, 0.0, 0.10])
    # unsorted input is sorted first
    assert m.daily_returns(list(reversed(eq))) == pytest.approx([0.10, -0.10, 0.0, 0.10])


def test_daily_returns_opening_alone_on_its_day_gives_no_return_for_it() -> None:
    eq = [(T0 + DAY - 10, D(100)), (T0 + DAY + 10, D(101)), (T0 + 2 * DAY + 10, D("90.9"))]
    assert m.daily_returns(eq) == pytest.approx([0.01, -0.1])
    assert m.daily_returns(eq[:1]) == []


def test_daily_returns_are_flow_neutral() -> None:
    # +1000 funding during day 1: the day's return is 2200 / (1100 + 1000) - 1, not +100 %
    eq = [(T0, D(1000)), (T0 + 10, D(1100)), (T0 + DAY + 10, D(2200))]
    flows = [(T0 + DAY + 1, D(1000)), (T0 - 5, D(999))]  # the early one is part of the opening
    assert m.daily_returns(eq, flows) == pytest.approx([0.1, 2200 / 2100 - 1])
    assert m.daily_returns(eq) == pytest.approx([0.1, 1.0])


def test_sharpe_sortino_match_numpy_conventions() -> None:
    rng = random.Random(7)
    rets = [rng.gauss(0.001, 0.02) for _ in range(200)]
    a = np.array(rets)
    assert m.sharpe(rets) == pytest.approx(a.mean() / a.std(ddof=1) * math.sqrt(365), rel=1e-12)
    downside = np.sqrt(np.mean(np.square(np.clip(a, None, 0))))
    assert m.sortino(rets) == pytest.approx(a.mean() / downside * math.sqrt(365), rel=1e-12)
    assert m.sharpe(rets, 252) == pytest.approx(a.mean() / a.std(ddof=1) * math.sqrt(252), rel=1e-12)


def test_sharpe_sortino_small_hand_example() -> None:
    rets = [0.01, -0.02, 0.03]
    mean = 0.02 / 3
    sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / 2)
    assert m.sharpe(rets) == pytest.approx(mean / sd * math.sqrt(365))
    assert m.sortino(rets) == pytest.approx(mean / math.sqrt(0.0004 / 3) * math.sqrt(365))


def test_ratios_undefined_are_none() -> None:
    assert m.sharpe([]) is None and m.sharpe([0.01]) is None
    assert m.sharpe([0.01, 0.01, 0.01]) is None  # zero std
    assert m.sortino([0.01, 0.02]) is None  # no downside
    assert m.sortino([0.01]) is None
    assert m.annualised_return([0.1], DAY) is None
    assert m.annualised_return([0.1, 0.1], 0) is None
    assert m.annualised_return([-1.0, 0.1], DAY) is None  # total loss
    assert m.calmar(0.5, 0.0) is None and m.calmar(None, 0.2) is None and m.calmar(0.5, None) is None


def test_annualised_return_and_calmar() -> None:
    # two daily returns compounding to 1.21 over 2 days -> 1.21 ** (365/2) - 1
    ann = m.annualised_return([0.1, 0.1], 2 * DAY)
    assert ann == pytest.approx(1.21 ** (365 / 2) - 1)
    rets = [0.001] * 365
    assert m.annualised_return(rets, m.YEAR_MS) == pytest.approx(1.001**365 - 1)
    assert m.calmar(0.3, 0.15) == pytest.approx(2.0)


def test_compute_bundles_everything() -> None:
    eq = [(T0 + i * DAY, D(100 + x)) for i, x in enumerate([0, 2, -1, 3, 1, 4])]
    res = m.compute(trades("5", "-2"), eq)
    assert res.trades == 2 and res.win_rate == 0.5 and res.profit_factor == pytest.approx(2.5)
    rets = [102 / 100 - 1, 99 / 102 - 1, 103 / 99 - 1, 101 / 103 - 1, 104 / 101 - 1]
    assert res.returns == 5
    assert res.sharpe == pytest.approx(np.mean(rets) / np.std(rets, ddof=1) * math.sqrt(365))
    assert res.max_drawdown == pytest.approx(3 / 102)
    assert res.drawdown == 0.0
    assert res.annual_return == pytest.approx(1.04 ** (365 / 5) - 1)
    assert res.calmar == pytest.approx(res.annual_return / (3 / 102))
    empty = m.compute([], [])
    assert empty.sharpe is None and empty.max_drawdown is None and empty.calmar is None and empty.returns == 0
