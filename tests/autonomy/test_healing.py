"""Self-healing (autonomy.healing): each rule at its boundary, escalation, the replacement DNA,
and the job on a real engine replaying real candles (quarantine, escalation, resume, retire,
replacement; expert mode only proposes)."""

from __future__ import annotations

import itertools
import sqlite3
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from learnheal_helpers import HOUR, Recorder, candles, drive, make_engine, spec

from amarktai_tui.autonomy.adjust_store import withdrawn as is_withdrawal
from amarktai_tui.autonomy.changes import Adjuster, Adjustment, AdjustmentError, Change
from amarktai_tui.autonomy.dna import Dna
from amarktai_tui.autonomy.evolution_store import MemberRow
from amarktai_tui.autonomy.healing import (
    DAY_MS,
    HOUR_MS,
    STALE_HOURS,
    HealingJob,
    Quarantine,
    capital_loss,
    escalate,
    hourly_loss,
    idle,
    replacement_dna,
    trade_limit,
)
from amarktai_tui.autonomy.settings import AutonomySettings, HealingSettings
from amarktai_tui.domain.enums import BotState, LifecycleStage, RiskMode
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.events import BotQuarantined, BotStateChanged
from amarktai_tui.ledger.store import BotRecord
from amarktai_tui.locations import db_path
from amarktai_tui.risk.gates import LimitSettings
from amarktai_tui.risk.pipeline import PipelineSettings
from amarktai_tui.strategies.registry import make_strategy

D = Decimal
T0 = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MS + 6 * HOUR_MS  # 06:00 UTC


# -- rules at their boundaries ----------------------------------------------------------------------


def test_hourly_loss_boundary() -> None:
    cap, limit = D(1000), D("0.15")
    assert hourly_loss(D(-150), D(0), cap, limit) is None  # exactly 15 %: not over
    f = hourly_loss(D("-150.01"), D(0), cap, limit)
    assert f is not None and f.rule == "hourly_loss"
    assert "net loss 150.01 in the last hour is 15.0% of its capital 1000.00 > 15.0%" in f.reason
    assert hourly_loss(D(-300), D(-140), cap, limit) is not None  # a loss of 160 from -140
    assert hourly_loss(D(-300), None, cap, limit) is None  # no sample an hour back yet
    assert hourly_loss(D(100), D(300), cap, limit) is not None  # giving back profit is a loss too


def test_capital_loss_boundary_and_flows() -> None:
    limit = D("0.20")
    assert capital_loss(D(800), D(1000), D(1000), limit) is None  # exactly 20 % below
    f = capital_loss(D("799.99"), D(1000), D(1000), limit)
    assert f is not None and f.rule == "capital_loss" and "below its initial capital 1000.00" in f.reason
    # the allocator took 500 away: equity 500 is no loss
    assert capital_loss(D(500), D(500), D(1000), limit) is None
    # and added 500: equity 1300 is a loss of 200 on the initial 1000 -> exactly 20 %, then over
    assert capital_loss(D(1300), D(1500), D(1000), limit) is None
    assert capital_loss(D(1299), D(1500), D(1000), limit) is not None
    assert capital_loss(D(1), D(1000), None, limit) is None


def test_trade_limit_boundary() -> None:
    assert trade_limit(49, 50) is None
    f = trade_limit(50, 50)
    assert f is not None and f.reason == "50 orders today reached the daily limit of 50"


def test_idle_boundary() -> None:
    day = DAY_MS
    closes = [(T0 + h * HOUR_MS, D(100) + (D(3) if h == 12 else 0)) for h in range(25)]  # a 3 % bump
    now = T0 + day
    assert idle(now, T0, None, closes, day, D("0.03")) is None  # moved exactly 3 %: not more
    moved = [(ts, p * (D("1.0001") if p > 100 else 1)) for ts, p in closes]
    f = idle(now, T0, None, moved, day, D("0.03"), "BTC/USDT")
    assert f is not None and f.rule == "idle" and "no trade for 24 h while BTC/USDT moved 3.0%" in f.reason
    assert idle(now - 1, T0, None, moved, day, D("0.03")) is None  # 1 ms short of 24 h
    assert idle(now, T0, T0 + 1, moved, day, D("0.03")) is None  # a fill after it started
    assert idle(now, T0 + 1, None, moved, day, D("0.03")) is None  # running (not paused) only since then


# -- escalation ---------------------------------------------------------------------------------------


def test_escalation_levels_then_retire() -> None:
    hs = HealingSettings()
    now = T0
    e1 = escalate([], now, hs)
    e2 = escalate([now - 2 * HOUR_MS], now, hs)
    e3 = escalate([now - 6 * HOUR_MS, now - 2 * HOUR_MS], now, hs)
    e4 = escalate([now - 30 * HOUR_MS, now - 6 * HOUR_MS, now - 2 * HOUR_MS], now, hs)
    assert (e1.level, e1.until_ts) == (1, now + HOUR_MS)
    assert (e2.level, e2.until_ts) == (2, now + 3 * HOUR_MS)
    assert (e3.level, e3.until_ts) == (3, now + 24 * HOUR_MS)
    assert (e4.level, e4.until_ts, e4.retire) == (4, None, True)
    old = now - 7 * DAY_MS  # exactly reset_days ago: no longer counts
    assert escalate([old, old + 1], now, hs).level == 2


def test_trade_limit_pause_lasts_until_midnight() -> None:
    hs = HealingSettings()
    e = escalate([], T0, hs, "trade_limit")
    assert e.until_ts == (T0 // DAY_MS + 1) * DAY_MS
    late = (T0 // DAY_MS + 1) * DAY_MS - 10 * 60_000  # 23:50: the 1 h pause ends after midnight anyway
    assert escalate([], late, hs, "trade_limit").until_ts == late + HOUR_MS


@settings(max_examples=200, deadline=None)
@given(
    ages=st.lists(st.integers(min_value=1, max_value=20 * DAY_MS), max_size=8),
    steps=st.lists(st.floats(min_value=0.1, max_value=72), min_size=1, max_size=5),
)
def test_escalation_property(ages: list[int], steps: list[float]) -> None:
    hs = HealingSettings(escalation_hours=steps)
    e = escalate([T0 - a for a in ages], T0, hs)
    recent = sum(1 for a in ages if a < hs.reset_days * DAY_MS)
    assert e.level == min(recent + 1, len(steps) + 1)
    if recent < len(steps):
        assert e.until_ts == T0 + round(steps[recent] * HOUR_MS)
    else:
        assert e.retire


# -- replacement DNA ----------------------------------------------------------------------------------


def _rec(**kw: object) -> BotRecord:
    base: dict[str, object] = dict(
        id=3, name="loser", exchange="binance", pair="BTC/USDT", timeframe="1h", strategy="sma_cross",
        params={"fast": 3, "slow": 7}, risk_mode=RiskMode.RISKY, capital=D(1000), stop_loss=None,
        take_profit=D("0.05"), trailing_stop=None, state=BotState.RUNNING, state_reason="",
        stage=LifecycleStage.PAPER_TRAINING, last_candle_ts=None,
    )  # fmt: skip
    base.update(kw)
    return BotRecord(**base)  # type: ignore[arg-type]


def test_replacement_defaults_without_evolution() -> None:
    from amarktai_tui.strategies.registry import make_strategy

    dna = replacement_dna(_rec(), [], D("0.08"))
    assert dna["strategy"] == "sma_cross" and dna["params"] == dict(make_strategy("sma_cross").params)
    assert dna["params"] != {"fast": 3, "slow": 7}
    assert (dna["pair"], dna["exchange"], dna["timeframe"], dna["risk_mode"]) == (
        "BTC/USDT",
        "binance",
        "1h",
        "risky",
    )
    assert dna["capital"] == "1000" and dna["stop_loss"] == "0.08" and dna["take_profit"] == "0.05"
    assert dna["dna_id"] is None


def _member(mid: str, pair: str, fitness: str, strategy: str = "rsi_reversion") -> MemberRow:
    d = Dna.from_dict(
        {"strategy": strategy, "params": {}, "pair": pair, "exchange": "binance", "risk_mode": "safe",
         "capital_share": "0.1", "timeframe": "4h"}
    )  # fmt: skip
    return MemberRow(mid, d, D(fitness), {}, None, None, False)


def test_replacement_takes_the_best_evolution_member_of_its_pair() -> None:
    members = [
        _member("r/g1/m0", "ETH/USDT", "0.9"),
        _member("r/g1/m4", "BTC/USDT", "0.5"),
        _member("r/g0/m1", "BTC/USDT", "0.2"),
    ]
    dna = replacement_dna(_rec(stop_loss=D("0.03")), members, D("0.1"))
    assert dna["dna_id"] == "r/g1/m4" and dna["strategy"] == "rsi_reversion"
    assert dna["risk_mode"] == "safe" and dna["timeframe"] == "4h" and dna["stop_loss"] == "0.03"


# -- the job on a real engine over real BTC/USDT 1h candles ------------------------------------------

FIVE_MIN = 5 * 60_000
OFF = 10_000.0  # idle_hours that never elapse in these runs


def _rows(tmp: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db_path(tmp)}?mode=ro", uri=True)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


async def _healing(
    tmp: Path, hs: HealingSettings, mode: str = "autonomous", risk: PipelineSettings | None = None
) -> tuple[TradingEngine, Adjuster, Recorder, HealingJob, AutonomySettings]:
    s = AutonomySettings(mode=mode, healing=hs)  # type: ignore[arg-type]
    engine, adj, rec = await make_engine(tmp, [spec("loser")], s, risk)
    job = HealingJob(engine, adj, s)
    await job.load()
    return engine, adj, rec, job, s


async def test_losing_bot_escalates_to_retirement_and_is_replaced(tmp_path: Path) -> None:
    hs = HealingSettings(capital_loss=D("0.01"), idle_hours=OFF)
    engine, adj, rec, job, _ = await _healing(tmp_path, hs)
    seen: list[tuple[int, Decimal]] = []  # (check time, loser's equity net of later flows) before each check

    async def checked(now: int) -> None:
        r = engine.runners[1]
        if r.rec.state is BotState.RUNNING:
            seen.append((now, r.equity() - (r.funding - D(1000))))
        await job.run(now)

    try:
        await drive(engine, candles()[:1500], [(FIVE_MIN, checked)], until=lambda: len(engine.runners) > 1)
        qs = [
            Quarantine(*r)  # type: ignore[arg-type]
            for r in _rows(
                tmp_path, "SELECT id, ts, bot_id, level, rule, reason, until_ts FROM quarantines ORDER BY id"
            )
        ]
        assert [q.level for q in qs] == [1, 2, 3, 4]
        assert {q.rule for q in qs} == {"capital_loss"} and {q.bot_id for q in qs} == {1}
        # the first quarantine came at the first check where equity was more than 1 % under 1000
        first_bad = next(t for t, eq in seen if eq < D(990))
        assert qs[0].ts == first_bad and all(eq >= D(990) for t, eq in seen if t < first_bad)
        assert [q.until_ts for q in qs] == [qs[0].ts + HOUR, qs[1].ts + 3 * HOUR, qs[2].ts + 24 * HOUR, None]
        # each pause ended on time: resumed at its until_ts ("quarantine over"), then (the loss still
        # there) quarantined again at the next level
        for q, nxt in itertools.pairwise(qs):
            assert nxt.ts == q.until_ts
        resumed = [e for e in rec.of(BotStateChanged) if e.bot_id == 1 and e.new is BotState.RUNNING]
        assert [e.ts for e in resumed] == [q.until_ts for q in qs[:3]]
        assert all("quarantine over" in e.reason for e in resumed)
        paused = [e for e in rec.of(BotStateChanged) if e.bot_id == 1 and e.new is BotState.PAUSED]
        assert [e.ts for e in paused] == [q.ts for q in qs[:3]]
        events = rec.of(BotQuarantined)
        assert [(e.level, e.rule, e.until_ts) for e in events] == [(q.level, q.rule, q.until_ts) for q in qs]
        # retired: stopped, and a replacement with the same strategy/pair/exchange at default params
        loser = engine.runners[1]
        assert loser.rec.state is BotState.STOPPED and "retired" in loser.rec.state_reason
        new = engine.runners[2]
        assert (new.rec.strategy, new.rec.pair, new.rec.exchange, new.rec.timeframe) == (
            "sma_cross", "BTC/USDT", "binance", "1h"
        )  # fmt: skip
        assert new.rec.params == dict(make_strategy("sma_cross").params)
        # its capital is the loser's money (flat: funding + realised), rounded down to 0.01; none created
        assert not loser.long and new.rec.capital == (D(1000) + loser.stats.realised).quantize(
            D("0.01"), ROUND_DOWN
        )
        assert sum(r.funding for r in engine.runners.values()) + engine.pool == D(1000)
        heal = [a for a in adj.history(limit=100) if a.source == "healing"]
        assert [a.status for a in heal] == ["applied"] * len(heal)
        assert [a.field for a in reversed(heal)] == ["state"] * 7 + ["replace"]
        # a restart reads the quarantines back: the next one would retire again
        again = HealingJob(engine, adj, job.settings)
        await again.load()
        assert again.quarantines == qs
    finally:
        job.close()
        await engine.store.close()


async def test_hourly_loss_rule_on_real_candles(tmp_path: Path) -> None:
    hs = HealingSettings(hourly_loss=D("0.004"), capital_loss=D("0.99"), idle_hours=OFF)
    engine, _, rec, job, _ = await _healing(tmp_path, hs)
    pnl: list[tuple[int, Decimal]] = []

    async def checked(now: int) -> None:
        r = engine.runners[1]
        pnl.append((now, r.equity() - r.funding))
        await job.run(now)

    try:
        await drive(
            engine, candles()[:1500], [(FIVE_MIN, checked)], until=lambda: bool(rec.of(BotQuarantined))
        )
        q = rec.of(BotQuarantined)[0]
        assert (q.level, q.rule, q.until_ts) == (1, "hourly_loss", q.ts + HOUR)
        # independently: the first check whose net PnL fell more than 0.4 % of 1000 since the hour before
        by_ts = dict(pnl)
        first = next(t for t, p in pnl if t - HOUR in by_ts and by_ts[t - HOUR] - p > D(4))
        assert q.ts == first
        assert engine.runners[1].rec.state is BotState.PAUSED
    finally:
        job.close()
        await engine.store.close()


async def test_trade_limit_pauses_until_midnight(tmp_path: Path) -> None:
    risk = PipelineSettings(limits=LimitSettings(bot_trades_per_day=1))
    hs = HealingSettings(idle_hours=OFF)
    engine, _, rec, job, _ = await _healing(tmp_path, hs, risk=risk)
    try:
        await drive(
            engine, candles()[:1500], [(FIVE_MIN, job.run)], until=lambda: bool(rec.of(BotQuarantined))
        )
        q = rec.of(BotQuarantined)[0]
        assert q.rule == "trade_limit" and q.level == 1
        assert q.until_ts == (q.ts // DAY_MS + 1) * DAY_MS  # at least the next UTC midnight
        assert engine.pipeline.counter.bot_today(1, q.ts) == 1
    finally:
        job.close()
        await engine.store.close()


async def test_expert_mode_only_proposes(tmp_path: Path) -> None:
    hs = HealingSettings(capital_loss=D("0.01"), idle_hours=OFF)
    engine, adj, rec, job, _ = await _healing(tmp_path, hs, mode="expert")
    seen: list[tuple[int, Decimal]] = []

    async def checked(now: int) -> None:
        r = engine.runners[1]
        seen.append((now, r.equity() - (r.funding - D(1000))))
        await job.run(now)

    def proposals() -> list[Adjustment]:
        return [a for a in adj.history(limit=100) if a.source == "healing" and a.status == "proposed"]

    try:
        cs = candles()[:1000]
        n = await drive(engine, cs, [(FIVE_MIN, checked)], until=lambda: bool(proposals()))
        first = proposals()[0]
        assert first.ts == next(t for t, eq in seen if eq < D(990))
        assert first.field == "state" and first.after == "paused" and "capital_loss" in first.reason
        n += await drive(engine, cs[n : n + 12], [(FIVE_MIN, checked)])
        assert any(eq < D(990) for t, eq in seen if t > first.ts)  # the rule held again ...
        assert proposals() == [first]  # ... and the pending proposal was not repeated
        assert not [e for e in rec.of(BotStateChanged) if e.bot_id == 1]  # nothing changed the bot
        assert engine.runners[1].rec.state is BotState.RUNNING
        assert rec.of(BotQuarantined) == [] and _rows(tmp_path, "SELECT * FROM quarantines") == []
        # rejected: the next proposal waits at least the first pause length (1 h) after the answer
        rejected = await adj.reject(first.id)
        await drive(engine, cs[n : n + 48], [(FIVE_MIN, checked)])
        again = next(t for t, eq in seen if t >= rejected.ts + HOUR and eq < D(990))
        assert [a.ts for a in proposals()] == [again, first.ts]
        assert engine.runners[1].rec.state is BotState.RUNNING
    finally:
        job.close()
        await engine.store.close()


async def _proposal(adj: Adjuster) -> Adjustment:
    """A fresh expert-mode proposal on the first bot (a user's pause)."""
    return await adj.submit(Change(1, "healing", "state", "paused", "test"), actor="user")


async def test_expert_proposal_withdrawn_when_the_bot_recovers(tmp_path: Path) -> None:
    """A pause proposed for an hourly loss is taken back once no rule has held for STALE_HOURS of
    checks: the user is not asked to pause a bot that has recovered."""
    hs = HealingSettings(hourly_loss=D("0.004"), capital_loss=D("0.99"), idle_hours=OFF)
    engine, adj, rec, job, _ = await _healing(tmp_path, hs, mode="expert")
    pnl: list[tuple[int, Decimal]] = []

    async def checked(now: int) -> None:
        r = engine.runners[1]
        pnl.append((now, r.equity() - r.funding))
        await job.run(now)

    def answered() -> list[Adjustment]:
        return [a for a in adj.history(limit=100) if a.source == "healing" and a.status == "rejected"]

    try:
        await drive(engine, candles()[:1500], [(FIVE_MIN, checked)], until=lambda: bool(answered()))
        proposal = next(a for a in adj.history(limit=100) if a.status == "proposed")
        withdrawn = answered()[0]
        assert (withdrawn.ref_id, withdrawn.actor, withdrawn.after) == (proposal.id, "engine", "paused")
        assert withdrawn.reason.startswith(f"withdrawn #{proposal.id}: no healing rule has held for ")
        assert is_withdrawal(withdrawn)  # shown as "withdrawn #id", not as the user's rejection
        assert not is_withdrawal(await adj.reject((await _proposal(adj)).id))
        assert adj.pending() == []
        # independently: the first check STALE_HOURS after the last one whose loss over the hour was
        # more than 0.4 % of the capital (the rule held)
        by_ts = dict(pnl)
        last_held, expected = proposal.ts, None
        for t, p in pnl:
            if t <= proposal.ts:
                continue
            if t - HOUR in by_ts and by_ts[t - HOUR] - p > D(4):
                last_held = t
            elif t - last_held >= STALE_HOURS * HOUR:
                expected = t
                break
        assert withdrawn.ts == expected
        assert not [e for e in rec.of(BotStateChanged) if e.bot_id == 1]  # nothing changed the bot
        with pytest.raises(AdjustmentError, match="answered already"):
            await adj.accept(proposal.id)  # too late: it was withdrawn
    finally:
        job.close()
        await engine.store.close()


@pytest.mark.parametrize("by_user", [BotState.STOPPED])
async def test_no_resume_after_someone_else_changed_the_state(tmp_path: Path, by_user: BotState) -> None:
    hs = HealingSettings(capital_loss=D("0.01"), idle_hours=OFF)
    engine, _, rec, job, _ = await _healing(tmp_path, hs)
    try:
        cs = candles()[:1500]
        n = await drive(engine, cs, [(FIVE_MIN, job.run)], until=lambda: bool(rec.of(BotQuarantined)))
        q = rec.of(BotQuarantined)[0]
        await engine.set_bot_state(1, by_user, "stopped by hand")
        await drive(engine, cs[n : n + 5], [(FIVE_MIN, job.run)])
        assert engine.now_ms > (q.until_ts or 0)
        assert (
            engine.runners[1].rec.state is by_user and engine.runners[1].rec.state_reason == "stopped by hand"
        )
        assert len(rec.of(BotQuarantined)) == 1
    finally:
        job.close()
        await engine.store.close()


async def test_registered_by_start_autonomy_and_run_on_engine_time(tmp_path: Path) -> None:
    from amarktai_tui.autonomy.service import start_autonomy
    from amarktai_tui.autonomy.settings import LearningSettings

    off = AutonomySettings(healing=HealingSettings(enabled=False), learning=LearningSettings(enabled=False))
    s = AutonomySettings(mode="autonomous", healing=HealingSettings(capital_loss=D("0.01"), idle_hours=OFF))
    engine, _, rec = await make_engine(tmp_path, [spec("loser")], s)
    try:
        service, _ = await start_autonomy(engine, off)
        assert not {"healing", "learning", "learning-daily"} & set(service.jobs)
        await service.close()
        service, _ = await start_autonomy(engine, s)
        assert {"healing", "learning", "learning-daily"} <= set(service.jobs)
        try:
            for c in candles()[:1500]:  # the scheduler's own runs, drained after each candle
                engine.process(c)
                await service.drain(5)
                if len(engine.runners) > 1:
                    break
            assert service.failures == 0
            assert [(e.level, e.rule) for e in rec.of(BotQuarantined)] == [
                (lvl, "capital_loss") for lvl in (1, 2, 3, 4)
            ]
            assert engine.runners[1].rec.state is BotState.STOPPED and engine.runners[2].rec.name == "loser-2"
        finally:
            await service.close()
    finally:
        await engine.store.close()
