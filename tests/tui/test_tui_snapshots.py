"""SVG snapshots at 140x45 of finished replays (deterministic: real data, engine time, no wall clock).

Update with ``pytest tests/tui --snapshot-update`` after checking the change is wanted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from tui_helpers import REPLAY_TIMEOUT_S, SIZE, profits_read, replay_done

from amarktai_tui.tui.app import AmarktaiApp
from amarktai_tui.tui.screens.bot_detail import BotDetailScreen

MakeApp = Callable[..., AmarktaiApp]


def after_replay(app: AmarktaiApp, *keys: str) -> Callable[[Pilot[None]], Any]:
    async def run_before(pilot: Pilot[None]) -> None:
        await replay_done(app, pilot)
        if keys:
            await pilot.press(*keys)
            await pilot.pause()

    return run_before


def test_main_screen_bots(snap_compare: Any, make_app: MakeApp) -> None:
    app = make_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=after_replay(app))


def test_main_screen_profits(snap_compare: Any, make_app: MakeApp) -> None:
    app = make_app()
    show = after_replay(app, "2")

    async def run_before(pilot: Pilot[None]) -> None:
        await show(pilot)
        await profits_read(app, pilot)  # the figures are read from the ledger in a thread

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_new_bot_form(snap_compare: Any, make_app: MakeApp) -> None:
    """The form with its first field focused (the cursor is steady: see conftest)."""
    app = make_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=after_replay(app, "n"))


def test_bot_details(snap_compare: Any, make_app: MakeApp) -> None:
    app = make_app()

    async def run_before(pilot: Pilot[None]) -> None:
        await replay_done(app, pilot)
        await profits_read(app, pilot)  # the ledger holds all the engine made: the review is final
        await pilot.press("down", "d")
        screen = app.screen
        assert isinstance(screen, BotDetailScreen)
        deadline = time.monotonic() + REPLAY_TIMEOUT_S
        while screen.review is None or not screen.review_synced:  # read from the ledger in a thread
            assert time.monotonic() < deadline, "the learning review was never read"
            await pilot.pause(0.05)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
