"""The one profit service: every screen, report and mail takes its money figures from here.

``ProfitService.read(conn)`` recomputes everything from the raw ledger rows (read-only):

- per bot (``Figures``): ``funding`` = the sum of its ledger events; ``realised`` = the sum of
  its fills' stored ``realised_pnl`` (FIFO over the bot's whole history, checked by ``ledger
  verify``); position, cost basis and open lots by replaying its fills through ``pnl.FifoBook``;
  ``fees`` in quote (``pnl.fee_in_quote``); ``mark`` = the later of its latest equity
  snapshot's mark price and its last fill price; ``unrealised = position * mark - cost basis``;
  ``equity = funding + realised + unrealised``. Account figures are sums over bots.
- periods are UTC calendar periods: the day (00:00), the ISO week (Monday 00:00), the month
  (the 1st 00:00). A realised PnL belongs to the period of its *closing* (sell) fill's ``ts``; a
  closed trade to the period of its exit. "Today" etc. count fills with ``start <= ts <= now``.
- paper or live (``Venue``): the ledger has no venue column, but the two brokers name their
  fills differently, and that is the rule: a live fill's ``fill_id`` is
  ``"<exchange>:<exchange trade id>"`` (``exchanges.live.CcxtBroker``, also for fills recovered by
  reconciliation), a paper fill's is ``"<client order id>-f<n>"`` (``exchanges.paper``; client
  order ids start with ``am``, never with an exchange id and a colon). A closed trade belongs to
  the venue of its closing fill; an open lot to the venue of the buy that opened it.
  (``mode_switches`` only says which mode the account was in, not which fills a session made.)
- filtered figures (``venue`` paper or live): ``capital`` is the funding of the bots with at
  least one fill of that venue, ``equity = capital + realised + unrealised`` of that venue, and
  the ratios use the *realised* equity curve (capital, plus the cumulative realised PnL at each
  closing fill, plus the current unrealised at the end): the ledger stores equity snapshots per
  bot and account, not per venue. With ``venue="all"`` the curve is the stored account
  snapshots, as ``amarktai report --json`` shows.

Units: money is ``Decimal`` in the quote currency (account figures only make sense when every
bot quotes the same currency); ratios (Sharpe, Sortino, Calmar, profit factor) and fractions
(win rate, drawdown, returns: 0.25 = 25 %) are ``float``; undefined figures are None; times
are ms UTC. Raises ``reader.LedgerDataError`` on an unparseable stored value and ValueError on a
fill the FIFO cannot book.
"""

from __future__ import annotations

import math
import sqlite3
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Literal

from amarktai_tui.domain.types import split_pair
from amarktai_tui.ledger import metrics, reader
from amarktai_tui.ledger.pnl import ZERO, FifoBook, Trade, fee_in_quote, trades_from_fills
from amarktai_tui.ledger.reader import BotRow, EquitySnapshot, FillRow

Point = tuple[int, Decimal]  # (ts ms UTC, quote)
Period = Literal["daily", "weekly", "monthly"]
Venue = Literal["all", "paper", "live"]
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly")
VENUES: tuple[Venue, ...] = ("all", "paper", "live")
DAY_MS = metrics.DAY_MS
COUNTDOWN_WINDOW_DAYS = 30
"""The countdown projects from the mean of the last this-many daily returns."""
COUNTDOWN_MIN_DAYS = 7
"""Fewer daily returns than this: "not enough data"."""
DEFAULT_TARGET = Decimal(1_000_000)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- UTC calendar periods --------------------------------------------------------------


def _dt(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _ms(d: datetime) -> int:
    return (d - _EPOCH) // timedelta(milliseconds=1)


def period_starts(now_ms: int) -> tuple[int, int, int]:
    """``(day, week, month)`` starts in ms UTC for ``now_ms``: today 00:00, Monday 00:00, the 1st 00:00."""
    return bucket_start("daily", now_ms), bucket_start("weekly", now_ms), bucket_start("monthly", now_ms)


def bucket_start(period: Period, ts: int) -> int:
    """Start (ms UTC) of the day, ISO week or month containing ``ts``."""
    day = _dt(ts).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "weekly":
        day -= timedelta(days=day.weekday())
    elif period == "monthly":
        day = day.replace(day=1)
    return _ms(day)


def next_bucket(period: Period, start: int) -> int:
    """Start of the period after the one starting at ``start`` (a bucket start)."""
    if period == "daily":
        return start + DAY_MS
    if period == "weekly":
        return start + 7 * DAY_MS
    d = _dt(start)
    return _ms(d.replace(year=d.year + 1, month=1) if d.month == 12 else d.replace(month=d.month + 1))


def period_bounds(period: Period, now_ms: int) -> tuple[int, int]:
    """``[start, end)`` in ms UTC of the day / ISO week / month containing ``now_ms``."""
    start = bucket_start(period, now_ms)
    return start, next_bucket(period, start)


def bucket_label(period: Period, start: int) -> str:
    """``2021-03-17`` (day), ``2021-W11`` (ISO week), ``2021-03`` (month)."""
    d = _dt(start)
    if period == "weekly":
        year, week, _ = d.isocalendar()
        return f"{year}-W{week:02d}"
    return d.strftime("%Y-%m" if period == "monthly" else "%Y-%m-%d")


# -- paper or live ----------------------------------------------------------------------


def fill_venue(fill: FillRow) -> Literal["paper", "live"]:
    """``live`` when the fill id is the live broker's ``<exchange>:<trade id>``, else ``paper``."""
    return "live" if fill.fill_id.startswith(f"{fill.exchange}:") else "paper"


def _in(venue: Venue, fill: FillRow) -> bool:
    return venue == "all" or fill_venue(fill) == venue


# -- per bot and account figures (also behind ``report --json`` and ``status --json``) -----


@dataclass(slots=True)
class Figures:
    """One bot's (or the account's) recomputed state; money in quote, see the module doc."""

    funding: Decimal = ZERO
    realised: Decimal = ZERO
    unrealised: Decimal = ZERO
    unrealised_live: Decimal = ZERO  # the part of ``unrealised`` in lots opened by live fills
    fees: Decimal = ZERO
    position: Decimal = ZERO
    avg_entry: Decimal | None = None
    mark: Decimal | None = None
    marked_at: int | None = None
    fills: list[FillRow] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    snaps: list[EquitySnapshot] = field(default_factory=list)
    opening: Point | None = None  # (earliest known ts, opening capital)
    flows: list[Point] = field(default_factory=list)

    @property
    def equity(self) -> Decimal:
        return self.funding + self.realised + self.unrealised

    @property
    def last_ts(self) -> int | None:
        times = [t for t in (self.marked_at, self.snaps[-1].ts if self.snaps else None) if t is not None]
        return max(times) if times else None


def bot_figures(
    bot: BotRow,
    fills: list[FillRow],
    snaps: list[EquitySnapshot],
    sched: list[tuple[int, Decimal]],
    first_event_ts: int | None,
) -> Figures:
    """One bot's figures from its fills (ledger order), snapshots (time order), capital schedule
    (``reader.capital_schedule``) and first ledger event time."""
    fig = Figures(fills=fills, snaps=snaps)
    books: dict[tuple[str, str], FifoBook] = defaultdict(FifoBook)
    live_buys: set[tuple[str, str, int]] = set()
    for f in fills:
        fee = fee_in_quote(f.fee, f.fee_currency, *split_pair(f.pair), f.price)
        book = books[(f.exchange, f.pair)]
        if f.side == "buy":
            book.buy(f.quantity, f.price, fee, f.ts)
            if fill_venue(f) == "live":
                live_buys.add((f.exchange, f.pair, f.ts))
        else:
            book.sell(f.quantity, f.price, fee)
        fig.realised += f.realised_pnl
        fig.fees += fee
    fig.trades = trades_from_fills(fills)
    fig.position = sum((b.position_qty for b in books.values()), ZERO)
    fig.avg_entry = books[(bot.exchange, bot.pair)].avg_entry_price if len(books) <= 1 else None
    snap = snaps[-1] if snaps else None
    last_fill = max(fills, key=lambda f: (f.ts, f.id)) if fills else None
    if snap is not None and snap.mark_price is not None:
        fig.mark, fig.marked_at = snap.mark_price, snap.ts
    if last_fill is not None and (fig.marked_at is None or last_fill.ts > fig.marked_at):
        fig.mark, fig.marked_at = last_fill.price, last_fill.ts
    if fig.mark is not None:
        fig.unrealised = sum((b.unrealised(fig.mark) for b in books.values()), ZERO)
        fig.unrealised_live = sum(
            (
                lot.remaining_qty * fig.mark - lot.remaining_cost
                for (ex, pair), b in books.items()
                for lot in b.lots
                if (ex, pair, lot.ts) in live_buys
            ),
            ZERO,
        )
    fig.funding = sum((a for _, a in sched), ZERO)
    first_fill = min((f.ts for f in fills), default=None)
    times = [t for t in (snaps[0].ts if snaps else None, first_fill, first_event_ts) if t is not None]
    opening = sum((a for t, a in sched if t == reader.OPENING_TS), ZERO)
    if times:
        fig.opening = (min(times), opening)
    fig.flows = [(t, a) for t, a in sched if t != reader.OPENING_TS]
    return fig


def equity_series(
    opening: Point | None, snaps: Sequence[EquitySnapshot], current: Point | None
) -> list[Point]:
    """The opening capital, the snapshots, then ``current`` when newer than the last snapshot."""
    pts: list[Point] = [opening] if opening is not None else []
    pts += [(s.ts, s.equity) for s in snaps]
    if current is not None and (not snaps or current[0] > snaps[-1].ts):
        pts.append(current)
    return sorted(pts, key=lambda p: p[0])


def load(
    conn: sqlite3.Connection, snapshots: Iterable[EquitySnapshot] | None = None
) -> list[tuple[BotRow, Figures]]:
    """Every bot (by id) with its ``Figures``. ``snapshots``: every snapshot row if already read."""
    bots = reader.bots(conn)
    fills_by: dict[int, list[FillRow]] = defaultdict(list)
    for f in reader.fills(conn):
        fills_by[f.bot_id].append(f)
    snaps_by: dict[int, list[EquitySnapshot]] = defaultdict(list)
    rows = reader.all_snapshots(conn) if snapshots is None else snapshots
    for s in sorted(rows, key=lambda s: (s.ts, s.id)):
        if s.bot_id is not None:
            snaps_by[s.bot_id].append(s)
    events = reader.ledger_events(conn)
    sched = reader.capital_schedule(events)
    first: dict[int, int] = {}
    for e in events:
        if e.bot_id is not None:
            first[e.bot_id] = min(e.ts, first.get(e.bot_id, e.ts))
    return [
        (b, bot_figures(b, fills_by[b.id], snaps_by[b.id], sched.get(b.id, []), first.get(b.id)))
        for b in bots
    ]


def account(figs: list[Figures]) -> Figures:
    """The account: sums over bots; the earliest opening, later bots' openings as cash flows."""
    acc = Figures()
    for f in figs:
        acc.funding += f.funding
        acc.realised += f.realised
        acc.unrealised += f.unrealised
        acc.unrealised_live += f.unrealised_live
        acc.fees += f.fees
        acc.fills += f.fills
        acc.trades += f.trades
    acc.fills.sort(key=lambda f: f.id)
    acc.trades.sort(key=lambda t: t.exit_ts)
    openings = [f.opening for f in figs if f.opening is not None]
    if openings:
        first = min(t for t, _ in openings)
        acc.opening = (first, sum((a for t, a in openings if t == first), ZERO))
        acc.flows = [(t, a) for t, a in openings if t != first] + [x for f in figs for x in f.flows]
    times = [t for t in (f.last_ts for f in figs) if t is not None]
    acc.marked_at = max(times) if times else None
    return acc


# -- what the service returns ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bucket:
    """One UTC day / ISO week / month of a series. ``pnl``: realised PnL of the closing fills in
    it (quote); ``fees``: fees of all its fills (quote); ``trades``/``wins``: closed trades with
    their exit in it (a win has ``pnl > 0``)."""

    start_ms: int
    end_ms: int
    label: str
    pnl: Decimal
    fees: Decimal
    trades: int
    wins: int


@dataclass(frozen=True, slots=True)
class ProfitFigures:
    """Account figures for one venue at ``as_of_ms`` (see the module doc for ``capital``).

    ``total = realised + unrealised``; ``today`` .. ``last_month``: realised PnL of the closing
    fills of that UTC period (the current ones up to ``as_of_ms``); ``stats``: trade and
    equity-curve metrics (``ledger.metrics``: fractions and ratios as float, money as Decimal).
    """

    venue: Venue
    as_of_ms: int
    capital: Decimal
    equity: Decimal
    realised: Decimal
    unrealised: Decimal
    total: Decimal
    fees: Decimal
    today: Decimal
    yesterday: Decimal
    this_week: Decimal
    last_week: Decimal
    this_month: Decimal
    last_month: Decimal
    trades_today: int
    stats: metrics.Metrics


@dataclass(frozen=True, slots=True)
class ExchangeFigures:
    """One exchange (the Platforms pane): bots on it (``active``: state running; ``live``: stage
    live), money in quote (``total = realised + unrealised``, ``today``: realised today),
    closed ``trades`` (and today's), fills today, ``win_rate`` fraction or None."""

    exchange: str
    bots: int
    active: int
    live: int
    capital: Decimal
    realised: Decimal
    unrealised: Decimal
    total: Decimal
    today: Decimal
    fees: Decimal
    trades: int
    trades_today: int
    fills_today: int
    wins: int
    win_rate: float | None


@dataclass(frozen=True, slots=True)
class BotProfit:
    """One bot: all-time money figures (quote) and those of a period ``[start, end)``:
    ``period_pnl`` realised by its closing fills there, ``period_trades``/``period_wins``."""

    id: int
    name: str
    exchange: str
    pair: str
    strategy: str
    state: str
    stage: str
    capital: Decimal
    equity: Decimal
    realised: Decimal
    unrealised: Decimal
    total: Decimal
    fees: Decimal
    trades: int
    wins: int
    win_rate: float | None
    period_pnl: Decimal
    period_trades: int
    period_wins: int


CountdownStatus = Literal["ok", "reached", "not_enough_data", "no_growth"]


@dataclass(frozen=True, slots=True)
class Countdown:
    """Days until equity reaches ``target`` (quote), projected from the trailing daily returns.

    ``days`` = the number of daily returns in the history (flow-neutral, ``metrics.daily_returns``);
    ``window`` = how many of the latest were used (at most 30); ``mean_return`` their arithmetic
    mean and ``compound_return`` their geometric mean (fractions per day, 0.01 = 1 %).

    - linear: equity grows by ``equity * mean_return`` a day: ``days_linear = (target / equity -
      1) / mean_return``;
    - compound: equity grows by ``1 + compound_return`` a day: ``days_compound = ln(target /
      equity) / ln(1 + compound_return)``.

    ``status``: ``not_enough_data`` below 7 daily returns (days None); ``reached`` when equity >=
    target (days 0); ``no_growth`` when a mean is not positive (that day count None); else
    ``ok``. ``eta_*_ms``: ``as_of_ms + days`` (ms UTC) or None.
    """

    target: Decimal
    equity: Decimal
    as_of_ms: int
    status: CountdownStatus
    days: int
    window: int
    mean_return: float | None = None
    compound_return: float | None = None
    days_linear: float | None = None
    days_compound: float | None = None

    @property
    def eta_linear_ms(self) -> int | None:
        return None if self.days_linear is None else self.as_of_ms + round(self.days_linear * DAY_MS)

    @property
    def eta_compound_ms(self) -> int | None:
        return None if self.days_compound is None else self.as_of_ms + round(self.days_compound * DAY_MS)


def countdown(
    equity: Sequence[Point],
    flows: Iterable[Point],
    now_ms: int,
    target: Decimal,
    current: Decimal,
    *,
    window_days: int = COUNTDOWN_WINDOW_DAYS,
    min_days: int = COUNTDOWN_MIN_DAYS,
) -> Countdown:
    """The countdown (see ``Countdown``) from an equity series up to ``now_ms`` with its cash
    ``flows`` (as ``metrics.daily_returns`` takes them) and the ``current`` equity (quote)."""
    pts = [p for p in equity if p[0] <= now_ms]
    rets = metrics.daily_returns(pts, [f for f in flows if f[0] <= now_ms])
    window = rets[-window_days:]
    base = Countdown(target, current, now_ms, "not_enough_data", len(rets), len(window))
    if len(rets) < min_days:
        return base
    mean = statistics.fmean(window)
    growth = math.prod(1.0 + r for r in window)
    geo = growth ** (1.0 / len(window)) - 1.0 if growth > 0 else -1.0
    base = Countdown(target, current, now_ms, "no_growth", len(rets), len(window), mean, geo)
    if current >= target:
        return Countdown(target, current, now_ms, "reached", len(rets), len(window), mean, geo, 0.0, 0.0)
    if current <= 0:
        return base
    ratio = float(target / current)
    linear = (ratio - 1.0) / mean if mean > 0 else None
    compound = math.log(ratio) / math.log1p(geo) if geo > 0 else None
    if linear is None and compound is None:
        return base
    return Countdown(target, current, now_ms, "ok", len(rets), len(window), mean, geo, linear, compound)


# -- the service -------------------------------------------------------------------------


class ProfitService:
    """Profit figures of one ledger, computed once from its rows (``read``); cheap to query.

    Every method takes the venue (``all`` | ``paper`` | ``live``) and, where a period matters,
    ``now_ms`` (ms UTC: the wall clock for a running account, the last candle or fill time after a
    replay). Not thread-safe; build a new one to see new rows.
    """

    def __init__(self, bots: list[tuple[BotRow, Figures]], account_snaps: Sequence[EquitySnapshot]) -> None:
        self.bots = bots
        self.account = account([f for _, f in bots])
        self.account_snaps = list(account_snaps)
        closing: dict[tuple[int, str, str, int], Literal["paper", "live"]] = {}
        for f in self.account.fills:
            if f.side == "sell":
                closing[(f.bot_id, f.exchange, f.pair, f.ts)] = fill_venue(f)
        self._trade_venue = [
            closing.get((t.bot_id, t.exchange, t.pair, t.exit_ts), "paper") for t in self.trades
        ]

    @classmethod
    def read(cls, conn: sqlite3.Connection) -> ProfitService:
        """Read the ledger (bots, fills, snapshots, ledger events) through ``conn`` (read-only use)."""
        with localcontext() as ctx:
            ctx.prec = 60
            snaps = reader.all_snapshots(conn)
            loaded = load(conn, snaps)
        acc = sorted((s for s in snaps if s.bot_id is None), key=lambda s: (s.ts, s.id))
        return cls(loaded, acc)

    # -- selections --
    @property
    def trades(self) -> list[Trade]:
        """Every closed trade, by exit time."""
        return self.account.trades

    def fills(self, venue: Venue = "all") -> list[FillRow]:
        """Fills of the venue, in ledger order."""
        return [f for f in self.account.fills if _in(venue, f)]

    def closed_trades(self, venue: Venue = "all") -> list[Trade]:
        """Closed trades of the venue (that of their closing fill), by exit time."""
        return [t for t, v in zip(self.trades, self._trade_venue, strict=True) if venue in ("all", v)]

    def _bot_ids(self, venue: Venue) -> set[int]:
        if venue == "all":
            return {b.id for b, _ in self.bots}
        return {f.bot_id for f in self.fills(venue)}

    def _unrealised(self, fig: Figures, venue: Venue) -> Decimal:
        if venue == "all":
            return fig.unrealised
        return fig.unrealised_live if venue == "live" else fig.unrealised - fig.unrealised_live

    # -- figures --
    def capital(self, venue: Venue = "all") -> Decimal:
        """Funding (quote) of the bots counted for the venue (all bots for ``all``)."""
        ids = self._bot_ids(venue)
        return sum((f.funding for b, f in self.bots if b.id in ids), ZERO)

    def equity_curve(
        self, venue: Venue = "all", now_ms: int | None = None
    ) -> tuple[list[Point], list[Point]]:
        """``(points, flows)`` of the venue's equity curve (see the module doc), time order."""
        if venue == "all":
            acc = self.account
            current = (acc.last_ts, acc.equity) if acc.last_ts is not None else None
            return equity_series(acc.opening, self.account_snaps, current), list(acc.flows)
        fills = self.fills(venue)
        if not fills:
            return [], []
        level = self.capital(venue)
        pts: list[Point] = [(min(f.ts for f in fills), level)]
        for f in sorted(fills, key=lambda f: (f.ts, f.id)):
            if f.side == "sell":
                level += f.realised_pnl
                pts.append((f.ts, level))
        unrealised = sum((self._unrealised(fig, venue) for _, fig in self.bots), ZERO)
        end = max(pts[-1][0], now_ms if now_ms is not None else pts[-1][0])
        pts.append((end, level + unrealised))
        return pts, []

    def figures(self, now_ms: int, venue: Venue = "all") -> ProfitFigures:
        """The account's figures for the venue at ``now_ms`` (see ``ProfitFigures``)."""
        with localcontext() as ctx:
            ctx.prec = 60
            fills = self.fills(venue)
            realised = sum((f.realised_pnl for f in fills), ZERO)
            unrealised = sum((self._unrealised(fig, venue) for _, fig in self.bots), ZERO)
            fees = sum((fill_fee(f) for f in fills), ZERO)
            capital = self.capital(venue)
            day, week, month = period_starts(now_ms)

            def realised_in(start: int, end: int) -> Decimal:
                return sum((f.realised_pnl for f in fills if start <= f.ts < end and f.ts <= now_ms), ZERO)

            prev_month = bucket_start("monthly", month - 1)
            trades = self.closed_trades(venue)
            pts, flows = self.equity_curve(venue, now_ms)
            return ProfitFigures(
                venue=venue,
                as_of_ms=now_ms,
                capital=capital,
                equity=capital + realised + unrealised,
                realised=realised,
                unrealised=unrealised,
                total=realised + unrealised,
                fees=fees,
                today=realised_in(day, day + DAY_MS),
                yesterday=realised_in(day - DAY_MS, day),
                this_week=realised_in(week, week + 7 * DAY_MS),
                last_week=realised_in(week - 7 * DAY_MS, week),
                this_month=realised_in(month, next_bucket("monthly", month)),
                last_month=realised_in(prev_month, month),
                trades_today=sum(1 for t in trades if day <= t.exit_ts <= now_ms),
                stats=metrics.compute(trades, pts, flows),
            )

    def series(
        self, period: Period, now_ms: int, venue: Venue = "all", since_ms: int | None = None
    ) -> list[Bucket]:
        """Every UTC day / ISO week / month from the first fill's (or ``since_ms``'s) to the one
        containing ``now_ms``, oldest first, empty periods included (see ``Bucket``)."""
        fills = [f for f in self.fills(venue) if f.ts <= now_ms]
        trades = [t for t in self.closed_trades(venue) if t.exit_ts <= now_ms]
        first = since_ms if since_ms is not None else min((f.ts for f in fills), default=now_ms)
        pnl: dict[int, Decimal] = defaultdict(lambda: ZERO)
        fees: dict[int, Decimal] = defaultdict(lambda: ZERO)
        counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for f in fills:
            key = bucket_start(period, f.ts)
            pnl[key] += f.realised_pnl
            fees[key] += fill_fee(f)
        for t in trades:
            c = counts[bucket_start(period, t.exit_ts)]
            c[0] += 1
            c[1] += t.pnl > 0
        out: list[Bucket] = []
        start, last = bucket_start(period, min(first, now_ms)), bucket_start(period, now_ms)
        while start <= last:
            end = next_bucket(period, start)
            n, wins = counts.get(start, (0, 0))
            out.append(
                Bucket(
                    start,
                    end,
                    bucket_label(period, start),
                    pnl.get(start, ZERO),
                    fees.get(start, ZERO),
                    n,
                    wins,
                )
            )
            start = end
        return out

    def by_exchange(self, now_ms: int, venue: Venue = "all") -> list[ExchangeFigures]:
        """One row per exchange with a bot or a fill, by exchange id."""
        day = bucket_start("daily", now_ms)
        names = sorted({b.exchange for b, _ in self.bots} | {f.exchange for f in self.fills(venue)})
        fills = self.fills(venue)
        trades = self.closed_trades(venue)
        out = []
        for ex in names:
            bots = [(b, f) for b, f in self.bots if b.exchange == ex]
            ex_fills = [f for f in fills if f.exchange == ex]
            ex_trades = [t for t in trades if t.exchange == ex]
            realised = sum((f.realised_pnl for f in ex_fills), ZERO)
            unrealised = sum((self._unrealised(fig, venue) for _, fig in bots), ZERO)
            wins = sum(1 for t in ex_trades if t.pnl > 0)
            out.append(
                ExchangeFigures(
                    exchange=ex,
                    bots=len(bots),
                    active=sum(1 for b, _ in bots if b.state == "running"),
                    live=sum(1 for b, _ in bots if b.stage == "live"),
                    capital=sum((fig.funding for _, fig in bots), ZERO),
                    realised=realised,
                    unrealised=unrealised,
                    total=realised + unrealised,
                    today=sum((f.realised_pnl for f in ex_fills if day <= f.ts <= now_ms), ZERO),
                    fees=sum((fill_fee(f) for f in ex_fills), ZERO),
                    trades=len(ex_trades),
                    trades_today=sum(1 for t in ex_trades if day <= t.exit_ts <= now_ms),
                    fills_today=sum(1 for f in ex_fills if day <= f.ts <= now_ms),
                    wins=wins,
                    win_rate=wins / len(ex_trades) if ex_trades else None,
                )
            )
        return out

    def by_bot(self, start_ms: int, end_ms: int, venue: Venue = "all") -> list[BotProfit]:
        """Every bot (by id) with its all-time figures and those of ``[start_ms, end_ms)``."""
        out = []
        for b, fig in self.bots:
            fills = [f for f in fig.fills if _in(venue, f)]
            trades = [t for t in self.closed_trades(venue) if t.bot_id == b.id]
            period = [t for t in trades if start_ms <= t.exit_ts < end_ms]
            realised = sum((f.realised_pnl for f in fills), ZERO)
            unrealised = self._unrealised(fig, venue)
            wins = sum(1 for t in trades if t.pnl > 0)
            out.append(
                BotProfit(
                    id=b.id,
                    name=b.name,
                    exchange=b.exchange,
                    pair=b.pair,
                    strategy=b.strategy,
                    state=b.state,
                    stage=b.stage,
                    capital=fig.funding,
                    equity=fig.funding + realised + unrealised,
                    realised=realised,
                    unrealised=unrealised,
                    total=realised + unrealised,
                    fees=sum((fill_fee(f) for f in fills), ZERO),
                    trades=len(trades),
                    wins=wins,
                    win_rate=wins / len(trades) if trades else None,
                    period_pnl=sum((f.realised_pnl for f in fills if start_ms <= f.ts < end_ms), ZERO),
                    period_trades=len(period),
                    period_wins=sum(1 for t in period if t.pnl > 0),
                )
            )
        return out

    def countdown(self, now_ms: int, target: Decimal = DEFAULT_TARGET, venue: Venue = "all") -> Countdown:
        """Days to ``target`` equity (quote) from the venue's trailing daily returns (``Countdown``);
        the equity is the current one, or the curve's last point at or before ``now_ms``."""
        pts, flows = self.equity_curve(venue, now_ms)
        current = self.figures(now_ms, venue).equity if venue != "all" else self.account.equity
        past = [p for p in pts if p[0] <= now_ms]
        if past and len(past) < len(pts):  # ``now_ms`` before the latest figures: equity as it was then
            current = past[-1][1]
        return countdown(pts, flows, now_ms, target, current)


def fill_fee(f: FillRow) -> Decimal:
    """A fill's fee in quote (``pnl.fee_in_quote`` at the fill price)."""
    return fee_in_quote(f.fee, f.fee_currency, *split_pair(f.pair), f.price)


def read_countdown(conn: sqlite3.Connection, now_ms: int, target: Decimal = DEFAULT_TARGET) -> Countdown:
    """The account countdown straight from a ledger connection (the Profits pane's worker)."""
    return ProfitService.read(conn).countdown(now_ms, target)
