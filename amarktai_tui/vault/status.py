"""Key status per provider in the ledger's ``api_keys`` table (status and times only, never a secret).

Writes go through a short-lived ``sqlite3`` connection to ``<data-dir>/amarktai.sqlite3``
(created and migrated when missing); the engine may be running and writing the same file
(WAL, busy timeout), and a key status row is a single statement. Times are ms since the
epoch, UTC.

Statuses: ``not_configured`` (nothing saved), ``saved_untested`` (after ``keys set``),
``test_ok`` / ``test_failed`` with a one-line reason (after ``keys test``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from amarktai_tui.ledger.schema import configure, migrate
from amarktai_tui.locations import db_path

Status = Literal["not_configured", "saved_untested", "test_ok", "test_failed"]
STATUSES: tuple[Status, ...] = ("not_configured", "saved_untested", "test_ok", "test_failed")


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """One provider's row: status, times (ms UTC, None = never), last failure reason,
    ``can_withdraw`` (True/False as the exchange said; None = unknown)."""

    provider: str
    status: Status = "not_configured"
    saved_ts: int | None = None
    tested_ts: int | None = None
    reason: str = ""
    can_withdraw: bool | None = None


def now_ms() -> int:
    """Wall clock, ms since the epoch UTC."""
    return int(time.time() * 1000)


@contextmanager
def connect(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """A short-lived connection to the ledger (created and migrated if needed), committed on exit.

    Raises SchemaTooNewError for a ledger written by a newer app, sqlite3.Error for an
    unusable file.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(db_path(data_dir), timeout=10)) as conn:
        configure(conn)
        migrate(conn)
        with conn:
            yield conn


def read_all(data_dir: Path) -> dict[str, KeyStatus]:
    """Every stored row by provider; {} when the ledger does not exist yet (nothing created).

    Raises sqlite3.Error for an unreadable file.
    """
    path = db_path(data_dir)
    if not path.exists():
        return {}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
        conn.execute("PRAGMA busy_timeout=5000")
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='api_keys'"
        ).fetchone()
        if not has_table:
            return {}
        rows = conn.execute(
            "SELECT provider, status, saved_ts, tested_ts, reason, can_withdraw FROM api_keys"
        ).fetchall()
    return {r[0]: KeyStatus(r[0], r[1], r[2], r[3], r[4], None if r[5] is None else bool(r[5])) for r in rows}


def mark_saved(data_dir: Path, provider: str, ts: int) -> None:
    """After ``keys set``: ``saved_untested``, saved at ``ts``; the old test result is cleared."""
    _upsert(data_dir, KeyStatus(provider, "saved_untested", saved_ts=ts), ts)


def mark_tested(
    data_dir: Path, provider: str, *, ok: bool, reason: str, can_withdraw: bool | None, ts: int
) -> KeyStatus:
    """After ``keys test``: ``test_ok`` or ``test_failed`` with ``reason`` (one line, no secret)."""
    status: Status = "test_ok" if ok else "test_failed"
    reason = "" if ok else reason
    withdraw = None if can_withdraw is None else int(can_withdraw)
    with connect(data_dir) as conn:
        conn.execute(
            "INSERT INTO api_keys (provider, status, tested_ts, reason, can_withdraw, updated_ts)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(provider) DO UPDATE SET status=excluded.status, tested_ts=excluded.tested_ts,"
            " reason=excluded.reason, can_withdraw=excluded.can_withdraw, updated_ts=excluded.updated_ts",
            (provider, status, ts, reason, withdraw, ts),
        )
        saved_ts = conn.execute("SELECT saved_ts FROM api_keys WHERE provider = ?", (provider,)).fetchone()[0]
    return KeyStatus(provider, status, saved_ts, ts, reason, can_withdraw)


def mark_deleted(data_dir: Path, provider: str, ts: int) -> None:
    """After ``keys delete``: ``not_configured``, times and results cleared."""
    _upsert(data_dir, KeyStatus(provider), ts)


def _upsert(data_dir: Path, row: KeyStatus, ts: int) -> None:
    with connect(data_dir) as conn:
        conn.execute(
            "INSERT INTO api_keys (provider, status, saved_ts, tested_ts, reason, can_withdraw, updated_ts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(provider) DO UPDATE SET status=excluded.status, saved_ts=excluded.saved_ts,"
            " tested_ts=excluded.tested_ts, reason=excluded.reason,"
            " can_withdraw=excluded.can_withdraw, updated_ts=excluded.updated_ts",
            (
                row.provider,
                row.status,
                row.saved_ts,
                row.tested_ts,
                row.reason,
                None if row.can_withdraw is None else int(row.can_withdraw),
                ts,
            ),
        )
