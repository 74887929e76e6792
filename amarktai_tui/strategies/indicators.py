"""Incremental technical indicators: O(1) (amortised) work per value, floats.

Every indicator is fed one value at a time, oldest first, with ``update(x)``,
which returns the indicator's value after ``x`` or ``None`` while it is not
``ready`` yet (too few values seen). ``value`` is the last returned value.
Inputs are prices (or any finite float); outputs are in the input's units,
except RSI (0..100). None of them reads a clock or does I/O.

Conventions follow TA-Lib (https://github.com/TA-Lib/ta-lib, ``src/ta_func``)
so that values can be checked against charting tools:

- SMA(n): first value at the n-th input (TA-Lib lookback n-1).
- EMA(n): seeded with the SMA of the first n inputs (TA-Lib's default,
  non-Metastock mode), first value at the n-th input.
- RSI(n): Wilder smoothing seeded with the simple averages of the first n
  gains and losses, first value at the (n+1)-th input (TA-Lib lookback n).
- RollingMax/RollingMin(n): max/min of the last n inputs, first value at the
  n-th input (TA-Lib MAX/MIN), as used for Donchian channels.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["EMA", "RSI", "SMA", "RollingMax", "RollingMin"]


def _check_period(period: int, minimum: int = 1) -> int:
    if isinstance(period, bool) or not isinstance(period, int) or period < minimum:
        raise ValueError(f"period={period!r}: must be an integer >= {minimum}")
    return period


class SMA:
    """Simple moving average of the last ``period`` values.

    Formula: SMA_t = (x_{t-n+1} + ... + x_t) / n (TA-Lib ``ta_SMA.c``;
    Murphy, *Technical Analysis of the Financial Markets*, ch. 9).

    Kept as a running sum over a ``deque``: each update adds ``x - x_{t-n}``
    (the difference of two nearby prices is exact or nearly so), and every
    ``period`` updates the sum is recomputed with ``math.fsum`` so float drift
    cannot accumulate over a long run (amortised O(1)).

    Raises ValueError if ``period`` is not an integer >= 1.
    """

    __slots__ = ("_buf", "_n", "_since_resum", "_sum", "value")

    def __init__(self, period: int) -> None:
        self._n = _check_period(period)
        self._buf: deque[float] = deque(maxlen=period)
        self._sum = 0.0
        self._since_resum = 0
        self.value: float | None = None

    @property
    def period(self) -> int:
        return self._n

    @property
    def ready(self) -> bool:
        """True once ``period`` values have been seen."""
        return len(self._buf) == self._n

    def update(self, x: float) -> float | None:
        """Add ``x``; return the SMA of the last ``period`` values, or None before that."""
        buf = self._buf
        n = self._n
        if len(buf) == n:
            self._sum += x - buf[0]
            buf.append(x)
            self._since_resum += 1
            if self._since_resum >= n:
                self._since_resum = 0
                self._sum = math.fsum(buf)
            v = self._sum / n
            self.value = v
            return v
        buf.append(x)
        self._sum += x
        if len(buf) == n:
            self._sum = math.fsum(buf)
            v = self._sum / n
            self.value = v
            return v
        return None


class EMA:
    """Exponential moving average with smoothing ``k = 2 / (period + 1)``.

    Formula: EMA_t = EMA_{t-1} + k * (x_t - EMA_{t-1}), seeded at the n-th
    value with the SMA of the first n values (TA-Lib ``ta_EMA.c``, default
    compatibility mode; StockCharts ChartSchool, "Moving Averages - Simple
    and Exponential"). Returns None for the first n-1 values.

    Raises ValueError if ``period`` is not an integer >= 1.
    """

    __slots__ = ("_count", "_k", "_n", "_seed", "value")

    def __init__(self, period: int) -> None:
        self._n = _check_period(period)
        self._k = 2.0 / (period + 1)
        self._count = 0
        self._seed: list[float] = []
        self.value: float | None = None

    @property
    def period(self) -> int:
        return self._n

    @property
    def ready(self) -> bool:
        """True once ``period`` values have been seen."""
        return self._count >= self._n

    def update(self, x: float) -> float | None:
        """Add ``x``; return the EMA, or None for the first ``period - 1`` values."""
        v = self.value
        if v is not None:
            v += self._k * (x - v)
            self.value = v
            return v
        self._count += 1
        self._seed.append(x)
        if self._count < self._n:
            return None
        v = math.fsum(self._seed) / self._n
        self._seed = []
        self.value = v
        return v


class RSI:
    """Relative Strength Index with Wilder smoothing, 0..100.

    Formula (J. Welles Wilder, *New Concepts in Technical Trading Systems*,
    1978; TA-Lib ``ta_RSI.c``): with gain_t = max(x_t - x_{t-1}, 0) and
    loss_t = max(x_{t-1} - x_t, 0), the first averages are the simple means
    of the first n gains and losses; after that
    avg_t = (avg_{t-1} * (n - 1) + value_t) / n. RSI = 100 - 100 / (1 + RS)
    with RS = avg_gain / avg_loss, computed as 100 - 100 * avg_loss /
    (avg_gain + avg_loss), which stays within [0, 100] in floats. The first
    value comes at the (n+1)-th input (n changes needed).

    One deliberate difference from TA-Lib: when both averages are zero (a
    perfectly flat market) RSI is 50 (neutral), not TA-Lib's 0, so a flat
    market never reads as "oversold".

    Raises ValueError if ``period`` is not an integer >= 1.
    """

    __slots__ = ("_avg_gain", "_avg_loss", "_count", "_n", "_prev", "value")

    def __init__(self, period: int) -> None:
        self._n = _check_period(period)
        self._count = 0  # number of changes seen
        self._prev: float | None = None
        self._avg_gain = 0.0  # running sum during the seed phase, then the average
        self._avg_loss = 0.0
        self.value: float | None = None

    @property
    def period(self) -> int:
        return self._n

    @property
    def ready(self) -> bool:
        """True once ``period + 1`` values (``period`` changes) have been seen."""
        return self._count >= self._n

    def update(self, x: float) -> float | None:
        """Add ``x``; return RSI in [0, 100], or None for the first ``period`` values."""
        prev = self._prev
        self._prev = x
        if prev is None:
            return None
        d = x - prev
        n = self._n
        if self._count >= n:
            if d > 0.0:
                g = (self._avg_gain * (n - 1) + d) / n
                lo = self._avg_loss * (n - 1) / n
            else:
                g = self._avg_gain * (n - 1) / n
                lo = (self._avg_loss * (n - 1) - d) / n
            self._avg_gain = g
            self._avg_loss = lo
        else:
            self._count += 1
            if d > 0.0:
                self._avg_gain += d
            else:
                self._avg_loss -= d
            if self._count < n:
                return None
            g = self._avg_gain = self._avg_gain / n
            lo = self._avg_loss = self._avg_loss / n
        total = g + lo
        v = 100.0 - 100.0 * (lo / total) if total > 0.0 else 50.0
        self.value = v
        return v


class _RollingExtreme:
    """Shared monotonic-deque machinery for RollingMax/RollingMin."""

    __slots__ = ("_i", "_idx", "_n", "_vals", "value")

    def __init__(self, period: int) -> None:
        self._n = _check_period(period)
        self._i = 0  # number of values seen
        self._idx: deque[int] = deque()
        self._vals: deque[float] = deque()
        self.value: float | None = None

    @property
    def period(self) -> int:
        return self._n

    @property
    def ready(self) -> bool:
        """True once ``period`` values have been seen."""
        return self._i >= self._n


class RollingMax(_RollingExtreme):
    """Maximum of the last ``period`` values (upper Donchian channel on highs).

    Formula: max(x_{t-n+1}, ..., x_t) (TA-Lib ``ta_MAX.c``; R. Donchian's
    channel, e.g. Faith, *Way of the Turtle*, 2007). Uses a monotonic deque
    (strictly decreasing values, each value pushed and popped at most once),
    so updates are amortised O(1).

    Raises ValueError if ``period`` is not an integer >= 1.
    """

    __slots__ = ()

    def update(self, x: float) -> float | None:
        """Add ``x``; return the max of the last ``period`` values, or None before that."""
        vals = self._vals
        idx = self._idx
        i = self._i
        while vals and vals[-1] <= x:
            vals.pop()
            idx.pop()
        vals.append(x)
        idx.append(i)
        i += 1
        self._i = i
        if idx[0] <= i - 1 - self._n:
            idx.popleft()
            vals.popleft()
        if i < self._n:
            return None
        v = vals[0]
        self.value = v
        return v


class RollingMin(_RollingExtreme):
    """Minimum of the last ``period`` values (lower Donchian channel on lows).

    Formula: min(x_{t-n+1}, ..., x_t) (TA-Lib ``ta_MIN.c``; Donchian channel).
    Monotonic deque of strictly increasing values: amortised O(1).

    Raises ValueError if ``period`` is not an integer >= 1.
    """

    __slots__ = ()

    def update(self, x: float) -> float | None:
        """Add ``x``; return the min of the last ``period`` values, or None before that."""
        vals = self._vals
        idx = self._idx
        i = self._i
        while vals and vals[-1] >= x:
            vals.pop()
            idx.pop()
        vals.append(x)
        idx.append(i)
        i += 1
        self._i = i
        if idx[0] <= i - 1 - self._n:
            idx.popleft()
            vals.popleft()
        if i < self._n:
            return None
        v = vals[0]
        self.value = v
        return v
