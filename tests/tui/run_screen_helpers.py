"""Shared setup of the run screens' tests (Backtest, Optimise, Evolve): candle slices, the app's
short replay, opening a screen by its key and typing into a field as a person would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input
from tui_helpers import BTC_1H

from amarktai_tui.engine.setup import ReplayArgs
from amarktai_tui.tui.app import AmarktaiApp

S = TypeVar("S", bound=Screen[None])

SLICE = 1500  # candles of BTC 1h in the slice (2020-12-01 to 2021-02-01)


def write_slice(folder: Path, source: Path = BTC_1H, n: int = SLICE) -> Path:
    """The first ``n`` candles of ``source`` as ``folder/<same name>`` (the name gives pair/timeframe)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / source.name
    out.write_text(json.dumps(json.loads(source.read_text())[:n]))
    return out


def short_replay(tmp_path: Path) -> ReplayArgs:
    """The app replays a slice of its own (600 candles: quick to finish; the runs use other files)."""
    return ReplayArgs(files=[str(write_slice(tmp_path / "app-replay", n=600))], speed=0, until_end=False)


async def open_by_key(app: AmarktaiApp, pilot: Pilot[None], key: str, screen_type: type[S]) -> S:
    """Press ``key``; the screen it shows, checked to be a ``screen_type``."""
    await pilot.press(key)
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, screen_type)
    return screen


async def type_into(pilot: Pilot[None], screen: Screen[None], field: str, text: str) -> None:
    """Focus the input, select its text and type ``text`` over it; a path is pasted, not typed
    (Pilot waits for the app to be idle after every key: a long path would take seconds)."""
    widget = screen.query_one(f"#{field}", Input)
    widget.focus()
    await pilot.pause()
    widget.select_all()
    if len(text) > 12:
        await pilot.press("backspace")
        widget.insert_text_at_cursor(text)
        await pilot.pause()
    else:
        await pilot.press("backspace", *text)
    assert widget.value == text
