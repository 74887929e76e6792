"""Shared parts of the doctor tests: a loopback Binance whose clock ticks, ledger rows written
into a real SQLite ledger, and ``amarktai`` run as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from loopback.binance import BinanceLoopback

from amarktai_tui.vault import status

CMD = [sys.executable, "-c", "from amarktai_tui.cli import main; main()"]
TIMEOUT_S = 180  # a guard against a hang, not a wait
BN_KEY, BN_SECRET = "doctorKey-1234-5678-9abc-def0", "doctorSecret-0fed-cba9-8765-4321"


def wall_ms() -> int:
    return int(time.time() * 1000)


class WallClockBinance(BinanceLoopback):
    """The loopback Binance with a clock that ticks: before each request (but ``/_ctl/*``) its
    simulated clock moves to the wall clock + ``offset_ms`` (never backwards), so
    ``GET /api/v3/time`` answers as a real exchange whose clock is off by ``offset_ms``."""

    def __init__(self, *, offset_ms: int = 0, **kw: Any) -> None:
        kw.setdefault("start_ms", wall_ms() - 60_000)
        kw.setdefault("api_key", BN_KEY)
        kw.setdefault("secret", BN_SECRET)
        super().__init__(**kw)
        self.offset_ms = offset_ms

    def app(self) -> web.Application:
        app = super().app()
        app.middlewares.insert(0, self._tick)
        return app

    @web.middleware
    async def _tick(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith("/_ctl/"):
            self.book.set_time(max(self.book.now_ms, wall_ms() + self.offset_ms))
        return await handler(request)


# -- ledger rows (the real schema, through the same short-lived connection `keys set` uses) --------


def add_bot(data: Path, name: str, *, exchange: str = "binance", stage: str = "live") -> int:
    now = wall_ms()
    with status.connect(data) as conn:
        cur = conn.execute(
            "INSERT INTO bots (name, exchange, pair, timeframe, strategy, risk_mode, capital, state,"
            " stage, created_ts, updated_ts) VALUES (?, ?, 'BTC/USDT', '5m', 'sma_cross', 'balanced',"
            " '1000', 'running', ?, ?, ?)",
            (name, exchange, stage, now, now),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid


def add_errors(data: Path, bot_id: int, n: int, ts: int) -> None:
    with status.connect(data) as conn:
        conn.executemany(
            "INSERT INTO bot_errors (ts, bot_id, source, message) VALUES (?, ?, 'exchange', 'HTTP 503')",
            [(ts + i, bot_id) for i in range(n)],
        )


def add_reconciliation(data: Path, exchange: str, *, ok: bool, ts: int, drift: dict[str, str]) -> None:
    details = json.dumps({"orders": {}, "drift": drift, "resent": 0, "error": ""}, sort_keys=True)
    with status.connect(data) as conn:
        conn.execute(
            "INSERT INTO reconciliations (ts, exchange, ok, resolved, recovered, details)"
            " VALUES (?, ?, ?, 0, 0, ?)",
            (ts, exchange, int(ok), details),
        )


# -- the CLI --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


async def amarktai_async(*args: str | Path, stdin: str = "", **env: str) -> Run:
    """``amarktai ARGS`` as a subprocess without blocking this event loop (a loopback server runs
    in it). The environment is this process's (the fixtures' D-Bus address, XDG dirs) + ``env``."""
    full = dict(os.environ)
    full.update(env)
    full["PYTHONUNBUFFERED"] = "1"
    proc = await asyncio.create_subprocess_exec(
        *CMD,
        *map(str, args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=full,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), TIMEOUT_S)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())
