"""Real candles and from-scratch reference indicators for the regime tests.

The references are written from the published formulas (Wilder 1978, TA-Lib's ADX/ATR seeding,
Bollinger's bands), not from the streaming code: Wilder's smoothing in closed form, band widths
with the standard library's ``statistics``. They are O(n) per value; the tests evaluate them at
a sample of candles.
"""

from __future__ import annotations

import json
import math
import statistics
from functools import cache
from pathlib import Path

from amarktai_tui.domain.types import Candle

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BTC_1H = DATA / "binance" / "BTC_USDT-1h.json"
ETH_1H = DATA / "binance" / "ETH_USDT-1h.json"


@cache
def rows(path: Path) -> tuple[tuple[float, ...], ...]:
    """The freqtrade JSON rows [ts, open, high, low, close, volume] as floats."""
    return tuple(tuple(float(v) for v in r) for r in json.loads(path.read_text()))


def candles(path: Path, pair: str, timeframe: str, start: int = 0, stop: int | None = None) -> list[Candle]:
    return [Candle(pair, timeframe, int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows(path)[start:stop]]


def write_slice(src: Path, dst: Path, start: int, stop: int) -> Path:
    """Candles [start, stop) of ``src`` into ``dst`` (same freqtrade JSON format and file name)."""
    raw = json.loads(src.read_text())
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(raw[start:stop]))
    return dst


# -- references ---------------------------------------------------------------------------


def true_ranges(h: list[float], lo: list[float], c: list[float]) -> list[float | None]:
    """TR_t = max(h - l, |h - c_{t-1}|, |l - c_{t-1}|); None at t = 0."""
    return [None] + [max(h[t] - lo[t], abs(h[t] - c[t - 1]), abs(lo[t] - c[t - 1])) for t in range(1, len(c))]


def wilder_closed(seed: float, xs: list[float], n: int) -> float:
    """Wilder's average A_k = (A_{k-1} (n - 1) + x_k) / n after ``xs``, from ``seed``, in closed
    form: (1 - a)^m seed + sum_j a (1 - a)^(m - 1 - j) x_j with a = 1 / n, m = len(xs)."""
    a = 1.0 / n
    m = len(xs)
    return math.fsum([(1 - a) ** m * seed] + [a * (1 - a) ** (m - 1 - j) * x for j, x in enumerate(xs)])


def ref_atr(h: list[float], lo: list[float], c: list[float], n: int, t: int) -> float | None:
    """ATR at candle t: mean of TR_1..TR_n, then Wilder's average (TA-Lib ATR, lookback n)."""
    if t < n:
        return None
    tr = true_ranges(h, lo, c)
    seed = math.fsum(tr[1 : n + 1]) / n  # type: ignore[arg-type]
    return wilder_closed(seed, tr[n + 1 : t + 1], n)  # type: ignore[arg-type]


def _dms(h: list[float], lo: list[float]) -> tuple[list[float], list[float]]:
    plus, minus = [0.0], [0.0]
    for t in range(1, len(h)):
        up, down = h[t] - h[t - 1], lo[t - 1] - lo[t]
        plus.append(up if up > down and up > 0 else 0.0)
        minus.append(down if down > up and down > 0 else 0.0)
    return plus, minus


def _wilder_sum(xs: list[float], n: int, t: int) -> float:
    """Wilder's running sum at t >= n: sum of x_1..x_{n-1}, then S - S/n + x each step (closed form)."""
    b = 1.0 - 1.0 / n
    seed = math.fsum(xs[1:n])
    return math.fsum([b ** (t - n + 1) * seed] + [b ** (t - j) * xs[j] for j in range(n, t + 1)])


def ref_di(h: list[float], lo: list[float], c: list[float], n: int, t: int) -> tuple[float, float] | None:
    """(+DI, -DI) at candle t >= n."""
    if t < n:
        return None
    plus, minus = _dms(h, lo)
    tr = true_ranges(h, lo, c)
    tr[0] = 0.0
    s = _wilder_sum(tr, n, t)  # type: ignore[arg-type]
    return 100 * _wilder_sum(plus, n, t) / s, 100 * _wilder_sum(minus, n, t) / s


def ref_adx_series(h: list[float], lo: list[float], c: list[float], n: int, upto: int) -> list[float | None]:
    """ADX for candles 0..upto: the mean of the first n DX (at candle 2n - 1), then Wilder's average."""
    dx: list[float] = []
    for t in range(n, upto + 1):
        di = ref_di(h, lo, c, n, t)
        assert di is not None
        p, m = di
        dx.append(100 * abs(p - m) / (p + m))
    out: list[float | None] = [None] * min(2 * n - 1, upto + 1)
    if upto < 2 * n - 1:
        return out
    seed = statistics.fmean(dx[:n])
    for t in range(2 * n - 1, upto + 1):
        out.append(wilder_closed(seed, dx[n : t - n + 1], n))
    return out


def ref_bb_width(closes: list[float], n: int, k: float, t: int) -> float | None:
    """(upper - lower) / middle with population sigma over closes t-n+1..t (statistics module)."""
    if t + 1 < n:
        return None
    w = closes[t + 1 - n : t + 1]
    return 2 * k * statistics.pstdev(w) / statistics.fmean(w)
