"""Backups of the ledger: copies made with SQLite's online backup API, a sha256 manifest, retention,
restore, and the daily backup service.

Where: ``<data dir>/backups/`` (``locations.backups_dir``), one file per backup named
``amarktai-<UTC yyyymmddThhmmssmmm>Z-<reason>.sqlite3``, each a complete SQLite database in rollback
(DELETE) journal mode, so the one file is the whole copy. ``backups/manifest.json`` lists them::

    {"format": 1, "backups": [{"file": NAME, "sha256": HEX, "size": BYTES, "ts": MS_UTC,
                                "reason": REASON, "schema_version": N}, ...]}

written atomically (temp file, fsync, ``os.replace``) under ``backups/.lock`` (``fcntl.flock``), so
a daily backup and ``amarktai backup`` never lose each other's entry.

Reasons: ``daily`` (the service below), ``migration`` (``ledger.schema.migrate``, before it changes an
existing ledger), ``mode_switch`` (``ops.mode.switch_mode`` and ``TradingEngine.switch_to_paper``),
``manual`` (``amarktai backup``), ``pre_restore`` (the ledger a restore replaces).

Copying reads the ledger through its own connection: it is safe while an engine writes (WAL mode);
the copy is the state of one committed transaction.

Retention: after a backup that knows the configured ``[backup] keep`` (daily, manual, pre-restore
and the CLI's mode switch) only the newest ``keep`` entries stay; the one just made is never
removed. The migration backup and the engine's mode-switch backup run where the config is not at
hand, so they prune nothing (the next daily or manual backup does).

Failure policy: a failed backup before a migration refuses the migration (``MigrationBackupError``,
one line; the ledger is left at its old version), since migrating without a copy is what loses
data. Before a switch to live a failed backup refuses the switch; before a switch to paper (the safe
direction, which must never be blocked) it is logged and the switch goes on. A failed daily backup
is logged and tried again after ``RETRY_S``; it never stops the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from amarktai_tui.config import Settings
from amarktai_tui.domain.enums import TradingMode
from amarktai_tui.engine.events import BackupCreated
from amarktai_tui.ledger.schema import SCHEMA_VERSION
from amarktai_tui.locations import backups_dir, db_path, lock_path
from amarktai_tui.ops.lock import EngineLock, EngineLockedError

if TYPE_CHECKING:
    from amarktai_tui.engine.engine import TradingEngine

log = logging.getLogger("amarktai.backup")

REASONS = ("daily", "migration", "mode_switch", "manual", "pre_restore")
MANIFEST = "manifest.json"
DAY_MS = 86_400_000
RETRY_S = 900.0
"""Seconds before a failed daily backup is tried again."""
MAX_SLEEP_S = 900.0
"""The daily service wakes at least this often to look at the clock (a suspended machine, a
clock step), so a long sleep never overshoots the backup time by much."""


class BackupError(RuntimeError):
    """A backup could not be made or a restore was refused; the message is one line."""


class RestoreRefused(BackupError):
    """The restore was refused (a check failed, an engine runs); the ledger is unchanged."""


class MigrationBackupError(sqlite3.OperationalError):
    """The copy before a migration failed, so the migration was refused (the ledger keeps its old
    version). A ``sqlite3.OperationalError``: whoever opens the ledger reports it as a ledger error."""


@dataclass(frozen=True, slots=True)
class Backup:
    """One backup file and its manifest entry."""

    path: Path
    size: int  # bytes
    sha256: str  # hex
    reason: str  # one of REASONS
    ts: int  # ms UTC when it was made
    schema_version: int  # the copy's PRAGMA user_version

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size": self.size,
            "sha256": self.sha256,
            "reason": self.reason,
            "ts": self.ts,
            "schema_version": self.schema_version,
        }


# -- making a backup ----------------------------------------------------------------------------


def create_backup(db: Path, reason: str, *, keep: int | None, now_ms: int | None = None) -> Backup:
    """Copy the ledger at ``db`` into ``<db's dir>/backups/`` (blocking; run it in a thread from the
    loop), record it in the manifest, then keep the newest ``keep`` (None: prune nothing).

    ``now_ms``: the backup's time (ms UTC; default: the wall clock). Raises BackupError (no ledger, a
    bad reason or keep, an unreadable manifest), OSError (no room, no permission), sqlite3.Error.
    """
    if reason not in REASONS:
        raise BackupError(f"unknown backup reason {reason!r}; expected one of {', '.join(REASONS)}")
    if keep is not None and keep < 1:
        raise BackupError(f"keep must be at least 1, got {keep}")
    if not db.is_file():
        raise BackupError(f"no ledger at {db}: nothing to back up")
    ts = int(time.time() * 1000) if now_ms is None else now_ms
    folder = backups_dir(db.parent)
    folder.mkdir(parents=True, exist_ok=True)
    with _manifest_lock(folder):
        entries = read_manifest(folder)
        target = _free_name(folder, ts, reason)
        partial = folder / f".{target.name}.partial"
        try:
            version = _copy(db, partial)
            _fsync_file(partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        made = Backup(target, target.stat().st_size, sha256_file(target), reason, ts, version)
        entries.append(made)
        kept, dropped = _retain(entries, made, keep)
        _write_manifest(folder, kept)
        for old in dropped:  # after the manifest no longer lists them: a crash leaves a stray file only
            old.path.unlink(missing_ok=True)
    log.info("backup %s: %s (%d bytes, sha256 %s)", reason, target, made.size, made.sha256)
    return made


def _copy(db: Path, dest: Path) -> int:
    """The online backup from a read-only connection of its own; returns the copy's user_version."""
    src = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        src.execute("PRAGMA busy_timeout=5000")
        dst = sqlite3.connect(str(dest), isolation_level=None)
        try:
            src.backup(dst)  # pages=-1: one step, one consistent snapshot
            dst.execute("PRAGMA journal_mode=DELETE")  # a self-contained file: no -wal beside it
            return int(dst.execute("PRAGMA user_version").fetchone()[0])
        finally:
            dst.close()
    finally:
        src.close()


def _free_name(folder: Path, ts: int, reason: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ts // 1000)) + f"{ts % 1000:03d}Z"
    path = folder / f"amarktai-{stamp}-{reason}.sqlite3"
    n = 1
    while path.exists():
        path = folder / f"amarktai-{stamp}-{reason}-{n}.sqlite3"
        n += 1
    return path


def _retain(entries: list[Backup], made: Backup, keep: int | None) -> tuple[list[Backup], list[Backup]]:
    """(kept, dropped): ``made`` plus the newest ``keep - 1`` others, in time order."""
    if keep is None:
        return entries, []
    others = sorted((e for e in entries if e.path != made.path), key=lambda e: (e.ts, e.path.name))
    cut = max(0, len(others) - (keep - 1))
    return [*others[cut:], made], others[:cut]


# -- the manifest -------------------------------------------------------------------------------


def read_manifest(folder: Path) -> list[Backup]:
    """The manifest's entries in ``folder`` (a backups dir), oldest first; [] without a manifest.

    Raises BackupError for an unreadable manifest (named, with what was wrong).
    """
    path = folder / MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        entries = [
            Backup(
                folder / str(e["file"]),
                int(e["size"]),
                str(e["sha256"]),
                str(e["reason"]),
                int(e["ts"]),
                int(e["schema_version"]),
            )
            for e in doc["backups"]
        ]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"backup manifest {path} is unreadable ({type(exc).__name__}: {exc})") from None
    return sorted(entries, key=lambda e: (e.ts, e.path.name))


def _write_manifest(folder: Path, entries: list[Backup]) -> None:
    doc = {
        "format": 1,
        "backups": [
            {
                "file": e.path.name,
                "sha256": e.sha256,
                "size": e.size,
                "ts": e.ts,
                "reason": e.reason,
                "schema_version": e.schema_version,
            }
            for e in entries
        ],
    }
    tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / MANIFEST)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(folder)


@contextlib.contextmanager
def _manifest_lock(folder: Path) -> Iterator[None]:
    with open(folder / ".lock", "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- restore ------------------------------------------------------------------------------------


def verify_backup(data_dir: Path, file: Path) -> Backup:
    """Check ``file`` against the data dir's manifest (by file name): sha256 and size, then
    ``PRAGMA integrity_check`` and a schema this app can open. Returns its manifest entry.

    Raises RestoreRefused (one line: not in the manifest, checksum mismatch, failed integrity check,
    schema too new), OSError for an unreadable file.
    """
    entry = next((e for e in read_manifest(backups_dir(data_dir)) if e.path.name == file.name), None)
    if entry is None:
        raise RestoreRefused(
            f"{file} is not in the backup manifest {backups_dir(data_dir) / MANIFEST}: "
            "only a backup listed there can be restored"
        )
    _check_copy(file, entry)
    return entry


def _check_copy(file: Path, entry: Backup) -> None:
    digest = sha256_file(file)
    if digest != entry.sha256 or file.stat().st_size != entry.size:
        raise RestoreRefused(
            f"{file}: checksum mismatch (manifest sha256 {entry.sha256[:12]}..., file {digest[:12]}...): "
            "the copy is damaged"
        )
    try:
        conn = sqlite3.connect(file.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise RestoreRefused(f"{file}: integrity_check failed: {exc}") from None
    if rows != ["ok"]:
        more = f" (and {len(rows) - 1} more problems)" if len(rows) > 1 else ""
        raise RestoreRefused(f"{file}: integrity_check failed: {rows[0] if rows else 'no answer'}{more}")
    if version > SCHEMA_VERSION:
        raise RestoreRefused(
            f"{file}: schema v{version} is newer than this app (v{SCHEMA_VERSION}); upgrade amarktai-tui"
        )


def restore_backup(data_dir: Path, file: Path, *, keep: int | None) -> tuple[Backup, Backup | None]:
    """Replace the data dir's ledger with the backup ``file``: (its manifest entry, the
    ``pre_restore`` backup of the ledger it replaced, None when there was none).

    Under the engine lock: copies ``file`` to a temp file in the data dir, checks that copy
    (``verify_backup``'s checks), backs up the current ledger, removes its stale ``-wal``/``-shm``
    (so SQLite does not replay them onto the restored file), then ``os.replace``.
    Raises RestoreRefused (a check failed, an engine holds the data dir, the pre-restore backup
    failed), OSError.
    """
    entry = verify_backup(data_dir, file)
    data_dir.mkdir(parents=True, exist_ok=True)
    db = db_path(data_dir)
    try:
        with EngineLock(lock_path(data_dir)):
            tmp = data_dir / f".{db.name}.restore-{os.getpid()}"
            try:
                shutil.copyfile(file, tmp)
                _fsync_file(tmp)
                _check_copy(tmp, entry)  # the bytes that go in are the ones checked
                pre = None
                if db.exists():
                    try:
                        pre = create_backup(db, "pre_restore", keep=keep)
                    except (BackupError, OSError, sqlite3.Error) as exc:
                        raise RestoreRefused(
                            f"the backup of the current ledger failed, so nothing was restored: {exc}"
                        ) from None
                for suffix in ("-wal", "-shm", "-journal"):
                    db.with_name(db.name + suffix).unlink(missing_ok=True)
                os.replace(tmp, db)
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(data_dir)
    except EngineLockedError:
        raise RestoreRefused(f"an engine is running on {data_dir}: stop it first, then restore") from None
    log.info("ledger %s restored from %s (pre-restore copy: %s)", db, file, pre and pre.path)
    return entry, pre


# -- the hooks: before a migration, before a mode switch ------------------------------------------


def backup_before_migration(conn: sqlite3.Connection, found: int) -> None:
    """Back up the ledger ``conn`` has open before ``ledger.schema.migrate`` changes it from
    version ``found`` (> 0). Nothing for an in-memory or temporary database.

    Raises MigrationBackupError (one line) when the copy fails: the migration must not go on.
    """
    file = next((str(r[2]) for r in conn.execute("PRAGMA database_list") if r[1] == "main"), "")
    if not file:
        return
    try:
        create_backup(Path(file), "migration", keep=None)
    except (BackupError, OSError, sqlite3.Error) as exc:
        raise MigrationBackupError(
            f"ledger {file} (schema v{found}) was not migrated to v{SCHEMA_VERSION}: "
            f"the backup before the migration failed: {exc}"
        ) from None


def backup_before_switch(settings: Settings, data_dir: Path, target: TradingMode) -> str | None:
    """The backup before ``ops.mode.switch_mode`` records a switch (no engine runs). Returns the
    refusal (one line) when the copy failed on the way to live; a failure on the way to paper is
    logged and returns None, like a missing ledger (nothing to copy)."""
    db = db_path(data_dir)
    if not db.exists():
        return None
    try:
        create_backup(db, "mode_switch", keep=settings.backup.keep)
    except (BackupError, OSError, sqlite3.Error) as exc:
        if target is TradingMode.LIVE:
            return f"the backup before the switch failed: {exc}"
        log.error("backup before the switch to paper failed (switching anyway): %s", exc)
    return None


async def backup_on_engine(engine: TradingEngine, reason: str, *, keep: int | None = None) -> Backup | None:
    """Back up a running engine's ledger in a thread and publish ``BackupCreated`` on its bus.
    None when it failed: logged, never raised (it must not stop the engine or the switch)."""
    try:
        made = await asyncio.to_thread(create_backup, engine.store.path, reason, keep=keep)
    except (BackupError, OSError, sqlite3.Error) as exc:
        log.error("%s backup of %s failed: %s", reason, engine.store.path, exc)
        return None
    engine.bus.publish(BackupCreated(engine.now_ms, str(made.path), made.size, made.sha256, reason))
    return made


# -- the daily service ----------------------------------------------------------------------------


class Clock(Protocol):
    """Wall time for the daily service (tests pass their own)."""

    def now_ms(self) -> int: ...  # ms UTC

    async def sleep(self, seconds: float) -> None: ...


class WallClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def time_of_day_ms(hhmm: str) -> int:
    """``"03:00"`` -> ms after UTC midnight (the config validates the format)."""
    hours, minutes = hhmm.split(":")
    return (int(hours) * 60 + int(minutes)) * 60_000


async def start_daily_backups(
    engine: TradingEngine, settings: Settings, data_dir: Path, *, clock: Clock | None = None
) -> Callable[[], Awaitable[None]]:
    """Start the daily backup task (``[backup] daily_at``, UTC) on the running loop; returns its
    closer (cancels it). One ``daily`` backup per UTC day, made at the first look at the clock at or
    after ``daily_at`` (at start-up too, when today's is missing), then pruned to ``[backup] keep``."""
    task = asyncio.create_task(
        _daily_loop(engine, db_path(data_dir), time_of_day_ms(settings.backup.daily_at),
                    settings.backup.keep, clock or WallClock()),
        name="daily-backups",
    )  # fmt: skip

    async def close() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return close


async def _daily_loop(engine: TradingEngine, db: Path, at_ms: int, keep: int, clock: Clock) -> None:
    done_day = _last_daily_day(db)
    while True:
        try:
            now = clock.now_ms()
            day, into_day = divmod(now, DAY_MS)
            if into_day >= at_ms and done_day != day:
                made = await asyncio.to_thread(create_backup, db, "daily", keep=keep, now_ms=now)
                done_day = day
                engine.bus.publish(
                    BackupCreated(engine.now_ms, str(made.path), made.size, made.sha256, "daily")
                )
                continue
            due = day * DAY_MS + at_ms + (DAY_MS if into_day >= at_ms else 0)
            await clock.sleep(min((due - now) / 1000, MAX_SLEEP_S))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let the service die or reach the engine
            log.error("daily backup of %s failed (trying again in %.0f s): %s", db, RETRY_S, exc)
            await clock.sleep(RETRY_S)


def _last_daily_day(db: Path) -> int | None:
    """The UTC day (days since the epoch) of the newest daily backup in the manifest."""
    try:
        days = [e.ts // DAY_MS for e in read_manifest(backups_dir(db.parent)) if e.reason == "daily"]
    except BackupError:
        return None
    return max(days, default=None)
