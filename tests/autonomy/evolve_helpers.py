"""Helpers of the evolution and autopilot tests: small slices of the real Binance candles in tmp
files (named as the replay loader expects), and an empty config file."""

from __future__ import annotations

import functools
import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"
BTC_1H = DATA / "BTC_USDT-1h.json"
ETH_1H = DATA / "ETH_USDT-1h.json"


@functools.lru_cache(maxsize=4)
def _rows(src: Path) -> list[list[float]]:
    rows: list[list[float]] = json.loads(src.read_text())
    return rows


def slice_file(src: Path, dst_dir: Path, n: int = 300, start: int = 0) -> Path:
    """Candles ``start .. start + n`` of ``src`` into ``dst_dir`` under the same file name."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    dst.write_text(json.dumps(_rows(src)[start : start + n]))
    return dst


def empty_config(tmp: Path) -> Path:
    cfg = tmp / "config.toml"
    cfg.write_text("[health]\nenabled = false\n\n[backup]\ndaily = false\n")
    return cfg
