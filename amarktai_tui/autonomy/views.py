"""Read-only views of the autonomy records for screens: one read of the ledger gives the pending
proposals, the recent change history, the quarantines, the latest evolution run and a member's
lineage (``read_view``); ``change_text`` says a change's before -> after in a few words.

Everything is read through one short read-only connection (``ledger.schema.connect_readonly``),
reusing ``autonomy.adjust_store`` and ``autonomy.evolution_store``; a ledger older than schema v7
reads as empty. ``read_view`` blocks (run it in a thread) and never raises for a missing or
unreadable ledger: ``AutonomyView.error`` says what was wrong.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from amarktai_tui.autonomy import adjust_store, evolution_store
from amarktai_tui.autonomy.adjust_store import TOOK_EFFECT, Adjustment
from amarktai_tui.autonomy.bounds import NEW_BOT_FIELDS
from amarktai_tui.autonomy.evolution_store import GenerationRow, LineageNode, RunSummary
from amarktai_tui.ledger.schema import connect_readonly

__all__ = [
    "AutonomyView",
    "HistoryEntry",
    "QuarantineRow",
    "change_text",
    "read_quarantines",
    "read_view",
    "value_text",
]

HISTORY_LIMIT = 100
QUARANTINE_LIMIT = 50
LINEAGE_LIMIT = 200
"""Lineage members read at most (breadth first from the member: the nearest ancestors)."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A decided row of ``bot_adjustments`` (anything but a pending ``proposed``) and, for an
    applied or accepted change, the id of the ``reverted`` row that undid it (None: in force)."""

    row: Adjustment
    reverted_by: int | None = None

    @property
    def revertible(self) -> bool:
        """An applied or accepted change still in force (a ``replace`` cannot be reverted)."""
        return (
            self.row.status in TOOK_EFFECT
            and self.reverted_by is None
            and self.row.field not in NEW_BOT_FIELDS
        )


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    """A ``quarantines`` row with its bot's name: ``ts``/``until_ts`` ms UTC (engine time),
    ``level`` 1-3 a pause until ``until_ts``, 4 (``until_ts`` None) retired."""

    id: int
    ts: int
    bot_id: int
    bot: str
    level: int
    rule: str
    reason: str
    until_ts: int | None


@dataclass(frozen=True, slots=True)
class AutonomyView:
    """One read: ``pending`` proposals (oldest first), ``history`` (newest first, no pending
    proposals), ``quarantines`` (newest first), the latest evolution ``run`` (None: none yet) with
    its ``generations`` (oldest first), and the ``lineage`` of member ``lineage_of`` (breadth first,
    the member itself first; empty when it is unknown or None). ``error``: why nothing was read."""

    pending: list[Adjustment] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    quarantines: list[QuarantineRow] = field(default_factory=list)
    run: RunSummary | None = None
    generations: list[GenerationRow] = field(default_factory=list)
    lineage_of: str | None = None
    lineage: list[LineageNode] = field(default_factory=list)
    error: str | None = None


def read_quarantines(conn: sqlite3.Connection, limit: int = QUARANTINE_LIMIT) -> list[QuarantineRow]:
    """The newest ``limit`` quarantines, newest first (empty before schema v7)."""
    try:
        rows = conn.execute(
            "SELECT q.id, q.ts, q.bot_id, b.name, q.level, q.rule, q.reason, q.until_ts FROM quarantines q"
            " JOIN bots b ON b.id = q.bot_id ORDER BY q.id DESC LIMIT ?",
            (max(0, limit),),
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    return [
        QuarantineRow(
            int(r[0]),
            int(r[1]),
            int(r[2]),
            str(r[3]),
            int(r[4]),
            str(r[5]),
            str(r[6]),
            None if r[7] is None else int(r[7]),
        )
        for r in rows
    ]


def _history(conn: sqlite3.Connection, limit: int) -> list[HistoryEntry]:
    # a revert is newer than what it undoes: among the newest rows, a row's revert is there too
    rows = [a for a in adjust_store.history(conn, limit=2 * limit) if a.status != "proposed"][:limit]
    reverted = {a.ref_id: a.id for a in rows if a.status == "reverted" and a.ref_id is not None}
    return [HistoryEntry(a, reverted.get(a.id)) for a in rows]


def read_view(
    db: Path,
    *,
    lineage_of: str | None = None,
    history_limit: int = HISTORY_LIMIT,
    quarantine_limit: int = QUARANTINE_LIMIT,
) -> AutonomyView:
    """Blocking: everything the Autonomy tab shows from the ledger at ``db`` (module doc).
    ``lineage_of``: an evolution member id (a bot's ``dna_id``); None: the latest run's best
    member. Never raises for a missing or unreadable ledger (``error`` says why)."""
    try:
        conn = connect_readonly(str(db))
    except (FileNotFoundError, sqlite3.Error) as exc:
        return AutonomyView(error=f"no ledger yet ({exc})")
    try:
        runs = evolution_store.runs(conn)
        run = runs[-1] if runs else None
        member = lineage_of or (run.best_member if run is not None else None)
        return AutonomyView(
            pending=adjust_store.pending(conn),
            history=_history(conn, history_limit),
            quarantines=read_quarantines(conn, quarantine_limit),
            run=run,
            generations=evolution_store.generations(conn, run.run) if run is not None else [],
            lineage_of=member,
            lineage=evolution_store.lineage(conn, member, LINEAGE_LIMIT) if member else [],
        )
    except (sqlite3.Error, ValueError) as exc:  # ValueError: a stored value that does not parse
        return AutonomyView(error=f"ledger not read: {exc}")
    finally:
        conn.close()


# -- words ----------------------------------------------------------------------------------------


def _num(value: Any) -> str:
    """A decimal figure as written, without trailing zeros (``"1.20"`` -> ``"1.2"``)."""
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if not d.is_finite():
        return str(d)
    text = f"{d.normalize():f}"
    return text


def _pct(value: Any) -> str:
    """A fraction as a percent: ``"0.025"`` -> ``"2.5%"``; None -> ``"off"``."""
    if value is None:
        return "off"
    try:
        return f"{_num(Decimal(str(value)) * 100)}%"
    except (InvalidOperation, ValueError):
        return str(value)


def value_text(field_name: str, value: Any) -> str:
    """One value of ``field_name`` as a row stores it (decoded JSON), in a few words:
    size_multiplier ``x1.2``, stop_loss/take_profit ``2.5%`` (None ``off``), capital ``1,200.00``,
    risk_mode ``balanced x1``, params ``fast=9 slow=30``, replace ``new bot NAME``."""
    if value is None:
        return "off" if field_name in ("stop_loss", "take_profit") else "-"
    if field_name == "size_multiplier":
        return f"x{_num(value)}"
    if field_name in ("stop_loss", "take_profit"):
        return _pct(value)
    if field_name == "capital":
        try:
            return f"{Decimal(str(value)):,.2f}"
        except (InvalidOperation, ValueError):
            return str(value)
    if field_name == "risk_mode" and isinstance(value, Mapping):
        return f"{value.get('risk_mode')} x{_num(value.get('size_multiplier'))}"
    if field_name in NEW_BOT_FIELDS and isinstance(value, Mapping):
        what = " ".join(str(value[k]) for k in ("strategy", "pair") if value.get(k))
        name = value.get("name")
        return f"new bot {name} ({what})" if name else f"new bot ({what})"
    if isinstance(value, Mapping):
        return " ".join(f"{k}={_num(v)}" for k, v in sorted(value.items()))
    return _num(value) if isinstance(value, int | float | Decimal) else str(value)


def change_text(field_name: str, before: Any, after: Any) -> str:
    """``before -> after`` of a row in a few words (``value_text``); for params and risk_mode only
    the parts that change: ``fast 12->9, slow 26->30``; ``balanced->conservative, size x1->x0.8``."""
    if field_name == "params" and isinstance(after, Mapping):
        old = before if isinstance(before, Mapping) else {}
        parts = [
            f"{k} {_num(old[k]) if k in old else '-'}→{_num(v)}"
            for k, v in sorted(after.items())
            if k not in old or old[k] != v
        ]
        return ", ".join(parts) or "no change"
    if field_name == "risk_mode" and isinstance(before, Mapping) and isinstance(after, Mapping):
        parts = []
        if before.get("risk_mode") != after.get("risk_mode"):
            parts.append(f"{before.get('risk_mode')}→{after.get('risk_mode')}")
        if _num(before.get("size_multiplier")) != _num(after.get("size_multiplier")):
            parts.append(f"size x{_num(before.get('size_multiplier'))}→x{_num(after.get('size_multiplier'))}")
        return ", ".join(parts) or "no change"
    if field_name in NEW_BOT_FIELDS:
        return value_text(field_name, after)
    return f"{value_text(field_name, before)} → {value_text(field_name, after)}"
