"""Market regimes: ADX(14), Bollinger band width and ATR% classify each stream's market.

One ``RegimeTracker`` per (exchange, pair, timeframe) stream feeds the three indicators
(``strategies.indicators``: ``ADX``, ``BollingerWidth``, ``ATR``) one closed candle at a time
(O(1) per candle) and ``classify`` names the regime, one of ``settings.REGIMES``:

    unknown        warm-up: ADX(14) needs 28 candles, BB(20) 20, ATR(14) 15
    volatile       ATR% at or above the timeframe's threshold (risk first: whatever the trend)
    trending_up    ADX >= 25 (stays trending down to ADX 20) and +DI > -DI
    trending_down  ADX >= 25 (stays trending down to ADX 20) and -DI > +DI
    squeeze        no trend, and the band width within 10 % of its lowest of the last 125 candles
    ranging        anything else: no trend, no squeeze, calm

``RegimeBook`` keeps a tracker per stream, fed by the engine itself (``EngineCore.process`` calls
``observe`` with each closed candle before the bots see it, and ``warm_up`` feeds an exchange
feed's history), publishes ``RegimeChanged`` when a stream's regime changes, and answers
``regime_of(runner)`` and ``size_scale(runner)``: the ``[autonomy.regime] size_scaling``
multiplier of the bot's regime, or 0 with the reason when ``allowed_strategies`` does not let the
bot's strategy open positions in it. ``attach_regimes(engine, settings)`` (called by
``engine.setup.open_engine``, so the daemon, the TUI, replays and backtests share it) keeps a book
as ``engine.regimes`` and, in autonomous mode only, makes its ``size_scale`` the engine's
``size_hook``; in expert mode regimes are shown, sizes untouched.

Timing: an entry decided on a candle is sized by the regime that candle closed in (the same in a
replay, a backtest and live). Candles carry no exchange: the engine runs one feed, whose
exchange (``[market] exchange``) labels the streams.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from amarktai_tui.autonomy.settings import REGIMES, RegimeSettings
from amarktai_tui.domain.types import Candle, timeframe_to_ms
from amarktai_tui.engine.events import EngineTick, EventBus, RegimeChanged
from amarktai_tui.strategies.indicators import ADX, ATR, BollingerWidth, RollingMin

if TYPE_CHECKING:
    from amarktai_tui.config import Settings
    from amarktai_tui.engine.core import EngineCore
    from amarktai_tui.engine.runner import BotRunner

log = logging.getLogger(__name__)

__all__ = [
    "ADX_PERIOD",
    "ADX_TREND",
    "ADX_TREND_EXIT",
    "ATR_PERIOD",
    "BB_K",
    "BB_PERIOD",
    "SQUEEZE_LOOKBACK",
    "SQUEEZE_NEAR_LOW",
    "VOLATILE_ATR_PCT_DAILY",
    "RegimeBook",
    "RegimeReading",
    "RegimeTracker",
    "attach_regimes",
    "classify",
    "scale_for",
    "short_label",
    "volatile_threshold",
]

# -- thresholds (each with its source) -------------------------------------------------------

ADX_PERIOD = 14
"""Wilder's own period for +DI/-DI/ADX (*New Concepts in Technical Trading Systems*, 1978)."""
ADX_TREND = 25.0
"""ADX at or above 25: a trending market. Wilder's rule of thumb (a trend-following system is
worth using above 25), the level StockCharts and most charting references quote."""
ADX_TREND_EXIT = 20.0
"""A trend ends only when ADX falls below 20 (Wilder's "no trend" level; between 20 and 25 the
market keeps its previous reading). The hysteresis keeps an ADX hovering at 25 from flapping
the regime (and the size) every candle."""
BB_PERIOD = 20
BB_K = 2.0
"""Bollinger's standard bands: SMA(20) +- 2 population standard deviations
(J. Bollinger, *Bollinger on Bollinger Bands*, 2001)."""
SQUEEZE_LOOKBACK = 125
"""Bollinger's squeeze: BandWidth at its lowest in six months (about 125 trading days) signals
a low-volatility consolidation that tends to end in a breakout. Here 125 candles of the
stream's own timeframe, so intraday streams get the same rule over a usable history."""
SQUEEZE_NEAR_LOW = 1.10
"""Squeeze while the band width is within 10 % above that lowest value (the lowest includes
the current candle), so the squeeze lasts while the bands stay pinched, not one candle."""
ATR_PERIOD = 14
"""Wilder's ATR period (1978), the common default."""
VOLATILE_ATR_PCT_DAILY = 0.10
"""Volatile when ATR is at least 10 % of the close on a daily timeframe, scaled to the stream's
timeframe by the square root of time (a random walk's range grows with sqrt(t)): 2.04 % on 1h,
0.59 % on 5m. On Binance BTC/USDT and ETH/USDT 2020-12..2021-07 (a volatile half-year) that is
about the 80th-90th percentile of 1h and 5m ATR% alike: the median 1h/5m ATR% ratio there is
3.7, sqrt(12) = 3.46, so the scaling holds on real data."""

_DAY_MS = 86_400_000
_LABELS = {
    "trending_up": "trend↑",
    "trending_down": "trend↓",
    "ranging": "range",
    "volatile": "volat",
    "squeeze": "squeeze",
    "unknown": "—",
}


def short_label(regime: str | None) -> str:
    """A regime in at most 7 columns for tables ("trend↑", "range", ...); None or unknown: "—"."""
    return _LABELS.get(regime or "unknown", "—")


def volatile_threshold(timeframe: str) -> float:
    """ATR% (fraction of the close) from which a ``timeframe`` stream is volatile (see
    ``VOLATILE_ATR_PCT_DAILY``). Raises ValueError for an unknown timeframe."""
    return VOLATILE_ATR_PCT_DAILY * math.sqrt(timeframe_to_ms(timeframe) / _DAY_MS)


def classify(
    adx: float | None,
    plus_di: float | None,
    minus_di: float | None,
    bb_width: float | None,
    atr_pct: float | None,
    *,
    bb_width_low: float | None = None,
    volatile_atr_pct: float = VOLATILE_ATR_PCT_DAILY,
    previous: str = "unknown",
) -> str:
    """The regime (one of ``REGIMES``) from the indicators of one candle.

    ``adx``, ``plus_di``, ``minus_di`` 0..100; ``bb_width`` the band width and ``bb_width_low``
    its lowest of the last ``SQUEEZE_LOOKBACK`` candles (fractions of the middle band; None
    while that history is short: no squeeze yet); ``atr_pct`` ATR / close (fraction);
    ``volatile_atr_pct`` the stream's threshold (``volatile_threshold``); ``previous`` the
    stream's regime before this candle (for the trend's hysteresis). Any of the first five
    None (warm-up): ``unknown``. Pure; the rules are in the module docstring, checked in order.
    """
    if adx is None or plus_di is None or minus_di is None or bb_width is None or atr_pct is None:
        return "unknown"
    if atr_pct >= volatile_atr_pct:
        return "volatile"
    trending = previous in ("trending_up", "trending_down")
    if adx >= ADX_TREND or (trending and adx >= ADX_TREND_EXIT):
        if plus_di > minus_di:
            return "trending_up"
        if minus_di > plus_di:
            return "trending_down"
    if bb_width_low is not None and bb_width <= bb_width_low * SQUEEZE_NEAR_LOW:
        return "squeeze"
    return "ranging"


@dataclass(frozen=True, slots=True)
class RegimeReading:
    """A stream's regime after the candle opened at ``ts`` (ms UTC), with the figures behind it:
    ``adx``/``plus_di``/``minus_di`` 0..100, ``bb_width`` and ``bb_width_low`` fractions of the
    middle band, ``atr_pct`` ATR / close (fraction); None while warming up."""

    regime: str
    ts: int
    adx: float | None = None
    plus_di: float | None = None
    minus_di: float | None = None
    bb_width: float | None = None
    bb_width_low: float | None = None
    atr_pct: float | None = None

    def figures(self) -> str:
        """One line, e.g. "ADX 31.2 (+DI 28.0 / -DI 12.5) · BBW 4.10% · ATR 1.32%"."""
        if self.adx is None or self.plus_di is None or self.minus_di is None:
            adx = "ADX warming up"
        else:
            adx = f"ADX {self.adx:.1f} (+DI {self.plus_di:.1f} / -DI {self.minus_di:.1f})"
        bbw = "BBW -" if self.bb_width is None else f"BBW {self.bb_width * 100:.2f}%"
        atr = "ATR -" if self.atr_pct is None else f"ATR {self.atr_pct * 100:.2f}%"
        return f"{adx} · {bbw} · {atr}"


class RegimeTracker:
    """One stream's indicators and regime; ``update(candle)`` per closed candle, oldest first."""

    __slots__ = ("_adx", "_atr", "_bbw", "_low", "reading", "timeframe", "volatile_atr_pct")

    def __init__(self, timeframe: str) -> None:
        self.timeframe = timeframe
        self.volatile_atr_pct = volatile_threshold(timeframe)  # ValueError for a bad timeframe
        self._adx = ADX(ADX_PERIOD)
        self._atr = ATR(ATR_PERIOD)
        self._bbw = BollingerWidth(BB_PERIOD, BB_K)
        self._low = RollingMin(SQUEEZE_LOOKBACK)
        self.reading = RegimeReading("unknown", 0)

    def update(self, c: Candle) -> RegimeReading:
        """Feed candle ``c``; return (and keep in ``reading``) the regime after it."""
        adx = self._adx.update(c.high, c.low, c.close)
        atr = self._atr.update(c.high, c.low, c.close)
        width = self._bbw.update(c.close)
        low = None if width is None else self._low.update(width)
        atr_pct = None if atr is None or c.close <= 0 else atr / c.close
        a = self._adx
        regime = classify(
            adx,
            a.plus_di,
            a.minus_di,
            width,
            atr_pct,
            bb_width_low=low,
            volatile_atr_pct=self.volatile_atr_pct,
            previous=self.reading.regime,
        )
        self.reading = RegimeReading(regime, c.ts, adx, a.plus_di, a.minus_di, width, low, atr_pct)
        return self.reading


def _f(x: float | None) -> float:
    return math.nan if x is None else x


WARMUP_CANDLES = 28  # ADX(14)'s first value (the longest of the three indicators)


class RegimeBook:
    """Every stream's regime, fed by ``EngineTick``; the engine's size hook in autonomous mode.

    ``exchange``: the feed's exchange (streams' label). ``refusals`` holds the latest entries
    refused by ``allowed_strategies`` as (engine time ms, bot id, reason), newest last;
    ``last_scale`` each bot's latest (multiplier, reason) from ``size_scale``.
    """

    def __init__(self, settings: RegimeSettings, exchange: str) -> None:
        self.settings = settings
        self.exchange = exchange
        self.trackers: dict[tuple[str, str], RegimeTracker] = {}
        self.now_ms = 0
        self.changes = 0  # RegimeChanged events published
        self.warmup = WARMUP_CANDLES  # candles of history a stream needs before its regime is known
        self.refusals: deque[tuple[int, int, str]] = deque(maxlen=200)
        self.last_scale: dict[int, tuple[Decimal, str]] = {}
        self._bus: EventBus | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # -- feeding --------------------------------------------------------------------------
    def attach(self, bus: EventBus, *, subscribe: bool = True) -> None:
        """Publish ``RegimeChanged`` on ``bus``; with ``subscribe`` also feed on its ``EngineTick``
        (published after the bots acted). The engine instead calls ``observe`` itself before its
        bots see the candle (``EngineCore.process``, ``warm_up``), so an entry is sized by the
        regime of its own decision candle."""
        self.detach()
        self._bus = bus
        if subscribe:
            self._unsubscribe = bus.subscribe(EngineTick, self.on_tick)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = self._bus = None

    def on_tick(self, ev: EngineTick) -> None:
        """Feed the tick's candle (``observe``)."""
        self.observe(ev.ts, ev.candle)

    def observe(self, now_ms: int, c: Candle) -> None:
        """Feed a closed candle to its stream's tracker (``now_ms`` engine time, ms UTC); publish
        ``RegimeChanged`` on a change. A candle not newer than the stream's last is ignored."""
        self.now_ms = now_ms
        key = (c.pair, c.timeframe)
        tracker = self.trackers.get(key)
        if tracker is None:
            tracker = self.trackers[key] = RegimeTracker(c.timeframe)
        elif c.ts <= tracker.reading.ts:
            return  # a candle already seen (a restart's overlap)
        old = tracker.reading.regime
        r = tracker.update(c)
        if r.regime != old:
            self.changes += 1
            if self._bus is not None:
                self._bus.publish(
                    RegimeChanged(
                        now_ms,
                        self.exchange,
                        c.pair,
                        c.timeframe,
                        old,
                        r.regime,
                        _f(r.adx),
                        _f(r.bb_width),
                        _f(r.atr_pct),
                    )
                )

    # -- reading --------------------------------------------------------------------------
    def reading(self, pair: str, timeframe: str) -> RegimeReading | None:
        """The stream's latest reading, None before its first candle."""
        tracker = self.trackers.get((pair, timeframe))
        return None if tracker is None else tracker.reading

    def reading_of(self, runner: BotRunner) -> RegimeReading | None:
        return self.reading(runner.rec.pair, runner.rec.timeframe)

    def regime_of(self, runner: BotRunner) -> str:
        """The regime of the bot's stream (``unknown`` before enough candles)."""
        r = self.reading_of(runner)
        return "unknown" if r is None else r.regime

    def readings(self) -> dict[tuple[str, str, str], RegimeReading]:
        """Every stream's latest reading, keyed (exchange, pair, timeframe)."""
        return {(self.exchange, p, tf): t.reading for (p, tf), t in sorted(self.trackers.items())}

    def scale_of(self, runner: BotRunner) -> tuple[Decimal, str]:
        """(multiplier, reason) an entry of ``runner`` would get now: the ``size_scaling`` factor
        of its regime (1 when the table has none), or (0, "regime R: STRATEGY may not open
        positions") when ``allowed_strategies`` lists the regime without the bot's strategy.
        Reads only (the TUI shows it); ``size_scale`` is the engine's hook."""
        regime = self.regime_of(runner)
        strategy = runner.rec.strategy
        allowed = self.settings.allowed_strategies.get(regime)
        if allowed is not None and strategy not in allowed:
            return Decimal(0), f"regime {regime}: {strategy} may not open positions"
        m = scale_for(self.settings.size_scaling, regime)
        return m, f"regime {regime}: size x{m}"

    def size_scale(self, runner: BotRunner) -> tuple[Decimal, str]:
        """``scale_of`` for an entry being sized (the engine's ``size_hook``): kept in
        ``last_scale``, a refusal also in ``refusals`` and the log."""
        out = self.scale_of(runner)
        if not out[0]:
            self.refusals.append((self.now_ms, runner.rec.id, out[1]))
            log.info("%s: entry refused (%s)", runner.rec.name, out[1])
        self.last_scale[runner.rec.id] = out
        return out


def scale_for(table: Mapping[str, Decimal], regime: str) -> Decimal:
    """The multiplier of ``regime`` in a ``size_scaling`` table, 1 when it has none."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}")
    return table.get(regime, Decimal(1))


def attach_regimes(engine: EngineCore, settings: Settings) -> RegimeBook | None:
    """Subscribe a ``RegimeBook`` to ``engine.bus`` and keep it as ``engine.regimes``; in
    autonomous mode (``[autonomy] mode``) also set ``engine.size_hook`` to its ``size_scale``.
    ``[autonomy.regime] enabled = false``: nothing is attached, None."""
    regime = settings.autonomy.regime
    if not regime.enabled:
        engine.regimes = None
        return None
    book = RegimeBook(regime, settings.market.exchange)
    book.attach(engine.bus, subscribe=False)  # the engine feeds it (EngineCore.process, warm_up)
    engine.regimes = book
    if settings.autonomy.mode == "autonomous":
        engine.size_hook = book.size_scale
    return book
