"""The daily token budget on a real SQLite ledger in a temp dir (``ai_usage``, schema v5)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from amarktai_tui.ai.budget import TokenBudget, record_usage, tokens_used, utc_day
from amarktai_tui.ai.errors import BudgetExceeded
from amarktai_tui.ledger.schema import SCHEMA_VERSION, configure, migrate
from amarktai_tui.locations import db_path


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


class Clock:
    """A wall clock the test moves (ms since the epoch UTC)."""

    def __init__(self, iso: str) -> None:
        self.now = ms(iso)

    def __call__(self) -> int:
        return self.now


def test_utc_day_is_the_utc_date() -> None:
    assert utc_day(ms("2024-05-01T23:59:59.999")) == "2024-05-01"
    assert utc_day(ms("2024-05-02T00:00:00")) == "2024-05-02"


async def test_an_empty_data_dir_has_used_nothing_and_reading_creates_nothing(tmp_path: Path) -> None:
    budget = TokenBudget(tmp_path / "data", 1000)
    assert await budget.used_today() == 0
    assert await budget.remaining() == 1000
    assert await budget.exceeded() is False
    await budget.check()
    assert not (tmp_path / "data").exists()


async def test_usage_adds_up_per_utc_day_and_the_budget_resets_at_midnight(tmp_path: Path) -> None:
    clock = Clock("2024-05-01T22:00:00")
    budget = TokenBudget(tmp_path, 1000, clock=clock)
    await budget.record("gpt-4o-mini", 300, 200)
    await budget.record("gpt-4.1", 250, 149)
    assert await budget.used_today() == 899
    assert await budget.remaining() == 101
    assert await budget.exceeded() is False

    await budget.record("gpt-4o-mini", 100, 1)  # exactly at the limit: used up
    assert await budget.remaining() == 0
    assert await budget.exceeded() is True
    with pytest.raises(BudgetExceeded) as err:
        await budget.check()
    msg = str(err.value)
    assert msg == (
        "AI token budget for 2024-05-01 (UTC) used up: 1,000 of 1,000 tokens; commands only until 00:00 UTC"
    )
    assert "\n" not in msg

    clock.now = ms("2024-05-02T00:00:00")  # a new UTC day
    assert await budget.used_today() == 0
    assert await budget.exceeded() is False
    await budget.check()
    st = await budget.status()
    assert (st.day, st.used, st.limit) == ("2024-05-02", 0, 1000)

    with closing(sqlite3.connect(db_path(tmp_path))) as conn:
        rows = conn.execute(
            "SELECT ts, day, model, prompt_tokens, completion_tokens FROM ai_usage ORDER BY id"
        ).fetchall()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION
    t = ms("2024-05-01T22:00:00")
    assert rows == [
        (t, "2024-05-01", "gpt-4o-mini", 300, 200),
        (t, "2024-05-01", "gpt-4.1", 250, 149),
        (t, "2024-05-01", "gpt-4o-mini", 100, 1),
    ]


async def test_zero_is_unlimited_but_usage_is_still_recorded(tmp_path: Path) -> None:
    budget = TokenBudget(tmp_path, 0, clock=Clock("2024-05-01T12:00:00"))
    await budget.record("gpt-4o-mini", 5_000_000, 1_000_000)
    assert await budget.used_today() == 6_000_000
    assert await budget.remaining() is None
    assert await budget.exceeded() is False
    await budget.check()
    assert (
        await budget.status()
    ).message() == "AI tokens used on 2024-05-01 (UTC): 6,000,000 (no daily budget)"


def test_a_negative_budget_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="daily_tokens must be >= 0"):
        TokenBudget(tmp_path, -1)


async def test_records_while_another_connection_holds_the_ledger_open(tmp_path: Path) -> None:
    """The engine keeps its own connection to the file (WAL): a usage row is a separate short write."""
    tmp_path.mkdir(exist_ok=True)
    with closing(sqlite3.connect(db_path(tmp_path))) as engine:
        configure(engine)
        migrate(engine)
        engine.execute("BEGIN")
        engine.execute("SELECT COUNT(*) FROM ai_usage").fetchone()  # an open read transaction
        budget = TokenBudget(tmp_path, 100, clock=Clock("2024-05-01T00:00:00"))
        await budget.record("gpt-4o-mini", 60, 40)
        assert await budget.exceeded() is True
        engine.execute("COMMIT")
        assert (
            engine.execute("SELECT SUM(prompt_tokens + completion_tokens) FROM ai_usage").fetchone()[0] == 100
        )


def test_the_sync_functions_clamp_negative_counts(tmp_path: Path) -> None:
    record_usage(tmp_path, model="m", prompt_tokens=-5, completion_tokens=7, ts_ms=ms("2024-05-01T00:00:00"))
    assert tokens_used(tmp_path, "2024-05-01") == 7
    assert tokens_used(tmp_path, "2024-04-30") == 0
