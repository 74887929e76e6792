"""The audit log: classification of every engine event, the recorder against a real engine replaying
real candles into a real SQLite ledger, retention pruning, and entries made outside the engine
(recorded through a running engine's control socket, or under the lock when none runs)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from amarktai_tui.config import ConfigError, load_settings
from amarktai_tui.domain.enums import BotState, LifecycleStage, Side, TradingMode
from amarktai_tui.engine.events import (
    AiActionCancelled,
    AiActionConfirmed,
    AiActionExecuted,
    AiActionExpired,
    AiActionFailed,
    AiActionProposed,
    AiActionRefused,
    BackupCreated,
    BotAdjusted,
    BotCreated,
    BotQuarantined,
    BotStateChanged,
    BreakerReset,
    BreakerTripped,
    CapitalChanged,
    EngineTick,
    Event,
    EventBus,
    GenerationEvolved,
    ModeSwitched,
    OrderFilled,
    RegimeChanged,
    ReportSent,
    StageChanged,
)
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.ledger.schema import SCHEMA_VERSION, connect_readonly
from amarktai_tui.locations import db_path, lock_path
from amarktai_tui.ops import audit_store
from amarktai_tui.ops.audit import (
    AUDIT_TYPES,
    DAY_MS,
    AuditEntry,
    AuditLog,
    Severity,
    classify,
    key_entry,
    record_offline,
    recorder_for,
    start_audit,
)
from amarktai_tui.ops.control import execute, serve_control, socket_path, stop_control
from amarktai_tui.ops.lock import EngineLock
from amarktai_tui.risk.breakers import Breaker, Scope, Trip

BTC_1H = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance" / "BTC_USDT-1h.json"

T = 1_700_000_000_000
WAIT_S = 30  # a guard against a hang, not a wait


def trip(breaker: Breaker, bot_id: int | None = None, cause: str = "fill x", tid: int = 7) -> Trip:
    scope = Scope.BOT if bot_id is not None else Scope.ACCOUNT
    return Trip(
        tid, T, scope, bot_id, breaker, Decimal("0.2"), Decimal("0.25"), cause, "drawdown 25% (limit 20%)"
    )


AI = {"proposal": "p1", "tool": "pause_bot", "args": '{"bot": "btc-ema"}', "actor": "ai", "detail": ""}

# (event, live, type, severity, actor, bot_id, bot, details that must be there)
CASES: list[tuple[Event, bool, str, Severity, str, int | None, str | None, dict[str, Any]]] = [
    (BotCreated(T, 3, "btc-ema"), False, "bot_created", Severity.INFO, "engine", 3, "btc-ema", {}),
    (BotStateChanged(T, 3, "btc-ema", BotState.RUNNING, BotState.PAUSED, "paused by user"), False,
     "bot_state_changed", Severity.INFO, "user", 3, "btc-ema", {"from": "running", "to": "paused"}),
    (BotStateChanged(T, 3, "btc-ema", BotState.RUNNING, BotState.ERROR, "strategy raised X"), False,
     "bot_state_changed", Severity.WARNING, "engine", 3, "btc-ema", {"to": "error"}),
    (BotStateChanged(T, 3, "b", BotState.CIRCUIT_TRIPPED, BotState.RUNNING, "breaker reset by cli: ok"), False,
     "bot_state_changed", Severity.INFO, "cli", 3, "b", {"to": "running"}),
    (OrderFilled(T, 3, "am1-x-b0", "BTC/USDT", Side.BUY, Decimal("0.01"), Decimal("30000.5"), Decimal("0.3"),
                 Decimal(0)), False,
     "paper_trade_executed", Severity.INFO, "engine", 3, None,
     {"client_order_id": "am1-x-b0", "side": "buy", "quantity": "0.01", "price": "30000.5", "fee": "0.3"}),
    (OrderFilled(T, 3, "am1-x-s0", "BTC/USDT", Side.SELL, Decimal("0.01"), Decimal("31000"), Decimal("0.31"),
                 Decimal("9.39")), True,
     "live_trade_executed", Severity.CRITICAL, "engine", 3, None, {"side": "sell", "realised_pnl": "9.39"}),
    (CapitalChanged(T, 3, "b", Decimal(1000), Decimal(1200), "allocator (engine): elite 1000 -> 1200"), False,
     "capital_rebalance", Severity.INFO, "engine", 3, "b", {"old": "1000", "new": "1200", "delta": "200"}),
    (CapitalChanged(T, 3, "b", Decimal(1000), Decimal(800), "allocator (user): poor 1000 -> 800"), False,
     "capital_rebalance", Severity.INFO, "user", 3, "b", {"delta": "-200"}),
    (CapitalChanged(T, 3, "b", Decimal(1000), Decimal(500), "manual top-down"), False,
     "capital_changed", Severity.INFO, "engine", 3, "b", {"new": "500"}),
    (StageChanged(T, 3, "b", LifecycleStage.ELIGIBLE_FOR_LIVE, LifecycleStage.LIVE, "cli", "earned it"), False,
     "bot_promoted_to_live", Severity.CRITICAL, "cli", 3, "b", {"to": "live", "reason": "earned it"}),
    (StageChanged(T, 3, "b", LifecycleStage.PAPER_TRAINING, LifecycleStage.QUARANTINED, "engine", "5 losses"),
     False, "bot_stage_changed", Severity.WARNING, "engine", 3, "b", {"to": "quarantined"}),
    (StageChanged(T, 3, "b", LifecycleStage.PAPER_TRAINING, LifecycleStage.ELIGIBLE_FOR_LIVE, "engine", "ok"),
     False, "bot_stage_changed", Severity.INFO, "engine", 3, "b", {"to": "eligible_for_live"}),
    (ModeSwitched(T, TradingMode.LIVE, TradingMode.PAPER), False,
     "system_mode_changed", Severity.CRITICAL, "engine", None, None, {"from": "live", "to": "paper"}),
    (ModeSwitched(T, TradingMode.LIVE, TradingMode.PAPER, "user", "back to paper"), False,
     "system_mode_changed", Severity.CRITICAL, "user", None, None, {"to": "paper", "reason": "back to paper"}),
    (BreakerTripped(T, trip(Breaker.HALT, cause="cli")), False,
     "emergency_stop_triggered", Severity.CRITICAL, "cli", None, None, {"breaker": "halt", "trip_id": 7}),
    (BreakerTripped(T, trip(Breaker.BOT_DRAWDOWN, 3), "b"), False,
     "breaker_tripped", Severity.CRITICAL, "engine", 3, "b", {"breaker": "bot_drawdown", "value": "0.25"}),
    (BreakerReset(T, trip(Breaker.HALT, cause="user"), "user", "checked"), False,
     "breaker_reset", Severity.CRITICAL, "user", None, None, {"resumed_trading": True, "reason": "checked"}),
    (BreakerReset(T, trip(Breaker.BOT_DRAWDOWN, 3), "ai", "ok", trip(Breaker.BOT_DRAWDOWN, 3, tid=8)), False,
     "breaker_reset", Severity.CRITICAL, "ai", 3, None, {"resumed_trading": False, "retripped_trip_id": 8}),
    (AiActionProposed(T, **AI), False, "ai_action_proposed", Severity.INFO, "ai", None, None,
     {"tool": "pause_bot", "args": {"bot": "btc-ema"}}),
    (AiActionConfirmed(T, **{**AI, "actor": "user"}), False, "ai_action_confirmed", Severity.INFO, "user",
     None, None, {"proposal": "p1"}),
    (AiActionCancelled(T, **{**AI, "actor": "user"}), False, "ai_action_cancelled", Severity.INFO, "user",
     None, None, {}),
    (AiActionExpired(T, **AI), False, "ai_action_expired", Severity.INFO, "ai", None, None, {}),
    (AiActionRefused(T, **{**AI, "actor": "commands", "detail": "wrong word"}), False, "ai_action_refused",
     Severity.WARNING, "user", None, None, {"detail": "wrong word"}),
    (AiActionExecuted(T, **{**AI, "detail": "paused"}), False, "ai_action_executed", Severity.INFO, "ai", None,
     None, {"detail": "paused"}),
    (AiActionFailed(T, **AI), False, "ai_action_failed", Severity.WARNING, "ai", None, None, {}),
    (BackupCreated(T, "/d/backups/a.sqlite3", 4096, "ab" * 32, "daily"), False, "backup_created", Severity.INFO,
     "engine", None, None, {"size": 4096, "reason": "daily"}),
    (BackupCreated(T, "/d/backups/b.sqlite3", 4096, "cd" * 32, "manual"), False, "backup_created",
     Severity.INFO, "user", None, None, {"reason": "manual"}),
    (ReportSent(T, "daily", ("me@example.org",), "Daily report"), False, "daily_report_sent", Severity.INFO,
     "engine", None, None, {"recipients": ["me@example.org"]}),
    (ReportSent(T, "weekly", ("me@example.org",), "Weekly"), False, "report_sent", Severity.INFO, "engine",
     None, None, {"period": "weekly"}),
    (ReportSent(T, "alert", ("me@example.org",), "2 critical events"), False, "alert_sent", Severity.INFO,
     "engine", None, None, {"period": "alert"}),
    (BotAdjusted(T, 4, 3, "b", "learning", "size_multiplier", '"1"', '"0.8"', "win rate 40%", "proposed", "engine"),
     False, "adjustment_proposed", Severity.INFO, "engine", 3, "b", {"adjustment_id": 4, "after": "0.8"}),
    (BotAdjusted(T, 5, 3, "b", "autopilot", "capital", '"100"', '"150"', "top 3", "applied", "engine"), False,
     "bot_adjusted", Severity.INFO, "autopilot", 3, "b", {"status": "applied", "field": "capital"}),
    (BotAdjusted(T, 6, 3, "b", "learning", "size_multiplier", '"0.8"', '"1"', "back", "reverted", "cli", 5),
     False, "bot_adjusted", Severity.INFO, "cli", 3, "b", {"status": "reverted", "ref_id": 5}),
    (BotQuarantined(T, 3, "b", 2, "hourly_loss", "lost 16%", T + 3_600_000), False, "bot_quarantined",
     Severity.WARNING, "engine", 3, "b", {"level": 2, "rule": "hourly_loss"}),
    (GenerationEvolved(T, "r1", 2, Decimal("0.12"), Decimal("0.03"), "r1/g2/m0"), False, "generation_evolved",
     Severity.INFO, "engine", None, None, {"generation": 2, "best_fitness": "0.12"}),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{type(c[0]).__name__}-{c[2]}-{c[3]}")
def test_classify_maps_each_event_to_its_type_severity_and_actor(case: tuple[Any, ...]) -> None:
    event, live, kind, sev, actor, bot_id, bot, details = case
    entry = classify(event, live=live)
    assert entry is not None
    assert (entry.ts, entry.type, entry.severity, entry.actor, entry.bot_id, entry.bot) == (
        T,
        kind,
        sev,
        actor,
        bot_id,
        bot,
    )
    assert kind in AUDIT_TYPES
    assert details.items() <= entry.details.items()
    json.dumps(entry.details)  # JSON-ready: Decimals are strings


def test_classify_covers_every_producible_type_and_skips_the_rest() -> None:
    produced = {c[2] for c in CASES}
    # bot_deleted: bots are never deleted; api keys: CLI entries (key_entry); nothing else is missing
    assert set(AUDIT_TYPES) - produced == {
        "bot_deleted",
        "api_key_added",
        "api_key_deleted",
        "api_key_tested",
    }
    from amarktai_tui.domain.types import Candle

    assert classify(EngineTick(T, Candle("BTC/USDT", "1h", T, 1.0, 1.0, 1.0, 1.0, 1.0))) is None
    # a regime change is a market reading, not an action (hundreds a year per pair): not audited
    assert (
        classify(RegimeChanged(T, "binance", "BTC/USDT", "1h", "ranging", "volatile", 31.0, 0.08, 0.03))
        is None
    )


def test_classify_stamps_the_wall_clock_and_keeps_the_engine_time() -> None:
    entry = classify(BotCreated(T, 1, "a"), now_ms=T + 5000)
    assert entry is not None and entry.ts == T + 5000 and entry.details == {"engine_ts": T}
    same = classify(BotCreated(T, 1, "a"), now_ms=T)
    assert same is not None and "engine_ts" not in same.details


def test_key_entries_hold_no_key_material_and_round_trip() -> None:
    added = key_entry("added", "binance", ts=T, masked="••••f3a9")
    assert (added.type, added.severity, added.actor) == ("api_key_added", Severity.CRITICAL, "cli")
    assert added.details == {"provider": "binance", "masked": "••••f3a9"}
    failed = key_entry("tested", "binance", ts=T, ok=False, status="test_failed", can_withdraw=None)
    assert failed.severity is Severity.WARNING and failed.details["ok"] is False
    assert key_entry("tested", "luno", ts=T, ok=True, status="test_ok").severity is Severity.INFO
    assert key_entry("deleted", "luno", ts=T, found=True).severity is Severity.CRITICAL
    assert AuditEntry.from_json(json.loads(json.dumps(added.to_json()))) == added
    for bad, why in (({**added.to_json(), "type": "x"}, "unknown type"),
                     ({**added.to_json(), "severity": "loud"}, "severity"),
                     ({**added.to_json(), "actor": "root"}, "actor"),
                     ({**added.to_json(), "ts": -1}, "ts")):  # fmt: skip
        with pytest.raises(ValueError, match=why):
            AuditEntry.from_json(bad)


def test_config_retention_days_defaults_to_90_and_must_be_at_least_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(None).audit.retention_days == 90
    monkeypatch.setenv("AMARKTAI_AUDIT__RETENTION_DAYS", "7")
    assert load_settings(None).audit.retention_days == 7
    monkeypatch.delenv("AMARKTAI_AUDIT__RETENTION_DAYS")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[audit]\nretention_days = 0\n")
    with pytest.raises(ConfigError, match=r"audit\.retention_days"):
        load_settings(cfg, required=True)


# -- the recorder against a real engine ----------------------------------------------------------


def audit_rows(data: Path, where: str = "1=1") -> list[dict[str, Any]]:
    conn = connect_readonly(str(db_path(data)))
    try:
        rows = [dict(r) for r in conn.execute(f"SELECT * FROM audit_log WHERE {where} ORDER BY id")]
    finally:
        conn.close()
    for r in rows:
        r["details"] = json.loads(r["details"])
    return rows


async def test_a_replay_leaves_one_paper_trade_per_fill_and_a_halt_is_critical(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = load_settings(None)
    engine, feed = await open_engine(settings, data, ReplayArgs([str(BTC_1H)], speed=0, until_end=True))
    recorder = await start_audit(engine, settings, data)
    assert recorder_for(engine) is recorder
    seen: list[AuditEntry] = []
    recorder.subscribe(seen.append)
    try:
        await engine.run(feed)
        halt = await engine.halt("audit test", actor="cli")
        assert halt is not None
        await engine.resume("checked", actor="cli")
    finally:
        await recorder.close()
        await engine.close()
    assert recorder_for(engine) is None

    conn = connect_readonly(str(db_path(data)))
    fills = [
        dict(r) for r in conn.execute("SELECT client_order_id, bot_id, side, quantity, price, fee FROM fills")
    ]
    bots = {r[0]: r[1] for r in conn.execute("SELECT id, name FROM bots")}
    conn.close()
    trades = audit_rows(data, "type = 'paper_trade_executed'")
    assert len(fills) > 10 and len(trades) == len(fills)
    assert sorted((f["client_order_id"], f["bot_id"], f["side"], f["quantity"], f["price"], f["fee"]) for f in fills) \
        == sorted((t["details"]["client_order_id"], t["bot_id"], t["details"]["side"], t["details"]["quantity"],
                   t["details"]["price"], t["details"]["fee"]) for t in trades)  # fmt: skip
    assert {(t["bot_id"], t["bot"]) for t in trades} <= set(bots.items())  # named from the runners
    assert {t["severity"] for t in trades} == {"info"}
    assert not audit_rows(data, "type = 'live_trade_executed'")

    created = audit_rows(data, "type = 'bot_created'")  # created as the engine opened: from the ledger
    assert sorted((c["bot_id"], c["bot"]) for c in created) == sorted(bots.items())
    assert all(c["details"] == {"source": "ledger"} for c in created)

    stop = audit_rows(data, "type = 'emergency_stop_triggered'")
    assert len(stop) == 1 and stop[0]["severity"] == "critical" and stop[0]["actor"] == "cli"
    assert stop[0]["details"]["trip_id"] == halt.id and "audit test" in stop[0]["details"]["message"]
    reset = audit_rows(data, "type = 'breaker_reset'")[-1]
    assert (reset["severity"], reset["actor"], reset["details"]["resumed_trading"]) == (
        "critical",
        "cli",
        True,
    )
    assert len(seen) == len(audit_rows(data)) - len(created)  # every recorded entry reached the subscriber
    wall = int(time.time() * 1000)
    assert all(wall - 600_000 < r["ts"] <= wall for r in trades)  # wall clock, not the 2020 market time
    assert all(r["details"]["engine_ts"] < wall - 365 * DAY_MS for r in trades)


async def test_live_engine_fills_are_live_trades(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    audit_store.connect(db_path(data)).close()
    bus = EventBus()
    recorder = AuditLog(db_path(data), live=True, bot_name={3: "btc-ema"}.get)
    await recorder.open()
    recorder.attach(bus)
    bus.publish(
        OrderFilled(T, 3, "am1-x-b0", "BTC/USDT", Side.BUY, Decimal(1), Decimal(2), Decimal(0), Decimal(0))
    )
    await recorder.close()
    [row] = audit_rows(data)
    assert (row["type"], row["severity"], row["bot_id"], row["bot"]) == (
        "live_trade_executed",
        "critical",
        3,
        "btc-ema",
    )


# -- retention ---------------------------------------------------------------------------------


async def until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_retention_prunes_old_audit_rows_at_start_and_daily_never_the_ledger(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = load_settings(None)
    engine, feed = await open_engine(settings, data, ReplayArgs([str(BTC_1H)], speed=0, until_end=True))
    try:
        await engine.run(feed)
    finally:
        await engine.close()
    now = int(time.time() * 1000)

    def entry(days: float, kind: str, sev: Severity) -> AuditEntry:
        return AuditEntry(now - int(days * DAY_MS), kind, sev, "engine", None, None, {"d": days})

    old = [entry(d, "paper_trade_executed", Severity.INFO) for d in (400, 91, 90.01)]
    recent = [entry(d, "breaker_tripped", Severity.CRITICAL) for d in (89.9, 1, 0)]
    audit_store.write(db_path(data), old + recent)
    ledger = ledger_counts(data)
    assert ledger["fills"] > 10

    clock = [now]
    recorder = AuditLog(db_path(data), retention_days=90, clock=lambda: clock[0], prune_every_s=0.05)
    await recorder.open()  # prunes at start
    try:
        assert recorder.pruned == 3
        assert sorted(r["details"]["d"] for r in audit_rows(data)) == [0, 1, 89.9]
        clock[0] = now + 2 * DAY_MS  # two days later the 89.9-day-old entry is past retention too
        await until(lambda: recorder.pruned == 4, "the periodic prune")
        assert sorted(r["details"]["d"] for r in audit_rows(data)) == [0, 1]
    finally:
        await recorder.close()
    assert ledger_counts(data) == ledger  # the ledger is never pruned


def ledger_counts(data: Path) -> dict[str, int]:
    conn = connect_readonly(str(db_path(data)))
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("fills", "orders", "ledger_events", "equity_snapshots", "bots", "breaker_trips")}  # fmt: skip
    finally:
        conn.close()


# -- entries made outside the engine ----------------------------------------------------------


def test_an_offline_entry_without_an_engine_is_written_under_the_lock(tmp_path: Path) -> None:
    data = tmp_path / "data"
    entry = key_entry("added", "kucoin", ts=T, masked="••••abcd")
    assert record_offline(data, entry) == "recorded"
    [row] = audit_rows(data)
    assert (row["type"], row["severity"], row["actor"], row["details"]) == (
        "api_key_added",
        "critical",
        "cli",
        {"provider": "kucoin", "masked": "••••abcd"},
    )
    conn = sqlite3.connect(db_path(data))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


async def test_an_offline_entry_reaches_the_running_engines_recorder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = load_settings(None)
    with EngineLock(lock_path(data)):
        engine, _feed = await open_engine(settings, data, ReplayArgs([str(BTC_1H)], speed=0, until_end=True))
        recorder = await start_audit(engine, settings, data)
        server = await serve_control(engine, socket_path(data))
        seen: list[AuditEntry] = []
        recorder.subscribe(seen.append)
        try:
            entry = key_entry("deleted", "binance", ts=T, found=True)
            how = await asyncio.to_thread(record_offline, data, entry)  # the CLI's blocking client
            assert how == "live"
            assert seen == [entry]  # through the recorder (its subscribers: the alert mailer)
            assert [r["type"] for r in audit_rows(data, "type LIKE 'api_key%'")] == [
                "api_key_deleted"
            ]  # written
            bad = await execute(
                engine, json.dumps({"cmd": "audit", "entry": {**entry.to_json(), "type": "nope"}})
            )
            assert bad == {"ok": False, "error": "audit entry: unknown type 'nope'"}
        finally:
            await stop_control(server)
            await recorder.close()
            await engine.close()
