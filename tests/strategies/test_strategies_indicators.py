"""Incremental indicators against naive full recomputation (real data and arbitrary sequences)."""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amarktai_tui.strategies.indicators import EMA, RSI, SMA, RollingMax, RollingMin

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

EPS = 2.220446049250313e-16


@cache
def _rows(name: str) -> tuple[tuple[float, ...], ...]:
    rows = json.loads((DATA / "binance" / name).read_text())
    return tuple(tuple(float(v) for v in r) for r in rows)


def closes(name: str = "BTC_USDT-1h.json") -> list[float]:
    return [r[4] for r in _rows(name)]


def highs(name: str = "BTC_USDT-1h.json") -> list[float]:
    return [r[2] for r in _rows(name)]


# ---------------------------------------------------------------- naive references


def naive_sma(xs: list[float], n: int, t: int) -> float | None:
    """SMA at index t from scratch (exactly rounded sum)."""
    if t + 1 < n:
        return None
    return math.fsum(xs[t + 1 - n : t + 1]) / n


def naive_ema(xs: list[float], n: int, t: int) -> float | None:
    """EMA at index t in closed form: (1-k)^(t-n+1) * SMA(first n) + sum_j k (1-k)^(t-j) x_j."""
    if t + 1 < n:
        return None
    k = 2.0 / (n + 1)
    seed = math.fsum(xs[:n]) / n
    terms = [(1 - k) ** (t - n + 1) * seed]
    terms += [k * (1 - k) ** (t - j) * xs[j] for j in range(n, t + 1)]
    return math.fsum(terms)


def naive_rsi(xs: list[float], n: int, t: int) -> float | None:
    """Wilder RSI at index t in closed form of the smoothing (a = 1/n), seeded with simple means."""
    if t < n:
        return None
    d = [xs[i] - xs[i - 1] for i in range(1, t + 1)]
    gains = [max(v, 0.0) for v in d]
    losses = [max(-v, 0.0) for v in d]
    a = 1.0 / n

    def smooth(vals: list[float]) -> float:
        seed = math.fsum(vals[:n]) / n
        m = len(vals) - n  # smoothing steps after the seed
        terms = [(1 - a) ** m * seed] + [
            a * (1 - a) ** (len(vals) - 1 - j) * vals[j] for j in range(n, len(vals))
        ]
        return math.fsum(terms)

    g, lo = smooth(gains), smooth(losses)
    if g + lo == 0.0:
        return 50.0
    return 100.0 * g / (g + lo)


def naive_max(xs: list[float], n: int, t: int) -> float | None:
    return None if t + 1 < n else max(xs[t + 1 - n : t + 1])


def naive_min(xs: list[float], n: int, t: int) -> float | None:
    return None if t + 1 < n else min(xs[t + 1 - n : t + 1])


def _run(ind: SMA | EMA | RSI | RollingMax | RollingMin, xs: list[float]) -> list[float | None]:
    out = []
    for x in xs:
        v = ind.update(x)
        assert (v is not None) == ind.ready
        assert v is None or v == ind.value
        out.append(v)
    return out


# ---------------------------------------------------------------- real data


@pytest.mark.parametrize("n", [1, 2, 10, 30, 200])
def test_sma_matches_naive_on_real_closes(n: int) -> None:
    xs = closes()
    got = _run(SMA(n), xs)
    for t, v in enumerate(got):
        want = naive_sma(xs, n, t)
        if want is None:
            assert v is None
        else:
            assert v is not None
            assert v == pytest.approx(want, rel=1e-12, abs=0)


@pytest.mark.parametrize("n", [1, 3, 10, 30, 100])
def test_ema_matches_closed_form_on_real_closes(n: int) -> None:
    xs = closes()[:2000]
    got = _run(EMA(n), xs)
    for t in list(range(0, n + 3)) + list(range(n + 3, len(xs), 37)):
        want = naive_ema(xs, n, t)
        if want is None:
            assert got[t] is None
        else:
            assert got[t] == pytest.approx(want, rel=1e-11, abs=0)


@pytest.mark.parametrize("n", [2, 14, 30])
def test_rsi_matches_closed_form_on_real_closes(n: int) -> None:
    xs = closes()[:2000]
    got = _run(RSI(n), xs)
    for t in list(range(0, n + 3)) + list(range(n + 3, len(xs), 41)):
        want = naive_rsi(xs, n, t)
        if want is None:
            assert got[t] is None
        else:
            v = got[t]
            assert v is not None
            assert 0.0 <= v <= 100.0
            assert v == pytest.approx(want, abs=1e-8)


@pytest.mark.parametrize("n", [1, 2, 10, 20, 55])
def test_rolling_max_min_match_naive_on_real_highs_lows(n: int) -> None:
    hs = highs()
    lows = [r[3] for r in _rows("BTC_USDT-1h.json")]
    got_max = _run(RollingMax(n), hs)
    got_min = _run(RollingMin(n), lows)
    for t in range(len(hs)):
        assert got_max[t] == naive_max(hs, n, t)
        assert got_min[t] == naive_min(lows, n, t)


# ---------------------------------------------------------------- known values


def test_ema_seed_and_recursion_small_example() -> None:
    # EMA3, k = 0.5: seed = mean(1, 2, 3) = 2, then 2 + 0.5 * (4 - 2) = 3, 3 + 0.5 * (5 - 3) = 4.
    assert _run(EMA(3), [1.0, 2.0, 3.0, 4.0, 5.0]) == [None, None, 2.0, 3.0, 4.0]


# The worked example of StockCharts ChartSchool's RSI article (cs-rsi.xls, 14 periods). The
# spreadsheet prints 70.53, 66.32, ... because it rounds the averages to 2 decimals at each step;
# in exact arithmetic (as TA-Lib computes) the values are these.
STOCKCHARTS_CLOSES = [
    44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03, 45.61, 46.28, 46.28,
    46.00, 46.03, 46.41, 46.22, 45.64, 46.21, 46.25, 45.71, 46.45, 45.78, 45.35, 44.03, 44.18, 44.22, 44.57,
    43.42, 42.66, 43.13,
]  # fmt: skip
STOCKCHARTS_RSI = [
    70.46, 66.25, 66.48, 69.35, 66.29, 57.92, 62.88, 63.21, 56.01, 62.34, 54.67, 50.39, 40.02, 41.49, 41.90,
    45.50, 37.32, 33.09, 37.79,
]  # fmt: skip


def test_rsi_reproduces_stockcharts_worked_example() -> None:
    got = _run(RSI(14), STOCKCHARTS_CLOSES)
    assert got[:14] == [None] * 14
    assert [round(v, 2) for v in got[14:] if v is not None] == STOCKCHARTS_RSI


def test_rsi_extremes_and_flat_market() -> None:
    assert _run(RSI(3), [1.0, 2.0, 3.0, 4.0, 5.0])[-1] == 100.0
    assert _run(RSI(3), [5.0, 4.0, 3.0, 2.0, 1.0])[-1] == 0.0
    assert _run(RSI(3), [7.0] * 6)[-1] == 50.0  # documented difference from TA-Lib's 0


def test_ready_counts() -> None:
    for ind, first in ((SMA(5), 5), (EMA(5), 5), (RSI(5), 6), (RollingMax(5), 5), (RollingMin(5), 5)):
        vals = _run(ind, [float(i % 3 + 1) for i in range(10)])
        assert vals.index(next(v for v in vals if v is not None)) == first - 1, type(ind).__name__
        assert ind.period == 5


@pytest.mark.parametrize("cls", [SMA, EMA, RSI, RollingMax, RollingMin])
@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_period_rejected(cls: type[SMA], bad: object) -> None:
    with pytest.raises(ValueError, match="period"):
        cls(bad)  # type: ignore[arg-type]


def test_sma_running_sum_does_not_drift_after_a_huge_value() -> None:
    # A huge value leaves the window; within one window length the SMA is exact again.
    n = 7
    sma = SMA(n)
    xs = [1e12] + [0.1] * (3 * n)
    got = _run(sma, xs)
    assert got[-1] == pytest.approx(0.1, rel=1e-14)


def test_sma_long_run_stays_accurate() -> None:
    xs = closes("BTC_USDT-5m.json")
    sma = SMA(50)
    for x in xs:
        sma.update(x)
    want = naive_sma(xs, 50, len(xs) - 1)
    assert sma.value == pytest.approx(want, rel=1e-14)


# ---------------------------------------------------------------- arbitrary sequences

prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None, database=None)
@given(xs=st.lists(prices, min_size=0, max_size=150), n=st.integers(1, 40))
def test_sma_matches_naive_arbitrary(xs: list[float], n: int) -> None:
    got = _run(SMA(n), xs)
    for t, v in enumerate(got):
        want = naive_sma(xs, n, t)
        if want is None:
            assert v is None
            continue
        assert v is not None
        # Rounding bound: a running sum rebuilt exactly every n updates.
        scale = max(abs(x) for x in xs[max(0, t - 2 * n) : t + 1])
        assert abs(v - want) <= 4 * n * EPS * scale + 4 * EPS * abs(want)


@settings(max_examples=200, deadline=None, database=None)
@given(xs=st.lists(prices, min_size=0, max_size=80), n=st.integers(1, 20))
def test_ema_matches_closed_form_arbitrary(xs: list[float], n: int) -> None:
    got = _run(EMA(n), xs)
    for t, v in enumerate(got):
        want = naive_ema(xs, n, t)
        if want is None:
            assert v is None
        else:
            assert v == pytest.approx(want, rel=1e-9, abs=1e-9 * max(xs))


@settings(max_examples=200, deadline=None, database=None)
@given(xs=st.lists(prices, min_size=0, max_size=80), n=st.integers(1, 20))
def test_rsi_matches_closed_form_arbitrary(xs: list[float], n: int) -> None:
    got = _run(RSI(n), xs)
    for t, v in enumerate(got):
        want = naive_rsi(xs, n, t)
        if want is None:
            assert v is None
        else:
            assert v is not None
            assert 0.0 <= v <= 100.0
            assert v == pytest.approx(want, abs=1e-6)


@settings(max_examples=300, deadline=None, database=None)
@given(
    xs=st.lists(st.one_of(prices, st.sampled_from([1.0, 2.0, 3.0])), min_size=0, max_size=150),
    n=st.integers(1, 30),
)
def test_rolling_max_min_match_naive_arbitrary(xs: list[float], n: int) -> None:
    got_max = _run(RollingMax(n), xs)
    got_min = _run(RollingMin(n), xs)
    for t in range(len(xs)):
        assert got_max[t] == naive_max(xs, n, t)
        assert got_min[t] == naive_min(xs, n, t)
