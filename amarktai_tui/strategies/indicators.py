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
- BollingerWidth(n, k): (upper - lower) / middle of Bollinger bands (SMA(n)
  +- k population standard deviations, TA-Lib BBANDS), first value at the
  n-th input; a fraction of the middle band.

ATR and ADX read whole candles: ``update(high, low, close)``.

- ATR(n): Wilder's average true range, seeded with the simple mean of the
  first n true ranges, first value at the (n+1)-th candle (TA-Lib ATR,
  lookback n); ``value / close`` is TA-Lib's NATR as a fraction.
- ADX(n): Wilder's average directional index with +DI/-DI, first value at
  the 2n-th candle (TA-Lib ADX, lookback 2n-1).
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["ADX", "ATR", "EMA", "RSI", "SMA", "BollingerWidth", "RollingMax", "RollingMin"]


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


class BollingerWidth:
    """Bollinger BandWidth: (upper - lower) / middle, a fraction of the middle band.

    Bands (J. Bollinger, *Bollinger on Bollinger Bands*, 2001; TA-Lib
    ``ta_BBANDS.c`` with an SMA): middle = SMA(n), upper/lower = middle +- k *
    sigma, sigma the population standard deviation of the last n inputs (divisor
    n, as Bollinger and TA-Lib use). So the width is 2 * k * sigma / middle;
    Bollinger's BandWidth (StockCharts multiplies it by 100). First value at the
    n-th input; ``middle``, ``upper`` and ``lower`` hold the last bands.

    Kept as a rolling mean and sum of squared deviations updated in O(1) when
    ``x`` replaces ``y`` in the window (mean' = mean + (x - y) / n, M2' = M2 +
    (x - y)(x - mean' + y - mean), Welford's update for a sliding window), with
    both recomputed exactly every ``period`` updates so float drift cannot
    accumulate (amortised O(1)). Inputs are prices (> 0): a middle band <= 0
    gives an infinite width.

    Raises ValueError if ``period`` is not an integer >= 2 or ``k`` is not > 0.
    """

    __slots__ = ("_buf", "_k", "_m2", "_mean", "_n", "_since_resum", "lower", "middle", "upper", "value")

    def __init__(self, period: int = 20, k: float = 2.0) -> None:
        self._n = _check_period(period, 2)
        if not (isinstance(k, int | float) and not isinstance(k, bool) and k > 0 and math.isfinite(k)):
            raise ValueError(f"k={k!r}: must be a finite number > 0")
        self._k = float(k)
        self._buf: deque[float] = deque(maxlen=period)
        self._mean = 0.0
        self._m2 = 0.0
        self._since_resum = 0
        self.middle: float | None = None
        self.upper: float | None = None
        self.lower: float | None = None
        self.value: float | None = None

    @property
    def period(self) -> int:
        return self._n

    @property
    def ready(self) -> bool:
        """True once ``period`` values have been seen."""
        return len(self._buf) == self._n

    def _resum(self) -> None:
        buf = self._buf
        mean = math.fsum(buf) / self._n
        self._mean = mean
        self._m2 = math.fsum((v - mean) * (v - mean) for v in buf)
        self._since_resum = 0

    def update(self, x: float) -> float | None:
        """Add ``x``; return the band width (fraction of the middle band), or None before ``period`` values."""
        buf = self._buf
        n = self._n
        if len(buf) == n:
            y = buf[0]
            buf.append(x)
            old = self._mean
            new = old + (x - y) / n
            self._m2 += (x - y) * (x - new + y - old)
            self._mean = new
            self._since_resum += 1
            if self._since_resum >= n:
                self._resum()
        else:
            buf.append(x)
            if len(buf) < n:
                return None
            self._resum()
        sigma = math.sqrt(max(self._m2 / n, 0.0))
        mid = self._mean
        half = self._k * sigma
        self.middle, self.upper, self.lower = mid, mid + half, mid - half
        v = 2.0 * half / mid if mid > 0.0 else math.inf
        self.value = v
        return v


def _true_range(high: float, low: float, prev_close: float) -> float:
    """Wilder's true range: the largest of high - low, |high - prev close|, |low - prev close|."""
    tr = high - low
    up = abs(high - prev_close)
    if up > tr:
        tr = up
    down = abs(low - prev_close)
    return down if down > tr else tr


class ATR:
    """Average True Range with Wilder smoothing (price units), fed whole candles.

    Formula (Wilder 1978; TA-Lib ``ta_ATR.c``/``ta_TRANGE.c``): TR_t = max(high_t -
    low_t, |high_t - close_{t-1}|, |low_t - close_{t-1}|), defined from the second
    candle; the first ATR is the simple mean of the first n TRs (at the (n+1)-th
    candle), then ATR_t = (ATR_{t-1} * (n - 1) + TR_t) / n. ATR / close is the
    ATR as a fraction of the price (TA-Lib NATR / 100).

    Raises ValueError if ``period`` is not an integer >= 1.
    """

    __slots__ = ("_count", "_n", "_prev_close", "_sum", "value")

    def __init__(self, period: int = 14) -> None:
        self._n = _check_period(period)
        self._count = 0  # true ranges seen while seeding
        self._sum = 0.0
        self._prev_close: float | None = None
        self.value: float | None = None

    @property
    def period(self) -> int:
        return self._n

    @property
    def ready(self) -> bool:
        """True once ``period + 1`` candles (``period`` true ranges) have been seen."""
        return self.value is not None

    def update(self, high: float, low: float, close: float) -> float | None:
        """Add a candle; return the ATR, or None for the first ``period`` candles."""
        prev = self._prev_close
        self._prev_close = close
        if prev is None:
            return None
        tr = _true_range(high, low, prev)
        n = self._n
        v = self.value
        if v is not None:
            v = (v * (n - 1) + tr) / n
            self.value = v
            return v
        self._count += 1
        self._sum += tr
        if self._count < n:
            return None
        v = self._sum / n
        self.value = v
        return v


class ADX:
    """Average Directional Index (0..100) with +DI and -DI, Wilder smoothing, fed whole candles.

    Formula (J. Welles Wilder, *New Concepts in Technical Trading Systems*, 1978;
    TA-Lib ``ta_ADX.c``, whose seeding this follows so values match it):

    - up = high_t - high_{t-1}, down = low_{t-1} - low_t; +DM = up when up > down
      and up > 0, else 0; -DM = down when down > up and down > 0, else 0; TR as
      in ``ATR``.
    - +DM, -DM and TR are summed over the first n - 1 changes, then smoothed with
      S_t = S_{t-1} - S_{t-1} / n + x_t (Wilder's running sum).
    - +DI = 100 * S(+DM) / S(TR), -DI = 100 * S(-DM) / S(TR) (from the (n+1)-th
      candle: ``plus_di``/``minus_di``); DX = 100 * |+DI - -DI| / (+DI + -DI).
    - The first ADX is the mean of the first n DX (at the 2n-th candle), then
      ADX_t = (ADX_{t-1} * (n - 1) + DX_t) / n.

    As in TA-Lib, a candle whose smoothed TR or DI sum is zero (a flat market)
    adds no DX (the ADX keeps its value; during seeding it counts as 0); TA-Lib
    treats |x| < 1e-8 as zero, here only 0.0 is, so coins priced under 1e-6
    still get an ADX.

    Raises ValueError if ``period`` is not an integer >= 2.
    """

    __slots__ = (
        "_count",
        "_dx_sum",
        "_m",
        "_n",
        "_p",
        "_prev_close",
        "_prev_high",
        "_prev_low",
        "_tr",
        "minus_di",
        "plus_di",
        "value",
    )

    def __init__(self, period: int = 14) -> None:
        self._n = _check_period(period, 2)
        self._count = 0  # directional movements seen
        self._p = 0.0  # smoothed +DM (a running sum)
        self._m = 0.0  # smoothed -DM
        self._tr = 0.0  # smoothed TR
        self._dx_sum = 0.0
        self._prev_high = self._prev_low = self._prev_close = math.nan
        self.plus_di: float | None = None
        self.minus_di: float | None = None
        self.value: float | None = None

    @property
    def period(self) -> int:
        return self._n

    @property
    def ready(self) -> bool:
        """True once ``2 * period`` candles have been seen."""
        return self.value is not None

    def update(self, high: float, low: float, close: float) -> float | None:
        """Add a candle; return the ADX, or None for the first ``2 * period - 1`` candles."""
        ph, pl, pc = self._prev_high, self._prev_low, self._prev_close
        self._prev_high, self._prev_low, self._prev_close = high, low, close
        if math.isnan(pc):  # the first candle: nothing to compare with yet
            return None
        count = self._count = self._count + 1
        up = high - ph
        down = pl - low
        plus = minus = 0.0
        if down > 0.0 and up < down:
            minus = down
        elif up > 0.0 and up > down:
            plus = up
        tr = _true_range(high, low, pc)
        n = self._n
        if count < n:  # seed: plain sums of the first n - 1 movements
            self._p += plus
            self._m += minus
            self._tr += tr
            return None
        p, m, s = self._p, self._m, self._tr
        p -= p / n
        p += plus
        m -= m / n
        m += minus
        s = s - s / n + tr
        self._p, self._m, self._tr = p, m, s
        dx: float | None = None
        if s != 0.0:
            mdi = 100.0 * (m / s)
            pdi = 100.0 * (p / s)
            total = mdi + pdi
            if total != 0.0:
                dx = 100.0 * (abs(mdi - pdi) / total)
        else:
            mdi = pdi = 0.0
        self.plus_di, self.minus_di = pdi, mdi
        v = self.value
        if v is None:
            if dx is not None:
                self._dx_sum += dx
            if count < 2 * n - 1:
                return None
            v = self._dx_sum / n
        elif dx is not None:
            v = (v * (n - 1) + dx) / n
        self.value = v
        return v
