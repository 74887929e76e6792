"""The daily token budget of the AI console, kept in the ledger's ``ai_usage`` table (schema v5).

Every model call's usage is one row: ``ts`` (ms since the epoch, UTC), ``day`` (the UTC date,
``YYYY-MM-DD``: the budget's day, so it resets at 00:00 UTC), ``model``, ``prompt_tokens``,
``completion_tokens``. Today's use is the sum of prompt + completion tokens over today's rows.

The engine is the ledger's writer for the trading tables; a usage row is a single INSERT through
a short-lived ``sqlite3`` connection (WAL, busy timeout), as ``keys set`` writes its status row
(``vault.status``). The blocking calls run in a thread (``asyncio.to_thread``), so the event loop
of the engine and the TUI never waits on the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from amarktai_tui.ai.errors import BudgetExceeded
from amarktai_tui.ledger.schema import configure, migrate
from amarktai_tui.locations import db_path


def now_ms() -> int:
    """Wall clock, ms since the epoch UTC."""
    return int(time.time() * 1000)


def utc_day(ts_ms: int) -> str:
    """The UTC date of ``ts_ms`` (ms since the epoch) as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


@contextmanager
def _connect(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """A short-lived write connection to the ledger (created and migrated if needed), committed on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(db_path(data_dir), timeout=10)) as conn:
        configure(conn)
        migrate(conn)
        with conn:
            yield conn


def record_usage(
    data_dir: Path, *, model: str, prompt_tokens: int, completion_tokens: int, ts_ms: int
) -> None:
    """Append one ``ai_usage`` row (blocking). Token counts < 0 are stored as 0.

    Raises SchemaTooNewError, sqlite3.Error.
    """
    with _connect(data_dir) as conn:
        conn.execute(
            "INSERT INTO ai_usage (ts, day, model, prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?)",
            (ts_ms, utc_day(ts_ms), model, max(0, prompt_tokens), max(0, completion_tokens)),
        )


def tokens_used(data_dir: Path, day: str) -> int:
    """Prompt + completion tokens recorded for UTC ``day`` (blocking, read-only).

    0 when the ledger or the table does not exist yet (nothing is created). Raises sqlite3.Error.
    """
    path = db_path(data_dir)
    if not path.exists():
        return 0
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
        conn.execute("PRAGMA busy_timeout=5000")
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='ai_usage'").fetchone():
            return 0
        row = conn.execute(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM ai_usage WHERE day = ?", (day,)
        ).fetchone()
    return int(row[0])


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """What the chat pane shows: ``used`` tokens of ``limit`` on UTC ``day`` (``limit`` 0 = unlimited)."""

    day: str
    used: int
    limit: int

    @property
    def remaining(self) -> int | None:
        """Tokens left today (never below 0); None when the budget is unlimited."""
        return None if self.limit == 0 else max(0, self.limit - self.used)

    @property
    def exceeded(self) -> bool:
        """True once ``used`` reaches ``limit`` (never for an unlimited budget)."""
        return self.limit > 0 and self.used >= self.limit

    def message(self) -> str:
        """One line for the user: ``AI token budget for 2024-05-01 (UTC) used up: ...``."""
        if self.exceeded:
            return (
                f"AI token budget for {self.day} (UTC) used up: {self.used:,} of {self.limit:,} tokens;"
                " commands only until 00:00 UTC"
            )
        if self.limit == 0:
            return f"AI tokens used on {self.day} (UTC): {self.used:,} (no daily budget)"
        return f"AI tokens used on {self.day} (UTC): {self.used:,} of {self.limit:,}"


class TokenBudget:
    """The daily budget of ``daily_tokens`` prompt + completion tokens (0 = unlimited) in
    ``data_dir``'s ledger. ``clock``: ms since the epoch UTC (tests move it across midnight).

    Every method may raise sqlite3.Error / SchemaTooNewError (the ledger).
    """

    def __init__(self, data_dir: Path, daily_tokens: int, *, clock: Callable[[], int] = now_ms) -> None:
        if daily_tokens < 0:
            raise ValueError(f"daily_tokens must be >= 0, got {daily_tokens}")
        self.data_dir = data_dir
        self.daily_tokens = daily_tokens
        self.clock = clock

    async def status(self) -> BudgetStatus:
        """Today's use and limit, read once."""
        day = utc_day(self.clock())
        used = await asyncio.to_thread(tokens_used, self.data_dir, day)
        return BudgetStatus(day, used, self.daily_tokens)

    async def used_today(self) -> int:
        """Prompt + completion tokens recorded today (UTC)."""
        return (await self.status()).used

    async def remaining(self) -> int | None:
        """Tokens left today (>= 0), or None when unlimited."""
        return (await self.status()).remaining

    async def exceeded(self) -> bool:
        """True when today's use has reached the budget (a call would be refused)."""
        return (await self.status()).exceeded

    async def check(self) -> None:
        """Raise BudgetExceeded (one line: used, limit, when it resets) when today's budget is used up."""
        st = await self.status()
        if st.exceeded:
            raise BudgetExceeded(st.message())

    async def record(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Append one call's usage, dated now (UTC)."""
        await asyncio.to_thread(
            record_usage,
            self.data_dir,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            ts_ms=self.clock(),
        )
