"""Self-learning per bot: review its recent closed trades and suggest bounded changes.

``review(trades, now_ms, settings, rec)`` is pure: from the bot's closed round trips
(``ledger.pnl.trades_from_fills``) it measures the win rate, the win/loss ratio and the best and
worst entry hours and pairs, and suggests changes (``Suggestion``) by these rules:

- win rate < 45 %: risk mode one step down (aggressive > risky > balanced > safe; safe stays)
  and size multiplier x 0.8; win rate > 60 %: size multiplier x 1.2. Exactly 45 % or 60 %
  changes nothing. The multiplier is clamped to ``[autonomy.bounds] size_multiplier_min/max``
  (0.7-1.3);
- win/loss ratio (average win / average loss, both quote) < 1.5: take-profit x 1.3, clamped to
  ``take_profit_min/max`` (2-10 %). No losing trade: no ratio, no change. A bot **without** a
  take-profit gets none: its winners already run until the strategy exits, and a take-profit
  could only cut them short, which lowers the ratio further (the review notes it);
- a suggestion only ever moves in its rule's direction: a value that the clamp would move the
  other way (a multiplier of 1.5 set by hand, a take-profit of 15 %) is left alone (noted).

The window: the last ``lookback_trades`` (50) trades closed in the last ``lookback_days`` (30)
days, whichever is fewer; with ``since_ts`` only trades entered at or after it (the job passes
the time of the bot's last learning change, so settings are judged on trades made under them).
Fewer than ``min_trades`` trades: the figures are reported, nothing is suggested.

``LearningJob`` runs it beside the engine: after every ``every_trades`` newly closed trades of a
bot (an ``OrderFilled`` sell that brings it flat) and once a UTC day for every running bot, it
submits the suggestions as ``autonomy.changes.Change(source="learning")`` through the
``Adjuster`` (expert mode: proposals; autonomous: clamped and applied, each revertible).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from amarktai_tui.autonomy.changes import Adjuster, Change
from amarktai_tui.autonomy.settings import AutonomySettings, BoundsSettings, LearningSettings
from amarktai_tui.domain.enums import BotState, RiskMode, Side
from amarktai_tui.engine.events import OrderFilled
from amarktai_tui.ledger.pnl import Trade, trades_from_fills

if TYPE_CHECKING:
    from amarktai_tui.autonomy.service import AutonomyService
    from amarktai_tui.engine.engine import TradingEngine

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
LOW_WIN_RATE = Decimal("0.45")
"""Below this win rate (fraction): risk mode one step down and size multiplier x ``SIZE_DOWN``."""
HIGH_WIN_RATE = Decimal("0.60")
"""Above this win rate (fraction): size multiplier x ``SIZE_UP``."""
SIZE_DOWN = Decimal("0.8")
SIZE_UP = Decimal("1.2")
MIN_WL_RATIO = Decimal("1.5")
"""Below this average win / average loss: take-profit x ``TP_RAISE``."""
TP_RAISE = Decimal("1.3")

STEP_DOWN: dict[RiskMode, RiskMode] = {
    RiskMode.AGGRESSIVE: RiskMode.RISKY,
    RiskMode.RISKY: RiskMode.BALANCED,
    RiskMode.BALANCED: RiskMode.SAFE,
    RiskMode.SAFE: RiskMode.SAFE,
}


class BotTraits(Protocol):
    """What ``review`` reads of a bot (``ledger.store.BotRecord`` or ``BotView``)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def risk_mode(self) -> str: ...
    @property
    def size_multiplier(self) -> Decimal: ...
    @property
    def take_profit(self) -> Decimal | None: ...


@dataclass(frozen=True, slots=True)
class BotView:
    """A bot's reviewed settings read from the ledger (the CLI's ``BotTraits``)."""

    id: int
    name: str
    risk_mode: str
    size_multiplier: Decimal
    take_profit: Decimal | None


@dataclass(frozen=True, slots=True)
class Bucket:
    """Closed trades grouped by entry hour (``key`` "00".."23", UTC) or by pair: their count,
    winners and net realised PnL (quote, fees included)."""

    key: str
    trades: int
    wins: int
    pnl: Decimal


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A change the review suggests: ``field`` risk_mode | size_multiplier | take_profit,
    ``before``/``after`` (RiskMode value, Decimal factor, Decimal fraction), ``reason`` with the figures."""

    field: str
    before: Any
    after: Any
    reason: str


@dataclass(frozen=True, slots=True)
class LearningReview:
    """One bot's review at ``now_ms`` (ms UTC). ``win_rate`` a fraction (None: no trades);
    ``avg_win``/``avg_loss`` quote (the loss as a positive amount; None: none such); ``wl_ratio``
    avg_win / avg_loss (None without a loss; 0 with losses and no win); ``hours``/``pairs`` by key,
    ``best_*``/``worst_*`` by net PnL (None: no trades); ``changes`` what it suggests (empty below
    ``min_trades``); ``notes`` why a rule that fired changed nothing."""

    bot_id: int
    bot: str
    now_ms: int
    window_start_ms: int | None
    trades: int
    wins: int
    losses: int
    win_rate: Decimal | None
    avg_win: Decimal | None
    avg_loss: Decimal | None
    wl_ratio: Decimal | None
    net_pnl: Decimal
    hours: tuple[Bucket, ...]
    pairs: tuple[Bucket, ...]
    best_hour: Bucket | None
    worst_hour: Bucket | None
    best_pair: Bucket | None
    worst_pair: Bucket | None
    min_trades: int
    changes: tuple[Suggestion, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: money and fractions as decimal strings, None as null."""

        def d(x: Decimal | None) -> str | None:
            return None if x is None else str(x)

        def b(x: Bucket | None) -> dict[str, Any] | None:
            return (
                None if x is None else {"key": x.key, "trades": x.trades, "wins": x.wins, "pnl": str(x.pnl)}
            )

        return {
            "bot_id": self.bot_id,
            "bot": self.bot,
            "now_ms": self.now_ms,
            "window_start_ms": self.window_start_ms,
            "trades": self.trades,
            "wins": self.wins,
            "losses": self.losses,
            "win_rate": d(self.win_rate),
            "avg_win": d(self.avg_win),
            "avg_loss": d(self.avg_loss),
            "wl_ratio": d(self.wl_ratio),
            "net_pnl": str(self.net_pnl),
            "min_trades": self.min_trades,
            "hours": [b(x) for x in self.hours],
            "pairs": [b(x) for x in self.pairs],
            "best_hour": b(self.best_hour),
            "worst_hour": b(self.worst_hour),
            "best_pair": b(self.best_pair),
            "worst_pair": b(self.worst_pair),
            "changes": [
                {
                    "field": s.field,
                    "before": _jsonable(s.before),
                    "after": _jsonable(s.after),
                    "reason": s.reason,
                }
                for s in self.changes
            ],
            "notes": list(self.notes),
        }


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | str):
        return v if not isinstance(v, RiskMode) else v.value
    return str(v)


def pct(x: Decimal) -> str:
    """A fraction as a percent with one decimal: Decimal("0.38") -> "38.0%"."""
    return f"{(x * 100).quantize(Decimal('0.1'))}%"


def clamp(x: Decimal, lo: Decimal, hi: Decimal) -> Decimal:
    return lo if x < lo else hi if x > hi else x


def window(
    trades: Iterable[Trade], now_ms: int, settings: LearningSettings, since_ts: int | None = None
) -> list[Trade]:
    """The reviewed trades, oldest exit first: closed at or before ``now_ms`` and within the last
    ``lookback_days``, entered at or after ``since_ts`` (if given), the last ``lookback_trades``."""
    start = now_ms - settings.lookback_days * DAY_MS
    kept = [t for t in trades if start < t.exit_ts <= now_ms and (since_ts is None or t.entry_ts >= since_ts)]
    kept.sort(key=lambda t: t.exit_ts)
    return kept[-settings.lookback_trades :]


def buckets(trades: Sequence[Trade], key: str) -> tuple[Bucket, ...]:
    """Trades grouped by ``key``: "hour" (entry hour, UTC, "00".."23") or "pair"; sorted by key."""
    acc: defaultdict[str, list[Decimal]] = defaultdict(list)
    for t in trades:
        k = f"{(t.entry_ts % DAY_MS) // HOUR_MS:02d}" if key == "hour" else t.pair
        acc[k].append(t.pnl)
    return tuple(
        Bucket(k, len(v), sum(1 for p in v if p > 0), sum(v, Decimal(0))) for k, v in sorted(acc.items())
    )


def review(
    trades: Iterable[Trade],
    now_ms: int,
    settings: AutonomySettings,
    rec: BotTraits,
    *,
    since_ts: int | None = None,
) -> LearningReview:
    """Review bot ``rec`` from its closed ``trades`` (any order; other bots' trades must be left
    out by the caller) at ``now_ms`` (ms UTC). Pure: reads nothing else, changes nothing.
    See the module doc for the window and the rules; bounds from ``settings.bounds``."""
    ls = settings.learning
    ts = window(trades, now_ms, ls, since_ts)
    n = len(ts)
    wins = [t.pnl for t in ts if t.pnl > 0]
    losses = [-t.pnl for t in ts if t.pnl < 0]
    win_rate = Decimal(len(wins)) / n if n else None
    avg_win = sum(wins, Decimal(0)) / len(wins) if wins else None
    avg_loss = sum(losses, Decimal(0)) / len(losses) if losses else None
    ratio = None if avg_loss is None else (avg_win or Decimal(0)) / avg_loss
    hours, pairs = buckets(ts, "hour"), buckets(ts, "pair")
    changes: list[Suggestion] = []
    notes: list[str] = []
    if n < ls.min_trades:
        notes.append(f"{n} closed trades in the window < {ls.min_trades}: report only, no change")
    else:
        assert win_rate is not None
        changes, notes = _rules(rec, n, win_rate, ratio, settings.bounds)
    return LearningReview(
        bot_id=rec.id,
        bot=rec.name,
        now_ms=now_ms,
        window_start_ms=ts[0].entry_ts if ts else None,
        trades=n,
        wins=len(wins),
        losses=len(losses),
        win_rate=win_rate,
        avg_win=avg_win,
        avg_loss=avg_loss,
        wl_ratio=ratio,
        net_pnl=sum((t.pnl for t in ts), Decimal(0)),
        hours=hours,
        pairs=pairs,
        best_hour=max(hours, key=lambda b: b.pnl) if hours else None,
        worst_hour=min(hours, key=lambda b: b.pnl) if hours else None,
        best_pair=max(pairs, key=lambda b: b.pnl) if pairs else None,
        worst_pair=min(pairs, key=lambda b: b.pnl) if pairs else None,
        min_trades=ls.min_trades,
        changes=tuple(changes),
        notes=tuple(notes),
    )


def _rules(
    rec: BotTraits, n: int, win_rate: Decimal, ratio: Decimal | None, bounds: BoundsSettings
) -> tuple[list[Suggestion], list[str]]:
    changes: list[Suggestion] = []
    notes: list[str] = []
    m = rec.size_multiplier
    lo, hi = bounds.size_multiplier_min, bounds.size_multiplier_max
    wr = f"win rate {pct(win_rate)} over {n} trades"
    if win_rate < LOW_WIN_RATE:
        why = f"{wr} < {pct(LOW_WIN_RATE)}"
        mode = RiskMode(rec.risk_mode)
        if STEP_DOWN[mode] is not mode:
            changes.append(Suggestion("risk_mode", mode, STEP_DOWN[mode], f"{why}: risk mode one step down"))
        else:
            notes.append(f"{why}: risk mode already {mode.value}")
        new = clamp(m * SIZE_DOWN, lo, hi)
        if new < m:
            changes.append(
                Suggestion("size_multiplier", m, new, f"{why}: size multiplier x{SIZE_DOWN} (min {lo})")
            )
        else:
            notes.append(f"{why}: size multiplier {m} already at or below its floor {lo}")
    elif win_rate > HIGH_WIN_RATE:
        why = f"{wr} > {pct(HIGH_WIN_RATE)}"
        new = clamp(m * SIZE_UP, lo, hi)
        if new > m:
            changes.append(
                Suggestion("size_multiplier", m, new, f"{why}: size multiplier x{SIZE_UP} (max {hi})")
            )
        else:
            notes.append(f"{why}: size multiplier {m} already at or above its ceiling {hi}")
    if ratio is not None and ratio < MIN_WL_RATIO:
        why = f"win/loss ratio {ratio.quantize(Decimal('0.01'))} over {n} trades < {MIN_WL_RATIO}"
        tp = rec.take_profit
        tlo, thi = bounds.take_profit_min, bounds.take_profit_max
        if tp is None:
            notes.append(f"{why}: no take-profit set, winners already run to the strategy's exit")
        else:
            new_tp = clamp(tp * TP_RAISE, tlo, thi)
            if new_tp > tp:
                changes.append(
                    Suggestion(
                        "take_profit", tp, new_tp, f"{why}: take-profit x{TP_RAISE} ({pct(tlo)}-{pct(thi)})"
                    )
                )
            else:
                notes.append(f"{why}: take-profit {pct(tp)} already at or above its ceiling {pct(thi)}")
    return changes, notes


def last_change_ts(adjustments: Iterable[Any]) -> int | None:
    """When learning last changed a bot (the newest ``Adjustment`` with source learning that took
    effect: applied or accepted), ms UTC; None if never. Rows in any order."""
    times = [int(a.ts) for a in adjustments if a.source == "learning" and a.status in ("applied", "accepted")]
    return max(times, default=None)


def bot_trades(fills: Iterable[Any], bot_id: int) -> list[Trade]:
    """Closed round trips of one bot from fills in ledger order (domain ``Fill`` or ledger ``FillRow``)."""
    return trades_from_fills(f for f in fills if f.bot_id == bot_id)


class LearningJob:
    """Reviews bots beside an engine and submits the suggestions through the ``Adjuster``.

    ``on_fill`` (subscribed to ``OrderFilled``) counts closed trades per bot; ``run(now_ms)``
    (an ``AutonomyService`` job, engine time) reviews the bots that reached ``every_trades``
    new closed trades since their last review; ``run_daily(now_ms)`` reviews every running bot.
    Only running bots are reviewed. A suggestion for a field with a pending learning proposal
    on the same bot is not submitted again (the user answers that one first).
    """

    def __init__(self, engine: TradingEngine, adjuster: Adjuster, settings: AutonomySettings) -> None:
        self.engine = engine
        self.adjuster = adjuster
        self.settings = settings
        self.closed: defaultdict[int, int] = defaultdict(int)  # bot id -> closed trades since its review
        self.reviews: list[LearningReview] = []  # the latest reviews, newest last (bounded)
        self._unsubscribe = engine.bus.subscribe(OrderFilled, self.on_fill)

    def close(self) -> None:
        self._unsubscribe()

    def on_fill(self, ev: OrderFilled) -> None:
        runner = self.engine.runners.get(ev.bot_id)
        if ev.side is Side.SELL and runner is not None and not runner.long:
            self.closed[ev.bot_id] += 1

    def due(self) -> list[int]:
        """Bots with at least ``every_trades`` closed trades since their last review."""
        every = self.settings.learning.every_trades
        return sorted(b for b, n in self.closed.items() if n >= every)

    async def run(self, now_ms: int) -> None:
        """Review the bots that are due (``due``)."""
        for bot_id in self.due():
            await self.review_bot(bot_id, now_ms)

    async def run_daily(self, now_ms: int) -> None:
        """Review every running bot (the daily pass)."""
        for bot_id in sorted(self.engine.runners):
            await self.review_bot(bot_id, now_ms)

    async def review_bot(self, bot_id: int, now_ms: int) -> LearningReview | None:
        """Review one bot now and submit its suggestions; None when it is not running."""
        self.closed.pop(bot_id, None)
        runner = self.engine.runners.get(bot_id)
        if runner is None or runner.rec.state is not BotState.RUNNING:
            return None
        since = last_change_ts(self.adjuster.history(bot_id=bot_id, limit=1000))
        rv = review(
            bot_trades(self.engine.fill_log, bot_id), now_ms, self.settings, runner.rec, since_ts=since
        )
        self.reviews = [*self.reviews[-99:], rv]
        pending = {a.field for a in self.adjuster.pending() if a.bot_id == bot_id and a.source == "learning"}
        for s in rv.changes:
            if s.field in pending:
                continue
            try:
                await self.adjuster.submit(Change(bot_id, "learning", s.field, s.after, s.reason))
            except Exception:  # one bad change must not stop the other bots' reviews
                log.exception("learning: submitting %s for bot %s failed", s.field, runner.rec.name)
        return rv


DUE_CHECK_MS = 60_000
"""How often (engine time) the learning job looks for bots with ``every_trades`` new closed trades."""


def register(
    service: AutonomyService, engine: TradingEngine, adjuster: Adjuster, settings: AutonomySettings
) -> LearningJob | None:
    """Register the learning jobs on ``service`` when ``[autonomy.learning] enabled``: the bots that
    are due, every engine minute, and every running bot daily at 00:00 UTC (engine time); the job
    is closed (unsubscribed from the bus) with the service. Returns it, or None when disabled."""
    if not settings.learning.enabled:
        return None
    job = LearningJob(engine, adjuster, settings)
    service.every("learning", DUE_CHECK_MS, job.run)
    service.daily("learning-daily", "00:00", job.run_daily)
    service.on_close(job.close)
    return job
