"""Backups (``ops.backup``, ``amarktai backup`` / ``restore``): real ledgers in tmp_path made through
the store, real SQLite copies, the engine lock, the CLI in-process and once as a subprocess."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from backup_helpers import HandClock, Writer, add_bot, bot_names, make_ledger, query

from amarktai_tui import cli
from amarktai_tui.config import Settings, load_settings
from amarktai_tui.domain.enums import TradingMode
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.events import BackupCreated
from amarktai_tui.engine.setup import make_broker
from amarktai_tui.ledger.schema import MIGRATIONS, SCHEMA_VERSION, configure, migrate
from amarktai_tui.ledger.store import LedgerStore
from amarktai_tui.locations import backups_dir, db_path, lock_path
from amarktai_tui.ops.backup import (
    MANIFEST,
    Backup,
    MigrationBackupError,
    RestoreRefused,
    backup_before_switch,
    create_backup,
    read_manifest,
    restore_backup,
    sha256_file,
    start_daily_backups,
)
from amarktai_tui.ops.backup_commands import run_restore
from amarktai_tui.ops.lock import EngineLock
from amarktai_tui.ops.mode import current_mode, switch_mode

DAY = 86_400_000


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


def manifest_doc(data_dir: Path) -> dict[str, list[dict[str, object]]]:
    doc: dict[str, list[dict[str, object]]] = json.loads((backups_dir(data_dir) / MANIFEST).read_text())
    return doc


def settings_with(**backup: object) -> Settings:
    s = load_settings(None)
    for key, value in backup.items():
        setattr(s.backup, key, value)
    return s


def restore_cli(data_dir: Path, file: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.run(["restore", str(file), "--yes", "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    return code, out, err


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- making backups --------------------------------------------------------------------------------


def test_backup_while_another_connection_writes(tmp_path: Path) -> None:
    asyncio.run(make_ledger(tmp_path, "alpha"))
    db = db_path(tmp_path)
    writer = Writer(db)
    writer.start()
    try:
        assert writer.warm.wait(10), "the writer never got going"
        before = query(db, "SELECT COUNT(*) FROM ledger_events WHERE note = 'writer'")[0][0]
        made = create_backup(db, "manual", keep=10)
    finally:
        writer.stop.set()
        writer.join(10)
    assert writer.error is None, writer.error
    after = query(db, "SELECT COUNT(*) FROM ledger_events WHERE note = 'writer'")[0][0]

    copied, top = query(made.path, "SELECT COUNT(*), MAX(ts) FROM ledger_events WHERE note = 'writer'")[0]
    assert before <= copied <= after
    assert top == copied - 1  # one consistent snapshot: rows 0..n-1, no gap
    assert query(made.path, "PRAGMA integrity_check") == [("ok",)]
    assert query(made.path, "PRAGMA journal_mode") == [("delete",)]  # self-contained: no -wal needed
    assert bot_names(made.path) == ["alpha"]
    assert made.path.parent == backups_dir(tmp_path)
    assert made.reason == "manual" and made.path.name.endswith("-manual.sqlite3")


def test_manifest_records_checksum_size_time_reason_and_schema(tmp_path: Path) -> None:
    asyncio.run(make_ledger(tmp_path, "alpha"))
    t = ms("2030-01-02T03:04:05.678")
    made = create_backup(db_path(tmp_path), "manual", keep=10, now_ms=t)
    assert made.path.name == "amarktai-20300102T030405678Z-manual.sqlite3"
    [entry] = manifest_doc(tmp_path)["backups"]
    assert entry == {
        "file": made.path.name,
        "sha256": sha256_file(made.path),
        "size": made.path.stat().st_size,
        "ts": t,
        "reason": "manual",
        "schema_version": SCHEMA_VERSION,
    }
    assert made == Backup(
        made.path, made.path.stat().st_size, sha256_file(made.path), "manual", t, SCHEMA_VERSION
    )
    assert not [p for p in backups_dir(tmp_path).iterdir() if p.name.endswith((".partial", ".tmp"))]


def test_retention_keeps_the_newest_n_and_never_the_new_one(tmp_path: Path) -> None:
    asyncio.run(make_ledger(tmp_path, "alpha"))
    db = db_path(tmp_path)
    t0 = ms("2030-01-01T00:00:00")
    made = [create_backup(db, "daily", keep=3, now_ms=t0 + i * DAY) for i in range(5)]
    listed = read_manifest(backups_dir(tmp_path))
    assert [e.path for e in listed] == [b.path for b in made[2:]]
    assert [p.exists() for p in (b.path for b in made)] == [False, False, True, True, True]

    # a backup stamped earlier than the others (the clock stepped back) is still the one kept
    late = create_backup(db, "manual", keep=1, now_ms=t0 - DAY)
    assert [e.path for e in read_manifest(backups_dir(tmp_path))] == [late.path]
    assert sorted(p.name for p in backups_dir(tmp_path).glob("*.sqlite3")) == [late.path.name]

    # None (the migration backup): nothing pruned
    create_backup(db, "migration", keep=None, now_ms=t0)
    create_backup(db, "migration", keep=None, now_ms=t0 + 1)
    assert len(read_manifest(backups_dir(tmp_path))) == 3


# -- restore -------------------------------------------------------------------------------------


def test_damaged_copies_are_refused_and_the_good_one_restores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(make_ledger(tmp_path, "alpha"))
    db = db_path(tmp_path)
    good = create_backup(db, "manual", keep=10)
    asyncio.run(make_ledger(tmp_path, "beta"))  # the ledger moves on after the backup
    flipped = create_backup(db, "manual", keep=10)
    broken = create_backup(db, "manual", keep=10)

    # flipped bytes: the checksum no longer matches the manifest
    data = bytearray(flipped.path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    flipped.path.write_bytes(bytes(data))
    code, out, err = restore_cli(tmp_path, flipped.path, capsys)
    assert code == 1 and out == ""
    assert "checksum mismatch" in err and len(err.strip().splitlines()) == 1

    # a wrecked table page with a checksum that matches (the manifest rewritten): integrity_check
    [(root,)] = query(broken.path, "SELECT rootpage FROM sqlite_master WHERE name = 'bots'")
    [(page,)] = query(broken.path, "PRAGMA page_size")
    data = bytearray(broken.path.read_bytes())
    data[(root - 1) * page : root * page] = b"\xa5" * page
    broken.path.write_bytes(bytes(data))
    doc = manifest_doc(tmp_path)
    for e in doc["backups"]:
        if e["file"] == broken.path.name:
            e["sha256"] = sha256_file(broken.path)
    (backups_dir(tmp_path) / MANIFEST).write_text(json.dumps(doc))
    code, out, err = restore_cli(tmp_path, broken.path, capsys)
    assert code == 1 and "integrity_check failed" in err and len(err.strip().splitlines()) == 1

    # a good copy that the manifest does not list
    stray = tmp_path / "elsewhere.sqlite3"
    stray.write_bytes(good.path.read_bytes())
    code, out, err = restore_cli(tmp_path, stray, capsys)
    assert code == 1 and "not in the backup manifest" in err

    assert bot_names(db) == ["alpha", "beta"]  # every refusal left the ledger alone
    assert len(read_manifest(backups_dir(tmp_path))) == 3  # and made no pre_restore copy

    # an engine that died left a WAL that was never checkpointed: it must not be replayed onto the
    # restored file (SQLite would: the restored bots table would be the old one's)
    wal = db.with_name(db.name + "-wal")
    with closing(sqlite3.connect(str(db), isolation_level=None)) as conn:
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("UPDATE bots SET state_reason = 'from the wal'")
        left = wal.read_bytes()
    wal.write_bytes(left)
    assert query(db, "SELECT DISTINCT state_reason FROM bots") == [("from the wal",)]

    # the good one
    code, out, err = restore_cli(tmp_path, good.path, capsys)
    assert code == 0, err
    assert bot_names(db) == ["alpha"]
    assert query(db, "SELECT DISTINCT state_reason FROM bots") == [("",)]
    pre = [e for e in read_manifest(backups_dir(tmp_path)) if e.reason == "pre_restore"]
    assert len(pre) == 1 and str(pre[0].path) in out
    assert bot_names(pre[0].path) == ["alpha", "beta"]  # the replaced ledger is kept, WAL and all
    assert query(pre[0].path, "SELECT DISTINCT state_reason FROM bots") == [("from the wal",)]

    async def reopen() -> list[str]:  # the engine's store opens the restored file and writes on
        store = await LedgerStore.open(db)
        try:
            await add_bot(store, "gamma")
            return [b.name for b in await store.load_bots()]
        finally:
            await store.close()

    assert asyncio.run(reopen()) == ["alpha", "gamma"]


def test_restore_is_refused_while_an_engine_holds_the_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(make_ledger(tmp_path, "alpha"))
    good = create_backup(db_path(tmp_path), "manual", keep=10)
    asyncio.run(make_ledger(tmp_path, "beta"))
    with EngineLock(lock_path(tmp_path)):
        code, _, err = restore_cli(tmp_path, good.path, capsys)
        assert code == 1 and "an engine is running" in err and len(err.strip().splitlines()) == 1
        with pytest.raises(RestoreRefused, match="an engine is running"):
            restore_backup(tmp_path, good.path, keep=10)
    assert bot_names(db_path(tmp_path)) == ["alpha", "beta"]
    code, _, err = restore_cli(tmp_path, good.path, capsys)  # the engine stopped: now it goes
    assert code == 0, err
    assert bot_names(db_path(tmp_path)) == ["alpha"]


def test_restore_asks_on_a_terminal_and_needs_yes_without_one(tmp_path: Path) -> None:
    asyncio.run(make_ledger(tmp_path, "alpha"))
    good = create_backup(db_path(tmp_path), "manual", keep=10)
    asyncio.run(make_ledger(tmp_path, "beta"))
    settings = load_settings(None)
    args = cli.build_parser().parse_args(["restore", str(good.path)])

    assert run_restore(args, settings, tmp_path, stdin=io.StringIO("y\n")) == 2  # no terminal, no --yes
    assert run_restore(args, settings, tmp_path, stdin=Tty("n\n")) == 2  # declined
    assert bot_names(db_path(tmp_path)) == ["alpha", "beta"]
    assert run_restore(args, settings, tmp_path, stdin=Tty("y\n")) == 0
    assert bot_names(db_path(tmp_path)) == ["alpha"]


# -- before a migration ------------------------------------------------------------------------------


def old_ledger(path: Path, k: int) -> None:
    """A ledger file at schema version ``k`` with one bot row (what an older app left behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(str(path), isolation_level=None)) as conn:
        configure(conn)
        for version, script in enumerate(MIGRATIONS[:k]):
            conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={version + 1};\nCOMMIT;")
        conn.execute(
            "INSERT INTO bots (name, exchange, pair, timeframe, strategy, risk_mode, capital, state, stage,"
            " created_ts, updated_ts) VALUES ('old', 'binance', 'BTC/USDT', '1h', 'sma_cross', 'balanced',"
            " '1000', 'running', 'paper_training', 1, 1)"
        )


@pytest.mark.parametrize("k", [1, 3])
def test_migration_backs_up_the_old_version_once(tmp_path: Path, k: int) -> None:
    db = db_path(tmp_path)
    old_ledger(db, k)
    asyncio.run(make_ledger(tmp_path))  # the engine's store opens it: migrates to the current version
    assert query(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]

    [entry] = read_manifest(backups_dir(tmp_path))
    assert entry.reason == "migration" and entry.schema_version == k
    assert query(entry.path, "PRAGMA user_version") == [(k,)]
    assert query(entry.path, "PRAGMA integrity_check") == [("ok",)]
    assert bot_names(entry.path) == ["old"]
    assert entry.sha256 == sha256_file(entry.path)

    asyncio.run(make_ledger(tmp_path))  # already current: no further copy
    with closing(sqlite3.connect(str(db))) as conn:  # another module's migrate: nothing either
        migrate(conn)
    assert len(read_manifest(backups_dir(tmp_path))) == 1


def test_new_and_in_memory_databases_get_no_backup(tmp_path: Path) -> None:
    asyncio.run(make_ledger(tmp_path, "alpha"))  # brand new: created at v0
    assert not backups_dir(tmp_path).exists()
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.executescript(f"{MIGRATIONS[0]}\nPRAGMA user_version=1;")
        assert migrate(conn) == 1
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_failed_migration_backup_refuses_the_migration(tmp_path: Path) -> None:
    db = db_path(tmp_path)
    old_ledger(db, 2)
    backups_dir(tmp_path).write_text("not a directory")  # the copy cannot be written
    with pytest.raises(
        MigrationBackupError, match=r"not migrated to v\d+: the backup before the migration failed"
    ):
        asyncio.run(make_ledger(tmp_path))
    assert issubclass(MigrationBackupError, sqlite3.OperationalError)
    assert query(db, "PRAGMA user_version") == [(2,)]
    assert bot_names(db) == ["old"]


# -- before a mode switch ----------------------------------------------------------------------------


async def _go_live(data_dir: Path) -> None:
    store = await LedgerStore.open(db_path(data_dir))
    try:
        await add_bot(store, "alpha")
        await store.record_mode_switch(1, "paper", "live", "cli", "test")
    finally:
        await store.close()


def test_cli_mode_switch_backs_up_first(tmp_path: Path) -> None:
    asyncio.run(_go_live(tmp_path))
    settings = settings_with(keep=5)
    done = asyncio.run(switch_mode(settings, tmp_path, TradingMode.PAPER, reason="test"))
    assert done is not None and current_mode(tmp_path) is TradingMode.PAPER
    [entry] = read_manifest(backups_dir(tmp_path))
    assert entry.reason == "mode_switch"
    assert query(entry.path, "SELECT to_mode FROM mode_switches ORDER BY id") == [("live",)]  # before


def test_a_failed_backup_blocks_the_switch_to_live_but_not_to_paper(tmp_path: Path) -> None:
    asyncio.run(_go_live(tmp_path))
    backups_dir(tmp_path).write_text("not a directory")
    settings = load_settings(None)
    refusal = backup_before_switch(settings, tmp_path, TradingMode.LIVE)
    assert refusal is not None and refusal.startswith("the backup before the switch failed")
    assert backup_before_switch(settings, tmp_path, TradingMode.PAPER) is None
    assert asyncio.run(switch_mode(settings, tmp_path, TradingMode.PAPER, reason="safety")) is not None
    assert current_mode(tmp_path) is TradingMode.PAPER


async def _engine(data_dir: Path) -> TradingEngine:
    store = await LedgerStore.open(db_path(data_dir))
    return TradingEngine(store, make_broker(load_settings(None)))


async def test_engine_switch_to_paper_backs_up_and_publishes(tmp_path: Path) -> None:
    await _go_live(tmp_path)
    engine = await _engine(tmp_path)
    seen: list[BackupCreated] = []
    engine.bus.subscribe(BackupCreated, seen.append)
    try:
        assert await engine.switch_to_paper("cli", "test") is True
        assert await engine.store.trading_mode() == "paper"
        assert await engine.switch_to_paper("cli", "again") is False  # nothing to switch: no copy
    finally:
        await engine.close()
    [event] = seen
    [entry] = read_manifest(backups_dir(tmp_path))
    assert (event.path, event.size, event.sha256, event.reason) == (
        str(entry.path), entry.size, entry.sha256, "mode_switch",
    )  # fmt: skip
    assert query(entry.path, "SELECT to_mode FROM mode_switches ORDER BY id") == [("live",)]


# -- the daily service -------------------------------------------------------------------------------


async def test_daily_backup_once_per_utc_day_at_the_configured_time(tmp_path: Path) -> None:
    await make_ledger(tmp_path, "alpha")
    engine = await _engine(tmp_path)
    made = asyncio.Event()
    seen: list[BackupCreated] = []

    def on_backup(e: BackupCreated) -> None:
        seen.append(e)
        made.set()

    engine.bus.subscribe(BackupCreated, on_backup)
    clock = HandClock(ms("2030-01-01T02:00:00"))
    close = await start_daily_backups(engine, settings_with(daily_at="03:00", keep=2), tmp_path, clock=clock)
    try:
        assert await clock.sleeping() <= ms("2030-01-01T03:00:00")
        assert not seen

        await clock.advance_to(ms("2030-01-01T03:00:00"))
        await asyncio.wait_for(made.wait(), 10)
        made.clear()
        [entry] = read_manifest(backups_dir(tmp_path))
        assert (entry.reason, entry.ts) == ("daily", ms("2030-01-01T03:00:00"))
        assert seen[0].path == str(entry.path) and seen[0].sha256 == entry.sha256

        await clock.advance_to(ms("2030-01-01T23:59:00"))  # later the same UTC day: nothing more
        assert await clock.sleeping() > clock.now_ms()
        assert len(seen) == 1

        for day in ("2030-01-02", "2030-01-03"):  # one a day, pruned to keep = 2
            await clock.advance_to(ms(f"{day}T03:00:30"))
            await asyncio.wait_for(made.wait(), 10)
            made.clear()
        assert [e.ts for e in read_manifest(backups_dir(tmp_path))] == [
            ms("2030-01-02T03:00:30"), ms("2030-01-03T03:00:30"),
        ]  # fmt: skip
        assert max(clock.sleeps) <= 900  # it looks at the clock at least every 15 minutes
    finally:
        await close()
        await engine.close()


async def test_daily_backup_catches_up_at_start_and_survives_failures(tmp_path: Path) -> None:
    await make_ledger(tmp_path, "alpha")
    engine = await _engine(tmp_path)
    seen: list[BackupCreated] = []
    engine.bus.subscribe(BackupCreated, seen.append)
    settings = settings_with(daily_at="03:00")
    try:
        # started at 10:00 with today's copy already made: none; without it: one at once
        create_backup(db_path(tmp_path), "daily", keep=10, now_ms=ms("2030-01-01T03:00:00"))
        clock = HandClock(ms("2030-01-01T10:00:00"))
        close = await start_daily_backups(engine, settings, tmp_path, clock=clock)
        assert await clock.sleeping() > clock.now_ms()
        await close()
        assert not seen

        clock = HandClock(ms("2030-01-02T10:00:00"))
        close = await start_daily_backups(engine, settings, tmp_path, clock=clock)
        await clock.sleeping()
        await close()
        assert [e.reason for e in seen] == ["daily"]
        assert read_manifest(backups_dir(tmp_path))[-1].ts == ms("2030-01-02T10:00:00")

        # no room for the copy: logged, retried later; the service (and the engine) go on
        backups_dir(tmp_path).rename(tmp_path / "moved")
        backups_dir(tmp_path).write_text("not a directory")
        clock = HandClock(ms("2030-01-03T04:00:00"))
        close = await start_daily_backups(engine, settings, tmp_path, clock=clock)
        wake = await clock.sleeping()
        assert wake == clock.now_ms() + 900_000  # RETRY_S
        backups_dir(tmp_path).unlink()
        (tmp_path / "moved").rename(backups_dir(tmp_path))
        await clock.advance_to(wake)
        assert await clock.sleeping() > wake
        await close()
        assert [e.reason for e in seen] == ["daily", "daily"]
        assert read_manifest(backups_dir(tmp_path))[-1].ts == wake
    finally:
        await engine.close()


# -- the CLI -----------------------------------------------------------------------------------------


def test_backup_command_json_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert cli.run(["backup", "--data-dir", str(data)]) == 1  # no ledger yet
    out, err = capsys.readouterr()
    assert out == "" and "no ledger" in err and len(err.strip().splitlines()) == 1

    asyncio.run(make_ledger(data, "alpha"))
    assert cli.run(["backup", "--json", "--data-dir", str(data)]) == 0
    out, _ = capsys.readouterr()
    doc = json.loads(out)
    [entry] = read_manifest(backups_dir(data))
    assert doc == entry.to_json() and doc["reason"] == "manual"
    assert doc["sha256"] == sha256_file(Path(doc["path"]))

    with EngineLock(lock_path(data)):  # a running engine does not stop a backup
        assert cli.run(["backup", "--data-dir", str(data)]) == 0
    out, _ = capsys.readouterr()
    assert len(read_manifest(backups_dir(data))) == 2 and "sha256" in out

    assert cli.run(["restore", str(tmp_path / "nope"), "--yes", "--data-dir", str(data)]) == 2
    assert "is not a file" in capsys.readouterr().err

    config = tmp_path / "c.toml"
    config.write_text('[backup]\ndaily_at = "3am"\n')
    assert cli.run(["backup", "--config", str(config), "--data-dir", str(data)]) == 2
    assert "backup.daily_at" in capsys.readouterr().err


def test_restore_subprocess_exit_codes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    asyncio.run(make_ledger(data, "alpha"))
    good = create_backup(db_path(data), "manual", keep=10)
    cmd = [sys.executable, "-c", "from amarktai_tui.cli import main; main()", "restore", str(good.path),
           "--data-dir", str(data)]  # fmt: skip

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cmd, *extra], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
        )

    no_yes = run()
    assert no_yes.returncode == 2 and "--yes" in no_yes.stderr and no_yes.stdout == ""
    assert "Traceback" not in no_yes.stderr
    done = run("--yes")
    assert done.returncode == 0, done.stderr
    assert "restored" in done.stdout and done.stderr == ""
