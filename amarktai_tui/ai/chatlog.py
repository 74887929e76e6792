"""The AI console's chat history in the ledger's ``chat_messages`` table (schema v5).

One row per message: ``ts`` (ms since the epoch, UTC), ``conversation`` (a number; ``/clear``
starts the next one, nothing is deleted), ``role`` (user, assistant, tool, system), ``content``,
``model`` (the model that answered; ``''`` for the user, the commands and the console's notes)
and ``tool_call`` (JSON: an assistant row's tool calls ``[{"id", "name", "arguments"}]``, a tool
row's call ``{"id", "name", "arguments"}``; ``''`` otherwise).

What the pane shows (``conversation``, ``search``) is the user's lines, the assistant's texts
and the console's notes (role ``system``: proposals, confirmations, failures); tool results and
text-less tool-call rows are kept for the record only.

As ``ai.budget`` does for ``ai_usage``: writes are short ``sqlite3`` transactions (WAL, busy
timeout), run in a thread by the caller; reads open the file read-only and return nothing when
the ledger or the table does not exist yet. Every function may raise sqlite3.Error.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amarktai_tui.ledger.schema import configure, migrate
from amarktai_tui.locations import db_path

ROLES = ("user", "assistant", "tool", "system")
_SHOWN = "(role IN ('user', 'system') OR (role = 'assistant' AND content != ''))"


@dataclass(frozen=True)
class ChatMessage:
    """One message of the chat as the pane shows it: ``ts`` ms UTC, ``role`` user | assistant |
    system (the console's notes), ``model`` the model that answered (``''`` for the others)."""

    ts: int
    conversation: int
    role: str
    content: str
    model: str


@dataclass(frozen=True, slots=True)
class Row:
    """A row to write: a ChatMessage plus its ``tool_call`` JSON (``''`` when none)."""

    message: ChatMessage
    tool_call: str = ""


def shown(role: str, content: str) -> bool:
    """Whether a message belongs in the pane's history (see the module docstring)."""
    return role in ("user", "system") or (role == "assistant" and content != "")


def insert(data_dir: Path, rows: Iterable[Row]) -> None:
    """Append ``rows`` in one transaction (blocking). Raises ValueError for an unknown role."""
    rows = list(rows)
    if not rows:
        return
    for r in rows:
        if r.message.role not in ROLES:
            raise ValueError(f"unknown chat role {r.message.role!r}")
    data_dir.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(db_path(data_dir), timeout=10)) as conn:
        configure(conn)
        migrate(conn)
        with conn:
            conn.executemany(
                "INSERT INTO chat_messages (ts, conversation, role, content, model, tool_call)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (m.ts, m.conversation, m.role, m.content, m.model, r.tool_call)
                    for r in rows
                    for m in (r.message,)
                ],
            )


def _reader(data_dir: Path) -> sqlite3.Connection | None:
    path = db_path(data_dir)
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.execute("PRAGMA busy_timeout=5000")
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='chat_messages'").fetchone():
        conn.close()
        return None
    return conn


DAY_MS = 86_400_000
_COLUMNS = "SELECT ts, conversation, role, content, model FROM chat_messages"


def _rows(data_dir: Path, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
    """``sql`` on a read-only connection; [] when the ledger or the table does not exist yet."""
    conn = _reader(data_dir)
    if conn is None:
        return []
    with closing(conn):
        return conn.execute(sql, params).fetchall()


def _messages(rows: Iterable[tuple[Any, ...]]) -> list[ChatMessage]:
    return [ChatMessage(ts, conv, role, content, model) for ts, conv, role, content, model in rows]


def latest(data_dir: Path) -> tuple[int, int] | None:
    """(the highest conversation number, the ts of its newest row), or None when there is none."""
    rows = _rows(
        data_dir,
        "SELECT conversation, MAX(ts) FROM chat_messages"
        " WHERE conversation = (SELECT MAX(conversation) FROM chat_messages)",
        (),
    )
    return None if not rows or rows[0][0] is None else (int(rows[0][0]), int(rows[0][1]))


def conversation(data_dir: Path, number: int, limit: int | None = None) -> list[ChatMessage]:
    """The shown messages of conversation ``number``, oldest first (the last ``limit`` if given)."""
    rows = _rows(
        data_dir,
        f"{_COLUMNS} WHERE conversation = ? AND {_SHOWN} ORDER BY id DESC LIMIT ?",
        (number, -1 if limit is None else max(0, limit)),
    )
    return _messages(reversed(rows))


def search(data_dir: Path, text: str, limit: int = 50) -> list[ChatMessage]:
    """Shown messages of every conversation whose content contains ``text`` (case-insensitive for
    ASCII letters), newest first, at most ``limit``. An empty ``text`` finds nothing."""
    if not text.strip():
        return []
    return _messages(
        _rows(
            data_dir,
            f"{_COLUMNS} WHERE instr(lower(content), lower(?)) > 0 AND {_SHOWN} ORDER BY id DESC LIMIT ?",
            (text, max(0, limit)),
        )
    )


def days(data_dir: Path, limit: int = 14) -> list[tuple[int, int]]:
    """The UTC days that have shown messages, newest first, at most ``limit``: ``(day start ms UTC,
    number of shown messages)``."""
    rows = _rows(
        data_dir,
        f"SELECT (ts / {DAY_MS}) * {DAY_MS} AS day, COUNT(*) FROM chat_messages"
        f" WHERE {_SHOWN} GROUP BY day ORDER BY day DESC LIMIT ?",
        (max(0, limit),),
    )
    return [(int(d), int(n)) for d, n in rows]


def on_day(data_dir: Path, day_ms: int, limit: int = 200) -> list[ChatMessage]:
    """The shown messages of the UTC day starting at ``day_ms``, oldest first (the first ``limit``)."""
    return _messages(
        _rows(
            data_dir,
            f"{_COLUMNS} WHERE ts >= ? AND ts < ? AND {_SHOWN} ORDER BY id LIMIT ?",
            (day_ms, day_ms + DAY_MS, max(0, limit)),
        )
    )
