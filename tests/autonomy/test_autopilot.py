"""The autopilot (``autonomy.autopilot``) on a real engine (real LedgerStore in tmp, real
PaperBroker) replaying the real BTC/USDT 1h candles, its daily job run at ``run_at`` of engine time:
yesterday's realised profit is swept from the earners to the pool and reinvested in the top bots,
or spent on a new paper bot from the best evolved DNA; the account's total capital never changes;
every move is a pair of ledger allocation events and an adjustment row; caps, expert mode, live
bots and the default (off) are respected."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import pytest
from evolve_helpers import BTC_1H, empty_config, slice_file
from learnheal_helpers import candles, make_engine, spec

from amarktai_tui import cli
from amarktai_tui.autonomy import evolution_store
from amarktai_tui.autonomy.autopilot import DAY_MS, Autopilot, AutopilotRun
from amarktai_tui.autonomy.changes import AdjustmentError
from amarktai_tui.autonomy.dna import GeneSpace
from amarktai_tui.autonomy.evolution import BacktestEvaluator, evolve, streams_by_pair
from amarktai_tui.autonomy.service import start_autonomy
from amarktai_tui.autonomy.settings import AutonomySettings, AutopilotSettings, EvolutionSettings
from amarktai_tui.config import Settings
from amarktai_tui.domain.enums import BotState, LifecycleStage, RiskMode
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.events import BotAdjusted, BotCreated, CapitalChanged
from amarktai_tui.engine.spec import record_of
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.ledger.store import LedgerStore
from amarktai_tui.ledger.verify import verify
from amarktai_tui.locations import db_path
from amarktai_tui.ops.audit_store import connect

CANDLES = 700
RUN_AT_MS = 5 * 60_000  # 00:05 UTC
CENT = Decimal("0.01")


def _settings(mode: str = "autonomous", **autopilot: Any) -> AutonomySettings:
    given = {"enabled": True, "profit_threshold": Decimal(50), "spawn_amount": Decimal(200), **autopilot}
    ap = AutopilotSettings(**given)
    return AutonomySettings(mode=mode, autopilot=ap)  # type: ignore[arg-type]


def _specs() -> list[Any]:
    return [
        spec("a", params={"fast": 5, "slow": 20}),
        spec("b", params={"fast": 10, "slow": 30}),
        spec("c", strategy="rsi_reversion"),
        spec("d", strategy="donchian_breakout"),
    ]


def _events(engine: TradingEngine) -> list[tuple[int, int | None, str, Decimal, str]]:
    conn = connect_readonly(str(engine.store.path))
    try:
        rows = conn.execute("SELECT id, bot_id, kind, amount, note FROM ledger_events ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(r[0], r[1], r[2], Decimal(r[3]), r[4]) for r in rows]


def _adjustments(engine: TradingEngine) -> list[sqlite3.Row]:
    conn = connect_readonly(str(engine.store.path))
    try:
        return conn.execute("SELECT * FROM bot_adjustments ORDER BY id").fetchall()
    finally:
        conn.close()


async def _drive(
    engine: TradingEngine, pilot: Autopilot, stop: Callable[[AutopilotRun], bool]
) -> tuple[AutopilotRun, list[tuple[int, int | None, str, Decimal, str]], dict[int, Decimal]]:
    """Replay candles; at the first close at or after 00:05 of each UTC day run the autopilot (as the
    service's daily job does). Returns the first run ``stop`` accepts, the ledger events and each
    bot's free cash just before it."""
    next_due: int | None = None
    for c in candles()[:CANDLES]:
        engine.process(c)
        now = engine.now_ms
        if next_due is None:
            next_due = now // DAY_MS * DAY_MS + RUN_AT_MS
            next_due += DAY_MS if now >= next_due else 0
        if now >= next_due:
            next_due = now // DAY_MS * DAY_MS + DAY_MS + RUN_AT_MS
            await engine.flush()
            before = _events(engine)
            cash = {b: r.cash for b, r in engine.runners.items()}
            out = await pilot.run(now)
            await engine.flush()
            if stop(out):
                return out, before, cash
    raise AssertionError("the autopilot never acted on this data")


def _total(events: list[tuple[int, int | None, str, Decimal, str]]) -> Decimal:
    """The account's total capital: every ledger event (bots' funding and allocations, and the pool)."""
    return sum((e[3] for e in events), Decimal(0))


def _score(r: Any) -> Decimal:
    """The allocator's score (risk.allocator: 0.7 ROI + 0.3 win rate), stated independently here."""
    roi = (r.equity() - r.funding) / r.funding
    return Decimal("0.7") * roi + Decimal("0.3") * Decimal(r.stats.wins) / Decimal(r.stats.trades)


def _pairs(new: list[tuple[int, int | None, str, Decimal, str]]) -> list[tuple[int, Decimal]]:
    """The (bot, amount) of each pair of allocation events (bot +-x, then the pool -+x)."""
    assert all(kind == "allocation" for _, _, kind, _, _ in new)
    assert len(new) % 2 == 0
    out = []
    for (_, bot, _, amount, _), (_, acct, _, back, _) in zip(new[::2], new[1::2], strict=True):
        assert bot is not None and acct is None and back == -amount
        out.append((bot, amount))
    return out


async def test_reinvests_yesterdays_profit_in_the_top_bots_total_capital_unchanged(tmp_path: Path) -> None:
    s = _settings(spawn_amount=Decimal(100_000))  # never affordable: this run reinvests
    engine, adjuster, rec = await make_engine(tmp_path, _specs(), s)
    try:
        pilot = Autopilot(engine, adjuster, s)
        pool_before = engine.pool
        out, before, cash = await _drive(engine, pilot, lambda o: o.action != "none")
        assert out.action == "reinvest" and out.net > s.autopilot.profit_threshold
        # yesterday's realised profit per bot, recomputed from the ledger's fills
        conn = connect_readonly(str(engine.store.path))
        rows = conn.execute(
            "SELECT bot_id, realised_pnl FROM fills WHERE ts >= ? AND ts < ?",
            (out.day_start, out.day_start + DAY_MS),
        ).fetchall()
        conn.close()
        by_bot: dict[int, Decimal] = {}
        for bot_id, pnl in rows:
            if Decimal(pnl):
                by_bot[bot_id] = by_bot.get(bot_id, Decimal(0)) + Decimal(pnl)
        assert out.profit == by_bot and out.net == sum(by_bot.values())

        after = _events(engine)
        assert _total(after) == _total(before)  # no new funding: the total never changes
        assert engine.pool == pool_before
        moves = _pairs(after[len(before) :])
        sweeps = [(b, -x) for b, x in moves if x < 0]
        invests = [(b, x) for b, x in moves if x > 0]
        earners = {b for b, p in by_bot.items() if p > 0}
        assert sweeps and {b for b, _ in sweeps} <= earners
        for b, x in sweeps:  # at most its profit and its free cash
            assert x <= by_bot[b] and x <= cash[b]
        amount = (s.autopilot.reinvest_share * out.net).quantize(CENT, ROUND_DOWN)
        swept = sum((x for _, x in sweeps), Decimal(0))
        if sum(min(by_bot[b], cash[b]) for b in earners) >= amount:
            assert swept == amount
        assert sum((x for _, x in invests), Decimal(0)) == swept == out.moved
        ranked = sorted(
            (r for r in engine.runners.values() if r.stats.trades and r.rec.state is BotState.RUNNING),
            key=lambda r: (-_score(r), r.rec.id),
        )
        top = {r.rec.id for r in ranked[:3]}
        assert {b for b, _ in invests} == top
        assert max(x for _, x in invests) - min(x for _, x in invests) <= CENT  # split equally

        rows_ = _adjustments(engine)
        assert len(rows_) == len(moves)
        assert {(r["source"], r["field"], r["status"], r["actor"]) for r in rows_} == {
            ("autopilot", "capital", "applied", "autopilot")
        }
        assert len(rec.of(BotAdjusted)) == len(moves) and len(rec.of(CapitalChanged)) == len(moves)
        for b, _ in moves:
            r = engine.runners[b]
            assert r.rec.capital == r.funding  # the bot's capital follows its ledger events
        await engine.flush()
        conn = connect_readonly(str(engine.store.path))
        result = verify(conn)
        conn.close()
        assert result.ok, result.first_discrepancy

        # once a day: a second run the same day does nothing
        again = await pilot.run(engine.now_ms)
        assert again.action == "none" and again.reason == "already ran today"
        assert len(_adjustments(engine)) == len(rows_)
    finally:
        await engine.close()


async def _evolve_into(engine: TradingEngine, tmp: Path) -> str:
    """A small real evolution over the first 300 BTC 1h candles, recorded in the engine's ledger;
    returns its best member id (the best fitness of the run)."""
    files = [str(slice_file(BTC_1H, tmp / "candles", 300))]
    streams = streams_by_pair(files)
    evo = EvolutionSettings(population=4, generations=2, seed=1, min_trades=1)
    space = GeneSpace(
        ("sma_cross", "donchian_breakout"), ("BTC/USDT",), ("binance",), timeframes={"BTC/USDT": "1h"}
    )
    conn = connect(Path(engine.store.path))
    try:
        await evolve(evo, space, BacktestEvaluator(Settings(), streams, evo), run="evo-ap", conn=conn)
        best = evolution_store.best_members(conn)
    finally:
        conn.close()
    assert best
    return best[0].member


async def test_spawns_a_paper_bot_from_the_best_dna_with_swept_profit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = _settings()
    engine, adjuster, rec = await make_engine(tmp_path, _specs(), s)
    try:
        best = await _evolve_into(engine, tmp_path)
        pilot = Autopilot(engine, adjuster, s)
        pool_before, bots_before = engine.pool, set(engine.runners)
        out, before, _ = await _drive(engine, pilot, lambda o: o.action != "none")
        assert out.action == "spawn", out.reason
        assert out.net >= s.autopilot.spawn_amount
        (new_id,) = set(engine.runners) - bots_before
        new = engine.runners[new_id]
        assert new.rec.name == out.spawned and new.rec.dna_id == best
        assert new.rec.capital == s.autopilot.spawn_amount == new.funding
        assert new.rec.stage is LifecycleStage.PAPER_TRAINING and new.rec.state is BotState.RUNNING
        member = evolution_store.member(connect_readonly(str(engine.store.path)), best)
        assert member is not None
        assert (new.rec.strategy, new.rec.params, new.rec.pair, new.rec.risk_mode) == (
            member.dna.strategy, member.dna.params, member.dna.pair, member.dna.risk_mode,
        )  # fmt: skip
        assert new.rec.stop_loss is not None  # never without a protective exit

        after = _events(engine)
        assert _total(after) == _total(before) and engine.pool == pool_before
        new_events = after[len(before) :]
        funding = [e for e in new_events if e[2] == "funding"]
        assert [(e[1], e[3]) for e in funding] == [(new_id, Decimal(200))]
        rest = [e for e in new_events if e[2] != "funding"]
        pool_out = [e for e in rest if e[1] is None and "from the pool" in e[4] and e[3] == Decimal(-200)]
        assert len(pool_out) == 1
        sweeps = _pairs([e for e in rest if e is not pool_out[0]])
        assert all(x < 0 for _, x in sweeps) and sum(-x for _, x in sweeps) == Decimal(200)

        rows = _adjustments(engine)
        (spawn_row,) = [r for r in rows if r["field"] == "spawn"]
        assert (spawn_row["source"], spawn_row["status"], spawn_row["actor"]) == (
            "autopilot",
            "applied",
            "autopilot",
        )
        sponsor = max(
            (r for b, r in engine.runners.items() if b != new_id), key=lambda r: (r.stats.realised, -r.rec.id)
        )
        assert spawn_row["bot_id"] == sponsor.rec.id  # the row names the sponsor, the new bot is in after
        after_json = json.loads(spawn_row["after_json"])
        assert (after_json["dna_id"], after_json["bot_id"], after_json["name"]) == (
            best,
            new_id,
            new.rec.name,
        )
        assert new.rec.take_profit == sponsor.rec.take_profit  # the sponsor's exits, the stop-loss bounded
        assert (
            new.rec.stop_loss is not None
            and s.bounds.stop_loss_min <= new.rec.stop_loss <= s.bounds.stop_loss_max
        )
        assert [a.field for a in rec.of(BotAdjusted)].count("spawn") == 1
        assert [e.name for e in rec.of(BotCreated)][-1] == new.rec.name

        # the new bot trades the engine's feed: it sees the next candles
        assert new.last_ts is None
        nxt = candles()[CANDLES : CANDLES + 3]
        for c in nxt:
            engine.process(c)
        assert new.last_ts == nxt[-1].ts
        await engine.flush()

        # lineage of the spawned bot, from the CLI
        rc = cli.run(
            ["evolve", "lineage", new.rec.name, "--json", "--config", str(empty_config(tmp_path)),
             "--data-dir", str(tmp_path)]
        )  # fmt: skip
        got = capsys.readouterr()
        assert rc == 0, got.err
        lineage = json.loads(got.out)
        assert lineage["bot"] == new.rec.name and lineage["nodes"][0]["member"] == best
    finally:
        await engine.close()


async def test_no_spawn_when_the_exchange_is_at_its_cap(tmp_path: Path) -> None:
    s = _settings()
    idle = [spec(f"idle-{i}", strategy="donchian_breakout", params={"entry_period": 500}) for i in range(6)]
    engine, adjuster, _ = await make_engine(tmp_path, _specs() + idle, s)  # 10 binance bots: its cap
    try:
        await _evolve_into(engine, tmp_path)
        pilot = Autopilot(engine, adjuster, s)
        out, before, _ = await _drive(engine, pilot, lambda o: o.action != "none")
        assert out.action == "reinvest" and len(engine.runners) == 10
        assert out.net >= s.autopilot.spawn_amount  # affordable: only the cap stopped the spawn
        assert _total(_events(engine)) == _total(before)
    finally:
        await engine.close()


async def test_expert_mode_proposes_and_nothing_moves_until_accepted(tmp_path: Path) -> None:
    s = _settings("expert", spawn_amount=Decimal(100_000))  # never affordable: a reinvestment
    engine, adjuster, _ = await make_engine(tmp_path, _specs(), s)
    try:
        pilot = Autopilot(engine, adjuster, s)
        capital = {b: r.rec.capital for b, r in engine.runners.items()}
        out, before, _ = await _drive(engine, pilot, lambda o: o.action != "none")
        assert out.action == "reinvest" and out.reason.endswith("(proposed)")
        assert _events(engine) == before  # no money moved
        assert {b: r.rec.capital for b, r in engine.runners.items()} == capital
        rows = _adjustments(engine)
        assert rows and {r["status"] for r in rows} == {"proposed"}
        pool = engine.pool
        for r in rows:  # the user accepts them all, in order: the sweeps first fill the pool
            await adjuster.accept(r["id"])
        await engine.flush()
        after = _events(engine)
        assert _total(after) == _total(before) and engine.pool == pool
        assert sum(x for _, x in _pairs(after[len(before) :]) if x > 0) == out.moved
    finally:
        await engine.close()


async def test_expert_mode_proposes_the_spawn_and_the_bot_appears_only_when_accepted(tmp_path: Path) -> None:
    s = _settings("expert")
    engine, adjuster, rec = await make_engine(tmp_path, _specs(), s)
    try:
        best = await _evolve_into(engine, tmp_path)
        pilot = Autopilot(engine, adjuster, s)
        bots = set(engine.runners)
        out, before, _ = await _drive(engine, pilot, lambda o: o.action != "none")
        assert out.action == "spawn" and out.reason.endswith("(proposed)"), out.reason
        assert set(engine.runners) == bots and _events(engine) == before  # nothing created, nothing moved
        rows = _adjustments(engine)
        assert {r["status"] for r in rows} == {"proposed"}
        (spawn,) = [r for r in rows if r["field"] == "spawn"]
        sweeps = [r for r in rows if r["field"] == "capital"]
        assert sweeps and all(r["id"] < spawn["id"] for r in sweeps)
        proposed = json.loads(spawn["after_json"])
        assert proposed["dna_id"] == best and proposed["name"] == out.spawned
        assert [e.status for e in rec.of(BotAdjusted) if e.field == "spawn"] == ["proposed"]

        # accepted before the sweeps that fund it: refused, one line, nothing written
        n = len(_adjustments(engine))
        with pytest.raises(AdjustmentError, match="account pool holds"):
            await adjuster.accept(spawn["id"])
        assert len(_adjustments(engine)) == n and set(engine.runners) == bots

        pool = engine.pool
        for r in sweeps:
            await adjuster.accept(r["id"])
        acc = await adjuster.accept(spawn["id"])
        assert acc.status == "accepted" and acc.after["name"] == out.spawned
        (new_id,) = set(engine.runners) - bots
        assert acc.after["bot_id"] == new_id and engine.runners[new_id].rec.dna_id == best
        assert engine.runners[new_id].rec.capital == s.autopilot.spawn_amount
        await engine.flush()
        assert _total(_events(engine)) == _total(before) and engine.pool == pool
        with pytest.raises(AdjustmentError, match="stop that bot"):
            await adjuster.revert(acc.id)
    finally:
        await engine.close()


async def test_a_live_bot_is_never_swept_or_counted(tmp_path: Path) -> None:
    s = _settings(spawn_amount=Decimal(100_000))
    store = await LedgerStore.open(db_path(tmp_path))
    live = record_of(spec("d", strategy="donchian_breakout", risk_mode=RiskMode.AGGRESSIVE))
    live.stage = LifecycleStage.LIVE
    live_id = await store.insert_bot(live, 1, Decimal(1000), "USDT")
    await store.close()
    engine, adjuster, _ = await make_engine(tmp_path, _specs(), s)
    try:
        assert engine.runners[live_id].rec.stage is LifecycleStage.LIVE
        pilot = Autopilot(engine, adjuster, s)
        live_profit = Decimal(0)

        def acted(o: AutopilotRun) -> bool:
            nonlocal live_profit
            start = o.day_start
            live_profit = sum(
                (
                    f.realised_pnl
                    for f in engine.fill_log
                    if f.bot_id == live_id and start <= f.ts < start + DAY_MS
                ),
                Decimal(0),
            )
            return o.action != "none" and live_profit > 0

        out, before, _ = await _drive(engine, pilot, acted)
        assert live_id not in out.profit  # its profit earned yesterday is not the autopilot's
        after = _events(engine)
        assert [e for e in after if e[1] == live_id] == [e for e in before if e[1] == live_id]
        assert all(r["bot_id"] != live_id for r in _adjustments(engine))
        assert engine.runners[live_id].rec.capital == Decimal(1000)
    finally:
        await engine.close()


async def test_below_the_threshold_nothing_happens(tmp_path: Path) -> None:
    s = _settings(profit_threshold=Decimal(1_000_000))
    engine, adjuster, _ = await make_engine(tmp_path, _specs(), s)
    try:
        pilot = Autopilot(engine, adjuster, s)
        runs: list[AutopilotRun] = []

        def keep(o: AutopilotRun) -> bool:
            runs.append(o)
            return len(runs) == 20

        _, before, _ = await _drive(engine, pilot, keep)
        assert any(o.net > 0 for o in runs)
        assert all(o.action == "none" and "is not above" in o.reason for o in runs)
        assert _events(engine) == before and _adjustments(engine) == []
    finally:
        await engine.close()


def _quiet(s: AutonomySettings) -> AutonomySettings:
    """``s`` with the other jobs of ``start_autonomy`` (learning, healing) off."""
    return s.model_copy(
        update={
            "learning": s.learning.model_copy(update={"enabled": False}),
            "healing": s.healing.model_copy(update={"enabled": False}),
        }
    )


async def test_off_by_default_and_when_on_runs_daily_at_run_at_through_the_service(tmp_path: Path) -> None:
    assert AutonomySettings().autopilot.enabled is False
    off = _quiet(AutonomySettings(mode="autonomous"))
    engine, _, _ = await make_engine(tmp_path, _specs(), off)
    try:
        service, _adj = await start_autonomy(engine, off)
        assert "autopilot" not in service.jobs
        await service.close()

        on = _quiet(_settings(spawn_amount=Decimal(100_000)))
        service, _adj = await start_autonomy(engine, on)
        assert "autopilot" in service.jobs
        total = _total(_events(engine))
        try:
            for c in candles()[:CANDLES]:
                engine.process(c)  # publishes EngineTick: the service runs due jobs on engine time
                await service.drain(timeout=30)
                if _adjustments(engine):
                    break
        finally:
            await service.close()
        await engine.flush()
        rows = _adjustments(engine)
        assert rows and {r["source"] for r in rows} == {"autopilot"}
        ts = {r["ts"] for r in rows}
        assert len(ts) == 1  # one run, at the first engine time at or after 00:05 UTC (1h candles: 01:00)
        assert ts.pop() % DAY_MS == 3_600_000
        assert _total(_events(engine)) == total
    finally:
        await engine.close()
