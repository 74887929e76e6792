"""The SQL of ``bot_adjustments`` (schema v7): append a row, read rows back as ``Adjustment``.

Rows are appended through the engine's writer (``LedgerStore``: its one connection and its lock,
one INSERT in autocommit, so one row is one transaction) or, with no engine running, through a
``LedgerStore`` the CLI opened under the engine lock. The table is append-only (triggers reject
UPDATE and DELETE): a proposal is answered by a new row (``accepted``/``rejected``) naming it in
``ref_id``, an applied change is undone by a ``reverted`` row naming it.

Reads use a short read-only ``sqlite3`` connection of their own (``connect``), from the engine's
process (the TUI, the control socket) or a CLI process alike; a ledger older than v7 reads as empty.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.ledger.store import LedgerStore

STATUSES = ("applied", "proposed", "accepted", "rejected", "reverted", "refused")
TOOK_EFFECT = ("applied", "accepted")
"""Statuses of a row whose change is in force until reverted (``revert`` takes these)."""


@dataclass(frozen=True, slots=True)
class Adjustment:
    """One row of ``bot_adjustments``: ``ts`` ms UTC (engine time), the bot's id and name, the source
    process, the field, ``before``/``after`` as decoded JSON (Decimals as strings; params a dict; a
    risk_mode value ``{"risk_mode", "size_multiplier"}``; a state its name), why, ``status`` (one of
    ``STATUSES``), who wrote the row (``actor``: engine | autopilot | user | cli | ai) and ``ref_id``,
    the row it answers (the proposal accepted/rejected, the change reverted) or None."""

    id: int
    ts: int
    bot_id: int
    bot: str
    source: str
    field: str
    before: Any
    after: Any
    reason: str
    status: str
    actor: str
    ref_id: int | None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: ``{"id", "ts", "bot_id", "bot", "source", "field", "before", "after", "reason",
        "status", "actor", "ref_id"}``."""
        return {
            "id": self.id,
            "ts": self.ts,
            "bot_id": self.bot_id,
            "bot": self.bot,
            "source": self.source,
            "field": self.field,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
            "status": self.status,
            "actor": self.actor,
            "ref_id": self.ref_id,
        }


def withdrawn(a: Adjustment) -> bool:
    """Whether ``a`` is a proposal taken back by the process that made it (``Adjuster.withdraw``:
    a ``rejected`` row by the engine whose reason starts ``withdrawn #``), not a user's rejection."""
    return a.status == "rejected" and a.actor == "engine" and a.reason.startswith(f"withdrawn #{a.ref_id}:")


def _plain(v: object) -> object:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, Enum):
        return v.value
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def dumps(value: Any) -> str:
    """``value`` as the JSON text of a row (Decimals as strings, enums as their values, keys sorted)."""
    return json.dumps(value, default=_plain, sort_keys=True)


@dataclass(frozen=True, slots=True)
class NewRow:
    """A row to append; ``before``/``after`` are JSON texts (``dumps``)."""

    ts: int
    bot_id: int
    source: str
    field: str
    before: str
    after: str
    reason: str
    status: str
    actor: str
    ref_id: int | None = None


async def insert(store: LedgerStore, row: NewRow) -> int:
    """Append ``row`` through ``store``'s writer connection; returns its id. Raises sqlite3.Error
    (e.g. an unknown bot id: foreign key) and ValueError for an unknown status."""
    if row.status not in STATUSES:
        raise ValueError(f"unknown adjustment status {row.status!r}")
    return await store.append(
        "bot_adjustments",
        {
            "ts": row.ts, "bot_id": row.bot_id, "source": row.source, "field": row.field,
            "before_json": row.before, "after_json": row.after, "reason": row.reason,
            "status": row.status, "actor": row.actor, "ref_id": row.ref_id,
        },
    )  # fmt: skip


# -- reads --------------------------------------------------------------------------------------

_SELECT = (
    "SELECT a.id, a.ts, a.bot_id, b.name, a.source, a.field, a.before_json, a.after_json, a.reason,"
    " a.status, a.actor, a.ref_id FROM bot_adjustments a JOIN bots b ON b.id = a.bot_id"
)


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection to the ledger at ``path``. Raises FileNotFoundError when there is none."""
    return connect_readonly(str(path))


def _has_table(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'bot_adjustments'"
    ).fetchone()
    return row is not None


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _row(r: sqlite3.Row | tuple[Any, ...]) -> Adjustment:
    return Adjustment(
        int(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4]), str(r[5]), _loads(r[6]), _loads(r[7]),
        str(r[8]), str(r[9]), str(r[10]), None if r[11] is None else int(r[11]),
    )  # fmt: skip


def get(conn: sqlite3.Connection, adjustment_id: int) -> Adjustment | None:
    """The row with this id, or None."""
    if not _has_table(conn):
        return None
    r = conn.execute(f"{_SELECT} WHERE a.id = ?", (adjustment_id,)).fetchone()
    return None if r is None else _row(r)


def history(
    conn: sqlite3.Connection, *, bot_id: int | None = None, status: str | None = None, limit: int = 100
) -> list[Adjustment]:
    """Rows newest first (by id), optionally of one bot and/or one status; at most ``limit`` (>= 0)."""
    if not _has_table(conn):
        return []
    where: list[str] = []
    args: list[object] = []
    if bot_id is not None:
        where.append("a.bot_id = ?")
        args.append(bot_id)
    if status is not None:
        where.append("a.status = ?")
        args.append(status)
    sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY a.id DESC LIMIT ?"
    return [_row(r) for r in conn.execute(sql, (*args, max(0, limit)))]


def pending(conn: sqlite3.Connection, *, bot_id: int | None = None) -> list[Adjustment]:
    """Proposals not yet accepted or rejected, oldest first."""
    if not _has_table(conn):
        return []
    sql = (  # NOT IN: SQLite builds the answered set once (no index on ref_id)
        f"{_SELECT} WHERE a.status = 'proposed' AND a.id NOT IN (SELECT r.ref_id FROM bot_adjustments r"
        " WHERE r.status IN ('accepted', 'rejected') AND r.ref_id IS NOT NULL)"
    )
    args: tuple[Any, ...] = ()
    if bot_id is not None:
        sql += " AND a.bot_id = ?"
        args = (bot_id,)
    return [_row(r) for r in conn.execute(sql + " ORDER BY a.id", args)]


def answers(conn: sqlite3.Connection, adjustment_id: int) -> list[Adjustment]:
    """The rows that name ``adjustment_id`` in ``ref_id`` (its acceptance, rejection or reversion), oldest first."""
    if not _has_table(conn):
        return []
    return [_row(r) for r in conn.execute(f"{_SELECT} WHERE a.ref_id = ? ORDER BY a.id", (adjustment_id,))]
