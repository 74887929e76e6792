"""Regimes: ADX/ATR/Bollinger width against from-scratch references on real candles, the
classification at its thresholds, the regimes found on real data, and the RegimeBook on a bus."""

from __future__ import annotations

import math
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regime_helpers import (
    BTC_1H,
    ETH_1H,
    candles,
    ref_adx_series,
    ref_atr,
    ref_bb_width,
    ref_di,
    rows,
)

from amarktai_tui.autonomy import regime as R
from amarktai_tui.autonomy.settings import REGIMES, RegimeSettings
from amarktai_tui.domain.types import Candle
from amarktai_tui.engine.events import EngineTick, EventBus, RegimeChanged
from amarktai_tui.strategies.indicators import ADX, ATR, BollingerWidth

REL = 1e-9  # streaming vs closed-form references: float rounding only


def _cols(path: Any, start: int, stop: int) -> tuple[list[float], list[float], list[float]]:
    rs = rows(path)[start:stop]
    return [r[2] for r in rs], [r[3] for r in rs], [r[4] for r in rs]


def _close(a: float | None, b: float | None, rel: float = REL) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


# ---------------------------------------------------------------- indicators vs references


@pytest.mark.parametrize(("path", "start", "stop"), [(BTC_1H, 0, 500), (ETH_1H, 3900, 4400)])
def test_adx_and_di_match_wilders_formulas(path: Any, start: int, stop: int) -> None:
    h, lo, c = _cols(path, start, stop)
    ref = ref_adx_series(h, lo, c, 14, len(c) - 1)
    adx = ADX(14)
    for t in range(len(c)):
        got = adx.update(h[t], lo[t], c[t])
        assert _close(got, ref[t]), (t, got, ref[t])
        di = ref_di(h, lo, c, 14, t)
        if di is None:
            assert adx.plus_di is None and adx.minus_di is None
        else:
            assert _close(adx.plus_di, di[0]) and _close(adx.minus_di, di[1]), t
    assert ref[26] is None and ref[27] is not None, "first ADX(14) at the 28th candle (lookback 27)"
    assert adx.ready


@pytest.mark.parametrize("path", [BTC_1H, ETH_1H])
def test_atr_and_band_width_match_on_the_whole_file(path: Any) -> None:
    h, lo, c = _cols(path, 0, None)  # type: ignore[arg-type]
    atr, bbw = ATR(14), BollingerWidth(20, 2.0)
    sample = set(range(0, 60)) | set(range(60, len(c), 97)) | {len(c) - 1}
    for t in range(len(c)):
        a = atr.update(h[t], lo[t], c[t])
        w = bbw.update(c[t])
        if t in sample:
            assert _close(a, ref_atr(h, lo, c, 14, t)), t
            assert _close(w, ref_bb_width(c, 20, 2.0, t)), t
    assert bbw.middle is not None and bbw.upper is not None and bbw.lower is not None
    assert math.isclose(bbw.upper - bbw.lower, (bbw.value or 0) * bbw.middle, rel_tol=1e-12)


# TA-Lib's own output on BTC_USDT-1h (python package ta-lib 0.8.2 with its bundled C library:
# ADX, PLUS_DI, MINUS_DI, NATR with period 14; BBANDS(20, 2, 2, SMA) -> (upper - lower) / middle),
# computed once outside the test suite. Index: candle of the file; NATR in percent.
TALIB_BTC_1H = {
    14: {"pdi": 15.946732151617843, "natr": 2.116733261889862},
    19: {"bbw": 0.06641537580739725},
    27: {
        "adx": 38.929345986385854,
        "pdi": 11.19646295252597,
        "mdi": 31.02811412157407,
        "natr": 1.90192146706678,
        "bbw": 0.06805524782476156,
    },
    1000: {
        "adx": 52.64739858858098,
        "pdi": 12.73470121439653,
        "mdi": 31.26933128605432,
        "natr": 4.935931445610838,
        "bbw": 0.1837846991577602,
    },
    3000: {
        "adx": 35.647377986433646,
        "pdi": 8.984327571203817,
        "mdi": 30.697001055936486,
        "natr": 0.7327352136991917,
        "bbw": 0.02642746274030628,
    },
    5481: {
        "adx": 13.316490446397674,
        "pdi": 20.47972790393674,
        "mdi": 17.394484404770385,
        "natr": 0.8074475248724576,
        "bbw": 0.020909869850901257,
    },
}


def test_values_match_ta_lib_on_btc_1h() -> None:
    """The first values come where TA-Lib's lookbacks put them, and agree with its figures
    (its band width uses a naive variance, hence 1e-9 there)."""
    adx, atr, bbw = ADX(14), ATR(14), BollingerWidth(20, 2.0)
    for t, r in enumerate(rows(BTC_1H)):
        _, _, h, lo, c, _ = r
        got = {"adx": adx.update(h, lo, c), "bbw": bbw.update(c)}
        a = atr.update(h, lo, c)
        got |= {"natr": None if a is None else 100 * a / c, "pdi": adx.plus_di, "mdi": adx.minus_di}
        if t in (13, 18, 26):
            assert got[{13: "pdi", 18: "bbw", 26: "adx"}[t]] is None, t
        for key, want in TALIB_BTC_1H.get(t, {}).items():
            assert got[key] == pytest.approx(want, rel=1e-9 if key == "bbw" else 1e-12), (t, key)


def test_adx_of_a_steady_climb_is_100_and_a_steady_fall_has_no_plus_di() -> None:
    """Higher highs and higher lows every candle: -DM is always 0, so DX = 100 and ADX = 100."""
    up = ADX(5)
    for i in range(30):
        v = up.update(100.0 + i, 99.0 + i, 99.5 + i)
    assert v == pytest.approx(100.0) and up.minus_di == 0.0 and (up.plus_di or 0) > 0
    down = ADX(5)
    for i in range(30):
        down.update(100.0 - i, 99.0 - i, 99.5 - i)
    assert down.plus_di == 0.0 and down.value == pytest.approx(100.0)


def test_flat_market_keeps_adx_defined_and_band_width_zero() -> None:
    adx, atr, bbw = ADX(3), ATR(3), BollingerWidth(4)
    for _ in range(20):
        adx.update(5.0, 5.0, 5.0)
        atr.update(5.0, 5.0, 5.0)
        bbw.update(5.0)
    assert adx.value == 0.0 and adx.plus_di == 0.0 and atr.value == 0.0 and bbw.value == 0.0


def test_indicator_periods_are_checked() -> None:
    for bad in (0, 1, True, 2.5):
        with pytest.raises(ValueError, match="period"):
            ADX(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="period"):
        ATR(0)
    with pytest.raises(ValueError, match="period"):
        BollingerWidth(1)
    with pytest.raises(ValueError, match="k="):
        BollingerWidth(20, 0.0)


# ---------------------------------------------------------------- classification


def test_warm_up_is_unknown() -> None:
    full = {"adx": 30.0, "plus_di": 30.0, "minus_di": 10.0, "bb_width": 0.05, "atr_pct": 0.01}
    for missing in full:
        args = dict(full, **{missing: None})
        assert R.classify(**args) == "unknown", missing  # type: ignore[arg-type]
    assert R.classify(**full) == "trending_up"  # type: ignore[arg-type]


def test_thresholds_at_their_boundaries() -> None:
    v = R.volatile_threshold("1h")
    below = math.nextafter(v, 0)

    def c(
        adx: float, p: float = 30.0, m: float = 10.0, w: float = 0.05, low: float | None = 0.01, **kw: Any
    ) -> str:
        return R.classify(adx, p, m, w, kw.pop("atr", below), bb_width_low=low, volatile_atr_pct=v, **kw)

    # volatile from the threshold up, whatever the trend
    assert R.classify(40.0, 30.0, 10.0, 0.05, v, volatile_atr_pct=v) == "volatile"
    assert c(40.0) == "trending_up" and c(40.0, atr=v) == "volatile"
    # trend from ADX 25, direction from the DIs
    assert c(R.ADX_TREND) == "trending_up" and c(R.ADX_TREND, p=10.0, m=30.0) == "trending_down"
    assert c(math.nextafter(R.ADX_TREND, 0)) == "ranging"
    assert c(30.0, p=20.0, m=20.0) == "ranging", "no direction: not a trend"
    # a trend lasts down to ADX 20 (hysteresis), not a fresh one
    assert c(R.ADX_TREND_EXIT, previous="trending_up") == "trending_up"
    assert c(R.ADX_TREND_EXIT, p=10.0, m=30.0, previous="trending_up") == "trending_down"
    assert c(math.nextafter(R.ADX_TREND_EXIT, 0), previous="trending_up") == "ranging"
    assert c(R.ADX_TREND_EXIT, previous="ranging") == "ranging"
    # squeeze: width within 10 % of its lowest, only without a trend and once the lookback is full
    low = 0.02
    assert c(15.0, w=low * R.SQUEEZE_NEAR_LOW, low=low) == "squeeze"
    assert c(15.0, w=math.nextafter(low * R.SQUEEZE_NEAR_LOW, 1), low=low) == "ranging"
    assert c(15.0, w=low, low=None) == "ranging"
    assert c(30.0, w=low, low=low) == "trending_up"


def test_volatile_threshold_scales_with_the_square_root_of_time() -> None:
    assert R.volatile_threshold("1d") == pytest.approx(R.VOLATILE_ATR_PCT_DAILY)
    assert R.volatile_threshold("1h") == pytest.approx(R.VOLATILE_ATR_PCT_DAILY / math.sqrt(24))
    assert R.volatile_threshold("1h") / R.volatile_threshold("5m") == pytest.approx(math.sqrt(12))
    with pytest.raises(ValueError):
        R.volatile_threshold("7x")


def test_real_data_finds_every_regime_and_matches_the_references() -> None:
    """BTC/USDT 1h, 1500 candles of 2021: the tracker finds all five regimes; each reading agrees with
    ``classify`` applied to reference indicator values."""
    cs = candles(BTC_1H, "BTC/USDT", "1h", 2000, 3500)
    tracker = R.RegimeTracker("1h")
    seen: dict[str, int] = {}
    readings = []
    for c in cs:
        r = tracker.update(c)
        readings.append(r)
        seen[r.regime] = seen.get(r.regime, 0) + 1
    assert set(seen) == set(REGIMES), seen
    assert all(r.regime == "unknown" for r in readings[:27]) and readings[27].regime != "unknown"
    assert seen["unknown"] == 27
    # spot check 25 candles against from-scratch figures
    h, lo, cl = [c.high for c in cs], [c.low for c in cs], [c.close for c in cs]
    adx_ref = ref_adx_series(h, lo, cl, 14, 400)
    for t in range(150, 400, 10):
        r = readings[t]
        di = ref_di(h, lo, cl, 14, t)
        atr = ref_atr(h, lo, cl, 14, t)
        assert di is not None and atr is not None and adx_ref[t] is not None
        widths = [ref_bb_width(cl, 20, 2.0, j) for j in range(t - R.SQUEEZE_LOOKBACK + 1, t + 1)]
        assert _close(r.adx, adx_ref[t]) and _close(r.atr_pct, atr / cl[t])
        assert _close(r.bb_width_low, min(w for w in widths if w is not None))
        expected = R.classify(
            adx_ref[t],
            di[0],
            di[1],
            widths[-1],
            atr / cl[t],
            bb_width_low=min(w for w in widths if w is not None),
            volatile_atr_pct=R.volatile_threshold("1h"),
            previous=readings[t - 1].regime,
        )
        assert r.regime == expected, t


def test_short_labels_fit_the_column() -> None:
    assert {R.short_label(r) for r in REGIMES} == {"trend↑", "trend↓", "range", "volat", "squeeze", "—"}
    assert R.short_label(None) == "—"
    assert max(len(R.short_label(r)) for r in REGIMES) <= 7


# ---------------------------------------------------------------- the book on a bus


def _runner(pair: str = "BTC/USDT", tf: str = "1h", strategy: str = "sma_cross", bot_id: int = 1) -> Any:
    """A stand-in for a BotRunner: the book reads only ``rec``'s pair, timeframe, strategy, id, name."""
    return SimpleNamespace(
        rec=SimpleNamespace(pair=pair, timeframe=tf, strategy=strategy, id=bot_id, name=f"bot{bot_id}")
    )


def test_book_publishes_each_change_and_answers_per_stream() -> None:
    bus = EventBus()
    book = R.RegimeBook(RegimeSettings(), "binance")
    book.attach(bus)
    changes: list[RegimeChanged] = []
    bus.subscribe(RegimeChanged, changes.append)
    btc = candles(BTC_1H, "BTC/USDT", "1h", 0, 400)
    eth = candles(ETH_1H, "ETH/USDT", "1h", 0, 400)
    reference = R.RegimeTracker("1h")
    expected: list[tuple[str, str]] = []
    prev = "unknown"
    for b, e in zip(btc, eth, strict=True):
        now = reference.update(b).regime
        if now != prev:
            expected.append((prev, now))
        prev = now
        bus.publish(EngineTick(b.ts + 3_600_000, b))
        bus.publish(EngineTick(e.ts + 3_600_000, e))
        bus.publish(EngineTick(b.ts + 3_600_000, b))  # a candle seen again changes nothing
    got = [(ev.old, ev.regime) for ev in changes if ev.pair == "BTC/USDT"]
    assert got == expected and len(got) > 5
    assert {ev.pair for ev in changes} == {"BTC/USDT", "ETH/USDT"} and book.changes == len(changes)
    assert all(ev.exchange == "binance" and ev.timeframe == "1h" for ev in changes)
    last = [ev for ev in changes if ev.pair == "BTC/USDT"][-1]
    r = book.reading("BTC/USDT", "1h")
    assert r is not None and r.regime == last.regime == reference.reading.regime
    assert book.regime_of(_runner()) == r.regime
    assert book.regime_of(_runner("ETH/USDT")) == book.readings()[("binance", "ETH/USDT", "1h")].regime
    assert book.regime_of(_runner("BTC/USDT", "5m")) == "unknown", "a stream with no candle yet"
    assert "ADX" in r.figures() and "BBW" in r.figures() and "ATR" in r.figures()
    book.detach()
    bus.publish(EngineTick(btc[-1].ts + 7_200_000, candles(BTC_1H, "BTC/USDT", "1h", 400, 401)[0]))
    assert book.reading("BTC/USDT", "1h") == r, "detached: no longer fed"


def test_allowed_strategies_refuse_with_the_reason() -> None:
    cfg = RegimeSettings(allowed_strategies={"unknown": ["rsi_reversion"]})
    book = R.RegimeBook(cfg, "binance")
    assert book.size_scale(_runner(strategy="sma_cross")) == (
        Decimal(0),
        "regime unknown: sma_cross may not open positions",
    )
    assert book.refusals[-1][1:] == (1, "regime unknown: sma_cross may not open positions")
    assert book.size_scale(_runner(strategy="rsi_reversion", bot_id=2)) == (
        Decimal("0.8"),
        "regime unknown: size x0.8",
    )
    assert book.last_scale[2] == (Decimal("0.8"), "regime unknown: size x0.8")


regime_tables = st.dictionaries(
    st.sampled_from(REGIMES),
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("10"), places=2),
)


@settings(max_examples=40, deadline=None)
@given(
    table=regime_tables,
    allowed=st.dictionaries(
        st.sampled_from(REGIMES), st.lists(st.sampled_from(["sma_cross", "rsi_reversion"]))
    ),
    start=st.integers(0, 5000),
    steps=st.lists(st.floats(-0.03, 0.03), min_size=30, max_size=200),
    strategy=st.sampled_from(["sma_cross", "rsi_reversion", "donchian_breakout"]),
)
def test_the_multiplier_always_comes_from_the_configured_table(
    table: dict[str, Decimal],
    allowed: dict[str, list[str]],
    start: int,
    steps: list[float],
    strategy: str,
) -> None:
    """Real candles, then a random walk: after every candle the scale is the table's entry for the
    book's regime (1 when missing), or 0 exactly when the regime's allowed list leaves the strategy out."""
    cfg = RegimeSettings(size_scaling=table, allowed_strategies=allowed)
    book = R.RegimeBook(cfg, "binance")
    runner = _runner(strategy=strategy)
    real = candles(BTC_1H, "BTC/USDT", "1h", start, start + 40)
    price = real[-1].close
    walk = []
    for i, s in enumerate(steps):
        o, price = price, price * (1 + s)
        walk.append(
            Candle(
                "BTC/USDT",
                "1h",
                real[-1].ts + (i + 1) * 3_600_000,
                o,
                max(o, price) * 1.002,
                min(o, price) * 0.998,
                price,
                1.0,
            )
        )
    for c in real + walk:
        book.on_tick(EngineTick(c.ts + 3_600_000, c))
        regime = book.regime_of(runner)
        scale, why = book.size_scale(runner)
        if regime in allowed and strategy not in allowed[regime]:
            assert scale == 0 and why == f"regime {regime}: {strategy} may not open positions"
        else:
            assert scale == table.get(regime, Decimal(1)) and why.startswith(f"regime {regime}:")
