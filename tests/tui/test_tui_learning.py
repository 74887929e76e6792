"""The bot detail screen's self-learning review: the figures ``amarktai learn BOT`` computes from the
ledger (``learning.review``), read in a thread after a real replay of BTC 1h."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing

from rich.text import Text
from textual.widgets import DataTable, Static
from tui_helpers import REPLAY_TIMEOUT_S, SIZE, profits_read, replay_done

from amarktai_tui.autonomy.learning import pct
from amarktai_tui.config import Settings
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.ops.learn_commands import learning_review
from amarktai_tui.tui.app import AmarktaiApp
from amarktai_tui.tui.screens.bot_detail import BotDetailScreen

MakeApp = Callable[..., AmarktaiApp]


async def test_bot_detail_shows_the_learning_review_of_the_ledger(
    make_app: MakeApp, settings: Settings
) -> None:
    settings.autonomy.learning.lookback_days = 365  # the whole replay: enough trades for the rules
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        await profits_read(app, pilot)  # the ledger holds everything the engine made (its final snapshot too)
        engine = app.engine
        assert engine is not None
        bot = engine.runner_by_name("btc-rsi")  # trades often
        table = app.query_one("#bots-table", DataTable)
        table.focus()
        table.move_cursor(row=table.get_row_index(str(bot.rec.id)))
        await pilot.press("d")
        screen = app.screen
        assert isinstance(screen, BotDetailScreen) and screen.bot_id == bot.rec.id
        deadline = time.monotonic() + REPLAY_TIMEOUT_S
        while screen.review is None or not screen.review_synced:  # read in a thread, from the ledger
            assert time.monotonic() < deadline, str(screen.query_one("#detail-learning", Static).content)
            await pilot.pause(0.05)

        with closing(connect_readonly(str(engine.store.path))) as conn:
            direct = learning_review(conn, "btc-rsi", app.settings)  # what `amarktai learn btc-rsi` shows
        assert screen.review == direct
        assert direct.trades >= app.settings.autonomy.learning.min_trades and direct.changes
        assert direct.win_rate is not None and direct.best_hour and direct.worst_pair

        shown = screen.query_one("#detail-learning", Static).content
        text = shown.plain if isinstance(shown, Text) else str(shown)
        assert f"{direct.trades} closed trades" in text
        assert f"win rate {pct(direct.win_rate)} ({direct.wins} won, {direct.losses} lost)" in text
        ratio = "-" if direct.wl_ratio is None else f"{direct.wl_ratio:.2f}"
        assert f"win/loss {ratio}" in text
        assert f"best hour {direct.best_hour.key} UTC" in text
        assert f"worst pair {direct.worst_pair.key}" in text
        assert "Learning would change (expert mode: proposals to accept in the Autonomy tab):" in text
        for change in direct.changes:
            assert f"{change.field} " in text and change.reason in text
