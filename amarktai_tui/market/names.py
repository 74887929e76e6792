"""Pair and timeframe from a candle file's name.

Two naming styles are understood:

- freqtrade: ``BTC_USDT-5m.json`` / ``.json.gz`` / ``.feather`` / ``.csv``, optionally with a
  ``-spot`` suffix (``BTC_USDT-5m-spot.feather``) -> ``("BTC/USDT", "5m")``;
- CryptoDataDownload: ``Coinbase_BTCUSD_1h.csv`` -> ``("BTC/USD", "1h")``, the symbol split
  by a known quote currency (``Binance_ETHBTC_d.csv`` -> ``("ETH/BTC", "1d")``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from amarktai_tui.domain.types import timeframe_to_ms
from amarktai_tui.market.errors import CandleFileError

#: File extensions a candle file may carry (longest first, so ``.json.gz`` wins over ``.gz``).
EXTENSIONS = (".json.gz", ".json", ".feather", ".csv")

#: Quote currencies tried, in this order, when splitting a glued symbol such as ``BTCUSD``.
KNOWN_QUOTES = ("USDT", "USDC", "USD", "EUR", "ZAR", "BTC", "ETH")

_FREQTRADE = re.compile(r"^(?P<base>[A-Za-z0-9]+)_(?P<quote>[A-Za-z0-9]+)-(?P<tf>\d+[mhdw])(?:-spot)?$")
_CDD = re.compile(
    r"^[A-Za-z0-9]+_(?P<sym>[A-Za-z0-9]{5,10})_(?P<tf>\d*[mhdw]|minute|hour|day)$", re.IGNORECASE
)
_CDD_WORDS = {"minute": "1m", "hour": "1h", "day": "1d"}


def file_stem(path: str | os.PathLike[str]) -> str:
    """The file name without a known candle-file extension (``BTC_USDT-5m.json.gz`` -> ``BTC_USDT-5m``)."""
    name = Path(path).name
    for ext in EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def split_symbol(symbol: str) -> tuple[str, str] | None:
    """Split a glued exchange symbol by a known quote: ``"BTCUSD"`` -> ``("BTC", "USD")``; None if unknown."""
    upper = symbol.upper()
    for quote in KNOWN_QUOTES:
        if upper.endswith(quote) and len(upper) - len(quote) >= 2:
            return upper[: -len(quote)], quote
    return None


def parse_file_name(path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """``(pair, timeframe)`` from the file name, or None when the name says neither.

    ``pair`` is ``BASE/QUOTE``; ``timeframe`` is like ``5m``/``1h``/``1d`` and valid for
    :func:`~amarktai_tui.domain.types.timeframe_to_ms`.
    """
    stem = file_stem(path)
    m = _FREQTRADE.match(stem)
    if m:
        pair, timeframe = f"{m['base'].upper()}/{m['quote'].upper()}", m["tf"]
    else:
        m = _CDD.match(stem)
        if not m:
            return None
        parts = split_symbol(m["sym"])
        if parts is None:
            return None
        token = m["tf"].lower()
        timeframe = _CDD_WORDS.get(token) or (token if token[0].isdigit() else "1" + token)
        pair = f"{parts[0]}/{parts[1]}"
    try:
        timeframe_to_ms(timeframe)
    except ValueError:
        return None
    return pair, timeframe


def pair_timeframe_from_name(path: str | os.PathLike[str]) -> tuple[str, str]:
    """``(pair, timeframe)`` from the file name, e.g. ``BTC_USDT-5m.json`` -> ``("BTC/USDT", "5m")``.

    Raises CandleFileError (one line, asking for ``--pair``/``--timeframe``) when the name
    does not say.
    """
    parsed = parse_file_name(path)
    if parsed is None:
        raise CandleFileError(
            path,
            "cannot tell the pair and timeframe from the file name; pass --pair and --timeframe "
            "(or name the file like BTC_USDT-5m.json)",
        )
    return parsed
