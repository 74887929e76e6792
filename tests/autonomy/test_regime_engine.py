"""Regimes in the engine: the same replay in expert and autonomous mode, on real candles.

Expert mode: regimes are computed (``engine.regimes``) but no entry changes. Autonomous mode:
every entry's quantity is the expert run's times the ``size_scaling`` multiplier of the regime
its stream was in when the decision candle opened (read from the ``RegimeChanged`` events, not
from the book), and ``allowed_strategies`` refuses entries with the reason. A backtest runs the
same path (``open_engine``) and gives the autonomous replay's fills.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from regime_helpers import BTC_1H, ETH_1H, write_slice

from amarktai_tui.autonomy.regime import RegimeBook
from amarktai_tui.config import Settings, load_settings
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.events import EventBus, RegimeChanged
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.exchanges.markets import market_rules
from amarktai_tui.locations import db_path
from amarktai_tui.ops.backtest import BacktestRequest, run_backtest

START, STOP = 2000, 3500  # 1500 candles of 2021 (every regime occurs in them)
HOUR = 3_600_000
SCALING = {
    "trending_up": Decimal("1.2"),
    "trending_down": Decimal("0.6"),
    "ranging": Decimal("1.0"),
    "volatile": Decimal("0.5"),
    "squeeze": Decimal("0.7"),
    "unknown": Decimal("0.8"),
}
# Sizing is what is compared: breakers and exposure caps that depend on position size are opened
# wide so that both runs take the same decisions (a 20% drawdown trip in one run only would not).
CONFIG = """
[risk]
max_asset_exposure = "0.9"
bot_max_drawdown = "0.9"
max_consecutive_losses = 1000
account_daily_loss = "0.9"
account_max_drawdown = "0.9"

[autonomy]
mode = "{mode}"

[autonomy.regime]
enabled = {enabled}
size_scaling = {{ {scaling} }}
allowed_strategies = {allowed}

[[bots]]
name = "btc-usdt-1h"
pair = "BTC/USDT"
timeframe = "1h"
strategy = "sma_cross"
params = {{ fast = 10, slow = 30 }}
capital = "1000"

[[bots]]
name = "eth-rsi"
pair = "ETH/USDT"
timeframe = "1h"
strategy = "rsi_reversion"
capital = "1000"
"""


def _settings(tmp: Path, name: str, mode: str, *, enabled: bool = True, allowed: str = "{}") -> Settings:
    scaling = ", ".join(f'{k} = "{v}"' for k, v in SCALING.items())
    path = tmp / f"config-{name}.toml"
    path.write_text(CONFIG.format(mode=mode, enabled=str(enabled).lower(), scaling=scaling, allowed=allowed))
    return load_settings(path, required=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("candles")
    return [
        write_slice(BTC_1H, d / "BTC_USDT-1h.json", START, STOP),
        write_slice(ETH_1H, d / "ETH_USDT-1h.json", START, STOP),
    ]


async def _replay(settings: Settings, data_dir: Path, files: list[Path]) -> tuple[TradingEngine, list[Any]]:
    bus = EventBus()
    changes: list[RegimeChanged] = []
    bus.subscribe(RegimeChanged, changes.append)
    engine, feed = await open_engine(
        settings, data_dir, ReplayArgs([str(f) for f in files], speed=0, until_end=True), bus
    )
    try:
        await engine.run(feed)
    finally:
        await engine.close()
    return engine, changes


def _fills(data_dir: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db_path(data_dir)}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT b.name AS bot, f.client_order_id, f.side, f.quantity, f.price, f.fee, f.realised_pnl, f.ts"
            " FROM fills f JOIN bots b ON b.id = f.bot_id ORDER BY f.id"
        ).fetchall()
    finally:
        conn.close()
    return [dict(r) for r in rows]


def _entries(fills: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["client_order_id"]: f for f in fills if f["side"] == "buy"}


def _regime_at(changes: list[RegimeChanged], pair: str, decision_ts: int) -> str:
    """The stream's regime at the close of the decision candle (opened at ``decision_ts``): the
    engine feeds the book before its bots, so an entry is sized by its own candle's regime (a
    change is published at its candle's close)."""
    regime = "unknown"
    for ev in changes:
        if ev.pair == pair and ev.ts <= decision_ts + HOUR:
            regime = ev.regime
    return regime


def _clear_env(mp: pytest.MonkeyPatch) -> None:
    """The developer's AMARKTAI_* variables must not leak into the settings under test."""
    for key in list(os.environ):
        if key.startswith("AMARKTAI_"):
            mp.delenv(key)


@pytest.fixture(autouse=True)
def _no_amarktai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_env(monkeypatch)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, files: list[Path]) -> dict[str, Any]:
    """Four replays of the same candles: regimes off, expert, autonomous, autonomous with a strategy filter."""
    tmp = tmp_path_factory.mktemp("runs")
    out: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as mp:
        _clear_env(mp)
        for name, mode, enabled, allowed in (
            ("off", "expert", False, "{}"),
            ("expert", "expert", True, "{}"),
            ("auto", "autonomous", True, "{}"),
            ("allowed", "autonomous", True, '{ ranging = ["rsi_reversion"], squeeze = [] }'),
        ):
            settings = _settings(tmp, name, mode, enabled=enabled, allowed=allowed)
            engine, changes = asyncio.run(_replay(settings, tmp / name, files))
            out[name] = {"engine": engine, "changes": changes, "fills": _fills(tmp / name)}
    return out


def test_expert_mode_shows_regimes_and_changes_no_fill(runs: dict[str, Any]) -> None:
    off, expert = runs["off"], runs["expert"]
    assert off["engine"].regimes is None and off["changes"] == []
    book = expert["engine"].regimes
    assert isinstance(book, RegimeBook) and expert["engine"].size_hook is None
    assert len(expert["fills"]) >= 20
    assert expert["fills"] == off["fills"], "expert mode: every fill as without regimes"
    assert {ev.pair for ev in expert["changes"]} == {"BTC/USDT", "ETH/USDT"}
    assert {ev.regime for ev in expert["changes"]} == {
        "trending_up",
        "trending_down",
        "ranging",
        "volatile",
        "squeeze",
    }
    for runner in expert["engine"].runners.values():
        last = [ev.regime for ev in expert["changes"] if ev.pair == runner.rec.pair][-1]
        assert book.regime_of(runner) == last


def test_autonomous_mode_scales_every_entry_by_its_regime(runs: dict[str, Any]) -> None:
    expert, auto = _entries(runs["expert"]["fills"]), _entries(runs["auto"]["fills"])
    assert runs["auto"]["engine"].size_hook is not None
    assert set(auto) == set(expert) and len(auto) >= 10, "same decisions, only sizes differ"
    seen: defaultdict[str, int] = defaultdict(int)
    for coid, e in expert.items():
        a = auto[coid]
        pair = "BTC/USDT" if a["bot"] == "btc-usdt-1h" else "ETH/USDT"
        decision_ts = a["ts"] - HOUR  # a market entry fills at the open of the candle after the decision
        regime = _regime_at(runs["auto"]["changes"], pair, decision_ts)
        seen[regime] += 1
        m = SCALING[regime]
        step = market_rules("binance", pair).amount_step
        q_auto, q_exp = Decimal(a["quantity"]), Decimal(e["quantity"])
        # both are rounded down to the market's step: floor(m x) vs m floor(x)
        assert abs(q_auto - m * q_exp) <= (1 + m) * step, (coid, regime, q_auto, q_exp)
        assert a["price"] == e["price"]
        notional_ratio = q_auto * Decimal(a["price"]) / (q_exp * Decimal(e["price"]))
        assert abs(notional_ratio - m) < Decimal("0.01"), (coid, regime, notional_ratio)
    assert len(seen) >= 3, f"entries in too few regimes for a meaningful check: {dict(seen)}"
    assert sum(seen[r] for r in seen if SCALING[r] != 1) >= 5


def test_allowed_strategies_refuse_entries_with_the_reason(runs: dict[str, Any]) -> None:
    expert, allowed = _entries(runs["expert"]["fills"]), _entries(runs["allowed"]["fills"])
    changes = runs["allowed"]["changes"]
    book = runs["allowed"]["engine"].regimes
    assert isinstance(book, RegimeBook)
    refused_coids = set()
    for coid, e in expert.items():
        pair = "BTC/USDT" if e["bot"] == "btc-usdt-1h" else "ETH/USDT"
        regime = _regime_at(changes, pair, e["ts"] - HOUR)
        if e["bot"] == "btc-usdt-1h" and regime in ("ranging", "squeeze"):
            refused_coids.add(coid)
    assert refused_coids, "the expert run had sma_cross entries in ranging or squeeze markets"
    sma = [coid for coid, f in allowed.items() if f["bot"] == "btc-usdt-1h"]
    for coid in sma:
        regime = _regime_at(changes, "BTC/USDT", allowed[coid]["ts"] - HOUR)
        assert regime not in ("ranging", "squeeze"), (coid, regime)
    assert not refused_coids & set(allowed)
    reasons = {why for _, _, why in book.refusals}
    assert reasons <= {
        "regime ranging: sma_cross may not open positions",
        "regime squeeze: sma_cross may not open positions",
    }
    assert "regime ranging: sma_cross may not open positions" in reasons
    btc_id = next(r.rec.id for r in runs["allowed"]["engine"].runners.values() if r.rec.name == "btc-usdt-1h")
    assert {bot for _, bot, _ in book.refusals} == {btc_id}
    # rsi_reversion is allowed everywhere: still trades, scaled
    assert any(f["bot"] == "eth-rsi" for f in allowed.values())


async def test_backtest_runs_the_same_regime_sizing_as_the_replay(
    runs: dict[str, Any], files: list[Path], tmp_path: Path
) -> None:
    settings = _settings(tmp_path, "bt", "autonomous")
    request = BacktestRequest("sma_cross", (str(files[0]),), {"fast": 10, "slow": 30}, capital=Decimal(1000))
    await run_backtest(settings, request, tmp_path / "bt")
    bt = [f for f in _fills(tmp_path / "bt")]
    replay = [f for f in runs["auto"]["fills"] if f["bot"] == "btc-usdt-1h"]
    assert len(bt) >= 10
    assert [json.dumps(f, sort_keys=True) for f in bt] == [json.dumps(f, sort_keys=True) for f in replay]
    expert = [f for f in runs["expert"]["fills"] if f["bot"] == "btc-usdt-1h"]
    assert [f["quantity"] for f in bt] != [f["quantity"] for f in expert], "the backtest scaled its sizes"
