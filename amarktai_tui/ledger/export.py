"""``amarktai ledger export --format csv|json``: one row per fill.

Row keys, in this order (``EXPORT_FIELDS``): fill_id, time (ISO 8601 UTC,
ms precision, ``Z`` suffix), ts (ms UTC, int), bot (name), bot_id (int),
exchange, pair, side, quantity, price, fee, fee_currency, liquidity,
client_order_id, realised_pnl. Money and quantities are exact Decimal
strings (``str(Decimal(stored_text))``), never floats. In JSON the two
integer fields (ts, bot_id) are JSON integers (exact); everything else is a
string. In CSV every field is text.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TextIO

from amarktai_tui.ledger import reader

EXPORT_FIELDS: tuple[str, ...] = (
    "fill_id",
    "time",
    "ts",
    "bot",
    "bot_id",
    "exchange",
    "pair",
    "side",
    "quantity",
    "price",
    "fee",
    "fee_currency",
    "liquidity",
    "client_order_id",
    "realised_pnl",
)

ExportRow = dict[str, str | int]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(ts_ms: int) -> str:
    """``1700000000123`` -> ``"2023-11-14T22:13:20.123Z"`` (UTC, ms precision, integer arithmetic)."""
    return (_EPOCH + timedelta(milliseconds=ts_ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dec_str(d: Decimal) -> str:
    return str(d)


def export_rows(conn: sqlite3.Connection, bot_id: int | None = None) -> list[ExportRow]:
    """Every fill (or one bot's) in ledger order (fills.id) as an export row.

    Raises ``reader.LedgerDataError`` for a money column that does not parse.
    """
    names = {b.id: b.name for b in reader.bots(conn)}
    return [
        {
            "fill_id": f.fill_id,
            "time": iso_ms(f.ts),
            "ts": f.ts,
            "bot": names.get(f.bot_id, ""),
            "bot_id": f.bot_id,
            "exchange": f.exchange,
            "pair": f.pair,
            "side": f.side,
            "quantity": _dec_str(f.quantity),
            "price": _dec_str(f.price),
            "fee": _dec_str(f.fee),
            "fee_currency": f.fee_currency,
            "liquidity": f.liquidity,
            "client_order_id": f.client_order_id,
            "realised_pnl": _dec_str(f.realised_pnl),
        }
        for f in reader.fills(conn, bot_id)
    ]


def write_csv(rows: Sequence[ExportRow], stream: TextIO) -> None:
    """CSV with a header line of ``EXPORT_FIELDS``; ``\\n`` line endings."""
    w = csv.DictWriter(stream, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)


def write_json(rows: Sequence[ExportRow], stream: TextIO) -> None:
    """``{"fills": [row, ...]}`` followed by a newline; keys in ``EXPORT_FIELDS`` order."""
    json.dump({"fills": [{k: r[k] for k in EXPORT_FIELDS} for r in rows]}, stream, indent=None)
    stream.write("\n")
