"""Helpers of the Adjuster/bounds/service/CLI tests: real candles sliced into a temp file, a real
engine (demo bots) over a real SQLite ledger, read-only queries of that ledger.

Imported by this directory's test modules (``from changes_helpers import ...``).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from amarktai_tui.config import Settings, load_settings
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.events import EventBus
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.locations import db_path

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BTC_1H = DATA / "binance" / "BTC_USDT-1h.json"
HOUR = 3_600_000
DAY = 86_400_000
CANDLES = 2000  # 1h candles of the shared replay: the demo bots trade, one of them is left long


def write_candles(dst_dir: Path, n: int = CANDLES, start: int = 0) -> Path:
    """Candles ``[start, start + n)`` of the BTC 1h file into ``dst_dir/BTC_USDT-1h.json``."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    out = dst_dir / BTC_1H.name
    out.write_text(json.dumps(json.loads(BTC_1H.read_text())[start : start + n]))
    return out


def settings(tmp: Path, text: str = "") -> Settings:
    """Settings from a TOML text written to ``tmp/config.toml`` (empty: defaults)."""
    path = tmp / "config.toml"
    path.write_text(text)
    return load_settings(path, required=True)


async def replay(s: Settings, data_dir: Path, candles: Path, bus: EventBus | None = None) -> TradingEngine:
    """One finite replay run to the end of ``candles``; the engine's store is still open."""
    engine, feed = await open_engine(s, data_dir, ReplayArgs([str(candles)], speed=0, until_end=True), bus)
    await engine.run(feed)
    return engine


async def reopen(s: Settings, data_dir: Path, candles: Path) -> TradingEngine:
    """An engine over an existing ledger, started (bots, lots, risk state rebuilt), not run."""
    engine, _ = await open_engine(s, data_dir, ReplayArgs([str(candles)], speed=0, until_end=True))
    return engine


def copy_ledger(src: Path, dst: Path) -> Path:
    """A copy of data dir ``src`` (the SQLite file and its WAL) at ``dst``."""
    shutil.copytree(src, dst)
    return dst


def rows(data_dir: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db_path(data_dir)}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def account_total(data_dir: Path) -> Decimal:
    """Funding of every bot + the account pool: the sum of all ledger events (quote)."""
    return sum((Decimal(r["amount"]) for r in rows(data_dir, "SELECT amount FROM ledger_events")), Decimal(0))


def bot_row(data_dir: Path, name: str) -> dict[str, Any]:
    [row] = rows(data_dir, "SELECT * FROM bots WHERE name = ?", (name,))
    return row


def env_for(tmp: Path) -> dict[str, str]:
    """The environment without AMARKTAI_*, user dirs inside ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMARKTAI_")}
    env.update(
        XDG_CONFIG_HOME=str(tmp / "xdg-config"), XDG_DATA_HOME=str(tmp / "xdg-data"), PYTHONUNBUFFERED="1"
    )
    return env


CMD = [sys.executable, "-c", "from amarktai_tui.cli import main; main()"]


def amarktai(tmp: Path, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``amarktai ARGS`` as a subprocess (cwd ``tmp``)."""
    return subprocess.run(
        [*CMD, *map(str, args)],
        cwd=tmp,
        env=env_for(tmp),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
