"""The one door (``autonomy.changes.Adjuster``) on a real engine over a real SQLite ledger, after a
replay of real BTC 1h candles with the demo bots (btc-ema, btc-rsi, btc-donchian; balanced, 5 %
stop-loss; one of them ends long)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from changes_helpers import (
    BTC_1H,
    CANDLES,
    account_total,
    bot_row,
    copy_ledger,
    reopen,
    replay,
    rows,
    settings,
    write_candles,
)
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from amarktai_tui.autonomy.bounds import PROTECTED_FIELDS, SOURCES, Bounds, risk_per_trade
from amarktai_tui.autonomy.changes import Adjuster, Adjustment, AdjustmentError, Change
from amarktai_tui.autonomy.settings import AutonomySettings, BoundsSettings
from amarktai_tui.domain.enums import BotState, LifecycleStage, RiskMode, TradingMode
from amarktai_tui.engine.engine import BotSpec, TradingEngine
from amarktai_tui.engine.events import BotAdjusted
from amarktai_tui.ledger.store import LedgerStore, StageChange
from amarktai_tui.ledger.verify import verify
from amarktai_tui.locations import db_path
from amarktai_tui.market.loaders import load_candles
from amarktai_tui.ops.audit import classify
from amarktai_tui.strategies.registry import STRATEGIES

D = Decimal
EXPERT = AutonomySettings(mode="expert")
AUTO = AutonomySettings(mode="autonomous")
BOUNDS = Bounds.from_settings(AUTO.bounds)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data dir of one finished replay, its candle file)."""
    tmp = tmp_path_factory.mktemp("adjust-base")
    candles = write_candles(tmp / "candles")

    async def run() -> None:
        engine = await replay(settings(tmp), tmp / "data", candles)
        await engine.close()

    asyncio.run(run())
    return tmp / "data", candles


@pytest.fixture
async def engine(base: tuple[Path, Path], tmp_path: Path) -> AsyncIterator[TradingEngine]:
    data = copy_ledger(base[0], tmp_path / "data")
    eng = await reopen(settings(tmp_path), data, base[1])
    try:
        yield eng
    finally:
        await eng.close()


def by_name(engine: TradingEngine, name: str) -> int:
    return engine.runner_by_name(name).rec.id


def events(engine: TradingEngine) -> list[BotAdjusted]:
    seen: list[BotAdjusted] = []
    engine.bus.subscribe(BotAdjusted, seen.append)
    return seen


def adjustments(engine: TradingEngine) -> list[dict[str, object]]:
    return rows(engine.store.path.parent, "SELECT * FROM bot_adjustments ORDER BY id")


async def test_expert_mode_proposes_and_nothing_changes_until_accepted(engine: TradingEngine) -> None:
    seen = events(engine)
    a = Adjuster(engine, EXPERT)
    ema = by_name(engine, "btc-ema")
    data = engine.store.path.parent
    params_before = dict(engine.runners[ema].strategy.params)
    row_before = bot_row(data, "btc-ema")

    p1 = await a.submit(Change(ema, "optimizer", "params", {"fast": 20, "slow": 100}, "best of the study"))
    p2 = await a.submit(Change(ema, "learning", "size_multiplier", D("0.8"), "win rate 40%"))
    again = await a.submit(Change(ema, "optimizer", "params", {"fast": 20, "slow": 100}, "best of the study"))

    assert (p1.status, p2.status) == ("proposed", "proposed")
    assert again.id == p1.id  # an identical pending proposal is not repeated
    assert p1.before == params_before and p1.after == {**params_before, "fast": 20, "slow": 100}
    assert dict(engine.runners[ema].strategy.params) == params_before
    assert engine.runners[ema].rec.size_multiplier == 1
    assert bot_row(data, "btc-ema") == row_before
    assert [x.id for x in a.pending()] == [p1.id, p2.id]
    assert [(e.adjustment_id, e.status) for e in seen] == [(p1.id, "proposed"), (p2.id, "proposed")]

    acc = await a.accept(p1.id)
    assert (acc.status, acc.ref_id, acc.actor) == ("accepted", p1.id, "user")
    assert dict(engine.runners[ema].strategy.params)["fast"] == 20
    assert json.loads(bot_row(data, "btc-ema")["params_json"])["slow"] == 100
    rej = await a.reject(p2.id, actor="cli")
    assert (rej.status, rej.ref_id) == ("rejected", p2.id)
    assert engine.runners[ema].rec.size_multiplier == 1
    assert a.pending() == []
    for act in (a.accept, a.reject):
        with pytest.raises(AdjustmentError, match="answered already"):
            await act(p1.id)
    with pytest.raises(AdjustmentError, match="not a proposal"):
        await a.accept(acc.id)
    with pytest.raises(AdjustmentError, match="no adjustment"):
        await a.accept(9999)

    rev = await a.revert(acc.id)
    assert (rev.status, rev.ref_id, rev.after) == ("reverted", acc.id, params_before)
    assert dict(engine.runners[ema].strategy.params) == params_before
    assert json.loads(bot_row(data, "btc-ema")["params_json"]) == params_before
    with pytest.raises(AdjustmentError, match="reverted already"):
        await a.revert(acc.id)
    with pytest.raises(AdjustmentError, match="only an applied or accepted"):
        await a.revert(rej.id)
    assert [e.status for e in seen] == ["proposed", "proposed", "accepted", "rejected", "reverted"]
    assert len(adjustments(engine)) == 5


async def test_accept_clamps_a_proposal_to_the_bounds_of_now(engine: TradingEngine) -> None:
    ema = by_name(engine, "btc-ema")
    p = await Adjuster(engine, EXPERT).submit(Change(ema, "ai", "take_profit", D("0.08"), "wider"))
    tighter = AutonomySettings(mode="expert", bounds=BoundsSettings(take_profit_max=D("0.05")))
    acc = await Adjuster(engine, tighter).accept(p.id)
    assert acc.after == "0.05" and engine.runners[ema].rec.take_profit == D("0.05")
    assert "clamped to 0.05" in acc.reason


async def test_autonomous_mode_clamps_and_applies(engine: TradingEngine) -> None:
    a = Adjuster(engine, AUTO)
    seen = events(engine)
    ema, donchian = by_name(engine, "btc-ema"), by_name(engine, "btc-donchian")
    data = engine.store.path.parent

    m = await a.submit(Change(ema, "learning", "size_multiplier", D("1.5"), "win rate 65%"))
    assert m.status == "applied"
    mult = engine.runners[ema].rec.size_multiplier
    assert D(m.after) == mult and BOUNDS.size_multiplier[0] <= mult <= BOUNDS.size_multiplier[1]
    rpt = risk_per_trade(RiskMode.BALANCED, mult, D("0.05"))
    assert rpt is not None and BOUNDS.risk_per_trade[0] <= rpt <= BOUNDS.risk_per_trade[1]
    assert D(bot_row(data, "btc-ema")["size_multiplier"]) == mult

    p = await a.submit(Change(ema, "optimizer", "params", {"fast": 0, "slow": 50_000}, "study"))
    assert p.status == "applied" and engine.runners[ema].strategy.params["fast"] == 1
    spec = {s.name: s for s in STRATEGIES["sma_cross"].PARAMS}["slow"]
    assert engine.runners[ema].strategy.params["slow"] == spec.maximum

    tp = await a.submit(Change(donchian, "learning", "take_profit", D("0.5"), "W/L 1.2"))
    runner = engine.runners[donchian]
    assert tp.status == "applied" and runner.rec.take_profit == BOUNDS.take_profit[1]
    assert runner.tracker is not None and runner.tracker.rules.take_profit == BOUNDS.take_profit[1]

    rm = await a.submit(Change(ema, "learning", "risk_mode", "aggressive", "more"))
    assert rm.status == "refused" and "risk per trade" in rm.reason
    assert engine.runners[ema].rec.risk_mode is RiskMode.BALANCED
    safe = await a.submit(Change(ema, "learning", "risk_mode", "safe", "win rate 40%"))
    assert safe.status == "applied" and engine.runners[ema].rec.risk_mode is RiskMode.SAFE
    assert bot_row(data, "btc-ema")["risk_mode"] == "safe"

    same = await a.submit(Change(ema, "learning", "risk_mode", "safe", "again"))
    assert same.status == "refused" and "no change" in same.reason
    assert [e.adjustment_id for e in seen] == [r["id"] for r in adjustments(engine)]

    back = await a.revert(m.id)  # restores exactly, the bounds are not applied to a revert
    assert engine.runners[ema].rec.size_multiplier == D(1) and back.after == "1"


async def test_new_exit_rules_follow_the_open_position(engine: TradingEngine) -> None:
    runner = next(r for r in engine.runners.values() if r.long)
    entry = next(f.price for f in engine.fill_log if f.bot_id == runner.rec.id and f.ts == runner.entry_ts)
    old_peak = runner.tracker.peak if runner.tracker is not None else None
    adj = await Adjuster(engine, AUTO).submit(
        Change(runner.rec.id, "learning", "take_profit", D("0.06"), "W/L")
    )
    assert adj.status == "applied"
    tracker = runner.tracker
    assert tracker is not None and tracker.in_position
    assert tracker.take_profit_price == float(Decimal(float(entry)) * D("1.06"))
    assert tracker.stop_loss_price == float(Decimal(float(entry)) * D("0.95"))
    assert tracker.peak == old_peak


async def test_protected_fields_are_refused_and_untouched(engine: TradingEngine) -> None:
    ema = by_name(engine, "btc-ema")
    data = engine.store.path.parent
    risk, total, mode = engine.risk.breakers, account_total(data), await engine.store.trading_mode()
    bots_before = rows(data, "SELECT * FROM bots ORDER BY id")
    for mode_settings in (EXPERT, AUTO):
        a = Adjuster(engine, mode_settings)
        for field in sorted(PROTECTED_FIELDS):
            adj = await a.submit(Change(ema, "ai", field, D("0.9"), "loosen it"))
            assert adj.status == "refused" and "protected" in adj.reason, field
        for key in ("max_drawdown", "capital", "risk_mode", "TRADING_MODE"):
            adj = await a.submit(Change(ema, "optimizer", "params", {key: 1, "fast": 12}, "sneak"))
            assert adj.status == "refused" and "protected" in adj.reason
    assert engine.risk.breakers == risk and engine.board.settings == risk
    assert account_total(data) == total and await engine.store.trading_mode() == mode
    assert rows(data, "SELECT * FROM bots ORDER BY id") == bots_before
    assert {r["status"] for r in adjustments(engine)} == {"refused"}


async def test_evolution_and_autopilot_never_touch_a_live_bot(
    base: tuple[Path, Path], tmp_path: Path
) -> None:
    data = copy_ledger(base[0], tmp_path / "data")
    store = await LedgerStore.open(db_path(data))
    try:
        [ema] = [b for b in await store.load_bots() if b.name == "btc-ema"]
        await store.change_stage(
            StageChange(ema.id, 1, LifecycleStage.PAPER_TRAINING, LifecycleStage.LIVE, "user", "test")
        )
    finally:
        await store.close()
    engine = await reopen(settings(tmp_path), data, base[1])
    try:
        assert engine.runners[ema.id].rec.stage is LifecycleStage.LIVE
        for mode_settings in (EXPERT, AUTO):
            a = Adjuster(engine, mode_settings)
            for source in ("evolution", "autopilot"):
                adj = await a.submit(Change(ema.id, source, "size_multiplier", D("0.8"), "evolved"))
                assert adj.status == "refused" and "paper bots only" in adj.reason
        assert engine.runners[ema.id].rec.size_multiplier == 1
        other = await Adjuster(engine, AUTO).submit(
            Change(ema.id, "learning", "size_multiplier", D("0.8"), "wr")
        )
        assert other.status == "applied"  # the paper-only rule is evolution's and the autopilot's
        engine.mode = TradingMode.LIVE  # an engine trading live: every bot it runs is live
        paper = next(r.rec.id for r in engine.runners.values() if r.rec.stage is not LifecycleStage.LIVE)
        adj = await Adjuster(engine, AUTO).submit(Change(paper, "autopilot", "capital", D(100), "spread"))
        assert adj.status == "refused" and "paper bots only" in adj.reason
    finally:
        await engine.close()


async def test_capital_moves_between_pool_and_bot_and_keep_the_account_total(engine: TradingEngine) -> None:
    a = Adjuster(engine, AUTO)
    data = engine.store.path.parent
    total = account_total(data)
    ema, rsi = by_name(engine, "btc-ema"), by_name(engine, "btc-rsi")
    assert engine.pool == 0

    refused = await a.submit(
        Change(ema, "autopilot", "capital", engine.runners[ema].rec.capital + 100, "reinvest")
    )
    assert refused.status == "refused" and "pool" in refused.reason

    old_rsi = engine.runners[rsi].rec.capital
    down = await a.submit(Change(rsi, "autopilot", "capital", D("1000"), "poor score"))
    assert down.status == "applied" and engine.runners[rsi].rec.capital == D("1000")
    assert engine.pool == old_rsi - D("1000")
    assert account_total(data) == total
    assert engine.pool + sum((r.funding for r in engine.runners.values()), D(0)) == total

    old_ema = engine.runners[ema].rec.capital
    up = await a.submit(Change(ema, "autopilot", "capital", old_ema + D("100000"), "best score"))
    assert up.status == "applied" and "limited by the account pool" in up.reason
    assert engine.runners[ema].rec.capital == old_ema + (old_rsi - D("1000")) and engine.pool == 0
    assert account_total(data) == total
    assert D(bot_row(data, "btc-ema")["capital"]) == engine.runners[ema].rec.capital
    events = rows(
        data, "SELECT bot_id, kind, amount FROM ledger_events WHERE kind = 'allocation' ORDER BY id"
    )
    assert len(events) == 4 and sum(D(e["amount"]) for e in events) == 0

    n = len(adjustments(engine))
    with pytest.raises(AdjustmentError, match="cannot be restored"):
        await a.revert(down.id)  # the pool gave that money to btc-ema: rsi cannot get it back
    assert len(adjustments(engine)) == n and engine.runners[rsi].rec.capital == D("1000")
    await a.revert(up.id)
    await a.revert(down.id)
    assert engine.runners[rsi].rec.capital == old_rsi and engine.runners[ema].rec.capital == old_ema
    assert engine.pool == 0 and account_total(data) == total


async def test_a_capital_move_of_a_flat_bot_is_in_the_next_equity_snapshot(engine: TradingEngine) -> None:
    rsi = engine.runner_by_name("btc-rsi")
    assert not rsi.long
    after = load_candles(BTC_1H)[CANDLES : CANDLES + 6]  # the candles after the replay: snapshots
    for c in after[:3]:  # engine time runs (the move is stamped with it) and every bot has a row
        engine.process(c)
    adj = await Adjuster(engine, AUTO).submit(Change(rsi.rec.id, "user", "capital", D("1000"), "smaller"))
    assert adj.status == "applied"
    for c in after[3:]:
        engine.process(c)
    await engine.flush()
    last = rows(engine.store.path.parent, "SELECT equity FROM equity_snapshots WHERE bot_id = ? ORDER BY id DESC",
                (rsi.rec.id,))[0]  # fmt: skip
    assert D(last["equity"]) == rsi.flat_equity()  # its equity moved without a fill: a row was written
    conn = sqlite3.connect(f"file:{db_path(engine.store.path.parent)}?mode=ro", uri=True)
    try:
        result = verify(conn)
    finally:
        conn.close()
    assert result.ok, result.first_discrepancy


async def test_replace_spawns_a_paper_bot_funded_through_the_pool(engine: TradingEngine) -> None:
    a = Adjuster(engine, AUTO)
    data = engine.store.path.parent
    total = account_total(data)
    donchian = engine.runner_by_name("btc-donchian")
    free = min(donchian.cash, donchian.rec.capital)
    dna = {"strategy": "rsi_reversion", "params": {"period": 10}, "capital": "2000", "dna_id": "run1/g2/m3"}
    adj = await a.submit(Change(donchian.rec.id, "healing", "replace", dna, "retired after 4 quarantines"))
    assert adj.status == "applied", adj.reason
    new = engine.runners[adj.after["bot_id"]]
    assert new.rec.name == adj.after["name"] == "btc-donchian-2"
    assert new.rec.strategy == "rsi_reversion" and new.rec.params["period"] == 10
    assert new.rec.stage is LifecycleStage.PAPER_TRAINING and new.rec.capital == D("2000")
    assert bot_row(data, "btc-donchian-2")["dna_id"] == "run1/g2/m3"
    assert donchian.rec.state is BotState.STOPPED
    assert engine.pool == free - D("2000")
    assert account_total(data) == total
    with pytest.raises(AdjustmentError, match="stop that bot"):
        await a.revert(adj.id)


async def _free_pool(engine: TradingEngine, amount: D) -> None:
    """Move ``amount`` of btc-rsi's free cash to the account pool (an applied capital change)."""
    rsi = engine.runner_by_name("btc-rsi")
    adj = await Adjuster(engine, AUTO).submit(
        Change(rsi.rec.id, "user", "capital", rsi.rec.capital - amount, "free some capital")
    )
    assert adj.status == "applied" and engine.pool >= amount, adj.reason


SPAWN_DNA = {"strategy": "rsi_reversion", "params": {"period": 10}, "capital": "1500", "dna_id": "run1/g2/m3"}


async def test_spawn_creates_a_paper_bot_from_the_pool_and_retires_nothing(engine: TradingEngine) -> None:
    a = Adjuster(engine, AUTO)
    data = engine.store.path.parent
    total = account_total(data)
    ema = engine.runner_by_name("btc-ema")
    state, capital = ema.rec.state, ema.rec.capital
    seen = events(engine)

    short = await a.submit(Change(ema.rec.id, "autopilot", "spawn", SPAWN_DNA, "best DNA"))
    assert (
        short.status == "refused" and "the account pool holds 0; 1500.00 cannot come from it" in short.reason
    )
    assert len(engine.runners) == 3

    await _free_pool(engine, D("2000"))
    pool = engine.pool
    adj = await a.submit(Change(ema.rec.id, "autopilot", "spawn", SPAWN_DNA, "best DNA"))
    assert adj.status == "applied", adj.reason
    assert adj.bot_id == ema.rec.id and adj.before is None  # the row names the sponsor
    new = engine.runners[adj.after["bot_id"]]
    assert new.rec.name == adj.after["name"] == "btc-ema-2"
    assert new.rec.strategy == "rsi_reversion" and new.rec.params["period"] == 10
    assert new.rec.stage is LifecycleStage.PAPER_TRAINING and new.rec.state is BotState.RUNNING
    assert (
        new.rec.capital == new.funding == D("1500") and bot_row(data, "btc-ema-2")["dna_id"] == "run1/g2/m3"
    )
    assert new.rec.stop_loss == ema.rec.stop_loss  # the sponsor's exits fill the DNA's
    assert (ema.rec.state, ema.rec.capital) == (state, capital)  # nothing retired
    assert engine.pool == pool - D("1500") and account_total(data) == total
    ev = rows(data, "SELECT bot_id, kind, amount FROM ledger_events ORDER BY id DESC LIMIT 2")
    assert {(e["bot_id"], e["kind"], D(e["amount"])) for e in ev} == {
        (new.rec.id, "funding", D("1500")),
        (None, "allocation", D("-1500")),
    }
    assert [(e.field, e.status) for e in seen][-1] == ("spawn", "applied")
    with pytest.raises(AdjustmentError, match="stop that bot"):
        await a.revert(adj.id)


async def test_spawn_is_proposed_in_expert_mode_and_checked_against_the_pool_when_accepted(
    engine: TradingEngine,
) -> None:
    a = Adjuster(engine, EXPERT)
    ema = by_name(engine, "btc-ema")
    dna = {**SPAWN_DNA, "name": "spawned-rsi"}
    p = await a.submit(Change(ema, "user", "spawn", dna, "try this DNA"))
    assert p.status == "proposed" and p.after["name"] == "spawned-rsi" and len(engine.runners) == 3
    assert (await a.submit(Change(ema, "user", "spawn", dna, "try this DNA"))).id == p.id  # not repeated
    n = len(adjustments(engine))
    with pytest.raises(AdjustmentError, match="account pool holds 0"):
        await a.accept(p.id)
    assert len(adjustments(engine)) == n and len(engine.runners) == 3
    await _free_pool(engine, D("1500"))
    acc = await a.accept(p.id)
    assert acc.status == "accepted" and acc.ref_id == p.id
    assert engine.runner_by_name("spawned-rsi").rec.id == acc.after["bot_id"] and engine.pool == 0


async def test_spawn_refusals_live_account_caps_names_and_no_engine(
    engine: TradingEngine, base: tuple[Path, Path], tmp_path: Path
) -> None:
    a = Adjuster(engine, AUTO)
    ema = by_name(engine, "btc-ema")
    await _free_pool(engine, D("1500"))
    total, pool = account_total(engine.store.path.parent), engine.pool

    def refused(adj: Adjustment, says: str) -> None:
        assert adj.status == "refused" and says in adj.reason, adj.reason

    taken = {**SPAWN_DNA, "name": "btc-rsi"}
    refused(await a.submit(Change(ema, "user", "spawn", taken, "x")), "a bot named 'btc-rsi' exists already")
    bad = {**SPAWN_DNA, "params": {"period": 10, "max_drawdown": 0.9}}
    refused(await a.submit(Change(ema, "user", "spawn", bad, "x")), "max_drawdown: protected")
    engine.mode = TradingMode.LIVE
    refused(await a.submit(Change(ema, "user", "spawn", SPAWN_DNA, "x")), "the account trades live")
    engine.mode = TradingMode.PAPER
    for i in range(7):  # binance's cap is 10 bots
        await engine.create_bot(
            BotSpec(f"filler-{i}", "binance", "BTC/USDT", "1h", "sma_cross", {}, RiskMode.SAFE, D(10))
        )
    total += D(70)
    for mode_settings in (EXPERT, AUTO):
        adj = await Adjuster(engine, mode_settings).submit(Change(ema, "user", "spawn", SPAWN_DNA, "x"))
        refused(adj, "binance has 10 bots; its cap is 10")
    assert len(engine.runners) == 10 and engine.pool == pool
    assert account_total(engine.store.path.parent) == total
    store = await LedgerStore.open(db_path(copy_ledger(base[0], tmp_path / "offline")))
    try:
        off = await Adjuster.offline(store, EXPERT, 1)
        refused(await off.submit(Change(ema, "user", "spawn", SPAWN_DNA, "x")), "running engine")
    finally:
        await store.close()


async def test_rows_are_append_only_and_every_row_is_published_and_audited(engine: TradingEngine) -> None:
    seen = events(engine)
    a = Adjuster(engine, EXPERT)
    ema = by_name(engine, "btc-ema")
    p = await a.submit(Change(ema, "autopilot", "state", "paused", "daily run"))
    await a.submit(Change(ema, "user", "max_daily_loss", D("0.5"), "more room"))
    await a.accept(p.id)
    assert engine.runners[ema].rec.state is BotState.PAUSED
    assert "by user" in engine.runners[ema].rec.state_reason
    entries = [classify(e) for e in seen]
    assert [(x.type, x.actor, x.severity.value) for x in entries if x is not None] == [
        ("adjustment_proposed", "autopilot", "info"),
        ("bot_adjusted", "engine", "info"),
        ("bot_adjusted", "autopilot", "info"),
    ]
    assert entries[1] is not None and entries[1].details["status"] == "refused"
    conn = sqlite3.connect(db_path(engine.store.path.parent))
    try:
        for sql in ("UPDATE bot_adjustments SET status = 'applied'", "DELETE FROM bot_adjustments"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)
    finally:
        conn.close()
    assert [r["id"] for r in adjustments(engine)] == [e.adjustment_id for e in seen]


async def test_the_store_appends_only_to_the_tables_other_modules_own(engine: TradingEngine) -> None:
    """``LedgerStore.append`` writes the autonomy rows; the money tables stay behind their own
    methods, and a column name is never an injection."""
    ema = by_name(engine, "btc-ema")
    row = {"ts": engine.now_ms, "bot_id": ema, "level": 1, "rule": "test", "reason": "r", "until_ts": None}
    qid = await engine.store.append("quarantines", row)
    assert qid > 0
    with pytest.raises(ValueError, match="'fills' is not a table"):
        await engine.store.append("fills", {"id": 1})
    with pytest.raises(ValueError, match="bad columns"):
        await engine.store.append("quarantines", {"ts) VALUES (1); DROP TABLE bots; --": 1})
    with pytest.raises(sqlite3.IntegrityError):  # no such bot: the foreign key holds
        await engine.store.append("quarantines", {**row, "bot_id": 10_000})


async def test_a_change_the_engine_refuses_is_a_refused_row(engine: TradingEngine) -> None:
    rsi = engine.runner_by_name("btc-rsi")
    assert rsi.rec.state is BotState.CIRCUIT_TRIPPED  # five losses in a row during the replay
    adj = await Adjuster(engine, AUTO).submit(
        Change(rsi.rec.id, "healing", "state", "running", "quarantine over")
    )
    assert adj.status == "refused" and "breaker" in adj.reason
    assert rsi.rec.state is BotState.CIRCUIT_TRIPPED
    with pytest.raises(AdjustmentError, match="no bot"):
        await Adjuster(engine, AUTO).submit(Change(999, "healing", "state", "paused", "x"))
    with pytest.raises(ValueError, match="source"):
        Change(1, "martians", "state", "paused", "x")


# -- the property: any change, any source, any mode --------------------------------------------

DEMO = {"btc-ema": "sma_cross", "btc-rsi": "rsi_reversion", "btc-donchian": "donchian_breakout"}


def _params(strategy: str) -> st.SearchStrategy[dict[str, object]]:
    names = [p.name for p in STRATEGIES[strategy].PARAMS]
    return st.dictionaries(st.sampled_from(names), st.integers(-5, 500) | st.floats(-5, 500), min_size=1)


VALUES = {
    "size_multiplier": st.decimals("0.01", "5", places=3),
    "stop_loss": st.none() | st.decimals("0.001", "0.999", places=3),
    "take_profit": st.none() | st.decimals("0.001", "0.999", places=3),
    "risk_mode": st.sampled_from([m.value for m in RiskMode]),
    "capital": st.decimals("-10", "8000", places=2),
    "state": st.sampled_from(["paused", "running", "stopped", "error"]),
    **{name: st.decimals("0", "1", places=2) for name in sorted(PROTECTED_FIELDS)},
}
FIELDS = [*VALUES, "params"]


@st.composite
def changes(draw: st.DrawFn) -> tuple[str, object, str, str, str]:
    """(field, after, source, mode, bot name); a protected name about one time in eight."""
    name = draw(st.sampled_from(sorted(DEMO)))
    field = draw(st.sampled_from([f for f in FIELDS if f not in PROTECTED_FIELDS] + ["protected"]))
    if field == "protected":
        field = draw(st.sampled_from(sorted(PROTECTED_FIELDS)))
    value = draw(_params(DEMO[name]) if field == "params" else VALUES[field])
    return field, value, draw(st.sampled_from(SOURCES)), draw(st.sampled_from(["expert", "autonomous"])), name


@pytest.fixture(scope="module")
def loop_engine(
    base: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[asyncio.AbstractEventLoop, TradingEngine]]:
    """One engine on one loop for all the property's examples (its state carries over: any state)."""
    tmp = tmp_path_factory.mktemp("adjust-prop")
    data = copy_ledger(base[0], tmp / "data")
    loop = asyncio.new_event_loop()
    eng = loop.run_until_complete(reopen(settings(tmp), data, base[1]))
    try:
        yield loop, eng
    finally:
        loop.run_until_complete(eng.close())
        loop.close()


def _within(engine: TradingEngine, adj_field: str, bot_id: int) -> None:
    rec = engine.runners[bot_id].rec
    lo, hi = BOUNDS.size_multiplier
    if adj_field in ("size_multiplier", "stop_loss", "risk_mode"):
        if adj_field == "size_multiplier":
            assert lo <= rec.size_multiplier <= hi
        rpt = risk_per_trade(rec.risk_mode, rec.size_multiplier, rec.stop_loss)
        assert rpt is None or BOUNDS.risk_per_trade[0] <= rpt <= BOUNDS.risk_per_trade[1]
    if adj_field == "stop_loss":
        assert rec.stop_loss is not None and BOUNDS.stop_loss[0] <= rec.stop_loss <= BOUNDS.stop_loss[1]
    if adj_field == "take_profit":
        assert (
            rec.take_profit is not None and BOUNDS.take_profit[0] <= rec.take_profit <= BOUNDS.take_profit[1]
        )
    if adj_field == "params":
        for spec in STRATEGIES[rec.strategy].PARAMS:
            v = engine.runners[bot_id].strategy.params[spec.name]
            if spec.minimum is not None:
                assert spec.minimum <= v <= spec.maximum
    if adj_field == "capital":
        assert rec.capital > 0


@hsettings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=changes())
def test_any_change_stays_within_bounds_and_protected_figures_never_move(
    loop_engine: tuple[asyncio.AbstractEventLoop, TradingEngine], change: tuple[str, object, str, str, str]
) -> None:
    loop, engine = loop_engine
    field, value, source, mode, name = change
    data = engine.store.path.parent
    bot_id = by_name(engine, name)
    risk = engine.risk.breakers
    total = account_total(data)
    trading_mode = loop.run_until_complete(engine.store.trading_mode())
    a = Adjuster(engine, AutonomySettings(mode=mode))  # type: ignore[arg-type]
    adj = loop.run_until_complete(a.submit(Change(bot_id, source, field, value, "property")))
    if field in PROTECTED_FIELDS:
        assert adj.status == "refused"
    if mode == "expert" and adj.status == "proposed" and adj.id % 2:  # accept every other proposal
        with contextlib.suppress(AdjustmentError):  # the engine may refuse it now: nothing changes then
            adj = loop.run_until_complete(a.accept(adj.id))
    event(adj.status)
    if adj.status in ("applied", "accepted"):
        _within(engine, field, bot_id)
    assert engine.risk.breakers == risk and engine.board.settings == risk
    assert account_total(data) == total
    assert engine.pool + sum((r.funding for r in engine.runners.values()), D(0)) == total
    assert (
        loop.run_until_complete(engine.store.trading_mode()) == trading_mode
        and engine.mode is TradingMode.PAPER
    )
