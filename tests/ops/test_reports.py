"""``amarktai report daily|weekly|monthly``: each figure against a ledger from a real replay
(recomputed here from the raw rows), the audit log's critical entries, and the JSON, Markdown
and HTML outputs (through the real CLI too)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from amarktai_tui import cli
from amarktai_tui.config import load_settings
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.ledger import schema
from amarktai_tui.ledger.profits import Countdown, Period
from amarktai_tui.ledger.report import account_report
from amarktai_tui.locations import db_path
from amarktai_tui.ops import reports

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"
UNTIL = int(datetime(2021, 2, 15, tzinfo=UTC).timestamp()) * 1000  # 2.5 months: trades and a breaker trip
DAY = 86_400_000
CMD = [sys.executable, "-c", "from amarktai_tui.cli import main; main()"]


def replay_prefix(tmp: Path) -> Path:
    """A replay of BTC and ETH 1h candles before ``UNTIL`` (default config: 6 demo bots); its data dir."""
    files = []
    for name in ("BTC_USDT-1h.json", "ETH_USDT-1h.json"):
        out = tmp / "candles" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([r for r in json.loads((DATA / name).read_text()) if r[0] < UNTIL]))
        files.append(str(out))
    data_dir = tmp / "data"

    async def run() -> None:
        engine, feed = await open_engine(
            load_settings(None), data_dir, ReplayArgs(files, speed=0, until_end=True)
        )
        try:
            await engine.run(feed)
        finally:
            await engine.store.close()

    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("AMARKTAI_")]:
            mp.delenv(key)
        asyncio.run(run())
    return data_dir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return replay_prefix(tmp_path_factory.mktemp("reports"))


@pytest.fixture
def conn(data_dir: Path) -> Iterator[sqlite3.Connection]:
    c = schema.connect_readonly(str(db_path(data_dir)))
    yield c
    c.close()


def utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts / 1000, UTC)


def bounds(period: str, now: int) -> tuple[int, int]:
    """The UTC day / ISO week / month containing ``now``, computed here with datetime."""
    d = utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        start, end = d, d + timedelta(days=1)
    elif period == "weekly":
        start = d - timedelta(days=d.weekday())
        end = start + timedelta(days=7)
    else:
        start = d.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return int(start.timestamp()) * 1000, int(end.timestamp()) * 1000


def naive_trades(conn: sqlite3.Connection) -> tuple[dict[int, Fraction], list[tuple[int, int, Fraction]]]:
    """Realised PnL per fill id and closed trades ``(bot, exit ts, pnl)``: a plain FIFO with Fractions."""
    lots: dict[tuple[int, str], list[list[Fraction]]] = defaultdict(list)
    entry: dict[tuple[int, str], Fraction] = {}
    realised: dict[int, Fraction] = {}
    trades = []
    for r in conn.execute("SELECT * FROM fills ORDER BY id"):
        key, q, p = (r["bot_id"], r["pair"]), Fraction(D(r["quantity"])), Fraction(D(r["price"]))
        fee = Fraction(D(r["fee"]))
        assert r["fee_currency"] == "USDT"
        if r["side"] == "buy":
            lots[key].append([q, q * p + fee])
            entry[key] = entry.get(key, Fraction(0)) + q * p + fee
            realised[r["id"]] = Fraction(0)
            continue
        left, cost = q, Fraction(0)
        while left:
            lot = lots[key][0]
            take = min(left, lot[0])
            part = lot[1] * take / lot[0]
            cost, lot[0], lot[1], left = cost + part, lot[0] - take, lot[1] - part, left - take
            if not lot[0]:
                lots[key].pop(0)
        realised[r["id"]] = q * p - fee - cost
        entry[key] -= q * p - fee
        if not lots[key]:
            trades.append((r["bot_id"], r["ts"], -entry.pop(key)))
    return realised, trades


def money(x: Fraction) -> str:
    return reports.money(D(x.numerator) / D(x.denominator), signed=True)


@pytest.mark.parametrize("period", ["daily", "weekly", "monthly"])
def test_report_figures_against_the_ledger(conn: sqlite3.Connection, period: Period) -> None:
    realised, trades = naive_trades(conn)
    trip_ts = int(conn.execute("SELECT MIN(ts) FROM breaker_trips").fetchone()[0])
    now = trip_ts + 2 * 3_600_000  # the trip's day, with trades around it
    rep = reports.build_report(conn, period, now)
    start, end = bounds(period, now)
    assert (rep.start_ms, rep.end_ms, rep.as_of_ms) == (start, end, now)

    in_period = [t for t in trades if start <= t[1] < end and t[1] <= now]
    assert rep.period_trades == len(in_period) > 0
    assert rep.period_wins == sum(1 for t in in_period if t[2] > 0)
    rows = conn.execute("SELECT id, bot_id, ts, fee FROM fills").fetchall()
    fills = [r for r in rows if start <= r["ts"] < end and r["ts"] <= now]
    profit = sum((realised[r["id"]] for r in fills), Fraction(0))
    assert abs(Fraction(rep.period_pnl) - profit) < Fraction(1, 10**9)
    assert Fraction(rep.period_fees) == sum((Fraction(D(r["fee"])) for r in fills), Fraction(0))
    # bots
    states = conn.execute("SELECT state, stage FROM bots").fetchall()
    assert (rep.bots_total, rep.bots_active, rep.bots_live) == (
        len(states),
        sum(1 for s in states if s["state"] == "running"),
        sum(1 for s in states if s["stage"] == "live"),
    )
    per_bot: dict[int, Fraction] = defaultdict(Fraction)
    for r in fills:
        per_bot[r["bot_id"]] += realised[r["id"]]
    names = {r["id"]: r["name"] for r in conn.execute("SELECT id, name FROM bots")}
    expected = sorted((per_bot.get(i, Fraction(0)) for i in names), reverse=True)

    def near(got: list[D], want: list[Fraction]) -> bool:
        return len(got) == len(want) and all(
            abs(Fraction(g) - w) < Fraction(1, 10**9) for g, w in zip(got, want, strict=True)
        )

    assert near([b.period_pnl for b in rep.top], expected[:5])
    assert near([b.period_pnl for b in rep.bottom], sorted(expected[5:])[:5])  # the rest, worst first
    assert {b.name for b in rep.top} | {b.name for b in rep.bottom} == set(names.values())
    assert not {b.name for b in rep.top} & {b.name for b in rep.bottom}
    # capital, trips
    funding = sum((D(r[0]) for r in conn.execute("SELECT amount FROM ledger_events")), D(0))
    assert rep.figures.capital == funding
    trips = [
        r[0] for r in conn.execute("SELECT id FROM breaker_trips WHERE ts >= ? AND ts < ?", (start, end))
    ]
    assert [t.id for t in rep.trips] == trips and trips
    # the day-by-day table ends today and adds up to the period for a week or month
    assert rep.days[-1].start_ms <= now < rep.days[-1].end_ms
    if period != "daily":
        assert rep.days[0].start_ms == start and sum(d.pnl for d in rep.days) == rep.period_pnl

    md = reports.to_markdown(rep)
    assert md.startswith(f"# Amarktai {period} report {rep.label}")
    assert f"profit {money(profit)} USDT" in md
    assert f"{rep.period_trades} trades closed" in md
    assert f"| {rep.top[0].name} | binance |" in md
    assert (
        reports.subject(rep)
        == f"Amarktai {period} report {rep.label}: {money(profit)} USDT, {len(in_period)} trades"
    )


def test_critical_audit_entries_of_the_period(data_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.sqlite3"
    src = sqlite3.connect(db_path(data_dir))
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.execute(
        "CREATE TABLE IF NOT EXISTS audit_log (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, type TEXT NOT NULL,"
        " severity TEXT NOT NULL, actor TEXT NOT NULL, bot_id INTEGER, bot TEXT, details TEXT NOT NULL DEFAULT '{}')"
    )
    now = int(dst.execute("SELECT MAX(ts) FROM equity_snapshots").fetchone()[0]) - 3_600_000
    start, _ = bounds("daily", now)
    rows = [
        (start - 1, "mode_changed", "critical", "user", None, None, "{}"),  # the day before
        (start + 60_000, "breaker_tripped", "critical", "engine", 2, "btc-rsi", '{"breaker": "drawdown"}'),
        (start + 120_000, "bot_state_changed", "info", "engine", 2, "btc-rsi", "{}"),
        (now - 1, "emergency_stop_triggered", "critical", "cli", None, None, '{"reason": "a | b"}'),
    ]
    dst.executemany(
        "INSERT INTO audit_log (ts, type, severity, actor, bot_id, bot, details) VALUES (?,?,?,?,?,?,?)", rows
    )
    dst.commit()
    dst.close()
    conn = schema.connect_readonly(str(copy))
    try:
        rep = reports.build_report(conn, "daily", now)
    finally:
        conn.close()
    assert [(e.type, e.actor, e.bot) for e in rep.critical] == [
        ("breaker_tripped", "engine", "btc-rsi"),
        ("emergency_stop_triggered", "cli", None),
    ]
    assert rep.critical[0].details == {"breaker": "drawdown"}
    md = reports.to_markdown(rep)
    assert '{"reason": "a \\| b"}' in md  # a pipe inside a cell is escaped
    assert "emergency_stop_triggered" in reports.to_html(rep)
    events = reports.to_json(rep)["critical_events"]
    assert [e["type"] for e in events] == ["breaker_tripped", "emergency_stop_triggered"]
    assert events[1]["details"] == {"reason": "a | b"}


class _Tags(HTMLParser):
    VOID = frozenset({"meta", "br", "rect", "polyline", "hr", "img"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[str] = []
        self.polyline: str = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        if tag == "polyline":
            self.polyline = dict(attrs)["points"] or ""
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()


def test_json_is_a_superset_of_the_old_report_and_html_has_the_chart(conn: sqlite3.Connection) -> None:
    now = int(conn.execute("SELECT MAX(ts) FROM equity_snapshots").fetchone()[0])
    rep = reports.build_report(conn, "monthly", now)
    out = reports.to_json(rep)
    old = account_report(conn, now)
    assert {k: out[k] for k in old} == old  # every key of `report --json`, same values
    json.dumps(out, allow_nan=False)
    assert out["period"] == "monthly" and out["period_start"] == "2021-02-01T00:00:00.000Z"
    assert out["period_stats"]["trades"] == rep.period_trades and out["bot_counts"]["total"] == 6
    assert out["profit"]["this_month"] == out["pnl_month"] == str(rep.period_pnl)
    assert out["countdown"]["target"] == "1000000" and out["countdown"]["status"] in (
        "ok", "no_growth", "not_enough_data", "reached")  # fmt: skip
    assert set(out["venues"]) == {"paper", "live"} and out["venues"]["live"]["trades"] == 0
    assert out["exchanges"][0]["exchange"] == "binance"

    page = reports.to_html(rep)
    tags = _Tags()
    tags.feed(page)
    tags.close()
    assert tags.stack == [] and "svg" in tags.seen and "table" in tags.seen
    first_chart = now - reports.CHART_DAYS["monthly"] * DAY
    pts = [
        int(r[0])
        for r in conn.execute(
            "SELECT ts FROM equity_snapshots WHERE bot_id IS NULL AND ts >= ?", (first_chart,)
        )
    ]
    n_points = len(tags.polyline.split())
    assert n_points == len(rep.equity) >= len(pts) > 100  # the opening point, if in the window, is extra
    xs = [float(p.split(",")[0]) for p in tags.polyline.split()]
    assert xs == sorted(xs) and min(xs) >= 0 and max(xs) <= 720


def test_equity_svg_and_countdown_text() -> None:
    assert "Not enough equity samples" in reports.equity_svg([(0, D(1))], "USDT")
    svg = reports.equity_svg([(0, D(100)), (DAY, D(150)), (2 * DAY, D(125))], "USDT")
    points = re.search(r'points="([^"]+)"', svg)
    assert points is not None
    ys = [float(p.split(",")[1]) for p in points.group(1).split()]
    assert ys[1] == min(ys) and ys[0] == max(ys)  # 150 at the top, 100 at the bottom
    assert ">150.00<" in svg and ">100.00<" in svg and "1970-01-01" in svg

    base = dict(target=D(1_000_000), equity=D(10_000), as_of_ms=0, window=30)
    text = reports.countdown_text(Countdown(status="not_enough_data", days=3, **base), "USDT")  # type: ignore[arg-type]
    assert text == "1,000,000.00 USDT: not enough data (3 of 7 days of returns)"
    ok = Countdown(status="ok", days=40, mean_return=0.01, compound_return=0.0099, days_linear=9900.0,
                   days_compound=465.4, **base)  # type: ignore[arg-type]  # fmt: skip
    assert reports.countdown_text(ok, "USDT") == (
        "1,000,000.00 USDT: 9,900 days linear (1997-02-08), 465 days compound (1971-04-11); "
        "mean daily return 1.000 % over 30 days"
    )


def run_cli(tmp: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMARKTAI_")}
    env["XDG_CONFIG_HOME"] = str(tmp / "xdg-config")
    return subprocess.run(
        [*CMD, *map(str, args)], cwd=tmp, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_report_json_markdown_html(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = run_cli(tmp_path, "report", "weekly", "--json", "--data-dir", data_dir)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    out: dict[str, Any] = json.loads(res.stdout)
    last = int(out["as_of_ms"])  # no engine runs: the ledger's latest time
    conn = schema.connect_readonly(str(db_path(data_dir)))
    try:
        assert last == int(conn.execute("SELECT MAX(ts) FROM equity_snapshots").fetchone()[0])
        expected = reports.to_json(reports.build_report(conn, "weekly", last))
    finally:
        conn.close()
    assert out == json.loads(json.dumps(expected, default=str))
    assert (out["period_start_ms"], out["period_end_ms"]) == bounds("weekly", last)

    # the other outputs in-process (the same entry point, without a Python start-up each)
    page = tmp_path / "month.html"
    assert cli.run(["report", "monthly", "--html", str(page), "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out == ""
    assert page.read_text().startswith("<!DOCTYPE html>") and "<svg" in page.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".month.html")] == []  # no temp file left
    notes = tmp_path / "notes.md"
    assert cli.run(["report", "weekly", "--md", str(notes), "--data-dir", str(data_dir)]) == 0
    assert notes.read_text().startswith("# Amarktai weekly report ")

    assert cli.run(["report", "--data-dir", str(data_dir)]) == 0  # Markdown on stdout by default
    md = capsys.readouterr().out
    assert md.startswith("# Amarktai daily report ")
    assert "## Countdown" in md and "## Breaker trips this period" in md

    assert cli.run(["report", "--md", "weekly", "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr()
    assert err.out == "" and err.err.strip().splitlines() == [
        "amarktai report: --md weekly: put the period before --md (or name a file like weekly.md)"
    ]
    missing = tmp_path / "missing" / "r.html"
    assert cli.run(["report", "--html", str(missing), "--data-dir", str(data_dir)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"amarktai report: --html {missing}: directory {missing.parent} does not exist"
    )
    assert cli.run(["report", "--json", "--md", "--data-dir", str(data_dir)]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_profits_pane_shows_the_same_countdown(data_dir: Path, conn: sqlite3.Connection) -> None:
    from amarktai_tui.ledger.profits import read_countdown
    from amarktai_tui.tui.profits_pane import read_figures

    now = int(conn.execute("SELECT MAX(ts) FROM equity_snapshots").fetchone()[0])
    line = read_figures(db_path(data_dir), now, "all", D(15_000), "USDT").countdown
    assert line == "Countdown to " + reports.countdown_text(read_countdown(conn, now, D(15_000)), "USDT")
    assert line.startswith("Countdown to 15,000.00 USDT: ")
    missing = read_figures(data_dir / "nope.sqlite3", now, "all", D(15_000), "USDT")
    assert missing.countdown.startswith("Countdown: no ledger yet") and missing.error is not None
