"""Walk-forward split correctness (``autonomy.walkforward``): properties over any range and fraction."""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amarktai_tui.autonomy.walkforward import Window, walk_forward_windows

HOUR = 3_600_000
START_2021 = 1_609_459_200_000

steps = st.sampled_from([60_000, 300_000, HOUR, 86_400_000])
fractions = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("0.99"), places=2)


@st.composite
def ranges(draw: st.DrawFn) -> tuple[int, int, int, int, Decimal]:
    step = draw(steps)
    folds = draw(st.integers(1, 20))
    candles = draw(st.integers(2 * folds, 5_000))
    start = draw(st.integers(0, 2_000_000)) * step
    ragged = draw(st.integers(0, step - 1))  # a partial candle at the end is left out
    return start, start + candles * step + ragged, folds, step, draw(fractions)


@given(ranges())
def test_windows_partition_the_range_train_then_test(case: tuple[int, int, int, int, Decimal]) -> None:
    start, end, folds, step, frac = case
    windows = walk_forward_windows(start, end, folds, frac, step)
    n = (end - start) // step
    assert len(windows) == folds
    assert windows[0].train_start == start
    assert windows[-1].test_end == start + n * step <= end
    for w in windows:
        for t in w:
            assert (t - start) % step == 0  # candle boundaries
        assert w.train_start < w.train_end == w.test_start < w.test_end  # test follows its train
    for a, b in pairwise(windows):
        assert a.test_end == b.train_start  # consecutive blocks, nothing skipped
    sizes = [(w.test_end - w.train_start) // step for w in windows]
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == n


@given(ranges())
def test_no_test_window_overlaps_any_train_window(case: tuple[int, int, int, int, Decimal]) -> None:
    start, end, folds, step, frac = case
    windows = walk_forward_windows(start, end, folds, frac, step)
    for w in windows:
        for other in windows:
            assert w.test_end <= other.train_start or other.train_end <= w.test_start


@given(ranges())
def test_train_share_is_the_fraction_floored(case: tuple[int, int, int, int, Decimal]) -> None:
    start, end, folds, step, frac = case
    for w in walk_forward_windows(start, end, folds, frac, step):
        m = (w.test_end - w.train_start) // step
        train = (w.train_end - w.train_start) // step
        assert train == min(m - 1, max(1, int(m * frac)))
        assert 1 <= train <= m - 1


def test_a_worked_example() -> None:
    # 100 hourly candles, 3 folds, 70 % train: blocks of 33, 33, 34 candles
    ws = walk_forward_windows(START_2021, START_2021 + 100 * HOUR, 3, Decimal("0.7"), HOUR)
    h = [tuple((t - START_2021) // HOUR for t in w) for w in ws]
    assert h == [(0, 23, 23, 33), (33, 56, 56, 66), (66, 89, 89, 100)]
    assert ws[0] == Window(START_2021, START_2021 + 23 * HOUR, START_2021 + 23 * HOUR, START_2021 + 33 * HOUR)
    # a float fraction works the same
    assert walk_forward_windows(START_2021, START_2021 + 100 * HOUR, 3, 0.7, HOUR) == ws


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 10 * HOUR, 3, 0.7, 0), "step_ms"),
        ((0, 10 * HOUR, 0, 0.7, HOUR), "folds"),
        ((0, 10 * HOUR, 2, 0, HOUR), "train_fraction"),
        ((0, 10 * HOUR, 2, 1, HOUR), "train_fraction"),
        ((0, 10 * HOUR, 2, float("nan"), HOUR), "train_fraction"),
        ((0, 5 * HOUR, 3, 0.7, HOUR), "5 candles cannot make 3 folds"),
        ((10 * HOUR, 0, 1, 0.7, HOUR), "0 candles"),
    ],
)
def test_bad_arguments_raise(args: tuple[int, int, int, float, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        walk_forward_windows(*args)
