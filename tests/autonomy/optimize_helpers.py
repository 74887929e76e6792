"""Small helpers for the optimisation tests: real candles sliced into a tmp file, a quick request."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from amarktai_tui.autonomy.optimize import OptimizeRequest, OptimizeResult, optimize
from amarktai_tui.config import Settings
from amarktai_tui.locations import db_path

BTC_1H = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance" / "BTC_USDT-1h.json"
CANDLES = 1_500


def btc_slice(folder: Path, n: int = CANDLES, skip: int = 0) -> Path:
    """The first ``n`` candles (after ``skip``) of Binance BTC/USDT 1h as ``folder/BTC_USDT-1h.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = json.loads(BTC_1H.read_text())[skip : skip + n]
    path = folder / "BTC_USDT-1h.json"
    path.write_text(json.dumps(rows))
    return path


def request(data: Path, **kw: Any) -> OptimizeRequest:
    """sma_cross over ``data``, 2 folds, few trials (overridable)."""
    base: dict[str, Any] = {
        "strategy": "sma_cross",
        "files": (str(data),),
        "trials": 4,
        "folds": 2,
        "seed": 7,
    }
    return OptimizeRequest(**(base | kw))


def run(data_dir: Path, req: OptimizeRequest, work: Path) -> OptimizeResult:
    """``optimize`` with default settings into ``data_dir`` (slices in ``work``)."""
    work.mkdir(parents=True, exist_ok=True)
    return optimize(Settings(), data_dir, req, work_dir=work)


def ledger_rows(data_dir: Path, sql: str) -> list[sqlite3.Row]:
    """Rows of ``sql`` on the data dir's ledger."""
    with closing(sqlite3.connect(db_path(data_dir))) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(sql))


def ledger_with_demo_bots(data_dir: Path, candles: Path) -> Path:
    """A data dir whose ledger holds the demo bots (btc-ema runs sma_cross) after a short replay."""
    import asyncio

    from amarktai_tui.engine.setup import ReplayArgs, open_engine

    async def go() -> None:
        engine, feed = await open_engine(
            Settings(), data_dir, ReplayArgs([str(candles)], speed=0, until_end=True)
        )
        await engine.run(feed)
        await engine.close()

    asyncio.run(go())
    return data_dir
