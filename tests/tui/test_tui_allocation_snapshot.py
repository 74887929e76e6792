"""SVG snapshot at 140x45 of the capital allocation preview (A) after the BTC 1h replay.

Update with ``pytest tests/tui --snapshot-update`` after checking the change is wanted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from tui_helpers import SIZE, replay_done

from amarktai_tui.config import AllocatorConfig, Settings
from amarktai_tui.tui.app import AmarktaiApp

MakeApp = Callable[..., AmarktaiApp]


def test_allocation_preview(snap_compare: Any, make_app: MakeApp, settings: Settings) -> None:
    settings.allocator = AllocatorConfig(min_trades=3)  # the three demo bots are ranked
    app = make_app(settings_=settings)

    async def run_before(pilot: Pilot[None]) -> None:
        await replay_done(app, pilot)
        await pilot.press("A")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
