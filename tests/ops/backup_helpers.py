"""Helpers of the backup tests: a real ledger with rows, raw reads of a SQLite file, a clock the test
moves by hand, and a writer thread that keeps committing while a backup runs."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

from amarktai_tui.domain.enums import BotState, LifecycleStage, RiskMode
from amarktai_tui.ledger.store import BotRecord, LedgerStore
from amarktai_tui.locations import db_path


async def add_bot(store: LedgerStore, name: str, ts: int = 1_700_000_000_000) -> int:
    rec = BotRecord(
        0, name, "binance", "BTC/USDT", "1h", "sma_cross", {}, RiskMode.BALANCED, Decimal(1000),
        None, None, None, BotState.RUNNING, "", LifecycleStage.PAPER_TRAINING, None,
    )  # fmt: skip
    return await store.insert_bot(rec, ts, Decimal(1000), "USDT")


async def make_ledger(data_dir: Path, *bots: str) -> None:
    """A ledger in ``data_dir`` with one bot (and its funding event) per name."""
    store = await LedgerStore.open(db_path(data_dir))
    try:
        for name in bots:
            await add_bot(store, name)
    finally:
        await store.close()


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read a SQLite file read-only (a ledger or a backup)."""
    with closing(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
        return conn.execute(sql).fetchall()


def bot_names(path: Path) -> list[str]:
    return [r[0] for r in query(path, "SELECT name FROM bots ORDER BY id")]


class Writer(threading.Thread):
    """Appends ``ledger_events`` rows (ts = 0, 1, 2, ...) one transaction each until stopped."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.warm = threading.Event()  # set after the first 50 commits
        self.written = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with closing(sqlite3.connect(str(self.db), isolation_level=None)) as conn:
                conn.execute("PRAGMA busy_timeout=5000")
                while not self.stop.is_set():
                    conn.execute(
                        "INSERT INTO ledger_events (ts, bot_id, kind, amount, currency, note)"
                        " VALUES (?, NULL, 'adjustment', '1', 'USDT', 'writer')",
                        (self.written,),
                    )
                    self.written += 1
                    if self.written == 50:
                        self.warm.set()
        except BaseException as exc:
            self.error = exc
            self.warm.set()


class HandClock:
    """The daily service's clock (``ops.backup.Clock``): time moves only when the test calls
    ``advance_to``; ``sleeping`` waits until the service is asleep again and says until when."""

    def __init__(self, start_ms: int) -> None:
        self.t = start_ms
        self.wake: int | None = None  # when the sleeping service wants to wake, ms UTC
        self.sleeps: list[float] = []
        self._cond = asyncio.Condition()

    def now_ms(self) -> int:
        return self.t

    async def sleep(self, seconds: float) -> None:
        wake = self.t + int(seconds * 1000)
        async with self._cond:
            self.sleeps.append(seconds)
            self.wake = wake
            self._cond.notify_all()
            await self._cond.wait_for(lambda: self.t >= wake)

    async def sleeping(self, timeout: float = 10.0) -> int:
        """The wake time of the service's next sleep (waits for it)."""
        async with self._cond:
            await asyncio.wait_for(self._cond.wait_for(lambda: self.wake is not None), timeout)
            assert self.wake is not None
            return self.wake

    async def advance_to(self, t: int) -> None:
        async with self._cond:
            self.t = t
            if self.wake is not None and t >= self.wake:
                self.wake = None
            self._cond.notify_all()
