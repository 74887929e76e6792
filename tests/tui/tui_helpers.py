"""Shared constants and waits for the TUI tests (no sleeps: each wait is on a real completion signal)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from amarktai_tui.tui.app import AmarktaiApp

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BTC_1H = DATA / "binance" / "BTC_USDT-1h.json"
ETH_1H = DATA / "binance" / "ETH_USDT-1h.json"
SIZE = (140, 45)
REPLAY_TIMEOUT_S = 120  # a guard against a hang, not a wait: the replay ends in about a second


async def replay_done(app: AmarktaiApp, pilot: Pilot[None]) -> None:
    """Wait until the replay data is exhausted and the final state is drawn."""
    await asyncio.wait_for(app.feed_ended.wait(), REPLAY_TIMEOUT_S)
    await pilot.pause()


async def settled(pilot: Pilot[None], rounds: int = 100) -> None:
    """Let the app work off its queues until two screenshots in a row agree.

    Raises AssertionError if the screen still changes after ``rounds`` rounds (something animates).
    """
    last = None
    for _ in range(rounds):
        await pilot.pause()
        shot = pilot.app.export_screenshot()
        if shot == last:
            return
        last = shot
    raise AssertionError(f"the screen kept changing over {rounds} rounds")


async def profits_read(app: AmarktaiApp, pilot: Pilot[None]) -> None:
    """Wait until the Profits pane shows the ledger's figures for everything the engine has made
    (it reads the ledger in a thread: at the feed's end, when shown, then every few seconds)."""
    from amarktai_tui.tui.profits_pane import ProfitsPane

    await asyncio.wait_for(app.query_one(ProfitsPane).in_sync.wait(), REPLAY_TIMEOUT_S)
    await pilot.pause()


async def commands_done(app: AmarktaiApp, pilot: Pilot[None]) -> None:
    """Wait for the engine commands started by key presses (pause, resume, stop...) to finish."""
    await workers_done(app, "commands")
    await pilot.pause()


async def workers_done(app: AmarktaiApp, group: str) -> None:
    """Wait for the app's workers of ``group`` (finished workers leave the manager: none left = done)."""
    workers = [w for w in app.workers if w.group == group]
    if workers:  # wait_for_complete([]) would wait for every worker, the engine's included
        await app.workers.wait_for_complete(workers)


def spy_notify(app: AmarktaiApp) -> list[str]:
    """Record every notification message the app shows (it still shows them)."""
    messages: list[str] = []
    original = app.notify

    def notify(message: str, **kwargs: Any) -> None:
        messages.append(message)
        original(message, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    return messages
