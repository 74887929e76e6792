"""Self-learning (autonomy.learning): the rules at their boundaries, the bounds as properties,
and the job on a real engine replaying real candles (changes recorded through the Adjuster, revertible)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from learnheal_helpers import HOUR, candles, drive, make_engine, spec

from amarktai_tui.autonomy.changes import Adjuster
from amarktai_tui.autonomy.learning import (
    DAY_MS,
    HOUR_MS,
    BotView,
    LearningJob,
    pct,
    review,
    window,
)
from amarktai_tui.autonomy.settings import AutonomySettings, LearningSettings
from amarktai_tui.domain.enums import RiskMode, Side
from amarktai_tui.domain.types import Fill
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.ledger.pnl import Trade
from amarktai_tui.locations import db_path

NOW = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MS  # a UTC midnight
D = Decimal


def trade(
    pnl: str | Decimal, *, i: int = 0, hour: int = 0, pair: str = "BTC/USDT", age_ms: int = HOUR_MS
) -> Trade:
    """A closed trade of bot 1 entered at ``hour`` UTC the day before NOW, closed ``age_ms`` before NOW."""
    entry = NOW - DAY_MS + hour * HOUR_MS + i  # i keeps times distinct
    exit_ = NOW - age_ms - (1000 - i % 1000)
    p = D(pnl)
    return Trade(1, pair, min(entry, exit_ - 1), exit_, D(1), D(100), D(100) + p, p, D("0.1"), "binance")


def trades(wins: int, losses: int, win: str = "15", loss: str = "-10") -> list[Trade]:
    out = [trade(win, i=k) for k in range(wins)]
    out += [trade(loss, i=wins + k) for k in range(losses)]
    return out


def bot(mode: RiskMode = RiskMode.BALANCED, mult: str = "1", tp: str | None = "0.04") -> BotView:
    return BotView(1, "b1", mode.value, D(mult), None if tp is None else D(tp))


def cfg(**learning: int) -> AutonomySettings:
    return AutonomySettings(learning=LearningSettings(**learning))


def fields(rv_changes: object) -> dict[str, object]:
    return {s.field: s.after for s in rv_changes}  # type: ignore[attr-defined]


# -- the win-rate rule at 44.9 / 45 / 60 / 60.1 % -------------------------------------------------


def test_win_rate_just_below_45_steps_risk_down_and_shrinks_size() -> None:
    rv = review(trades(449, 551, "20", "-10"), NOW, cfg(lookback_trades=1000), bot())
    assert rv.trades == 1000 and rv.win_rate == D("0.449")
    got = fields(rv.changes)
    assert got["risk_mode"] is RiskMode.SAFE
    assert got["size_multiplier"] == D("0.8")
    reason = next(s.reason for s in rv.changes if s.field == "risk_mode")
    assert "win rate 44.9% over 1000 trades < 45.0%" in reason


def test_win_rate_exactly_45_changes_nothing() -> None:
    rv = review(trades(9, 11, "20", "-10"), NOW, cfg(), bot())
    assert rv.win_rate == D("0.45")
    assert rv.changes == ()  # ratio 2.0 >= 1.5 too


def test_win_rate_exactly_60_changes_nothing() -> None:
    rv = review(trades(12, 8, "20", "-10"), NOW, cfg(), bot())
    assert rv.win_rate == D("0.6")
    assert rv.changes == ()


def test_win_rate_just_above_60_grows_size_only() -> None:
    rv = review(trades(601, 399, "20", "-10"), NOW, cfg(lookback_trades=1000), bot(RiskMode.RISKY, "1.1"))
    got = fields(rv.changes)
    assert got == {"size_multiplier": D("1.3")}  # 1.1 x 1.2 = 1.32 clamped to the bound 1.3
    assert "win rate 60.1% over 1000 trades > 60.0%" in rv.changes[0].reason


def test_risk_mode_steps_down_one_at_a_time_and_safe_stays() -> None:
    steps = {}
    for mode in RiskMode:
        rv = review(trades(2, 18), NOW, cfg(), bot(mode))
        steps[mode] = fields(rv.changes).get("risk_mode")
    assert steps == {
        RiskMode.AGGRESSIVE: RiskMode.RISKY,
        RiskMode.RISKY: RiskMode.BALANCED,
        RiskMode.BALANCED: RiskMode.SAFE,
        RiskMode.SAFE: None,
    }
    rv = review(trades(2, 18), NOW, cfg(), bot(RiskMode.SAFE))
    assert any("risk mode already safe" in n for n in rv.notes)


def test_multiplier_floor_and_ceiling() -> None:
    low = review(trades(2, 18), NOW, cfg(), bot(mult="0.8"))
    assert fields(low.changes)["size_multiplier"] == D("0.7")  # 0.64 -> 0.7
    at_floor = review(trades(2, 18), NOW, cfg(), bot(mult="0.7"))
    assert "size_multiplier" not in fields(at_floor.changes)
    high = review(trades(18, 2, "30", "-10"), NOW, cfg(), bot(mult="1.3"))
    assert "size_multiplier" not in fields(high.changes)
    hand_set = review(trades(18, 2, "30", "-10"), NOW, cfg(), bot(mult="1.5"))  # above the bound by hand
    assert "size_multiplier" not in fields(hand_set.changes)  # never lowered by a "raise" rule


# -- the win/loss ratio rule at 1.5 ------------------------------------------------------------------


def test_ratio_exactly_1_5_keeps_take_profit() -> None:
    rv = review(trades(10, 10, "15", "-10"), NOW, cfg(), bot())
    assert rv.wl_ratio == D("1.5")
    assert "take_profit" not in fields(rv.changes)


def test_ratio_below_1_5_raises_take_profit_by_1_3() -> None:
    rv = review(trades(10, 10, "14.9", "-10"), NOW, cfg(), bot(tp="0.04"))
    assert rv.wl_ratio == D("1.49")
    assert fields(rv.changes) == {"take_profit": D("0.052")}
    assert "win/loss ratio 1.49 over 20 trades < 1.5" in rv.changes[0].reason


def test_take_profit_clamped_to_2_and_10_percent() -> None:
    small = review(trades(10, 10, "5", "-10"), NOW, cfg(), bot(tp="0.01"))
    assert fields(small.changes)["take_profit"] == D("0.02")
    big = review(trades(10, 10, "5", "-10"), NOW, cfg(), bot(tp="0.09"))
    assert fields(big.changes)["take_profit"] == D("0.10")
    at_max = review(trades(10, 10, "5", "-10"), NOW, cfg(), bot(tp="0.10"))
    assert "take_profit" not in fields(at_max.changes)
    above = review(trades(10, 10, "5", "-10"), NOW, cfg(), bot(tp="0.15"))
    assert "take_profit" not in fields(above.changes)  # never lowered by a "raise" rule


def test_no_take_profit_stays_without_one() -> None:
    rv = review(trades(10, 10, "5", "-10"), NOW, cfg(), bot(tp=None))
    assert "take_profit" not in fields(rv.changes)
    assert any("no take-profit set" in n for n in rv.notes)


def test_no_losing_trade_has_no_ratio() -> None:
    rv = review(trades(20, 0), NOW, cfg(), bot())
    assert rv.wl_ratio is None and rv.avg_loss is None
    assert "take_profit" not in fields(rv.changes)


# -- window, minimum, buckets -------------------------------------------------------------------------


def test_below_min_trades_reports_only() -> None:
    rv = review(trades(0, 9), NOW, cfg(min_trades=10), bot())
    assert rv.trades == 9 and rv.win_rate == 0
    assert rv.changes == ()
    assert rv.notes and "9 closed trades in the window < 10" in rv.notes[0]
    assert review(trades(0, 10), NOW, cfg(min_trades=10), bot()).changes != ()


def test_window_last_trades_and_days() -> None:
    ls = LearningSettings(lookback_trades=5, lookback_days=30)
    ts = [trade("1", i=k, age_ms=(40 - k) * DAY_MS) for k in range(20)]  # ages 40 .. 21 days
    kept = window(ts, NOW, ls)
    assert [t.exit_ts for t in kept] == sorted(t.exit_ts for t in ts)[-5:]
    ls_days = LearningSettings(lookback_trades=50, lookback_days=30)
    assert len(window(ts, NOW, ls_days)) == 9  # ages 29 .. 21 days (and a second); 30 d + 1 s is out
    future = trade("1", age_ms=-HOUR_MS)
    assert window([future], NOW, ls_days) == []
    assert window(ts, NOW, ls_days, since_ts=ts[15].entry_ts) == ts[15:]


def test_best_and_worst_hours_and_pairs() -> None:
    ts = [
        trade("30", i=0, hour=9),
        trade("-5", i=1, hour=9),
        trade("-40", i=2, hour=14),
        trade("10", i=3, hour=14, pair="ETH/USDT"),
        trade("2", i=4, hour=22, pair="ETH/USDT"),
    ]
    rv = review(ts, NOW, cfg(min_trades=1), bot())
    assert rv.best_hour is not None and (rv.best_hour.key, rv.best_hour.pnl) == ("09", D(25))
    assert rv.worst_hour is not None and (rv.worst_hour.key, rv.worst_hour.pnl) == ("14", D(-30))
    assert rv.best_pair is not None and (rv.best_pair.key, rv.best_pair.pnl) == ("ETH/USDT", D(12))
    assert rv.worst_pair is not None and (rv.worst_pair.key, rv.worst_pair.pnl) == ("BTC/USDT", D(-15))
    assert rv.net_pnl == D(-3)
    js = rv.to_json()
    assert js["best_hour"] == {"key": "09", "trades": 2, "wins": 1, "pnl": "25"}


# -- properties: every suggestion within the bounds, in its rule's direction --------------------------

pnls = st.lists(
    st.decimals(min_value=-500, max_value=500, allow_nan=False, places=2).filter(lambda d: d != 0),
    min_size=0,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    pnl=pnls,
    mult=st.decimals(min_value=D("0.05"), max_value=D(5), places=3),
    tp=st.one_of(st.none(), st.decimals(min_value=D("0.001"), max_value=D("0.9"), places=3)),
    mode=st.sampled_from(list(RiskMode)),
)
def test_suggestions_always_within_bounds(
    pnl: list[Decimal], mult: Decimal, tp: Decimal | None, mode: RiskMode
) -> None:
    s = cfg(min_trades=1)
    rv = review([trade(p, i=k) for k, p in enumerate(pnl)], NOW, s, BotView(1, "b", mode.value, mult, tp))
    b = s.bounds
    for c in rv.changes:
        if c.field == "size_multiplier":
            assert b.size_multiplier_min <= c.after <= b.size_multiplier_max
            assert c.after != mult
            assert (c.after < mult) == (rv.win_rate is not None and rv.win_rate < D("0.45"))
        elif c.field == "take_profit":
            assert tp is not None and b.take_profit_min <= c.after <= b.take_profit_max
            assert c.after > tp
        else:
            assert c.field == "risk_mode"
            assert list(RiskMode).index(c.after) == list(RiskMode).index(mode) - 1
    if len(pnl) < s.learning.min_trades:
        assert rv.changes == ()


@dataclass
class _Rec:  # BotRecord-like, to check the protocol with the engine's record type too
    id: int = 1
    name: str = "x"
    risk_mode: RiskMode = RiskMode.AGGRESSIVE
    size_multiplier: Decimal = Decimal(1)
    take_profit: Decimal | None = None


def test_review_reads_an_engine_record_like_object() -> None:
    rv = review(trades(1, 19), NOW, cfg(), _Rec())
    assert fields(rv.changes)["risk_mode"] is RiskMode.RISKY


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single(n: int) -> None:
    rv = review(trades(n, 0), NOW, cfg(), bot())
    assert rv.trades == n and rv.changes == ()


# -- the job on a real engine over real BTC/USDT 1h candles ------------------------------------------


def _closed(fills: list[Fill], bot_id: int) -> list[tuple[int, int, Decimal]]:
    """(entry ts, exit ts, pnl) of each round trip, walked here from the fills' quantities and their
    realised PnL (independent of ledger.pnl's trade builder)."""
    out, qty, pnl, entry = [], Decimal(0), Decimal(0), 0
    for f in fills:
        if f.bot_id != bot_id:
            continue
        if f.side is Side.BUY:
            entry = f.ts if qty == 0 else entry
            qty += f.quantity
        else:
            qty -= f.quantity
            pnl += f.realised_pnl
            if qty == 0:
                out.append((entry, f.ts, pnl))
                pnl = Decimal(0)
    return out


async def _learner(tmp: Path, mode: str) -> tuple[TradingEngine, Adjuster, LearningJob]:
    s = AutonomySettings(mode=mode, learning=LearningSettings(every_trades=5, min_trades=5))  # type: ignore[arg-type]
    engine, adj, _ = await make_engine(tmp, [spec("learner", take_profit="0.03", stop_loss="0.02")], s)
    return engine, adj, LearningJob(engine, adj, s)


async def test_autonomous_learning_applies_recorded_revertible_changes(tmp_path: Path) -> None:
    engine, adj, job = await _learner(tmp_path, "autonomous")
    try:
        await drive(engine, candles()[:1500], [(60_000, job.run)])
        rows = [a for a in reversed(adj.history(limit=100)) if a.source == "learning"]
        assert rows and all(a.status == "applied" for a in rows)
        trades = _closed(engine.fill_log, 1)
        # the first review came with the 5th closed trade: its sell filled at a candle's open, the
        # job ran after that candle, at its close (engine time)
        first_ts = rows[0].ts
        assert first_ts == trades[4][1] + HOUR
        wins = sum(1 for _, _, p in trades[:5] if p > 0)
        assert f"win rate {pct(Decimal(wins) / 5)} over 5 trades" in rows[0].reason
        at_first = {a.field for a in rows if a.ts == first_ts}
        if wins / 5 < 0.45:  # this data: 1 of the first 5 sma_cross trades won
            assert at_first >= {"risk_mode", "size_multiplier"}
        else:
            assert "risk_mode" not in at_first
        # every change recorded with before/after, within the bounds and in its rule's direction
        modes = list(RiskMode)
        for a in rows:
            if a.field == "risk_mode":
                assert (
                    modes.index(RiskMode(a.after["risk_mode"]))
                    == modes.index(RiskMode(a.before["risk_mode"])) - 1
                )
                assert D("0.7") <= D(a.after["size_multiplier"]) <= D("1.3")
            elif a.field == "size_multiplier":
                assert D("0.7") <= D(a.after) <= D("1.3") and D(a.after) != D(a.before)
            else:
                assert a.field == "take_profit"
                assert D("0.02") <= D(a.after) <= D("0.10") and D(a.after) > D(a.before)
        rec = engine.runners[1].rec
        last = {a.field: a.after for a in rows}
        if "size_multiplier" in last:
            assert rec.size_multiplier == D(last["size_multiplier"])
        # ... and reverting them all, newest first, restores the bot as it started
        for a in reversed(rows):
            back = await adj.revert(a.id)
            assert back.status == "reverted" and back.ref_id == a.id
        assert (rec.risk_mode, rec.size_multiplier, rec.take_profit) == (RiskMode.AGGRESSIVE, D(1), D("0.03"))
        stored = _bot_row(tmp_path)
        assert (stored["risk_mode"], D(stored["size_multiplier"]), D(stored["take_profit"])) == (
            "aggressive", D(1), D("0.03")
        )  # fmt: skip
    finally:
        job.close()
        await engine.store.close()


def _bot_row(tmp: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db_path(tmp)}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return dict(conn.execute("SELECT * FROM bots WHERE id = 1").fetchone())
    finally:
        conn.close()


async def test_expert_learning_only_proposes(tmp_path: Path) -> None:
    engine, adj, job = await _learner(tmp_path, "expert")
    try:
        await drive(engine, candles()[:1500], [(60_000, job.run), (DAY_MS, job.run_daily)])
        rows = [a for a in adj.history(limit=200) if a.source == "learning"]
        assert rows and {a.status for a in rows} == {"proposed"}
        per_field = [(a.field, json.dumps(a.after, sort_keys=True)) for a in rows]
        assert len(per_field) == len(set(per_field))  # a pending proposal is never repeated
        rec = engine.runners[1].rec
        assert (rec.risk_mode, rec.size_multiplier, rec.take_profit) == (RiskMode.AGGRESSIVE, D(1), D("0.03"))
        size = next(a for a in rows if a.field == "size_multiplier")
        accepted = await adj.accept(size.id)  # the user accepts one: now it applies
        assert accepted.status == "accepted" and rec.size_multiplier == D(size.after) != D(1)
        mode = next(a for a in rows if a.field == "risk_mode")
        assert (await adj.accept(mode.id)).status == "accepted"
        assert (
            rec.risk_mode is RiskMode(mode.after["risk_mode"]) is RiskMode.RISKY
        )  # one step below aggressive
    finally:
        job.close()
        await engine.store.close()


async def test_learn_cli_reads_the_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine, _, job = await _learner(tmp_path, "autonomous")
    try:
        await drive(engine, candles()[:1500], [(60_000, job.run)])
        last_change = max(a.ts for a in job.adjuster.history(limit=100) if a.source == "learning")
    finally:
        job.close()
        await engine.store.close()
    from amarktai_tui.cli import run

    assert run(["learn", "learner", "--json", "--data-dir", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    start = out["now_ms"] - 30 * DAY_MS  # the last 30 days, trades entered since the last change
    mine = [t for t in _closed_from_ledger(tmp_path) if t[0] >= last_change and t[1] > start]
    assert out["trades"] == len(mine) and out["bot"] == "learner" and out["mode"] == "expert"
    if mine:
        assert D(out["win_rate"]) == Decimal(sum(1 for t in mine if t[2] > 0)) / len(mine)
        assert D(out["net_pnl"]) == sum((t[2] for t in mine), Decimal(0))
    assert run(["learn", "1", "--data-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("learning review of learner (id 1)") and "would change" in text
    assert run(["learn", "nobody", "--data-dir", str(tmp_path)]) == 2
    assert "no bot named or numbered 'nobody'" in capsys.readouterr().err
    assert run(["learn", "learner", "--data-dir", str(tmp_path / "empty")]) == 1


def _closed_from_ledger(tmp: Path) -> list[tuple[int, int, Decimal]]:
    from amarktai_tui.ledger import reader

    conn = sqlite3.connect(f"file:{db_path(tmp)}?mode=ro", uri=True)
    try:
        rows = reader.fills(conn, 1)
    finally:
        conn.close()
    fills = [
        Fill(r.fill_id, r.client_order_id, r.bot_id, r.exchange, r.pair, Side(r.side), r.quantity, r.price, r.fee,
             r.fee_currency, r.ts, r.liquidity, r.realised_pnl)
        for r in rows
    ]  # fmt: skip
    return _closed(fills, 1)
