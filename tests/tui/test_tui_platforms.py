"""The Platforms tab (6), driven by keys: the real app over a real engine replaying the real BTC 1h
candles (3 demo bots on Binance) into a real ledger; API health from real ApiBreakers put in place
of the paper engine's empty ``api_health``. Waits are on the pane's own ledger-read signal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import pytest
from textual.widgets import DataTable, Label, TabbedContent
from tui_helpers import SIZE, replay_done

from amarktai_tui.domain.enums import BotState
from amarktai_tui.exchanges.api_breaker import ApiBreaker
from amarktai_tui.ops.platforms import read_ledger
from amarktai_tui.tui import fmt
from amarktai_tui.tui.app import AmarktaiApp
from amarktai_tui.tui.breakers_pane import latency
from amarktai_tui.tui.platforms_pane import PAPER_API, PlatformsPane
from amarktai_tui.tui.screens.bot_detail import BotDetailScreen

MakeApp = Callable[..., AmarktaiApp]
TIMEOUT_S = 30  # a guard against a hang, not a wait


async def ledger_read(pane: PlatformsPane) -> None:
    """Read the ledger now and wait until a read that started after this call has finished (one
    under way may have started before; the next cannot have: reads never overlap)."""
    for _ in range(2):
        pane.ledger_read.clear()
        pane.refresh_ledger()  # no-op while one is under way: then that one is waited for
        await asyncio.wait_for(pane.ledger_read.wait(), TIMEOUT_S)


def row(app: AmarktaiApp, table_id: str, key: str) -> list[str]:
    return [str(c) for c in app.query_one(f"#{table_id}", DataTable).get_row(key)]


async def test_the_platforms_tab_shows_each_exchange_drills_down_to_its_bots_and_shows_api_health(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        engine = app.engine
        assert engine is not None
        first = min(engine.runners)
        await engine.set_bot_state(first, BotState.PAUSED, "paused by the test")  # 3 bots, 2 active

        await pilot.press("6")
        assert app.query_one("#tabs", TabbedContent).active == "platforms"
        assert app.focused is app.query_one("#platforms-table", DataTable)
        pane = app.query_one(PlatformsPane)
        await ledger_read(pane)
        await pilot.pause()

        table = app.query_one("#platforms-table", DataTable)
        assert [k.value for k in table.rows] == ["luno", "binance", "kucoin", "valr", "ovex"]
        assert pane.ledger is not None and pane.ledger.as_of_ms == engine.now_ms, "replay: market time"
        fig = read_ledger(engine.store.path, engine.now_ms).by_exchange["binance"]  # read apart from the pane
        runners = list(engine.runners.values())
        trades = sum(r.stats.trades for r in runners)
        wins = sum(r.stats.wins for r in runners)
        assert fig.realised == sum((r.stats.realised for r in runners), Decimal(0)), "the engine agrees"
        name, bots, active, p_today, p_total, t_today, win, api, lat, error = row(
            app, "platforms-table", "binance"
        )
        assert (name, bots, active) == ("Binance", "3/10", "2")
        assert p_total == fmt.money(fig.total, signed=True) and fig.unrealised != 0, "a position is open"
        assert win == fmt.pct(wins / trades) == fmt.pct(fig.win_rate) and trades > 0
        assert (p_today, t_today) == (fmt.money(fig.today, signed=True), str(fig.trades_today))
        assert (api, lat, error) == (PAPER_API, "-", "-")
        assert row(app, "platforms-table", "luno")[1:3] == ["0/5", "0"]
        assert row(app, "platforms-table", "kucoin")[1:5] == ["0/10", "0", "0.00", "0.00"]
        summary = str(app.query_one("#platforms-summary", Label).content)
        assert (
            summary.startswith("Bots: 3 (at most 45 in all), 2 active (running)")
            and "no exchange API" in summary
        )
        assert not app.query_one("#platform-bots-table").display

        # Enter on Binance: its bots under the table
        await pilot.press("down", "enter")
        await pilot.pause()
        bots_table = app.query_one("#platform-bots-table", DataTable)
        assert bots_table.display and app.focused is bots_table and pane.exchange == "binance"
        assert [k.value for k in bots_table.rows] == [str(i) for i in sorted(engine.runners)]
        for bot_id, r in engine.runners.items():
            cells = row(app, "platform-bots-table", str(bot_id))
            assert cells[:3] == [r.rec.name, r.rec.pair, f"{r.rec.strategy} {r.rec.timeframe}"]
            assert cells[3] == ("paused" if bot_id == first else "running")
            assert cells[5:] == [
                fmt.money(r.stats.realised, signed=True),
                str(r.stats.trades),
                fmt.pct(r.win_rate),
            ]
        assert "Bots on Binance: 3/10, 2 active" in str(app.query_one("#platform-bots-title", Label).content)

        # Enter on a bot: its detail screen; esc back to the list, esc again closes the list
        await pilot.press("down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, BotDetailScreen) and app.screen.bot_id == sorted(engine.runners)[1]
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, BotDetailScreen) and bots_table.display
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, BotDetailScreen) and app.screen.bot_id == sorted(engine.runners)[1]
        await pilot.press("escape", "escape")
        await pilot.pause()
        assert not bots_table.display and pane.exchange is None
        assert app.focused is app.query_one("#platforms-table", DataTable)

        # a click on an exchange without bots (Textual: the first click highlights the row, a click on
        # the highlighted row selects it): an empty list under the table
        await pilot.click("#platforms-table", offset=(2, 3))  # the header, Luno, Binance, KuCoin
        await pilot.pause()
        assert pane.exchange is None and table.cursor_row == 2
        await pilot.click("#platforms-table", offset=(2, 3))
        await pilot.pause()
        assert pane.exchange == "kucoin" and bots_table.display and bots_table.row_count == 0
        assert "Bots on KuCoin: 0/10, 0 active" in str(app.query_one("#platform-bots-title", Label).content)
        await pilot.press("escape")

        # a live-like engine: API health from real breakers (a paper broker has none)
        clock = [1000.0]
        binance = ApiBreaker("binance", failures=2, cooldown_s=60, clock=lambda: clock[0])
        kucoin = ApiBreaker("kucoin", failures=2, cooldown_s=60, clock=lambda: clock[0])
        for seconds in (0.012, 0.020, 0.250):
            binance.success(seconds)
            kucoin.success(seconds / 4)
        binance.failure("RequestTimeout: binance GET /api/v3/order")
        binance.failure("ExchangeNotAvailable: binance GET /api/v3/order 503")
        kucoin.failure("RequestTimeout: kucoin GET /api/v1/orders")
        clock[0] += 20
        monkeypatch.setattr(engine, "api_health", lambda: {b.exchange: b.health() for b in (binance, kucoin)})
        pane.refresh_view()
        await pilot.pause()
        b, k = binance.health(), kucoin.health()
        assert row(app, "platforms-table", "binance")[7:] == [
            "open, retry 40 s",
            f"{latency(b.latency_p50_ms)}/{latency(b.latency_p99_ms)}",
            "ExchangeNotAvailable: binance GET /api/v3/order 503",
        ]
        assert b.latency_p50_ms is not None and latency(b.latency_p50_ms) == "20"
        assert row(app, "platforms-table", "kucoin")[7:] == [
            "closed, 1 failed",
            f"{latency(k.latency_p50_ms)}/{latency(k.latency_p99_ms)}",
            "RequestTimeout: kucoin GET /api/v1/orders",
        ]
        assert row(app, "platforms-table", "luno")[7:] == ["not in use", "-", "-"]
        assert "no exchange API" not in str(app.query_one("#platforms-summary", Label).content)
        binance.success(0.015)  # the breaker closes: the next redraw shows it
        pane.refresh_view()
        await pilot.pause()
        assert row(app, "platforms-table", "binance")[7] == "closed"

        shown = row(app, "platforms-table", "binance")
        app.theme = next(t for t in sorted(app.available_themes) if t != app.theme)  # colours resolved anew
        await pilot.pause()
        assert row(app, "platforms-table", "binance") == shown
