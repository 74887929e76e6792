"""Candle files -> ``list[Candle]``, oldest first, validated.

Formats (chosen by extension, else by sniffing the first bytes):

- freqtrade JSON ``[[ts_ms, open, high, low, close, volume], ...]`` (``.json``, ``.json.gz``);
- freqtrade feather: columns ``date`` (timestamp, tz-aware or naive UTC), ``open``, ``high``,
  ``low``, ``close``, ``volume`` (``.feather``);
- CSV with a header row, optionally after one banner line (CryptoDataDownload). The
  timestamp column is the first of ``timestamp, ts, open_time, unix, datetime, date, time``
  present; its values may be epoch s/ms (by magnitude), ISO 8601 or ``YYYY-MM-DD HH-AM``.
  Volume is ``volume_<base>`` when present (CryptoDataDownload's ``volume`` is quote
  volume), else ``volume``.

Every candle is checked: numbers parse and are finite, prices > 0, ``high >= max(open,
close)``, ``low <= min(open, close)``, volume >= 0, no duplicate timestamps and no two
candles closer than the timeframe. Gaps are kept as gaps. Rows may come in any order.
Any problem raises :class:`CandleFileError` with a one-line message.
"""

from __future__ import annotations

import csv
import gc
import gzip
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

from amarktai_tui.domain.types import Candle, split_pair, timeframe_to_ms
from amarktai_tui.market.errors import CandleFileError
from amarktai_tui.market.names import pair_timeframe_from_name, parse_file_name
from amarktai_tui.market.timestamps import ms_to_iso, number_to_ms, text_to_ms

__all__ = ["TS_COLUMNS", "CandleFileError", "gc_paused", "load_candles", "pair_timeframe_from_name"]

#: Timestamp column names, in order of preference.
TS_COLUMNS = ("timestamp", "ts", "open_time", "unix", "datetime", "date", "time")
_PRICES = ("open", "high", "low", "close")
_INF = float("inf")
_UNIT_DIV = {"s": 0, "ms": 1, "us": 1_000, "ns": 1_000_000}


def load_candles(
    path: str | os.PathLike[str], pair: str | None = None, timeframe: str | None = None
) -> list[Candle]:
    """Load one candle file as ``list[Candle]`` sorted by ``ts`` (open time, ms UTC), oldest first.

    ``pair`` (``BASE/QUOTE``) and ``timeframe`` (``5m``, ``1h``, ...) default to what the file
    name says (``BTC_USDT-5m.json``, ``Coinbase_BTCUSD_1h.csv``). Raises CandleFileError for a
    missing/unreadable file, an underivable pair/timeframe or any bad row.
    """
    src = os.fspath(path)
    pair, timeframe = _resolve(src, pair, timeframe)
    tf_ms = timeframe_to_ms(timeframe)
    try:
        size = os.stat(src).st_size
    except FileNotFoundError:
        raise CandleFileError(src, "no such file") from None
    except OSError as e:
        raise CandleFileError(src, f"cannot read the file: {e.strerror or e}") from None
    if size == 0:
        raise CandleFileError(src, "empty file")
    try:
        fmt = _format(src)
        kind = "line" if fmt == "csv" else "row"
        with gc_paused():
            if fmt == "json":
                candles, rows = _read_json(src, pair, timeframe)
            elif fmt == "feather":
                candles, rows = _read_feather(src, pair, timeframe)
            else:
                candles, rows = _read_csv(src, pair, timeframe)
            return _order_and_check(src, candles, rows, kind, timeframe, tf_ms)
    except CandleFileError:
        raise
    except UnicodeDecodeError:
        raise CandleFileError(src, "not UTF-8 text") from None
    except OSError as e:
        raise CandleFileError(src, f"cannot read the file: {e.strerror or e}") from None


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building ~10^5 acyclic objects (halves the time it takes)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _resolve(src: str, pair: str | None, timeframe: str | None) -> tuple[str, str]:
    if pair is None or timeframe is None:
        parsed = parse_file_name(src) or pair_timeframe_from_name(src)  # the latter raises
        pair = pair or parsed[0]
        timeframe = timeframe or parsed[1]
    try:
        split_pair(pair)
        timeframe_to_ms(timeframe)
    except ValueError as e:
        raise CandleFileError(src, str(e)) from None
    return pair, timeframe


def _format(src: str) -> str:
    lower = src.lower()
    if lower.endswith((".json", ".json.gz")):
        return "json"
    if lower.endswith((".feather", ".ftr", ".arrow")):
        return "feather"
    if lower.endswith((".csv", ".txt")):
        return "csv"
    with open(src, "rb") as f:
        head = f.read(64)
    if head.startswith((b"ARROW1", b"FEA1")):
        return "feather"
    return "json" if head.lstrip().startswith(b"[") else "csv"


def _short(x: object) -> str:
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _price_problem(o: float, hi: float, lo: float, c: float, v: float) -> str | None:
    """None if the OHLCV values are sane, else the reason (one line)."""
    if (
        lo > 0.0
        and hi >= lo
        and hi >= o
        and hi >= c
        and lo <= o
        and lo <= c
        and 0.0 <= v < _INF
        and hi < _INF
    ):
        return None
    named = (("open", o), ("high", hi), ("low", lo), ("close", c), ("volume", v))
    for name, x in named:
        if x != x or x in (_INF, -_INF):
            return f"{name} is not a finite number ({x})"
    for name, x in named[:4]:
        if x <= 0.0:
            return f"{name} {x} <= 0"
    if hi < lo:
        return f"high {hi} < low {lo}"
    for name, x in (("open", o), ("close", c)):
        if hi < x:
            return f"high {hi} < {name} {x}"
        if lo > x:
            return f"low {lo} > {name} {x}"
    return f"volume {v} < 0"


def _ts_value(t: object) -> int:
    if isinstance(t, bool):
        raise TypeError("bool")
    if isinstance(t, int | float):
        return number_to_ms(t)
    if isinstance(t, str):
        return text_to_ms(t)
    raise TypeError(type(t).__name__)


def _json_row_problem(row: object) -> str:
    if not isinstance(row, list):
        return f"expected an array [ts_ms, open, high, low, close, volume], got {_short(row)}"
    if len(row) < 6:
        return f"expected 6 values [ts_ms, open, high, low, close, volume], got {len(row)}"
    try:
        _ts_value(row[0])
    except (TypeError, ValueError):
        return f"bad timestamp {_short(row[0])}"
    for name, x in zip(("open", "high", "low", "close", "volume"), row[1:6], strict=True):
        try:
            if isinstance(x, bool):
                raise TypeError
            float(x)
        except (TypeError, ValueError):
            return f"bad number {_short(x)} in {name}"
    return f"bad row {_short(row)}"


def _read_json(src: str, pair: str, tf: str) -> tuple[list[Candle], list[int] | None]:
    try:
        if src.lower().endswith(".gz"):
            with gzip.open(src, "rb") as f:
                data = json.load(f)
        else:
            with open(src, "rb") as f:
                data = json.load(f)
    except json.JSONDecodeError as e:
        raise CandleFileError(src, f"not valid JSON: {e.msg} (column {e.colno})", e.lineno, "line") from None
    if not isinstance(data, list):
        raise CandleFileError(
            src,
            f"expected a JSON array of [ts_ms, open, high, low, close, volume] rows, got {type(data).__name__}",
        )
    candles: list[Candle] = []
    append = candles.append
    for i, row in enumerate(data, 1):
        try:
            if type(row) is not list:
                raise TypeError
            t = row[0]
            o, hi, lo, c, v = float(row[1]), float(row[2]), float(row[3]), float(row[4]), float(row[5])
            if type(t) is not int or not 100_000_000_000 <= t < 100_000_000_000_000:
                t = _ts_value(t)
        except (TypeError, ValueError, IndexError):
            raise CandleFileError(src, _json_row_problem(row), i) from None
        if not (
            lo > 0.0
            and hi >= lo
            and hi >= o
            and hi >= c
            and lo <= o
            and lo <= c
            and 0.0 <= v < _INF
            and hi < _INF
        ):
            raise CandleFileError(src, _price_problem(o, hi, lo, c, v) or "bad values", i)
        append(Candle(pair, tf, t, o, hi, lo, c, v))
    return candles, None


def _volume_column(names: list[str], pair: str) -> str | None:
    own = "volume_" + split_pair(pair)[0].lower()
    if own in names:
        return own
    return "volume" if "volume" in names else None


def _columns(src: str, names: list[str], pair: str, row: int | None, kind: str) -> list[int]:
    """Indices of [timestamp, open, high, low, close, volume] in ``names`` (normalised)."""
    ts = next((n for n in TS_COLUMNS if n in names), None)
    if ts is None:
        raise CandleFileError(src, f"missing timestamp column (one of {', '.join(TS_COLUMNS)})", row, kind)
    for col in _PRICES:
        if col not in names:
            raise CandleFileError(src, f"missing column {col!r} (have: {', '.join(names)})", row, kind)
    vol = _volume_column(names, pair)
    if vol is None:
        raise CandleFileError(src, f"missing column 'volume' (have: {', '.join(names)})", row, kind)
    return [names.index(n) for n in (ts, *_PRICES, vol)]


def _normalise(header: list[str]) -> list[str]:
    return [h.strip().lower().replace(" ", "_") for h in header]


def _read_csv(src: str, pair: str, tf: str) -> tuple[list[Candle], list[int] | None]:
    with open(src, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header: list[str] | None = None
            for _ in range(2):  # one banner line may come before the header
                first = next(reader, None)
                if first is None:
                    break
                if any(n in TS_COLUMNS for n in _normalise(first)):
                    header = _normalise(first)
                    break
            if header is None:
                raise CandleFileError(
                    src,
                    f"no header row with a timestamp column ({', '.join(TS_COLUMNS)}) in the first 2 lines",
                )
            cols = _columns(src, header, pair, reader.line_num, "line")
            ti, oi, hi_i, lo_i, ci, vi = cols
            width = max(cols) + 1
            names = ("open", "high", "low", "close", "volume")
            candles: list[Candle] = []
            rows: list[int] = []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                line = reader.line_num
                if len(row) < width:
                    raise CandleFileError(
                        src, f"expected {len(header)} columns, got {len(row)}", line, "line"
                    )
                try:
                    t = text_to_ms(row[ti])
                except ValueError as e:
                    raise CandleFileError(src, str(e), line, "line") from None
                values: list[float] = []
                for name, idx in zip(names, (oi, hi_i, lo_i, ci, vi), strict=True):
                    try:
                        values.append(float(row[idx]))
                    except ValueError:
                        raise CandleFileError(
                            src, f"bad number {row[idx]!r} in {name}", line, "line"
                        ) from None
                o, hi, lo, c, v = values
                problem = _price_problem(o, hi, lo, c, v)
                if problem:
                    raise CandleFileError(src, problem, line, "line")
                candles.append(Candle(pair, tf, t, o, hi, lo, c, v))
                rows.append(line)
        except csv.Error as e:
            raise CandleFileError(src, f"not valid CSV: {e}", reader.line_num, "line") from None
    return candles, rows


def _read_feather(src: str, pair: str, tf: str) -> tuple[list[Candle], list[int] | None]:
    import pyarrow as pa
    import pyarrow.feather as feather

    try:
        table = feather.read_table(src)
    except (pa.ArrowException, ValueError) as e:
        raise CandleFileError(src, f"not a readable feather file: {e}") from None
    ti, *value_idx = _columns(src, _normalise(list(table.column_names)), pair, None, "row")
    ts_col = table.column(ti)
    typ = ts_col.type
    stamps: list[Any]
    if pa.types.is_timestamp(typ):
        raw = ts_col.cast(pa.int64()).to_pylist()
        div = _UNIT_DIV[typ.unit]
        if div == 0:
            stamps = [None if x is None else x * 1000 for x in raw]
        else:
            stamps = [None if x is None else x // div for x in raw]
    elif pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_string(typ):
        stamps = ts_col.to_pylist()
    else:
        raise CandleFileError(src, f"unsupported timestamp column type {typ}")
    columns = [table.column(i).to_pylist() for i in value_idx]
    names = ("timestamp", "open", "high", "low", "close", "volume")
    candles: list[Candle] = []
    for i, row in enumerate(zip(stamps, *columns, strict=True), 1):
        for name, x in zip(names, row, strict=True):
            if x is None:
                raise CandleFileError(src, f"missing value in {name}", i)
        try:
            t = row[0] if pa.types.is_timestamp(typ) else _ts_value(row[0])
        except (TypeError, ValueError) as e:
            raise CandleFileError(src, f"bad timestamp {_short(row[0])}: {e}", i) from None
        o, hi, lo, c, v = (float(x) for x in row[1:])
        problem = _price_problem(o, hi, lo, c, v)
        if problem:
            raise CandleFileError(src, problem, i)
        candles.append(Candle(pair, tf, int(t), o, hi, lo, c, v))
    return candles, None


def _order_and_check(
    src: str, candles: list[Candle], rows: list[int] | None, kind: str, tf: str, tf_ms: int
) -> list[Candle]:
    n = len(candles)
    if n == 0:
        raise CandleFileError(src, "no candles in the file")
    ts = [c.ts for c in candles]
    if not all(a < b for a, b in pairwise(ts)):
        if rows is None:
            rows = list(range(1, n + 1))
        if all(a > b for a, b in pairwise(ts)):  # newest first
            candles.reverse()
            rows.reverse()
            ts.reverse()
        else:
            order = sorted(range(n), key=ts.__getitem__)
            candles = [candles[i] for i in order]
            rows = [rows[i] for i in order]
            ts = [ts[i] for i in order]
    if all(b - a >= tf_ms for a, b in pairwise(ts)):
        return candles
    if rows is None:
        rows = list(range(1, n + 1))
    for k in range(1, n):
        gap = ts[k] - ts[k - 1]
        if gap >= tf_ms:
            continue
        first, second = sorted((rows[k - 1], rows[k]))
        if gap == 0:
            reason = f"duplicate timestamp {ts[k]} ({ms_to_iso(ts[k])}), same as {kind} {first}"
        else:
            reason = (
                f"candle at {ms_to_iso(ts[k])} is {gap} ms after the one at {kind} {first}, "
                f"less than the {tf} timeframe (wrong --timeframe?)"
            )
        raise CandleFileError(src, reason, second, kind)
    return candles
