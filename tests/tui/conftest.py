"""Fixtures for the TUI tests: a real engine replaying real Binance candles into a tmp data dir."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input
from tui_helpers import BTC_1H, settled

from amarktai_tui.config import RiskSettings, Settings, load_settings
from amarktai_tui.engine.setup import ReplayArgs
from amarktai_tui.tui.app import AmarktaiApp

RunBefore = Callable[[Pilot[None]], Awaitable[None]]


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the developer's own config, env overrides and theme folder out of the tests."""
    for key in list(os.environ):
        if key.startswith("AMARKTAI_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


@pytest.fixture(autouse=True)
def _steady_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A focused input shows its cursor steadily: a blink drawn or not by the time of a snapshot made
    the modal snapshots flaky on a loaded machine."""

    def toggle(self: Input) -> None:
        self._cursor_visible = True

    monkeypatch.setattr(Input, "_toggle_cursor", toggle)


@pytest.fixture
def snap_compare(snap_compare: Callable[..., bool]) -> Callable[..., bool]:
    """pytest-textual-snapshot's ``snap_compare``, taken once the screen has settled: after the
    test's ``run_before``, the app works off its queues until two screenshots in a row agree (a modal
    pushed under load could be shot before its focus or layout had been drawn)."""

    def compare(app: AmarktaiApp, *, run_before: RunBefore | None = None, **kwargs: Any) -> bool:
        async def before(pilot: Pilot[None]) -> None:
            if run_before is not None:
                await run_before(pilot)
            await settled(pilot)

        return snap_compare(app, run_before=before, **kwargs)

    return compare


@pytest.fixture
def settings() -> Settings:
    """Default settings with the breakers opened wide, so the demo bots trade the whole file.

    (The Breakers pane's own tests use the default thresholds.)
    """
    s = load_settings(None)
    s.risk = RiskSettings(
        max_consecutive_losses=1000,
        bot_max_drawdown=Decimal("0.9"),
        account_max_drawdown=Decimal("0.9"),
        account_daily_loss=Decimal("0.9"),
    )
    return s


@pytest.fixture
def replay() -> ReplayArgs:
    return ReplayArgs(files=[str(BTC_1H)], speed=0, until_end=False)


@pytest.fixture
def make_app(settings: Settings, replay: ReplayArgs, tmp_path: Path) -> Callable[..., AmarktaiApp]:
    """``make_app(**overrides)``: a fresh app on ``tmp_path/data`` (an empty user-themes folder)."""
    themes = tmp_path / "themes"
    themes.mkdir()

    def make(
        *, settings_: Settings | None = None, data_dir: Path | None = None, themes_dir: Path | None = None
    ) -> AmarktaiApp:
        return AmarktaiApp(
            settings_ or settings,
            data_dir or tmp_path / "data",
            replay,
            themes_dir=themes_dir or themes,
        )

    return make
