"""Profit reports: ``amarktai report daily|weekly|monthly`` and the mailed daily report.

``build_report(conn, period, now_ms)`` reads the ledger once (read-only) through the profit
service (``ledger.profits``) and collects, for the UTC day / ISO week / month containing
``now_ms``: the account totals, the period's closed trades, win rate, profit and fees, bot
counts (total, active = state running, live = stage live), the top 5 and bottom 5 bots by the
period's realised profit, the breaker trips and critical audit entries of the period, the
profit per exchange, a daily breakdown, the countdown to the target equity and the equity curve
for the chart. The renderers turn it into JSON (``to_json``: the ``report --json`` keys of
``ledger.report.account_report`` plus the period's), Markdown (``to_markdown``, also the plain
text part of the mail) and a self-contained HTML page with an inline SVG equity chart
(``to_html``).

Money is Decimal (quote currency), shown with 2 decimals in Markdown/HTML and as exact decimal
strings in JSON; ratios are floats; times are ms UTC (ISO 8601 in JSON next to them).
"""

from __future__ import annotations

import html
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from amarktai_tui.ledger import reader
from amarktai_tui.ledger.export import iso_ms
from amarktai_tui.ledger.pnl import ZERO, canonical
from amarktai_tui.ledger.profits import (
    DEFAULT_TARGET,
    BotProfit,
    Bucket,
    Countdown,
    ExchangeFigures,
    Period,
    Point,
    ProfitFigures,
    ProfitService,
    bucket_label,
    fill_fee,
    period_bounds,
)
from amarktai_tui.ledger.reader import TripRow
from amarktai_tui.ledger.report import account_report, json_ready

TOP_N = 5
CHART_DAYS: dict[Period, int] = {"daily": 30, "weekly": 91, "monthly": 365}
"""Days of equity the chart shows, ending at the report's time."""
BREAKDOWN_DAYS = 7
"""A daily report's day-by-day table covers this many days (a week or month report: its days)."""
CHART_MAX_POINTS = 1500


@dataclass(frozen=True, slots=True)
class CriticalEvent:
    """A critical audit entry (``audit_log``): when (ms UTC), what, who, which bot, details."""

    ts: int
    type: str
    actor: str
    bot: str | None
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Report:
    """Everything one report shows (see the module doc). ``account``: ``account_report``'s dict."""

    period: Period
    start_ms: int
    end_ms: int
    as_of_ms: int
    quote: str
    mode: str
    account: dict[str, Any]
    figures: ProfitFigures
    venues: dict[str, ProfitFigures]
    bots_total: int
    bots_active: int
    bots_live: int
    period_pnl: Decimal
    period_fees: Decimal
    period_trades: int
    period_wins: int
    top: list[BotProfit]
    bottom: list[BotProfit]
    exchanges: list[ExchangeFigures]
    days: list[Bucket]
    trips: list[TripRow]
    critical: list[CriticalEvent]
    countdown: Countdown
    equity: list[Point]

    @property
    def period_win_rate(self) -> float | None:
        return self.period_wins / self.period_trades if self.period_trades else None

    @property
    def label(self) -> str:
        """``2021-03-17``, ``2021-W11`` or ``2021-03``."""
        return bucket_label(self.period, self.start_ms)


def critical_events(conn: sqlite3.Connection, start_ms: int, end_ms: int) -> list[CriticalEvent]:
    """Critical ``audit_log`` entries with ``start_ms <= ts < end_ms``, oldest first ([] without the table)."""
    from amarktai_tui.ops import audit_store
    from amarktai_tui.ops.audit import Severity

    f = audit_store.AuditFilter(since=start_ms, until=end_ms, severities=(Severity.CRITICAL,))
    return [
        CriticalEvent(r.entry.ts, r.entry.type, r.entry.actor, r.entry.bot, dict(r.entry.details))
        for r in audit_store.iter_rows(conn, f)
    ]


def _rank(bots: list[BotProfit]) -> tuple[list[BotProfit], list[BotProfit]]:
    """Top ``TOP_N`` by period profit (then total profit, then name); bottom ``TOP_N`` of the
    rest, worst first (a bot is never in both lists)."""
    best = sorted(bots, key=lambda b: (-b.period_pnl, -b.total, b.name))
    top = best[:TOP_N]
    rest = best[TOP_N:]
    return top, list(reversed(rest))[:TOP_N]


def build_report(
    conn: sqlite3.Connection,
    period: Period,
    now_ms: int,
    *,
    target: Decimal = DEFAULT_TARGET,
    default_quote: str = "USDT",
) -> Report:
    """The report of the UTC period containing ``now_ms`` (see the module doc).

    The currency shown is the bots' quote currency, or ``default_quote`` when they have none or
    several (``[general] quote_currency``). Raises
    ``reader.LedgerDataError`` / ValueError as ``ledger.profits`` does, sqlite3.Error on a bad file.
    """
    start, end = period_bounds(period, now_ms)
    upto = min(end, now_ms + 1)
    svc = ProfitService.read(conn)
    acc = account_report(conn, now_ms, service=svc)
    bots = svc.by_bot(start, upto)
    top, bottom = _rank(bots)
    in_period = [t for t in svc.trades if start <= t.exit_ts < upto]
    fills = [f for f in svc.fills() if start <= f.ts < upto]
    chart_from = min(start, now_ms - CHART_DAYS[period] * 86_400_000)
    pts, _ = svc.equity_curve("all", now_ms)
    days_from = start if period != "daily" else start - (BREAKDOWN_DAYS - 1) * 86_400_000
    currencies = acc.get("quote_currencies") or []
    return Report(
        period=period,
        start_ms=start,
        end_ms=end,
        as_of_ms=now_ms,
        quote=currencies[0] if len(currencies) == 1 else default_quote,
        mode=reader.kv_get(conn, "trading_mode", "paper") or "paper",
        account=acc,
        figures=svc.figures(now_ms),
        venues={v: svc.figures(now_ms, v) for v in ("paper", "live")},
        bots_total=len(bots),
        bots_active=sum(1 for b in bots if b.state == "running"),
        bots_live=sum(1 for b in bots if b.stage == "live"),
        period_pnl=sum((f.realised_pnl for f in fills), ZERO),
        period_fees=sum((fill_fee(f) for f in fills), ZERO),
        period_trades=len(in_period),
        period_wins=sum(1 for t in in_period if t.pnl > 0),
        top=top,
        bottom=bottom,
        exchanges=svc.by_exchange(now_ms),
        days=svc.series("daily", now_ms, since_ms=days_from),
        trips=sorted((t for t in reader.breaker_trips(conn) if start <= t.ts < end), key=lambda t: t.id),
        critical=critical_events(conn, start, end),
        countdown=svc.countdown(now_ms, target),
        equity=[p for p in pts if chart_from <= p[0] <= now_ms],
    )


# -- JSON --------------------------------------------------------------------------------


def _figures_json(f: ProfitFigures) -> dict[str, Any]:
    out = {k: v for k, v in asdict(f).items() if k not in ("stats", "venue")}
    out.update(asdict(f.stats))
    return dict(json_ready(out))


def countdown_json(c: Countdown) -> dict[str, Any]:
    """The countdown as JSON: Decimals as strings, days as floats (or null), ETAs ms and ISO."""
    out = dict(json_ready(asdict(c)))
    for name, eta in (("eta_linear", c.eta_linear_ms), ("eta_compound", c.eta_compound_ms)):
        out[f"{name}_ms"] = eta
        out[name] = None if eta is None else iso_ms(eta)
    return out


def to_json(rep: Report) -> dict[str, Any]:
    """``account_report``'s keys (``report --json`` as before) plus ``period`` and the period's figures.

    Added keys: period_start_ms/period_end_ms (+ ISO), label, mode, profit (total, today,
    yesterday, this/last week and month, trades_today), period_stats (profit, fees, trades, wins,
    win_rate), bot_counts (total, active, live), top_bots/bottom_bots, exchanges, days (daily
    breakdown), breaker_trips, critical_events, countdown, venues (paper/live figures).
    """
    out = dict(rep.account)
    f = rep.figures
    out.update(
        {
            "period": rep.period,
            "label": rep.label,
            "mode": rep.mode,
            "period_start_ms": rep.start_ms,
            "period_end_ms": rep.end_ms,
            "period_start": iso_ms(rep.start_ms),
            "period_end": iso_ms(rep.end_ms),
            "profit": json_ready(
                {
                    "total": f.total,
                    "today": f.today,
                    "yesterday": f.yesterday,
                    "this_week": f.this_week,
                    "last_week": f.last_week,
                    "this_month": f.this_month,
                    "last_month": f.last_month,
                    "trades_today": f.trades_today,
                }
            ),
            "period_stats": json_ready(
                {
                    "profit": rep.period_pnl,
                    "fees": rep.period_fees,
                    "trades": rep.period_trades,
                    "wins": rep.period_wins,
                    "win_rate": rep.period_win_rate,
                }
            ),
            "bot_counts": {"total": rep.bots_total, "active": rep.bots_active, "live": rep.bots_live},
            "top_bots": [json_ready(asdict(b)) for b in rep.top],
            "bottom_bots": [json_ready(asdict(b)) for b in rep.bottom],
            "exchanges": [json_ready(asdict(e)) for e in rep.exchanges],
            "days": [json_ready(asdict(d)) for d in rep.days],
            "breaker_trips": [
                {
                    "id": t.id,
                    "ts": t.ts,
                    "time": iso_ms(t.ts),
                    "scope": t.scope,
                    "bot": t.bot,
                    "breaker": t.breaker,
                    "threshold": json_ready(t.threshold),
                    "value": json_ready(t.value),
                    "message": t.message,
                    "reset": None
                    if t.reset is None
                    else {"ts": t.reset.ts, "actor": t.reset.actor, "reason": t.reset.reason},
                }
                for t in rep.trips
            ],
            "critical_events": [
                {"ts": e.ts, "time": iso_ms(e.ts), "type": e.type, "actor": e.actor, "bot": e.bot}
                | {"details": e.details}
                for e in rep.critical
            ],
            "countdown": countdown_json(rep.countdown),
            "venues": {v: _figures_json(fv) for v, fv in rep.venues.items()},
        }
    )
    return out


# -- text helpers --------------------------------------------------------------------------


def money(value: Decimal | None, *, signed: bool = False) -> str:
    """``12,345.68`` (2 decimals, half-even); ``+`` in front of a positive value when ``signed``."""
    if value is None:
        return "-"
    q = value.quantize(Decimal("0.01"))
    if q == 0:
        q = abs(q)
    text = f"{q:,.2f}"
    return f"+{text}" if signed and q > 0 else text


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage: ``0.523`` -> ``52.3 %``; None -> ``-``."""
    return "-" if value is None else f"{value * 100:.{digits}f} %"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _utc(ms: int, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).strftime(fmt)


def period_title(rep: Report) -> str:
    """``daily report 2021-03-17`` / ``weekly report 2021-W11 (2021-03-15 to 2021-03-21)``."""
    last = _utc(rep.end_ms - 1, "%Y-%m-%d")
    span = "" if rep.period == "daily" else f" ({_utc(rep.start_ms, '%Y-%m-%d')} to {last})"
    return f"{rep.period} report {rep.label}{span}"


def countdown_text(c: Countdown, quote: str) -> str:
    """One line: ``1,000,000.00 USDT: 412 days linear (2022-09-01), 268 days compound (...)``."""
    head = f"{money(c.target)} {quote}"
    if c.status == "not_enough_data":
        return f"{head}: not enough data ({c.days} of 7 days of returns)"
    if c.status == "reached":
        return f"{head}: reached"
    mean = f"mean daily return {pct(c.mean_return, 3)} over {c.window} days"
    if c.status == "no_growth":
        return f"{head}: not growing ({mean})"

    def part(days: float | None, eta: int | None, kind: str) -> str:
        if days is None or eta is None:
            return f"never {kind}"
        return f"{days:,.0f} days {kind} ({_utc(eta, '%Y-%m-%d')})"

    return (
        f"{head}: {part(c.days_linear, c.eta_linear_ms, 'linear')}, "
        f"{part(c.days_compound, c.eta_compound_ms, 'compound')}; {mean}"
    )


def subject(rep: Report) -> str:
    """The mail subject: ``Amarktai daily report 2021-03-17: +12.34 USDT, 3 trades``."""
    n = rep.period_trades
    return (
        f"Amarktai {rep.period} report {rep.label}: {money(rep.period_pnl, signed=True)} {rep.quote}, "
        f"{n} trade{'' if n == 1 else 's'}"
    )


def _totals(rep: Report) -> list[tuple[str, str]]:
    f, q = rep.figures, rep.quote
    s = f.stats
    return [
        (f"Equity ({q})", money(f.equity)),
        ("Capital (funding)", money(f.capital)),
        ("Profit, total", money(f.total, signed=True)),
        ("Realised / unrealised", f"{money(f.realised, signed=True)} / {money(f.unrealised, signed=True)}"),
        ("Fees", money(f.fees)),
        ("Today / yesterday (realised)", f"{money(f.today, signed=True)} / {money(f.yesterday, signed=True)}"),
        ("This week / last week (realised)", f"{money(f.this_week, signed=True)} / {money(f.last_week, signed=True)}"),
        (
            "This month / last month (realised)",
            f"{money(f.this_month, signed=True)} / {money(f.last_month, signed=True)}",
        ),
        ("Paper / live profit", f"{money(rep.venues['paper'].total, signed=True)} / "
         f"{money(rep.venues['live'].total, signed=True)}"),
        ("Trades (all time) / win rate", f"{s.trades} / {pct(s.win_rate)}"),
        ("Profit factor / expectancy", f"{ratio(s.profit_factor)} / {money(s.expectancy, signed=True)}"),
        ("Average win / loss", f"{money(s.avg_win, signed=True)} / {money(s.avg_loss, signed=True)}"),
        ("Sharpe / Sortino / Calmar", f"{ratio(s.sharpe)} / {ratio(s.sortino)} / {ratio(s.calmar)}"),
        ("Drawdown now / max", f"{pct(s.drawdown)} / {pct(s.max_drawdown)}"),
    ]  # fmt: skip


def _period_line(rep: Report) -> str:
    return (
        f"{rep.period_trades} trades closed, win rate {pct(rep.period_win_rate)}, "
        f"realised profit {money(rep.period_pnl, signed=True)} {rep.quote}, fees {money(rep.period_fees)}; "
        f"bots {rep.bots_total} total, {rep.bots_active} active, {rep.bots_live} live"
    )


BOT_HEAD = ("Bot", "Exchange", "Pair", "Period profit", "Trades", "Win rate", "Total profit")


def _bot_row(b: BotProfit) -> tuple[str, ...]:
    rate = b.period_wins / b.period_trades if b.period_trades else None
    return (
        b.name,
        b.exchange,
        b.pair,
        money(b.period_pnl, signed=True),
        str(b.period_trades),
        pct(rate),
        money(b.total, signed=True),
    )


EXCHANGE_HEAD = ("Exchange", "Bots (active/live)", "Profit today", "Profit total", "Trades today", "Win rate")


def _exchange_row(e: ExchangeFigures) -> tuple[str, ...]:
    return (
        e.exchange,
        f"{e.bots} ({e.active}/{e.live})",
        money(e.today, signed=True),
        money(e.total, signed=True),
        str(e.trades_today),
        pct(e.win_rate),
    )


DAY_HEAD = ("Day (UTC)", "Profit", "Trades", "Wins", "Fees")


def _day_row(d: Bucket) -> tuple[str, ...]:
    return (d.label, money(d.pnl, signed=True), str(d.trades), str(d.wins), money(d.fees))


TRIP_HEAD = ("Time (UTC)", "Scope", "Bot", "Breaker", "Value / limit", "Reset")


def _trip_row(t: TripRow) -> tuple[str, ...]:
    reset = "active" if t.reset is None else f"{_utc(t.reset.ts)} by {t.reset.actor}"
    return (
        _utc(t.ts),
        t.scope,
        t.bot or "-",
        t.breaker,
        f"{canonical(t.value)} / {canonical(t.threshold)}",
        reset,
    )


EVENT_HEAD = ("Time (UTC)", "Type", "Actor", "Bot", "Details")


def details_text(details: object, limit: int = 160) -> str:
    """A one-line rendering of an audit entry's details (JSON), cut at ``limit`` characters."""
    text = details if isinstance(details, str) else json.dumps(details, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _event_row(e: CriticalEvent) -> tuple[str, ...]:
    return (_utc(e.ts), e.type, e.actor, e.bot or "-", details_text(e.details))


# -- Markdown ----------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return lines


def to_markdown(rep: Report) -> str:
    """The report as Markdown (GitHub tables); readable as plain text too."""
    out = [
        f"# Amarktai {period_title(rep)}",
        "",
        f"As of {_utc(rep.as_of_ms)} UTC · {rep.mode} mode · amounts in {rep.quote}",
        "",
        "## This period",
        "",
        _period_line(rep),
        "",
        "## Totals",
        "",
        *_md_table(("Figure", "Value"), _totals(rep), right=(1,)),
        "",
        "## Countdown",
        "",
        countdown_text(rep.countdown, rep.quote),
        "",
    ]
    for title, bots in (("Top bots", rep.top), ("Bottom bots", rep.bottom)):
        out += [f"## {title} (by profit this period)", ""]
        out += _md_table(BOT_HEAD, [_bot_row(b) for b in bots], right=(3, 4, 5, 6)) if bots else ["None."]
        out.append("")
    out += ["## Exchanges", ""]
    out += _md_table(EXCHANGE_HEAD, [_exchange_row(e) for e in rep.exchanges], right=(2, 3, 4, 5))
    out += ["", "## Day by day", ""]
    out += _md_table(DAY_HEAD, [_day_row(d) for d in rep.days], right=(1, 2, 3, 4))
    out += ["", "## Breaker trips this period", ""]
    out += _md_table(TRIP_HEAD, [_trip_row(t) for t in rep.trips]) if rep.trips else ["None."]
    out += ["", "## Critical events this period", ""]
    out += _md_table(EVENT_HEAD, [_event_row(e) for e in rep.critical]) if rep.critical else ["None."]
    return "\n".join(out) + "\n"


# -- HTML --------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1b1f24;max-width:860px;
margin:24px auto;padding:0 16px}
h1{font-size:22px}h2{font-size:16px;margin-top:24px;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #eaeef2;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#1a7f37}.down{color:#cf222e}.muted{color:#656d76}
"""


def _cls(text: str) -> str:
    return "up" if text.startswith("+") else "down" if text.startswith("-") and text != "-" else ""


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    def cell(tag: str, i: int, text: str) -> str:
        classes = " ".join(c for c in ("num" if i in right else "", _cls(text) if tag == "td" else "") if c)
        attr = f' class="{classes}"' if classes else ""
        return f"<{tag}{attr}>{html.escape(text)}</{tag}>"

    parts = ["<table><tr>" + "".join(cell("th", i, h) for i, h in enumerate(head)) + "</tr>"]
    parts += ["<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>" for r in rows]
    return "\n".join(parts) + "</table>"


def equity_svg(points: Sequence[Point], quote: str, *, width: int = 720, height: int = 240) -> str:
    """An inline SVG line chart of ``(ts ms, equity)`` points (min/max and first/last dates labelled).

    Fewer than 2 points: a short note instead. At most ``CHART_MAX_POINTS`` are drawn (evenly
    thinned, the last one kept).
    """
    if len(points) < 2:
        return '<p class="muted">Not enough equity samples for a chart yet.</p>'
    step = max(1, len(points) // CHART_MAX_POINTS)
    pts = list(points[::step])
    if pts[-1] != points[-1]:
        pts.append(points[-1])
    left, right, top, bottom = 84, 12, 12, 28
    t0, t1 = pts[0][0], pts[-1][0]
    lo, hi = min(float(v) for _, v in pts), max(float(v) for _, v in pts)
    span_t, span_v = max(t1 - t0, 1), (hi - lo) or max(abs(hi), 1.0) * 0.01
    w, h = width - left - right, height - top - bottom

    def xy(t: int, v: Decimal) -> str:
        x = left + (t - t0) / span_t * w
        y = top + (hi - float(v)) / span_v * h if hi != lo else top + h / 2
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(t, v) for t, v in pts)
    label = f"Account equity ({quote}), {_utc(t0, '%Y-%m-%d')} to {_utc(t1, '%Y-%m-%d')}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(label)}">'
        f"<title>{html.escape(label)}</title>"
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#f6f8fa" stroke="#d0d7de"/>'
        f'<polyline fill="none" stroke="#0969da" stroke-width="1.5" points="{line}"/>'
        f'<text x="{left - 6}" y="{top + 10}" font-size="11" text-anchor="end">{money(Decimal(str(hi)))}</text>'
        f'<text x="{left - 6}" y="{top + h}" font-size="11" text-anchor="end">{money(Decimal(str(lo)))}</text>'
        f'<text x="{left}" y="{height - 8}" font-size="11">{_utc(t0, "%Y-%m-%d")}</text>'
        f'<text x="{left + w}" y="{height - 8}" font-size="11" text-anchor="end">{_utc(t1, "%Y-%m-%d")}</text>'
        "</svg>"
    )


def to_html(rep: Report) -> str:
    """The report as one self-contained HTML page (inline CSS, inline SVG equity chart)."""
    title = f"Amarktai {period_title(rep)}"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">As of {_utc(rep.as_of_ms)} UTC · {html.escape(rep.mode)} mode · '
        f"amounts in {html.escape(rep.quote)}</p>",
        "<h2>This period</h2>",
        f"<p>{html.escape(_period_line(rep))}</p>",
        "<h2>Equity</h2>",
        equity_svg(rep.equity, rep.quote),
        "<h2>Totals</h2>",
        _html_table(("Figure", "Value"), _totals(rep), right=(1,)),
        "<h2>Countdown</h2>",
        f"<p>{html.escape(countdown_text(rep.countdown, rep.quote))}</p>",
    ]
    for name, bots in (("Top bots", rep.top), ("Bottom bots", rep.bottom)):
        body.append(f"<h2>{name} (by profit this period)</h2>")
        body.append(
            _html_table(BOT_HEAD, [_bot_row(b) for b in bots], right=(3, 4, 5, 6)) if bots else "<p>None.</p>"
        )
    body += [
        "<h2>Exchanges</h2>",
        _html_table(EXCHANGE_HEAD, [_exchange_row(e) for e in rep.exchanges], right=(2, 3, 4, 5)),
        "<h2>Day by day</h2>",
        _html_table(DAY_HEAD, [_day_row(d) for d in rep.days], right=(1, 2, 3, 4)),
        "<h2>Breaker trips this period</h2>",
        _html_table(TRIP_HEAD, [_trip_row(t) for t in rep.trips]) if rep.trips else "<p>None.</p>",
        "<h2>Critical events this period</h2>",
        _html_table(EVENT_HEAD, [_event_row(e) for e in rep.critical]) if rep.critical else "<p>None.</p>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
