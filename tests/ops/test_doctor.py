"""The readiness checks (``ops.doctor``) in-process: a real SQLite ledger in a temp dir, the real
keyring against a private Secret Service, real ccxt against the loopback Binance."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from doctor_helpers import (
    BN_KEY,
    BN_SECRET,
    WallClockBinance,
    add_bot,
    add_errors,
    add_reconciliation,
    wall_ms,
)

from amarktai_tui.config import ExchangeSettings, Settings, load_settings
from amarktai_tui.locations import db_path, lock_path
from amarktai_tui.ops.doctor import Check, check_clock, check_writable, doctor_ok, report_json, run_doctor
from amarktai_tui.ops.doctor_ledger import check_keys, read_ledger
from amarktai_tui.ops.lock import EngineLock
from amarktai_tui.vault import status
from amarktai_tui.vault.manager import KeyManager
from amarktai_tui.vault.providers import PROVIDERS

DAY_MS = 86_400_000
NAMES = ["database", "writable", "keys", "reconcile", "clock", "errors", "breakers", "withdraw", "disk"]


def by_name(checks: list[Check], name: str) -> list[Check]:
    return [c for c in checks if c.name == name]


def skew_of(check: Check) -> int:
    """The skew a clock check measured, ms (exchange - local)."""
    m = re.fullmatch(r"binance: clock skew ([+-]\d+) ms \(limit 1000 ms; round trip \d+ ms\)", check.detail)
    assert m, check.detail
    return int(m.group(1))


def failing(checks: list[Check]) -> set[str]:
    return {c.name for c in checks if not c.ok}


async def test_no_ledger_fails_the_database_and_what_depends_on_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    checks = await run_doctor(load_settings(None), data)
    assert [c.name for c in checks] == NAMES
    assert not doctor_ok(checks)
    db = by_name(checks, "database")[0]
    assert (db.ok, db.detail) == (False, f"no ledger at {db_path(data)}")
    assert db.fix.startswith("start amarktai once")
    assert failing(checks) == {"database", "keys", "reconcile", "clock", "errors", "breakers", "withdraw"}
    assert all(c.fix for c in checks if not c.ok) and all(c.fix == "" for c in checks if c.ok)
    assert not db_path(data).exists()  # the doctor created nothing
    assert report_json(checks) == {"ok": False, "checks": [c.to_json() for c in checks]}
    assert set(checks[0].to_json()) == {"name", "ok", "detail", "fix"}


async def test_not_a_database_and_a_failed_integrity_check(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db_path(data).write_bytes(b"this is not a SQLite file, just text" * 200)
    db = by_name(await run_doctor(load_settings(None), data), "database")[0]
    assert not db.ok and "unreadable: DatabaseError" in db.detail and "backup" in db.fix

    db_path(data).unlink()
    with status.connect(data) as conn:  # a real ledger with rows in kv (and its unique index)
        conn.executemany(
            "INSERT INTO kv (key, value) VALUES (?, ?)", [(f"key{i:03d}", "v") for i in range(50)]
        )
    _corrupt_index_entry(db_path(data), "sqlite_autoindex_kv_1", b"key007", b"kex007")
    checks = await run_doctor(load_settings(None), data)
    db = by_name(checks, "database")[0]
    assert not db.ok and db.detail.startswith("integrity check failed: ")
    assert "sqlite_autoindex_kv_1" in db.detail
    assert by_name(checks, "errors")[0].detail == "not checked: the ledger cannot be read"


def _corrupt_index_entry(db: Path, index: str, old: bytes, new: bytes) -> None:
    """Change one key inside an index page (the table keeps its row): integrity_check reports it."""
    conn = sqlite3.connect(db)
    page = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (index,)).fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(db, "r+b") as fh:
        fh.seek((page - 1) * size)
        buf = bytearray(fh.read(size))
        at = buf.index(old)
        buf[at : at + len(old)] = new
        fh.seek((page - 1) * size)
        fh.write(buf)


async def test_a_fresh_paper_ledger_passes_everything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_bot(data, "btc-paper", stage="paper_training")  # no live or eligible bot: no key needed
    checks = await run_doctor(load_settings(None), data)
    assert doctor_ok(checks), [c.line() for c in checks if not c.ok]
    assert [c.name for c in checks] == NAMES
    assert by_name(checks, "keys")[0].detail == "no live or eligible bot: no exchange key needed"
    assert by_name(checks, "writable")[0].detail == f"{data} and the ledger writable"
    assert checks[0].line() == "PASS database  integrity ok"


def test_writable_takes_the_write_lock_only_when_no_engine_holds_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_bot(data, "b", stage="paper_training")
    other = sqlite3.connect(db_path(data), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the ledger
        busy = check_writable(data, busy_timeout_s=0.2)
        assert not busy.ok and "cannot take the ledger's write lock: database is locked" in busy.detail
        assert busy.fix.startswith("close whatever else")
        with EngineLock(lock_path(data)):  # an engine runs: the doctor leaves its ledger alone
            held = check_writable(data, busy_timeout_s=30)
        assert held.ok and held.detail == f"{data} writable; the running engine holds the ledger"
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert check_writable(data, busy_timeout_s=0.2).ok
    missing = check_writable(tmp_path / "nowhere")
    assert not missing.ok and missing.detail == f"data dir {tmp_path / 'nowhere'} does not exist"


async def test_keys_of_live_and_eligible_bots(secret_service: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = load_settings(None)
    add_bot(data, "btc-live", exchange="binance", stage="live")
    add_bot(data, "eth-next", exchange="kucoin", stage="eligible_for_live")
    add_bot(data, "luno-paper", exchange="luno", stage="paper_training")  # not live: no key needed
    add_bot(data, "valr-q", exchange="valr", stage="quarantined")
    now = wall_ms()

    def keys(exchanges: list[str] | None = None, at: int = now) -> list[Check]:
        ledger = read_ledger(data, settings, at)
        return check_keys(settings, data, ledger, sorted(exchanges or ledger.live_bots), at)

    assert [c.line() for c in keys()] == [
        "FAIL keys  binance: no key saved (bots: btc-live) -> run: amarktai keys set binance, "
        "then amarktai keys test binance",
        "FAIL keys  kucoin: no key saved (bots: eth-next) -> run: amarktai keys set kucoin, "
        "then amarktai keys test kucoin",
    ]
    manager = KeyManager(settings, data)
    manager.save("binance", {"api_key": BN_KEY, "api_secret": BN_SECRET})
    manager.save("kucoin", {"api_key": "k", "api_secret": "s", "passphrase": "p"})
    binance, kucoin = keys()
    assert binance.detail == "binance key saved but never tested (bots: btc-live)"
    assert binance.fix == "run: amarktai keys test binance"

    status.mark_tested(data, "binance", ok=True, reason="", can_withdraw=False, ts=now - 3 * DAY_MS)
    status.mark_tested(
        data, "kucoin", ok=False, reason="AuthenticationError: bad key", can_withdraw=None, ts=now
    )
    binance, kucoin = keys()
    assert (
        binance.line() == "FAIL keys  binance key last tested 3 days ago -> run: amarktai keys test binance"
    )
    assert kucoin.detail == "kucoin key failed its last test (0 min ago): AuthenticationError: bad key"

    status.mark_tested(data, "binance", ok=True, reason="", can_withdraw=False, ts=now - 2 * 3_600_000)
    binance, _ = keys()
    assert binance.ok and binance.detail == "binance key tested 2 h ago (bots: btc-live)"
    late, _ = keys(at=now + DAY_MS)  # 26 h after the test
    assert not late.ok and late.detail == "binance key last tested 26 h ago"

    assert [c.ok for c in keys(exchanges=["binance"])] == [True]  # the override replaces the bots' set
    odd = keys(exchanges=["bitstamp"])[0]
    assert not odd.ok and odd.detail == "unknown exchange 'bitstamp'"

    manager.store.delete(PROVIDERS["binance"])
    gone, _ = keys()  # the table says test_ok, but the keyring no longer has it
    assert not gone.ok and gone.detail == "binance: no key saved (bots: btc-live)"


async def test_clock_skew_against_the_loopback_exchange(tmp_path: Path) -> None:
    async with WallClockBinance.running(offset_ms=-5_000) as server:
        settings = Settings(exchanges={"binance": ExchangeSettings(api_url=server.url)})
        behind = await check_clock(settings, "binance")
        assert not behind.ok and abs(skew_of(behind) + 5_000) < 500
        assert "(limit 1000 ms; round trip" in behind.detail
        assert behind.fix == "sync this computer's clock (e.g. timedatectl set-ntp true)"
        assert ("GET", "/api/v3/time") in server.requests

        server.offset_ms = 0
        ok = await check_clock(settings, "binance")
        assert ok.ok and abs(skew_of(ok)) < 500, ok.detail

        server.offset_ms = 1_500
        ahead = await check_clock(settings, "binance")
        assert not ahead.ok and abs(skew_of(ahead) - 1_500) < 500

        checks = await run_doctor(settings, tmp_path, exchanges=["binance"])  # the override, whole run
        assert [c.ok for c in by_name(checks, "clock")] == [False]
        url = server.url
    down = await check_clock(Settings(exchanges={"binance": ExchangeSettings(api_url=url)}), "binance")
    assert not down.ok and down.detail.startswith("binance: cannot read its time: ")
    assert down.fix.startswith("check the network and [exchanges.binance]")
    luno = await check_clock(load_settings(None), "luno")  # ccxt's Luno has no server-time call
    assert luno.ok and luno.detail == "luno: its API gives no server time; skew not measured"


async def test_error_storm_uses_the_breakers_threshold_and_window(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bot = add_bot(data, "noisy", stage="paper_training")
    now = wall_ms()
    add_errors(data, bot, 9, now - 30 * 60_000)
    settings = load_settings(None)
    assert by_name(await run_doctor(settings, data, now_ms=now), "errors")[0].ok  # 9 < 10
    add_errors(data, bot, 1, now - 60_000)
    storm = by_name(await run_doctor(settings, data, now_ms=now), "errors")[0]
    assert storm.line().startswith(
        "FAIL errors  error storm in the last 60 min (limit 10): noisy 10 errors -> find the cause in "
    )
    # an hour later the first nine have left the window
    assert by_name(await run_doctor(settings, data, now_ms=now + 59 * 60_000), "errors")[0].ok
    settings.risk.error_storm_errors = 5  # the breaker's own setting moves the check's threshold
    assert not by_name(await run_doctor(settings, data, now_ms=now), "errors")[0].ok


async def test_reconciliation_breakers_and_withdrawal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bot = add_bot(data, "btc", stage="paper_training")
    now = wall_ms()
    add_reconciliation(data, "binance", ok=True, ts=now - 10_000, drift={})
    add_reconciliation(data, "binance", ok=False, ts=now, drift={"BTC": "ledger 0.5, exchange 0.1"})
    add_reconciliation(data, "kucoin", ok=True, ts=now, drift={})
    with status.connect(data) as conn:
        conn.executemany(
            "INSERT INTO breaker_trips (id, ts, scope, bot_id, breaker, threshold, value, cause, message)"
            " VALUES (?, ?, ?, ?, ?, '0.1', '0.2', 'test', ?)",
            [
                (1, now, "bot", bot, "bot_drawdown", "bot drawdown 20%"),  # a bot's trip: not the account's
                (2, now, "account", None, "daily_loss", "daily loss 12% (limit 10%)"),
            ],
        )
    status.mark_tested(data, "binance", ok=True, reason="", can_withdraw=True, ts=now)
    checks = await run_doctor(load_settings(None), data, now_ms=now)
    assert [c.line() for c in by_name(checks, "reconcile")] == [
        "FAIL reconcile  binance: last reconciliation failed: balances drift from the ledger: "
        "BTC ledger 0.5, exchange 0.1 -> settle it on binance (open orders, balances the ledger's positions "
        "need), then start the engine live again: it reconciles before any bot trades",
        "PASS reconcile  kucoin: last reconciliation clean",
    ]
    assert by_name(checks, "breakers")[0].line() == (
        "FAIL breakers  account breaker tripped: trip 2 daily_loss: daily loss 12% (limit 10%) "
        "-> run: amarktai breakers reset 2 --reason TEXT"
    )
    withdraw = by_name(checks, "withdraw")[0]
    assert withdraw.detail == "key with withdrawal permission: binance"
    assert "trade-only key" in withdraw.fix and "amarktai keys set binance" in withdraw.fix

    add_reconciliation(data, "binance", ok=True, ts=now + 1, drift={})
    with status.connect(data) as conn:
        conn.execute(
            "INSERT INTO breaker_resets (trip_id, ts, actor, reason) VALUES (2, ?, 'cli', 'ok')", (now,)
        )
    status.mark_tested(data, "binance", ok=True, reason="", can_withdraw=False, ts=now)
    checks = await run_doctor(load_settings(None), data, now_ms=now)
    assert failing(checks) == set(), [c.line() for c in checks if not c.ok]


def test_disk_threshold(tmp_path: Path) -> None:
    from amarktai_tui.ops.doctor import check_disk

    assert check_disk(tmp_path, 1).ok
    low = check_disk(tmp_path / "not" / "yet", 10**12)  # measured where the dir would be
    assert not low.ok and low.detail.endswith(f"free at {tmp_path} (need 1,000,000,000,000 MB)")
    assert low.fix.startswith("free some space")


def test_doctor_ok_needs_at_least_one_check() -> None:
    assert not doctor_ok([])
    assert doctor_ok([Check("disk", True, "fine", "")])


@pytest.mark.parametrize("stage", ["live", "eligible_for_live"])
async def test_live_and_eligible_bots_need_their_exchange(stage: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_bot(data, "b", exchange="luno", stage=stage)
    assert read_ledger(data, load_settings(None), wall_ms()).live_bots == {"luno": ["b"]}
