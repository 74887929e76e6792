"""No-lookahead proof: a decision at candle k depends on candles 0..k only.

Each strategy is run over the real candles; then again over the same first k + 1
candles followed by an arbitrary future (hypothesis-generated candles, or the real
future shuffled and scaled). Every decision at an index <= k must be identical
(action, edge and reason). A strategy that peeked at later candles would differ.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amarktai_tui.domain.enums import SignalAction
from amarktai_tui.domain.types import HOLD, Candle, Signal
from amarktai_tui.strategies import Strategy, make_strategy

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

CASES: list[tuple[str, dict[str, Any]]] = [
    ("sma_cross", {}),
    ("sma_cross", {"fast": 3, "slow": 12, "kind": "ema"}),
    ("rsi_reversion", {}),
    ("rsi_reversion", {"period": 5, "oversold": 35, "overbought": 65}),
    ("donchian_breakout", {}),
    ("donchian_breakout", {"entry_period": 7, "exit_period": 25}),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CASES)]
N = 3000  # real candles used per run (BTC/USDT 1h)


@cache
def real() -> tuple[Candle, ...]:
    rows = json.loads((DATA / "binance" / "BTC_USDT-1h.json").read_text())
    return tuple(
        Candle("BTC/USDT", "1h", int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]))
        for r in rows[:N]
    )


@cache
def baseline(i: int) -> tuple[Signal, ...]:
    name, params = CASES[i]
    s = make_strategy(name, params)
    return tuple(s.on_candle(c) for c in real())


def check_prefix(
    factory: Callable[[], Strategy], base: Sequence[Signal], k: int, future: list[Candle]
) -> list[Signal]:
    """Run prefix real()[: k + 1] + future; decisions at indices <= k must equal ``base``.

    Returns the decisions on the future candles.
    """
    s = factory()
    cs = list(real()[: k + 1]) + future
    got = [s.on_candle(c) for c in cs]
    assert got[: k + 1] == list(base[: k + 1]), f"decision at an index <= {k} changed with the future"
    return got[k + 1 :]


def _candle_from(ts: int, o: float, h: float, lo: float, c: float) -> Candle:
    hi = max(o, h, lo, c)
    low = min(o, h, lo, c)
    return Candle("BTC/USDT", "1h", ts, o, hi, low, c, 1.0)


price = st.floats(min_value=1.0, max_value=200_000.0, allow_nan=False, allow_infinity=False)
future_candles = st.lists(st.tuples(price, price, price, price), min_size=1, max_size=60)


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
@settings(max_examples=40, deadline=None, database=None)
@given(k=st.integers(0, N - 2), raw=future_candles)
def test_no_lookahead_with_arbitrary_future(case: int, k: int, raw: list[tuple[float, ...]]) -> None:
    name, params = CASES[case]
    t0 = real()[k].ts
    future = [_candle_from(t0 + 3_600_000 * (j + 1), *q) for j, q in enumerate(raw)]
    check_prefix(lambda: make_strategy(name, params), baseline(case), k, future)


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_lookahead_with_shuffled_and_scaled_future(case: int, seed: int) -> None:
    name, params = CASES[case]
    base = baseline(case)
    s = make_strategy(name, params)
    rng = random.Random(seed)
    # several k, including right at warm-up and right at real signals
    signal_idx = [i for i, x in enumerate(base) if x.action is not SignalAction.HOLD]
    ks = {s.warmup - 2, s.warmup - 1, s.warmup, 100, 1000, N // 2, N - 2}
    ks |= set(rng.sample(signal_idx, 5)) | {i - 1 for i in rng.sample(signal_idx, 5)}
    futures_differed = False
    for k in sorted(x for x in ks if 0 <= x <= N - 2):
        tail = list(real()[k + 1 :])
        rng.shuffle(tail)
        scale = rng.uniform(0.5, 2.0)
        future = [
            Candle(c.pair, c.timeframe, real()[k].ts + 3_600_000 * (j + 1), c.open * scale, c.high * scale,
                   c.low * scale, c.close * scale, c.volume)
            for j, c in enumerate(tail)
        ]  # fmt: skip
        after = check_prefix(lambda: make_strategy(name, params), base, k, future)
        futures_differed |= after != list(base[k + 1 :])
    # the altered futures really changed later decisions (otherwise this would prove nothing)
    assert futures_differed


class _Peeker:
    """A cheating strategy: it is given the whole series and looks one candle ahead."""

    name: ClassVar[str] = "peeker"

    def __init__(self, series: Sequence[Candle]) -> None:
        self._next = {c.ts: n for c, n in itertools.pairwise(series)}

    @property
    def warmup(self) -> int:
        return 1

    @property
    def params(self) -> dict[str, Any]:
        return {}

    def on_candle(self, candle: Candle) -> Signal:
        nxt = self._next.get(candle.ts)
        if nxt is not None and nxt.close > candle.close:
            return Signal(SignalAction.ENTER, 1.0, "knows the future")
        return HOLD


def test_the_check_catches_a_strategy_that_looks_ahead() -> None:
    base = tuple(_Peeker(real()).on_candle(c) for c in real())
    k = next(i for i in range(500, N) if base[i].action is SignalAction.ENTER)
    t0 = real()[k].ts
    future = [_candle_from(t0 + 3_600_000 * (j + 1), 1.0, 1.0, 1.0, 1.0) for j in range(10)]
    series = list(real()[: k + 1]) + future
    with pytest.raises(AssertionError, match="changed with the future"):
        check_prefix(lambda: _Peeker(series), base, k, future)
