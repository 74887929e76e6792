"""SQL of the audit log (``audit_log``, schema v6): write, query, count, prune.

Writers (the recorder's worker thread, a CLI process under the engine lock, the engine process when
no recorder runs) use ``connect``: autocommit, busy timeout 5 s, one ``BEGIN IMMEDIATE`` transaction
per ``insert``. Readers use ``ledger.schema.connect_readonly`` (works while an engine writes); a
ledger written by an older app (no ``audit_log`` table yet) reads as empty. Only ``audit_log`` is
ever pruned here; the ledger's tables are never touched.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amarktai_tui.ledger.schema import configure, migrate
from amarktai_tui.ops.audit import AuditEntry, Severity

_COLUMNS = "id, ts, type, severity, actor, bot_id, bot, details"


def connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """A writer connection to the ledger at ``path`` (created and migrated when needed).

    ``check_same_thread=False`` for a connection used from worker threads one call at a time.
    Raises sqlite3.Error, ledger.schema.SchemaTooNewError.
    """
    conn = sqlite3.connect(str(path), timeout=5, isolation_level=None, check_same_thread=check_same_thread)
    try:
        configure(conn)
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def insert(conn: sqlite3.Connection, entries: Sequence[AuditEntry]) -> int:
    """Write ``entries`` in one transaction (all or none); returns how many. Raises sqlite3.Error."""
    if not entries:
        return 0
    rows = [
        (
            e.ts,
            e.type,
            e.severity.value,
            e.actor,
            e.bot_id,
            e.bot,
            json.dumps(e.details, sort_keys=True, default=str),
        )
        for e in entries
    ]
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT INTO audit_log (ts, type, severity, actor, bot_id, bot, details) VALUES (?,?,?,?,?,?,?)",
            rows,
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(rows)


def write(path: Path, entries: Sequence[AuditEntry]) -> int:
    """``insert`` through a short-lived connection of its own. Raises sqlite3.Error."""
    conn = connect(path)
    try:
        return insert(conn, entries)
    finally:
        conn.close()


def prune(conn: sqlite3.Connection, before_ms: int) -> int:
    """Delete the entries with ``ts < before_ms`` (ms UTC); returns how many. Raises sqlite3.Error."""
    cur = conn.execute("DELETE FROM audit_log WHERE ts < ?", (before_ms,))
    return int(cur.rowcount)


def bots_without_entry(conn: sqlite3.Connection, since_ms: int) -> list[tuple[int, str, int]]:
    """``(id, name, created_ts)`` of the bots created at or after ``since_ms`` that have no
    ``bot_created`` entry, oldest first."""
    rows = conn.execute(
        "SELECT id, name, created_ts FROM bots WHERE created_ts >= ? AND id NOT IN"
        " (SELECT bot_id FROM audit_log WHERE type = 'bot_created' AND bot_id IS NOT NULL) ORDER BY id",
        (since_ms,),
    ).fetchall()
    return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditRow:
    """A stored entry and its row id (ids grow with the writes)."""

    id: int
    entry: AuditEntry

    def to_json(self) -> dict[str, Any]:
        """``AuditEntry.to_json`` with ``"id"`` first."""
        return {"id": self.id, **self.entry.to_json()}


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which entries: ``since`` <= ts < ``until`` (ms UTC; None = open), any of ``types`` and of
    ``severities`` (empty = all), ``bot`` a name or an id (as text); ``limit`` 0 = all."""

    since: int | None = None
    until: int | None = None
    types: tuple[str, ...] = ()
    severities: tuple[Severity, ...] = ()
    bot: str | None = None
    limit: int = 0


def has_table(conn: sqlite3.Connection) -> bool:
    """False for a ledger written by an app older than the audit log (schema < v6)."""
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='audit_log'").fetchone()
        is not None
    )


def _where(f: AuditFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if f.since is not None:
        clauses.append("ts >= ?")
        params.append(f.since)
    if f.until is not None:
        clauses.append("ts < ?")
        params.append(f.until)
    if f.types:
        clauses.append(f"type IN ({','.join('?' * len(f.types))})")
        params.extend(f.types)
    if f.severities:
        clauses.append(f"severity IN ({','.join('?' * len(f.severities))})")
        params.extend(s.value for s in f.severities)
    if f.bot is not None:
        if f.bot.isdigit():
            clauses.append("(bot = ? OR bot_id = ?)")
            params.extend((f.bot, int(f.bot)))
        else:
            clauses.append("bot = ?")
            params.append(f.bot)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def query(conn: sqlite3.Connection, f: AuditFilter, *, newest_first: bool = True) -> list[AuditRow]:
    """The entries matching ``f``, newest first (by time, then id) or oldest first; with a limit,
    the newest ``limit`` of them either way. Raises sqlite3.Error."""
    if not has_table(conn):
        return []
    where, params = _where(f)
    sql = f"SELECT {_COLUMNS} FROM audit_log{where} ORDER BY ts DESC, id DESC"
    if f.limit:
        sql += " LIMIT ?"
        params.append(f.limit)
    rows = [_row(r) for r in conn.execute(sql, params)]
    return rows if newest_first else rows[::-1]


def iter_rows(conn: sqlite3.Connection, f: AuditFilter) -> Iterable[AuditRow]:
    """The entries matching ``f`` oldest first, read lazily (a CSV of a long range). Raises sqlite3.Error."""
    if not has_table(conn):
        return
    where, params = _where(f)
    for r in conn.execute(f"SELECT {_COLUMNS} FROM audit_log{where} ORDER BY ts, id", params):
        yield _row(r)


def counts(conn: sqlite3.Connection, f: AuditFilter) -> dict[tuple[str, str], int]:
    """``{(type, severity): n}`` of the entries matching ``f``. Raises sqlite3.Error."""
    if not has_table(conn):
        return {}
    where, params = _where(f)
    sql = f"SELECT type, severity, COUNT(*) FROM audit_log{where} GROUP BY type, severity"
    return {(str(r[0]), str(r[1])): int(r[2]) for r in conn.execute(sql, params)}


def _row(r: Sequence[Any]) -> AuditRow:
    try:
        details = json.loads(r[7]) if r[7] else {}
    except ValueError:
        details = {"raw": r[7]}
    if not isinstance(details, dict):
        details = {"value": details}
    sev = Severity(r[3]) if r[3] in tuple(Severity) else Severity.INFO
    return AuditRow(int(r[0]), AuditEntry(int(r[1]), str(r[2]), sev, str(r[4]), r[5], r[6], details))
