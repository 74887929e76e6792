"""``ledger export``: one row per fill, CSV and JSON agree and stay exact."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal as D
from fractions import Fraction
from pathlib import Path

import pytest
from test_ledger_sim import Sim, dec, simulate

from amarktai_tui.ledger import schema
from amarktai_tui.ledger.export import EXPORT_FIELDS, export_rows, iso_ms, write_csv, write_json

KEYS = [
    "fill_id", "time", "ts", "bot", "bot_id", "exchange", "pair", "side", "quantity", "price", "fee",
    "fee_currency", "liquidity", "client_order_id", "realised_pnl",
]  # fmt: skip


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return simulate(tmp_path / schema.DB_FILENAME, hours=24 * 4)


def test_iso_ms() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    assert iso_ms(1_609_459_199_999) == "2020-12-31T23:59:59.999Z"


def test_rows_one_per_fill_with_exact_keys_and_stored_text(sim: Sim) -> None:
    conn = schema.connect_readonly(str(sim.path))
    rows = export_rows(conn)
    assert list(EXPORT_FIELDS) == KEYS
    assert all(list(r) == KEYS for r in rows)
    stored = conn.execute(
        "SELECT fill_id, quantity, price, fee, realised_pnl, ts FROM fills ORDER BY id"
    ).fetchall()
    assert len(rows) == len(stored) == len(sim.fill_ids) > 20
    for r, s in zip(rows, stored, strict=True):
        assert (r["fill_id"], r["quantity"], r["price"], r["fee"], r["realised_pnl"], r["ts"]) == tuple(s)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(r["time"]))
        assert r["bot"] == {1: "btc-bot", 2: "eth-bot"}[int(r["bot_id"])]
    total = sum((D(str(r["realised_pnl"])) for r in rows), D(0))
    assert total == D(dec(sum((b.realised for b in sim.bots.values()), Fraction(0))))
    assert {r["bot_id"] for r in export_rows(conn, bot_id=2)} == {2}


def test_csv_and_json_agree_and_parse(sim: Sim) -> None:
    rows = export_rows(schema.connect_readonly(str(sim.path)))
    c, j = io.StringIO(), io.StringIO()
    write_csv(rows, c)
    write_json(rows, j)
    from_csv = list(csv.DictReader(io.StringIO(c.getvalue())))
    doc = json.loads(j.getvalue())
    assert list(doc) == ["fills"]
    from_json = doc["fills"]
    assert c.getvalue().splitlines()[0] == ",".join(KEYS)
    assert len(from_csv) == len(from_json) == len(rows)
    for a, b in zip(from_csv, from_json, strict=True):
        assert list(b) == KEYS
        assert a == {k: str(v) for k, v in b.items()}
        assert isinstance(b["ts"], int) and isinstance(b["bot_id"], int)
        for k in ("quantity", "price", "fee", "realised_pnl"):
            assert isinstance(b[k], str)
            D(b[k])  # parses exactly


def test_empty_ledger_exports_header_and_empty_list(tmp_path: Path) -> None:
    s = Sim(tmp_path / "e.sqlite3")
    rows = export_rows(s.conn)
    c, j = io.StringIO(), io.StringIO()
    write_csv(rows, c)
    write_json(rows, j)
    assert c.getvalue() == ",".join(KEYS) + "\n"
    assert json.loads(j.getvalue()) == {"fills": []}
