"""Themes in the running app: from config, switched at run time, broken files, user files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from rich.color import Color
from tui_helpers import SIZE, spy_notify

from amarktai_tui.config import load_settings
from amarktai_tui.tui.app import AmarktaiApp
from amarktai_tui.tui.bots_pane import StyledTable

MakeApp = Callable[..., AmarktaiApp]


async def test_theme_comes_from_config_and_switches_at_run_time(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMARKTAI_UI__THEME", "amarktai-contrast")
    app = make_app(settings_=load_settings(None))
    messages = spy_notify(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.theme == "amarktai-contrast"
        assert {"amarktai-dark", "amarktai-light", "amarktai-contrast"} <= set(app.available_themes)
        table = app.query_one("#bots-table", StyledTable)
        assert table.get_component_rich_style("styled--up").color == Color.parse("#00ff00")
        app.theme = "amarktai-light"  # what the palette's theme command does
        await pilot.pause()
        assert app.get_css_variables()["pnl-down"] == "#cf222e"
        assert table.get_component_rich_style("styled--up").color == Color.parse("#1a7f37")
        assert table.get_component_rich_style("styled--down").color == Color.parse("#cf222e")
    assert messages == []


async def test_unknown_theme_in_config_falls_back_with_a_notification(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMARKTAI_UI__THEME", "solarized-nope")
    app = make_app(settings_=load_settings(None))
    messages = spy_notify(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.theme == "amarktai-dark"
        assert messages == ["theme 'solarized-nope' not found; using amarktai-dark"]


async def test_broken_theme_files_notify_and_good_user_themes_load(make_app: MakeApp, tmp_path: Path) -> None:
    themes = tmp_path / "user-themes"
    themes.mkdir()
    (themes / "broken.toml").write_text('name = "broken"\nprimary = \n')
    (themes / "bad-colour.toml").write_text('name = "bad"\nprimary = "not-a-colour"\n')
    (themes / "mine.toml").write_text(
        'name = "mine"\nprimary = "#ff8800"\nbackground = "#101010"\n[variables]\npnl-up = "#00aa00"\n'
    )
    app = make_app(themes_dir=themes)
    messages = spy_notify(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.theme == "amarktai-dark"  # the app still starts, on the configured theme
        assert len(messages) == 2
        assert any(m.startswith("theme file bad-colour.toml: primary = 'not-a-colour'") for m in messages)
        assert any(m.startswith("theme file broken.toml:") for m in messages)
        assert "mine" in app.available_themes and "broken" not in app.available_themes
        app.theme = "mine"
        await pilot.pause()
        vars_ = app.get_css_variables()
        assert vars_["pnl-up"] == "#00aa00"
        assert vars_["mode-live"] == "#da3633"  # not in the file: the app's default


async def test_keymap_from_config_remaps_a_binding_and_reports_unknown_ids(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMARKTAI_UI__KEYMAP", '{"app.new_bot": "b", "app.no_such_thing": "z"}')
    app = make_app(settings_=load_settings(None))
    messages = spy_notify(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("n")  # the default key no longer opens the form
        await pilot.pause()
        assert type(app.screen).__name__ != "NewBotScreen"
        await pilot.press("b")
        await pilot.pause()
        assert type(app.screen).__name__ == "NewBotScreen"
    assert any("app.no_such_thing" in m for m in messages)
