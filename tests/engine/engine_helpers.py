"""Helpers for the engine tests: real candle files, real SQLite ledgers, no mocks of our code.

Imported by the test modules of this directory (``from engine_helpers import ...``).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections import defaultdict
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from amarktai_tui.config import Settings, load_settings
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.events import EventBus
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.ledger.export import export_rows
from amarktai_tui.locations import db_path

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BINANCE = DATA / "binance"
BTC_1H = BINANCE / "BTC_USDT-1h.json"
ETH_1H = BINANCE / "ETH_USDT-1h.json"
HOUR = 3_600_000


def settings_from(tmp: Path, text: str | None = None) -> Settings:
    """Settings from a TOML text written to ``tmp/config.toml`` (None = defaults, no file)."""
    if text is None:
        return load_settings(None)
    path = tmp / "config.toml"
    path.write_text(text)
    return load_settings(path, required=True)


async def replay(
    settings: Settings, data_dir: Path, files: list[Path], *, bus: EventBus | None = None
) -> TradingEngine:
    """One finite replay run through ``open_engine``; the store is closed afterwards."""
    engine, feed = await open_engine(
        settings, data_dir, ReplayArgs([str(f) for f in files], speed=0, until_end=True), bus
    )
    try:
        await engine.run(feed)
    finally:
        await engine.store.close()
    return engine


def connect(data_dir: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db_path(data_dir)}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def fills(data_dir: Path) -> list[dict[str, Any]]:
    """The exported fills (ledger order)."""
    conn = connect(data_dir)
    try:
        return export_rows(conn)
    finally:
        conn.close()


def rows(data_dir: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    conn = connect(data_dir)
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def orders(data_dir: Path) -> dict[str, dict[str, Any]]:
    return {o["client_order_id"]: o for o in rows(data_dir, "SELECT * FROM orders ORDER BY id")}


def bots(data_dir: Path) -> dict[str, dict[str, Any]]:
    return {b["name"]: b for b in rows(data_dir, "SELECT * FROM bots ORDER BY id")}


@functools.lru_cache(maxsize=8)
def raw_candles(path: Path) -> tuple[tuple[Any, ...], ...]:
    """The file's rows ``(ts, open, high, low, close, volume)`` as read by ``json`` (floats)."""
    return tuple(tuple(r) for r in json.loads(path.read_text()))


@functools.lru_cache(maxsize=8)
def candle_index(path: Path) -> dict[int, int]:
    """ts -> position in the file."""
    return {int(r[0]): i for i, r in enumerate(raw_candles(path))}


def write_prefix(src: Path, dst_dir: Path, before_ts: int) -> Path:
    """Write the candles of ``src`` that open before ``before_ts`` to ``dst_dir/<same name>``."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    out = dst_dir / src.name
    out.write_text(json.dumps([list(r) for r in raw_candles(src) if r[0] < before_ts]))
    return out


def F(x: str | Decimal | float) -> Fraction:
    """Exact Fraction of a decimal string (floats go through their shortest repr, as the files hold them)."""
    if isinstance(x, float):
        return Fraction(Decimal(repr(x)))
    return Fraction(Decimal(x))


def naive_fifo_realised(fill_rows: list[dict[str, Any]]) -> dict[str, Fraction]:
    """Realised PnL per fill_id, computed here with Fractions (shares no code with ledger.pnl).

    Per (bot, pair): a buy opens a lot of cost ``qty * price + fee``; a sell's proceeds
    ``qty * price - fee`` are spread over the lots it closes (oldest first) pro rata to the
    closed quantity; realised = sum over closed slices of (proceeds share - slice cost).
    """
    books: dict[tuple[int, str], list[list[Fraction]]] = defaultdict(list)  # [remaining qty, remaining cost]
    out: dict[str, Fraction] = {}
    for f in fill_rows:
        qty, price, fee = F(f["quantity"]), F(f["price"]), F(f["fee"])
        lots = books[(f["bot_id"], f["pair"])]
        if f["side"] == "buy":
            lots.append([qty, qty * price + fee])
            out[f["fill_id"]] = Fraction(0)
            continue
        proceeds = qty * price - fee
        left, realised = qty, Fraction(0)
        while left > 0:
            assert lots, f"sell {f['fill_id']} exceeds the position"
            lot = lots[0]
            take = min(lot[0], left)
            slice_cost = lot[1] * take / lot[0]
            realised += proceeds * take / qty - slice_cost
            lot[0] -= take
            lot[1] -= slice_cost
            left -= take
            if lot[0] == 0:
                lots.pop(0)
        out[f["fill_id"]] = realised
    return out


FILL_KEYS = (
    "fill_id",
    "client_order_id",
    "bot",
    "pair",
    "side",
    "quantity",
    "price",
    "fee",
    "liquidity",
    "ts",
    "realised_pnl",
)


def fill_tuples(fill_rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Fills reduced to what must be identical between equivalent runs (strings: to the last digit)."""
    return [tuple(f[k] for k in FILL_KEYS) for f in fill_rows]
