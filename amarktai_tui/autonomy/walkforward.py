"""Walk-forward folds: optimise on a window of candles, score on the window that follows it.

``walk_forward_windows(start_ms, end_ms, folds, train_fraction, step_ms)`` cuts the candle range
``[start_ms, end_ms)`` (open times, ms UTC; ``end_ms`` is the close of the last candle) into
``folds`` consecutive blocks of (nearly) equal length, and each block into a train (in-sample)
window followed by a test (out-of-sample) window::

    |--- train 0 ---|- test 0 -|--- train 1 ---|- test 1 -|--- train 2 ---|- test 2 -|
    start_ms                                                                    end_ms

This is walk-forward analysis as Pardo describes it (R. Pardo, *The Evaluation and Optimization
of Trading Strategies*, 2nd ed., Wiley 2008, ch. 11): optimise on an in-sample window, then trade
the parameters on the unseen window right after it, and roll on; the same rolling split as
vectorbt's ``rolling_split(n, window_len, set_lens=(test_len,))`` (its WalkForwardOptimization
example) with ``window_len`` = range / n, so that the windows do not overlap.

Why the blocks do not overlap (unlike Pardo's classic roll, where each train window moves on by
one test window's length and so covers the earlier test windows): ``autonomy.optimize`` scores a
parameter set by its mean over ALL the train windows; with overlapping windows that mean would
already have seen every test window but the last, and the out-of-sample figures would not be
out of sample. Here no test window overlaps any train window, so the test figures of the
selected parameters are a fair estimate of how they trade on data they were not chosen on.

Every boundary is ``start_ms + k * step_ms`` (a candle boundary); windows are half-open
``[start, end)``; ``train_end == test_start``. A block of ``m`` candles gets
``floor(m * train_fraction)`` train candles, at least 1 and at most ``m - 1``; of ``n`` candles,
block ``i`` holds candles ``floor(i * n / folds)`` to ``floor((i + 1) * n / folds)`` (exclusive), so
blocks differ in length by at most one candle.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

__all__ = ["Window", "walk_forward_windows"]


class Window(NamedTuple):
    """One fold: ``[train_start, train_end)`` then ``[test_start, test_end)``, ms UTC open times,
    ``train_end == test_start``."""

    train_start: int
    train_end: int
    test_start: int
    test_end: int


def walk_forward_windows(
    start_ms: int, end_ms: int, folds: int, train_fraction: Decimal | float, step_ms: int
) -> list[Window]:
    """The ``folds`` walk-forward windows of ``[start_ms, end_ms)`` (module doc), oldest first.

    ``step_ms``: the candle length (ms); a partial candle at the end of the range is left out.
    ``train_fraction``: the share of each block used for training, strictly between 0 and 1.
    Raises ValueError for ``step_ms <= 0``, ``folds < 1``, a fraction outside (0, 1), or a range
    too short for two candles per fold.
    """
    if step_ms <= 0:
        raise ValueError(f"step_ms must be > 0, got {step_ms}")
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    frac = Decimal(str(train_fraction))
    if not (frac.is_finite() and 0 < frac < 1):
        raise ValueError(f"train_fraction must be between 0 and 1 (exclusive), got {train_fraction}")
    n = max(0, (end_ms - start_ms) // step_ms)
    if n < 2 * folds:
        raise ValueError(f"{n} candles cannot make {folds} folds: each needs a train and a test candle")
    out = []
    for i in range(folds):
        lo, hi = i * n // folds, (i + 1) * n // folds  # candle indexes of the block
        m = hi - lo
        train = min(m - 1, max(1, int(m * frac)))
        cut = lo + train
        out.append(
            Window(
                train_start=start_ms + lo * step_ms,
                train_end=start_ms + cut * step_ms,
                test_start=start_ms + cut * step_ms,
                test_end=start_ms + hi * step_ms,
            )
        )
    return out
