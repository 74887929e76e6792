"""Bot lifecycle stages in the engine (engine.stages): a real-data replay that earns eligibility,
quarantine on a bot trip and release on its reset, promote/demote, the live floors, a restart.

Real SQLite files in tmp dirs, the real PaperBroker, real candles; scripted strategies only
decide when to trade (lifecycle_helpers.Scripted). No sleeps: the engine is driven candle by
candle (``engine.process``) or replays a file to its end.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from engine_helpers import ETH_1H, HOUR, connect, raw_candles, rows, settings_from
from lifecycle_helpers import SLIP, Recorder, Scripted, candles, feed, spec

from amarktai_tui.domain.enums import BotState, LifecycleStage
from amarktai_tui.domain.types import Candle
from amarktai_tui.engine.engine import EngineError, TradingEngine
from amarktai_tui.engine.events import BreakerTripped, EventBus, StageChanged
from amarktai_tui.engine.promotion import DemotionFloors, PromotionCriteria
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.engine.stage_report import bot_stages
from amarktai_tui.engine.stages import StageRules, rules_from
from amarktai_tui.exchanges.paper import PaperBroker
from amarktai_tui.ledger.store import LedgerStore
from amarktai_tui.locations import db_path
from amarktai_tui.risk.breakers import Breaker, BreakerSettings
from amarktai_tui.risk.pipeline import PipelineSettings

D = Decimal
PAPER, ELIGIBLE = LifecycleStage.PAPER_TRAINING, LifecycleStage.ELIGIBLE_FOR_LIVE
LIVE, QUARANTINED = LifecycleStage.LIVE, LifecycleStage.QUARANTINED

# The replay that reaches eligibility with the DEFAULT criteria (written out in [promotion]):
# rsi_reversion (RSI 7, buy the turn up through 25, sell above 65) on Binance ETH/USDT 1h.
REACHES = """
[risk]
max_consecutive_losses = 1000
bot_max_drawdown = 0.9
account_max_drawdown = 0.9
account_daily_loss = 0.9

[promotion]
min_days = "7"
min_trades = 25
min_win_rate = "0.52"
min_return = "0.03"
max_drawdown = "0.15"
min_profit_factor = "1.2"

[[bots]]
name = "eth-rsi7"
pair = "ETH/USDT"
timeframe = "1h"
strategy = "rsi_reversion"
params = {period = 7, oversold = 25, overbought = 65}
capital = 1000

[[bots]]
name = "eth-ema"
pair = "ETH/USDT"
timeframe = "1h"
strategy = "sma_cross"
params = {fast = 12, slow = 26, kind = "ema"}
capital = 1000
"""


def _ledger_verdicts(data_dir: Path, rules: StageRules) -> dict[str, object]:
    conn = connect(data_dir)
    try:
        return {b.name: (b.stage, b.verdict) for b in bot_stages(conn, rules)}
    finally:
        conn.close()


async def test_a_real_eth_replay_earns_eligibility_and_never_goes_live_by_itself(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, REACHES)
    rules = rules_from(settings.promotion)
    assert rules == StageRules()  # the defaults, spelled out in the config
    data = tmp_path / "data"
    bus = EventBus()
    seen = Recorder(bus)
    engine, feed_ = await open_engine(settings, data, ReplayArgs([str(ETH_1H)], until_end=True), bus)
    engine.stages.rules = rules  # as the daemon and the TUI do
    try:
        await engine.run(feed_)
        end = {
            n: (r.rec.stage, engine.stages.verdict(i))
            for i, r in engine.runners.items()
            for n in [r.rec.name]
        }
    finally:
        await engine.store.close()

    first_close = int(raw_candles(ETH_1H)[0][0]) + HOUR
    (ev,) = seen.of(StageChanged)
    assert (ev.name, ev.old, ev.new, ev.actor) == ("eth-rsi7", PAPER, ELIGIBLE, "engine")
    assert ev.reason.startswith("met every promotion criterion: trades 25 ok, win rate ")
    (row,) = rows(data, "SELECT * FROM stage_changes")
    assert (row["from_stage"], row["to_stage"], row["actor"], row["ts"]) == (
        "paper_training",
        "eligible_for_live",
        "engine",
        ev.ts,
    )
    figures = json.loads(row["figures"])
    checks = {c["name"]: c for c in figures["checks"]}
    assert all(c["ok"] for c in checks.values()) and len(checks) == 6
    assert int(checks["trades"]["value"]) == 25 and D(checks["days"]["value"]) >= 7
    assert D(checks["win_rate"]["value"]) >= D("0.52") and D(checks["return"]["value"]) >= D("0.03")
    assert D(checks["max_drawdown"]["value"]) <= D("0.15") and D(checks["profit_factor"]["value"]) >= D("1.2")
    assert figures["basis"] == {
        "since": first_close,
        "pnl": "0",
        "equity": None,
    }  # the track began at the first candle
    assert first_close < ev.ts < int(raw_candles(ETH_1H)[-1][0])

    stages = {r["name"]: r for r in rows(data, "SELECT name, stage, stage_ts FROM bots")}
    assert stages["eth-rsi7"]["stage"] == "eligible_for_live" and stages["eth-rsi7"]["stage_ts"] == ev.ts
    assert stages["eth-ema"] == {"name": "eth-ema", "stage": "paper_training", "stage_ts": first_close}
    assert end["eth-rsi7"][0] is ELIGIBLE  # still meeting the criteria at the end, and still not live
    ema = end["eth-ema"][1]
    assert ema is not None and not ema.ok

    # `amarktai bots stages` measures from the ledger: the same figures as the engine
    assert _ledger_verdicts(data, rules) == end

    # a restart rebuilds each track from the ledger and reaches the same verdicts
    again, _ = await open_engine(settings, data, ReplayArgs([str(ETH_1H)], until_end=True))
    try:
        assert {r.rec.name: (r.rec.stage, again.stages.verdict(i)) for i, r in again.runners.items()} == end
    finally:
        await again.store.close()


# -- driven candle by candle --------------------------------------------------------------------


async def _engine(tmp: Path, rules: StageRules, *, losses: int = 5) -> tuple[TradingEngine, Recorder]:
    store = await LedgerStore.open(db_path(tmp))
    bus = EventBus()
    rec = Recorder(bus)
    risk = PipelineSettings(breakers=BreakerSettings(max_consecutive_losses=losses))
    engine = TradingEngine(
        store, PaperBroker(Decimal(5)), bus=bus, slippage=SLIP, wall_clock_ms=lambda: 1, risk=risk
    )
    engine.stages.rules = rules
    await engine.start([spec("bot")])
    return engine, rec


def _windows(cs: tuple[Candle, ...], start: int, win: bool, n: int) -> list[int]:
    """``n`` candle indexes i >= start where entering on i and exiting on i + 2 (fills at the next
    opens) gains (``win``) or loses more than 1.5%, not overlapping."""
    out: list[int] = []
    i = start
    while len(out) < n:
        up = cs[i + 3].open / cs[i + 1].open
        if (up > 1.015) if win else (up < 0.985):
            out.append(i)
            i += 4
        else:
            i += 1
    return out


def _trade(engine: TradingEngine, cs: tuple[Candle, ...], at: int, upto: int) -> int:
    """Script one round trip entered on candle ``at``, exited on ``at + 2``; feed up to ``upto``."""
    bot = engine.runner_by_name("bot")
    bot.strategy = Scripted(enter=[cs[at].ts], exit=[cs[at + 2].ts])
    done = engine.candles_seen
    feed(engine, cs[done:upto])
    return upto


LOOSE = StageRules(
    PromotionCriteria(
        min_days=D("0.5"),
        min_trades=2,
        min_win_rate=D("0.5"),
        min_return=D("0.001"),
        max_drawdown=D("0.5"),
        min_profit_factor=D(1),
    ),
    DemotionFloors(max_drawdown=D("0.5"), min_return=D("-0.001")),
)


async def test_eligible_then_promoted_by_a_person_demoted_and_demoted_again_by_a_live_floor(
    tmp_path: Path,
) -> None:
    cs = candles()
    engine, rec = await _engine(tmp_path, LOOSE)
    bot = engine.runner_by_name("bot")
    bid = bot.rec.id
    try:
        feed(engine, cs[:1])
        assert bot.rec.stage is PAPER and bot.rec.stage_ts == cs[0].ts + HOUR
        wins = _windows(cs, 5, True, 4)
        n = _trade(engine, cs, wins[0], wins[0] + 4)
        assert bot.stats.trades == 1 and bot.rec.stage is PAPER
        v = engine.stages.verdict(bid)
        assert v is not None and [c.name for c in v.failing] == ["trades"]
        n = _trade(engine, cs, wins[1], wins[1] + 4)
        assert bot.stats.trades == 2 and bot.rec.stage is ELIGIBLE
        (ev,) = rec.of(StageChanged)
        assert (ev.old, ev.new, ev.actor) == (PAPER, ELIGIBLE, "engine")
        assert ev.summary.startswith("trades 2 ok, win rate 100% ok, days ")

        # eligibility never goes live by itself: not for the engine, not for the AI, not without a reason
        for actor in ("engine", "ai"):
            with pytest.raises(EngineError, match="only a person promotes a bot to live"):
                await engine.promote_bot(bid, actor, "looks good")
        with pytest.raises(EngineError, match="needs a reason"):
            await engine.promote_bot(bid, "user", "  ")
        n = _trade(engine, cs, wins[2], wins[2] + 6)  # more paper trading: still eligible, never live
        assert bot.rec.stage is ELIGIBLE

        change = await engine.promote_bot(bid, "user", "read the figures")
        assert (change.from_stage, change.to_stage, change.actor, change.ts) == (
            ELIGIBLE,
            LIVE,
            "user",
            engine.now_ms,
        )
        assert bot.rec.stage is LIVE
        with pytest.raises(EngineError, match="bot is live: only an eligible_for_live bot can be promoted"):
            await engine.promote_bot(bid, "user", "again")

        live = engine.stages.verdict(bid)
        assert (
            live is not None and [c.name for c in live.checks] == ["live_drawdown", "live_return"] and live.ok
        )
        await engine.demote_bot(bid, "cli", "want more paper time")
        assert bot.rec.stage is PAPER
        fresh = engine.stages.verdict(bid)
        assert (
            fresh is not None and fresh.figures is not None and fresh.figures.trades == 0
        )  # a new paper track
        with pytest.raises(EngineError, match="bot is paper_training already"):
            await engine.demote_bot(bid, "user", "twice")

        # earn it again, go live again, then lose: below the live floor -> back to paper by the engine
        more = _windows(cs, n, True, 2)
        n = _trade(engine, cs, more[0], more[0] + 4)
        n = _trade(engine, cs, more[1], more[1] + 14)  # half a day of market time too
        assert bot.rec.stage is ELIGIBLE
        await engine.promote_bot(bid, "cli", "second time")
        (loss,) = _windows(cs, n, False, 1)
        n = _trade(engine, cs, loss, loss + 4)
        assert bot.rec.stage is PAPER
        last = rec.of(StageChanged)[-1]
        assert (last.old, last.new, last.actor) == (LIVE, PAPER, "engine")
        assert last.reason.startswith("below a live floor: live return -")
        await engine.flush(final=True)  # the final equity snapshot is a point of the track too
        before = engine.stages.verdict(bid)
    finally:
        await engine.store.close()

    audit = rows(tmp_path, "SELECT from_stage, to_stage, actor, reason FROM stage_changes ORDER BY id")
    assert [(a["from_stage"], a["to_stage"], a["actor"]) for a in audit] == [
        ("paper_training", "eligible_for_live", "engine"),
        ("eligible_for_live", "live", "user"),
        ("live", "paper_training", "cli"),
        ("paper_training", "eligible_for_live", "engine"),
        ("eligible_for_live", "live", "cli"),
        ("live", "paper_training", "engine"),
    ]
    assert audit[1]["reason"] == "read the figures" and audit[2]["reason"] == "want more paper time"
    # the ledger and a restarted engine see the same track
    assert _ledger_verdicts(tmp_path, LOOSE)["bot"] == (PAPER, before)
    again, _ = await _engine(tmp_path, LOOSE)
    try:
        assert again.runner_by_name("bot").rec.stage is PAPER and again.stages.verdict(bid) == before
    finally:
        await again.store.close()


async def test_a_bot_trip_quarantines_and_its_reset_releases_to_paper_training(tmp_path: Path) -> None:
    cs = candles()
    engine, rec = await _engine(tmp_path, LOOSE, losses=1)  # one losing round trip trips the bot
    bot = engine.runner_by_name("bot")
    bid = bot.rec.id
    try:
        wins = _windows(cs, 5, True, 2)
        n = _trade(engine, cs, wins[0], wins[0] + 4)
        n = _trade(engine, cs, wins[1], wins[1] + 14)
        assert bot.rec.stage is ELIGIBLE
        # an account trip (the emergency stop) changes no stage
        halt = await engine.halt("test", actor="user")
        assert halt is not None and bot.rec.stage is ELIGIBLE
        await engine.resume("done", actor="user")

        (loss,) = _windows(cs, n, False, 1)
        n = _trade(engine, cs, loss, loss + 4)
        (trip,) = [e.trip for e in rec.of(BreakerTripped) if e.trip.bot_id == bid]
        assert trip.breaker is Breaker.CONSECUTIVE_LOSSES
        assert bot.rec.stage is QUARANTINED and bot.rec.state is BotState.CIRCUIT_TRIPPED
        q = rec.of(StageChanged)[-1]
        assert (q.old, q.new, q.actor) == (ELIGIBLE, QUARANTINED, "engine")
        assert q.reason.startswith(f"breaker consecutive_losses tripped (trip {trip.id}): ")
        assert engine.stages.verdict(bid) is None  # no criteria while quarantined
        with pytest.raises(EngineError, match="bot is quarantined: only an eligible_for_live bot"):
            await engine.promote_bot(bid, "user", "no")
        with pytest.raises(EngineError, match="returns to paper_training when its breaker trip is reset"):
            await engine.demote_bot(bid, "user", "no")
        feed(engine, cs[n : n + 48])  # quarantine holds while the trip does
        assert bot.rec.stage is QUARANTINED

        await engine.reset_breaker(trip.id, "looked at the losses", actor="user")
        assert bot.rec.stage is PAPER
        assert engine.runners[bid].rec.state is BotState.RUNNING
        r = rec.of(StageChanged)[-1]
        assert (r.old, r.new, r.actor) == (QUARANTINED, PAPER, "user")
        assert (
            r.reason == f"released: trip {trip.id} (consecutive_losses) reset by user: looked at the losses"
        )
        v = engine.stages.verdict(bid)
        assert (
            v is not None and v.figures is not None and v.figures.trades == 0
        )  # eligibility must be earned again
    finally:
        await engine.flush(final=True)
        await engine.store.close()
    audit = rows(tmp_path, "SELECT from_stage, to_stage, actor, figures FROM stage_changes ORDER BY id")
    assert [(a["from_stage"], a["to_stage"], a["actor"]) for a in audit] == [
        ("paper_training", "eligible_for_live", "engine"),
        ("eligible_for_live", "quarantined", "engine"),
        ("quarantined", "paper_training", "user"),
    ]
    quarantined = json.loads(audit[1]["figures"])
    assert {c["name"] for c in quarantined["checks"]} >= {"trades", "win_rate"}  # measured when it left
    assert json.loads(audit[2]["figures"])["checks"] == []


async def test_a_reset_recorded_while_the_engine_was_down_releases_at_start(tmp_path: Path) -> None:
    cs = candles()
    engine, _ = await _engine(tmp_path, LOOSE, losses=1)
    try:
        (loss,) = _windows(cs, 5, False, 1)
        _trade(engine, cs, loss, loss + 4)
        (trip,) = engine.board.active.values()
        assert engine.runner_by_name("bot").rec.stage is QUARANTINED
    finally:
        await engine.flush(final=True)
        await engine.store.close()
    # the CLI records a reset while no engine runs (ops.risk_commands); here the same row, directly
    store = await LedgerStore.open(db_path(tmp_path))
    try:
        from amarktai_tui.ledger.store import TripReset, WriteBatch

        await store.write(WriteBatch(resets=[TripReset(trip.id, trip.ts, "cli", "offline reset")]))
    finally:
        await store.close()
    again, rec = await _engine(tmp_path, LOOSE, losses=1)
    try:
        bot = again.runner_by_name("bot")
        assert bot.rec.stage is PAPER
        (ev,) = rec.of(StageChanged)
        assert (ev.old, ev.new, ev.actor) == (QUARANTINED, PAPER, "engine")
        assert ev.ts == cs[loss + 3].ts + HOUR  # ledger time (the bot's last candle), not the wall clock
    finally:
        await again.flush()
        await again.store.close()
    assert rows(tmp_path, "SELECT stage FROM bots") == [{"stage": "paper_training"}]


async def test_store_changes_a_stage_and_its_audit_row_in_one_transaction(tmp_path: Path) -> None:
    import sqlite3

    from amarktai_tui.ledger import reader
    from amarktai_tui.ledger.store import StageChange, StageConflictError

    engine, _ = await _engine(tmp_path, LOOSE)
    bid = engine.runner_by_name("bot").rec.id
    await engine.store.close()
    store = await LedgerStore.open(db_path(tmp_path))
    try:
        ok = StageChange(
            bid, 5_000, PAPER, ELIGIBLE, "engine", "criteria met", {"checks": [], "basis": {"since": 1}}
        )
        await store.change_stage(ok)
        # compare-and-set on the stage: a second writer that saw the old stage changes nothing
        with pytest.raises(StageConflictError, match="is not paper_training"):
            await store.change_stage(StageChange(bid, 6_000, PAPER, LIVE, "cli", "stale view"))
        with pytest.raises(ValueError, match="needs a reason"):
            await store.change_stage(StageChange(bid, 6_000, ELIGIBLE, LIVE, "cli", "   "))
        await store.change_stage(StageChange(bid, 7_000, ELIGIBLE, LIVE, "user", "go"))
        assert (await store.latest_stage_changes())[bid].to_stage is LIVE
    finally:
        await store.close()
    assert rows(tmp_path, "SELECT stage, stage_ts FROM bots") == [{"stage": "live", "stage_ts": 7_000}]
    conn = connect(tmp_path)
    try:
        history = reader.stage_changes(conn)
        assert [(h.from_stage, h.to_stage, h.actor, h.bot) for h in history] == [
            ("eligible_for_live", "live", "user", "bot"),
            ("paper_training", "eligible_for_live", "engine", "bot"),
        ]  # newest first
        assert history[1].figures == {"checks": [], "basis": {"since": 1}} and history[0].figures == {}
        assert (
            reader.stage_changes(conn, bid, limit=1) == history[:1] == [reader.latest_stage_change(conn, bid)]
        )
        assert reader.stage_changes(conn, bid + 1) == [] and reader.latest_stage_change(conn, bid + 1) is None
        assert reader.bot_stage_starts(conn) == {bid: 7_000}
    finally:
        conn.close()
    raw = sqlite3.connect(db_path(tmp_path))
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("UPDATE stage_changes SET reason = 'edited'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("DELETE FROM stage_changes")
        raw.execute(
            "INSERT INTO stage_changes (ts, bot_id, from_stage, to_stage, actor, reason, figures)"
            " VALUES (8000, ?, 'live', 'paper_training', 'cli', 'x', 'not json')",
            (bid,),
        )
        raw.commit()
    finally:
        raw.close()
    conn = connect(tmp_path)
    try:
        with pytest.raises(
            reader.LedgerDataError, match="stage_changes id=3 figures: expected a JSON object"
        ):
            reader.stage_changes(conn)
    finally:
        conn.close()
