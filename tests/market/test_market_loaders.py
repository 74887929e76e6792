"""Candle file loaders against the real data in ../shared/data and against broken files."""

from __future__ import annotations

import csv
import itertools
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amarktai_tui.domain.types import Candle, timeframe_to_ms
from amarktai_tui.market import CandleFileError, load_candles, pair_timeframe_from_name

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BTC_5M = DATA / "binance" / "BTC_USDT-5m.json"
COINBASE = DATA / "coinbase" / "Coinbase_BTCUSD_1h.csv"
UNITTEST = DATA / "freqtrade" / "UNITTEST_BTC-1m.json"


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M")


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# -- the real files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "pair", "tf", "count", "first", "last"),
    [
        ("binance/BTC_USDT-5m.json", "BTC/USDT", "5m", 65_741, "2020-12-01T00:00", "2021-07-17T21:05"),
        ("binance/ETH_USDT-5m.json", "ETH/USDT", "5m", 65_742, "2020-12-01T00:00", "2021-07-17T21:10"),
        ("binance/BTC_USDT-1h.json", "BTC/USDT", "1h", 5_482, "2020-12-01T00:00", "2021-07-17T20:00"),
        ("binance/ETH_USDT-1h.json", "ETH/USDT", "1h", 5_482, "2020-12-01T00:00", "2021-07-17T20:00"),
        (
            "freqtrade/UNITTEST_BTC-1m.json",
            "UNITTEST/BTC",
            "1m",
            13_681,
            "2017-11-04T23:02",
            "2017-11-14T22:59",
        ),
    ],
)
def test_real_json_files(name: str, pair: str, tf: str, count: int, first: str, last: str) -> None:
    path = DATA / name
    candles = load_candles(path)
    raw = json.loads(path.read_text())
    assert len(candles) == count == len(raw)
    assert (iso(candles[0].ts), iso(candles[-1].ts)) == (first, last)
    assert {(c.pair, c.timeframe) for c in candles} == {(pair, tf)}
    assert all(a.ts < b.ts for a, b in itertools.pairwise(candles))
    # values are the file's, unchanged (raw is oldest first too)
    for i in (0, 1, count // 2, count - 1):
        c = candles[i]
        assert [c.ts, c.open, c.high, c.low, c.close, c.volume] == raw[i][:6]


def test_binance_gaps_are_kept_as_gaps() -> None:
    candles = load_candles(BTC_5M)
    step = timeframe_to_ms("5m")
    jumps = [(a, b) for a, b in itertools.pairwise(candles) if b.ts - a.ts != step]
    assert [iso(a.ts)[:10] for a, _ in jumps] == [
        "2020-12-21",
        "2020-12-25",
        "2021-02-11",
        "2021-03-06",
        "2021-04-20",
        "2021-04-25",
    ]
    assert all((b.ts - a.ts) % step == 0 and b.ts - a.ts > step for a, b in jumps)
    assert max(b.ts - a.ts for a, b in jumps) == (4 * 60 + 45) * 60_000
    missing = sum((b.ts - a.ts) // step - 1 for a, b in jumps)
    assert len(candles) == (candles[-1].ts - candles[0].ts) // step + 1 - missing  # nothing synthetic
    flat = [c for c in candles if c.volume == 0]
    assert len(flat) == 28 and all(c.open == c.high == c.low == c.close for c in flat)


def test_coinbase_csv_newest_first_comes_out_oldest_first() -> None:
    candles = load_candles(COINBASE)
    assert len(candles) == 20_111
    assert (candles[0].pair, candles[0].timeframe) == ("BTC/USD", "1h")
    assert all(b.ts - a.ts == 3_600_000 for a, b in itertools.pairwise(candles))
    with COINBASE.open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[1], rows[2:]
    assert header == ["date", "symbol", "open", "high", "low", "close", "volume_btc", "volume"]
    oldest, newest = body[-1], body[0]
    assert (oldest[0], newest[0]) == ("2017-07-01 11-AM", "2019-10-17 09-AM")
    assert iso(candles[0].ts) == "2017-07-01T11:00"
    assert iso(candles[-1].ts) == "2019-10-17T09:00"
    # volume is the base (BTC) column, not the quote column named "volume"
    assert [candles[0].open, candles[0].close, candles[0].volume] == [
        float(oldest[2]),
        float(oldest[5]),
        114.6,
    ]
    assert candles[-1].volume == float(newest[6])
    by_ts = {c.ts: c for c in candles}
    noon = next(r for r in body if r[0].endswith(" 12-PM"))
    midnight = next(r for r in body if r[0].endswith(" 12-AM"))
    assert by_ts[ms(noon[0][:10] + "T12:00")].open == float(noon[2])
    assert by_ts[ms(midnight[0][:10] + "T00:00")].open == float(midnight[2])


def test_freqtrade_unittest_gaps() -> None:
    candles = load_candles(UNITTEST)
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(candles) if b.ts - a.ts != 60_000]
    assert len(gaps) == 538 and max(gaps) == 8 * 60_000
    assert (
        min(c.low for c in candles) > 0.0015 and max(c.high for c in candles) < 0.004
    )  # README: ~0.0016-0.0037


def test_big_json_loads_whole_and_in_order() -> None:
    """The 5m file whole (its speed is measured by bench/replay_throughput.py, not timed here)."""
    candles = load_candles(BTC_5M)
    assert len(candles) == 65_741
    assert all(b.ts - a.ts >= 300_000 for a, b in itertools.pairwise(candles))


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("BTC_USDT-5m.json", ("BTC/USDT", "5m")),
        ("/x/y/ETH_USDT-1h.feather", ("ETH/USDT", "1h")),
        ("BTC_USDT-5m-spot.feather", ("BTC/USDT", "5m")),
        ("btc_zar-4h.csv", ("BTC/ZAR", "4h")),
        ("UNITTEST_BTC-1m.json.gz", ("UNITTEST/BTC", "1m")),
        ("Coinbase_BTCUSD_1h.csv", ("BTC/USD", "1h")),
        ("Binance_ETHBTC_d.csv", ("ETH/BTC", "1d")),
        ("Binance_BTCUSDT_1h.csv", ("BTC/USDT", "1h")),
        ("Kraken_XRPEUR_1h.csv", ("XRP/EUR", "1h")),
    ],
)
def test_pair_timeframe_from_name(name: str, expected: tuple[str, str]) -> None:
    assert pair_timeframe_from_name(name) == expected


@pytest.mark.parametrize(
    "name", ["candles.json", "BTC_USDT.json", "BTC_USDT-5x.json", "Coinbase_XYZABC_1h.csv"]
)
def test_underivable_name_asks_for_pair_and_timeframe(name: str) -> None:
    with pytest.raises(CandleFileError, match=r"--pair and --timeframe") as err:
        pair_timeframe_from_name(name)
    assert name in str(err.value)


def test_explicit_pair_and_timeframe_override_the_name(tmp_path: Path) -> None:
    path = tmp_path / "candles.json"
    path.write_text(json.dumps([[1_600_000_000_000, 1, 2, 0.5, 1.5, 3]]))
    with pytest.raises(CandleFileError, match="--pair"):
        load_candles(path)
    [c] = load_candles(path, pair="SOL/USDT", timeframe="15m")
    assert (c.pair, c.timeframe) == ("SOL/USDT", "15m")
    named = tmp_path / "BTC_USDT-5m.json"
    named.write_text(path.read_text())
    [c] = load_candles(named, timeframe="1h")
    assert (c.pair, c.timeframe) == ("BTC/USDT", "1h")


# -- broken files ----------------------------------------------------------------------------


def _rows(n: int) -> list[list[float]]:
    return [[1_600_000_000_000 + i * 300_000, 10.0, 12.0, 9.0, 11.0, 1.0] for i in range(n)]


def _with(index: int, row: object) -> str:
    rows: list[object] = list(_rows(20))
    rows[index] = row
    return json.dumps(rows)


T17 = 1_600_000_000_000 + 16 * 300_000


@pytest.mark.parametrize(
    ("content", "where", "reason"),
    [
        (_with(16, [T17, 5.5, 5.0, 6.0, 5.5, 1]), "row 17", "high 5.0 < low 6.0"),
        (_with(1, [T17, "abc", 2, 1, 1.5, 1]), "row 2", "bad number 'abc' in open"),
        (_with(2, [T17, 1, None, 1, 1.5, 1]), "row 3", "bad number None in high"),
        (_with(3, [T17, 1, 2, 1]), "row 4", "expected 6 values"),
        (_with(4, ["yesterday", 1, 2, 1, 1.5, 1]), "row 5", "bad timestamp 'yesterday'"),
        (_with(5, [T17, 13.0, 12.0, 9.0, 11.0, 1]), "row 6", "high 12.0 < open 13.0"),
        (_with(6, [T17, 10.0, 12.0, 9.0, 8.0, 1]), "row 7", "low 9.0 > close 8.0"),
        (_with(7, [T17, 0, 12.0, 0, 11.0, 1]), "row 8", "open 0.0 <= 0"),
        (_with(8, [T17, 10.0, 12.0, 9.0, 11.0, -1]), "row 9", "volume -1.0 < 0"),
        (_with(9, [T17, 10.0, 12.0, 9.0, float("nan"), 1]), "row 10", "close is not a finite number"),
        (_with(10, {"ts": T17}), "row 11", "expected an array"),
        (_with(19, _rows(20)[3]), "row 20", "duplicate timestamp 1600000900000"),
        (_with(2, [1_600_000_000_000 + 360_000, 10, 12, 9, 11, 1]), "row 3", "less than the 5m timeframe"),
        ("", None, "empty file"),
        ("[]", None, "no candles in the file"),
        ('{"a": 1}', None, "expected a JSON array"),
        ("[[1, 2, 3], oops]", "line 1", "not valid JSON"),
        ("not json at all", "line 1", "not valid JSON"),
    ],
)
def test_bad_json_gives_one_line_error(tmp_path: Path, content: str, where: str | None, reason: str) -> None:
    path = tmp_path / "BTC_USDT-5m.json"
    path.write_text(content)
    with pytest.raises(CandleFileError) as err:
        load_candles(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    if where is not None:
        assert message.startswith(f"{path}: {where}: "), message
    assert reason in message, message


def test_exact_message_shape(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-5m.json"
    path.write_text(_with(16, [T17, 5.5, 5.0, 6.0, 5.5, 1]))
    with pytest.raises(CandleFileError) as err:
        load_candles(path)
    assert str(err.value) == f"{path}: row 17: high 5.0 < low 6.0"
    assert (err.value.row, err.value.reason) == (17, "high 5.0 < low 6.0")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CandleFileError, match=r"BTC_USDT-5m\.json: no such file"):
        load_candles(tmp_path / "BTC_USDT-5m.json")
    folder = tmp_path / "ETH_USDT-5m.json"
    folder.mkdir()
    with pytest.raises(CandleFileError, match=r"ETH_USDT-5m\.json: cannot read"):
        load_candles(folder)


HEADER = "timestamp,open,high,low,close,volume\n"


@pytest.mark.parametrize(
    ("body", "where", "reason"),
    [
        (
            HEADER + "1600000000000,1,2,0.5,1.5,3\n1600000300000,1,2,x,1.5,3\n",
            "line 3",
            "bad number 'x' in low",
        ),
        (HEADER + "1600000000000,1,2,0.5,1.5,3\n1600000300000,1,2,0.5\n", "line 3", "expected 6 columns"),
        (HEADER + "soon,1,2,0.5,1.5,3\n", "line 2", "bad timestamp 'soon'"),
        (HEADER + "1600000000000,1,2,3,1.5,3\n", "line 2", "high 2.0 < low 3.0"),
        (HEADER + "1600000000000,1,2,0.5,1.5,3\n1600000000,1,2,0.5,1.5,3\n", "line 3", "duplicate timestamp"),
        ("timestamp,open,high,low,volume\n1600000000000,1,2,0.5,3\n", "line 1", "missing column 'close'"),
        ("timestamp,open,high,low,close\n1600000000000,1,2,0.5,3\n", "line 1", "missing column 'volume'"),
        ("a,b,c\n1,2,3\n", None, "no header row with a timestamp column"),
        (HEADER, None, "no candles in the file"),
    ],
)
def test_bad_csv_gives_one_line_error(tmp_path: Path, body: str, where: str | None, reason: str) -> None:
    path = tmp_path / "BTC_USDT-5m.csv"
    path.write_text(body)
    with pytest.raises(CandleFileError) as err:
        load_candles(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    if where is not None:
        assert message.startswith(f"{path}: {where}: "), message
    assert reason in message, message


# -- CSV timestamp forms -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "stamps"),
    [
        ("timestamp", ["1606780800000", "1606781100000", "1606781400000"]),
        ("ts", ["1606780800", "1606781100", "1606781400"]),
        ("unix", ["1606780800.0", "1606781100.0", "1606781400.0"]),
        ("date", ["2020-12-01T00:00:00Z", "2020-12-01T00:05:00Z", "2020-12-01T00:10:00Z"]),
        ("datetime", ["2020-12-01 00:00:00", "2020-12-01 00:05:00", "2020-12-01 00:10:00"]),
        ("time", ["2020-12-01T01:00:00+01:00", "2020-12-01T01:05:00+01:00", "2020-12-01T01:10:00+01:00"]),
        ("open_time", ["1606780800000000", "1606781100000000", "1606781400000000"]),  # microseconds
    ],
)
def test_csv_timestamp_forms(tmp_path: Path, column: str, stamps: list[str]) -> None:
    path = tmp_path / "BTC_USDT-5m.csv"
    lines = [f"{column},Open,High,Low,Close,Volume"]
    lines += [f"{s},{10 + i},{12 + i},{9 + i},{11 + i},{i}" for i, s in enumerate(reversed(stamps))]
    path.write_text("\n".join(lines) + "\n")
    candles = load_candles(path)
    assert [c.ts for c in candles] == [1606780800000, 1606781100000, 1606781400000]
    assert [c.open for c in candles] == [12.0, 11.0, 10.0]  # rows were newest first


def test_csv_banner_and_volume_column_rule(tmp_path: Path) -> None:
    path = tmp_path / "Bitstamp_ETHUSD_1h.csv"
    path.write_text(
        "Timestamps are UTC timezone,https://www.CryptoDataDownload.com\n"
        "date,symbol,open,high,low,close,Volume ETH,Volume USD\n"
        "2020-01-01 01-AM,ETHUSD,2,3,1,2,7,14\n"
        "2020-01-01 12-AM,ETHUSD,1,2,1,2,5,10\n"
    )
    candles = load_candles(path)
    assert [(iso(c.ts), c.volume) for c in candles] == [("2020-01-01T00:00", 5.0), ("2020-01-01T01:00", 7.0)]
    assert candles[0].pair == "ETH/USD"


# -- feather ---------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["ms", "ns"])
def test_feather_round_trip(tmp_path: Path, unit: str) -> None:
    raw = json.loads(BTC_5M.read_text())
    scale = 1 if unit == "ms" else 1_000_000
    table = pa.table(
        {
            "date": pa.array([r[0] * scale for r in raw], pa.timestamp(unit, tz="UTC")),
            "open": [r[1] for r in raw],
            "high": [r[2] for r in raw],
            "low": [r[3] for r in raw],
            "close": [r[4] for r in raw],
            "volume": [r[5] for r in raw],
        }
    )
    path = tmp_path / "BTC_USDT-5m-spot.feather"
    feather.write_feather(table, path)
    assert load_candles(path) == load_candles(BTC_5M)


def test_feather_errors(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-5m.feather"
    feather.write_feather(
        pa.table({"date": pa.array([1], pa.timestamp("ms", tz="UTC")), "open": [1.0]}), path
    )
    with pytest.raises(CandleFileError, match=r"BTC_USDT-5m.feather: missing column 'high'"):
        load_candles(path)
    stamps = pa.array([1_600_000_000_000, 1_600_000_300_000], pa.timestamp("ms", tz="UTC"))
    table = pa.table(
        {
            "date": stamps,
            "open": [1.0, 1.0],
            "high": [2.0, 0.5],
            "low": [1.0, 1.0],
            "close": [1, 1],
            "volume": [1, 1],
        }
    )
    feather.write_feather(table, path)
    with pytest.raises(CandleFileError, match=r"BTC_USDT-5m.feather: row 2: high 0.5 < low 1.0"):
        load_candles(path)
    path.write_bytes(b"ARROW1 but not really")
    with pytest.raises(CandleFileError, match=r"BTC_USDT-5m.feather: not a readable feather file"):
        load_candles(path)


# -- property: what we write is what we read, in any row order ------------------------------


@st.composite
def candle_sets(draw: st.DrawFn) -> list[Candle]:
    n = draw(st.integers(1, 30))
    steps = draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))
    price = st.floats(0.0001, 1e6, allow_nan=False)
    out = []
    ts = 1_500_000_000_000
    for step in steps:
        ts += step * 60_000
        o, c, extra_hi, extra_lo = draw(price), draw(price), draw(st.floats(0, 10)), draw(st.floats(0, 0.99))
        hi, lo = max(o, c) + extra_hi, min(o, c) * (1 - extra_lo)
        out.append(Candle("BTC/USDT", "1m", ts, o, hi, lo, c, draw(st.floats(0, 1e9))))
    return out


@settings(max_examples=60, deadline=None)
@given(candles=candle_sets(), order=st.randoms(use_true_random=False), as_csv=st.booleans())
def test_round_trip_any_order(
    tmp_path_factory: pytest.TempPathFactory, candles: list[Candle], order: random.Random, as_csv: bool
) -> None:
    rows = [[c.ts, c.open, c.high, c.low, c.close, c.volume] for c in candles]
    order.shuffle(rows)
    folder = tmp_path_factory.mktemp("rt")
    if as_csv:
        path = folder / "BTC_USDT-1m.csv"
        path.write_text(HEADER + "".join(",".join(repr(x) for x in r) + "\n" for r in rows))
    else:
        path = folder / "BTC_USDT-1m.json"
        path.write_text(json.dumps(rows))
    assert load_candles(path) == candles
