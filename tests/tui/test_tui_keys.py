"""The Keys screen (K) against a real Secret Service: set through the form, test in a worker, delete."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loopback.openai_api import OpenAILoopback
from loopback.secret_service import missing_binaries, private_secret_service
from textual.widgets import Input
from tui_helpers import SIZE, spy_notify, workers_done

from amarktai_tui.config import load_settings
from amarktai_tui.ops.audit import AuditEntry, recorder_for
from amarktai_tui.tui.app import AmarktaiApp
from amarktai_tui.tui.bots_pane import StyledTable
from amarktai_tui.tui.palette import BotCommands
from amarktai_tui.tui.screens.confirm import ConfirmScreen
from amarktai_tui.tui.screens.keys import KeysScreen
from amarktai_tui.tui.screens.set_key import SetKeyScreen
from amarktai_tui.vault.manager import KeyManager
from amarktai_tui.vault.providers import PROVIDERS

MakeApp = Callable[..., AmarktaiApp]
KEY, SECRET = "tuiKEY0123456789beef", "tuiSECRET9876543210abc"
LOAD_TIMEOUT_S = 60  # a guard against a hang, not a wait


@pytest.fixture
def secret_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    missing = missing_binaries()
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages: dbus gnome-keyring)")
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    with private_secret_service(tmp_path / "secret-service") as address:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        yield address


def cell(screen: KeysScreen, provider: str, column: str) -> str:
    return str(screen.query_one(StyledTable).get_cell(provider, column))


async def open_keys(app: AmarktaiApp, pilot: Any) -> KeysScreen:
    await pilot.press("K")
    screen = app.screen
    assert isinstance(screen, KeysScreen)
    await asyncio.wait_for(screen.loaded.wait(), LOAD_TIMEOUT_S)
    await pilot.pause()
    return screen


async def test_set_through_the_form_then_delete(make_app: MakeApp, secret_service: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_keys(app, pilot)
        recorder = recorder_for(app.engine)
        assert recorder is not None, "the audit log runs beside the TUI's engine"
        audited: list[AuditEntry] = []
        recorder.subscribe(lambda e: audited.append(e) if e.type.startswith("api_key") else None)
        assert "keyring: Secret Service" in str(screen.query_one("#keys-backend").render())
        assert [cell(screen, p, "Status") for p in PROVIDERS] == ["not_configured"] * len(PROVIDERS)

        screen.query_one(StyledTable).move_cursor(row=list(PROVIDERS).index("binance"))
        await pilot.press("s")
        form = app.screen
        assert isinstance(form, SetKeyScreen) and form.provider.id == "binance"
        assert [i.password for i in form.query(Input)] == [True, True]
        await pilot.press(*KEY, "enter")  # enter moves to the secret
        await pilot.press(*SECRET)
        assert form.query_one("#key-api_secret", Input).has_focus
        await pilot.press("ctrl+s")
        await workers_done(app, "keys-write")
        await pilot.pause()
        assert app.screen is screen
        assert cell(screen, "binance", "Status") == "saved_untested"
        assert cell(screen, "binance", "Key") == "••••beef"
        assert KeyManager(load_settings(None), app.data_dir).store.load(PROVIDERS["binance"]) == {
            "api_key": KEY,
            "api_secret": SECRET,
        }
        shown = "".join(
            str(c) for row in range(len(PROVIDERS)) for c in screen.query_one(StyledTable).get_row_at(row)
        )
        assert KEY not in shown and SECRET not in shown

        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await workers_done(app, "keys-write")
        await pilot.pause()
        assert cell(screen, "binance", "Status") == "not_configured"
        assert cell(screen, "binance", "Key") == "-"
        # audited like `amarktai keys`: provider and masked key id, critical, never the secret
        assert [(e.type, e.severity.value, e.actor, e.details.get("provider")) for e in audited] == [
            ("api_key_added", "critical", "user", "binance"),
            ("api_key_deleted", "critical", "user", "binance"),
        ]
        assert audited[0].details.get("masked") == "••••beef"
        assert KEY not in repr(audited) and SECRET not in repr(audited)


async def test_empty_required_field_is_refused_in_the_form(make_app: MakeApp, secret_service: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_keys(app, pilot)
        screen.query_one(StyledTable).move_cursor(row=list(PROVIDERS).index("kucoin"))
        await pilot.press("s", *"onlykey", "ctrl+s")
        form = app.screen
        assert isinstance(form, SetKeyScreen)
        assert "API secret must not be empty" in str(form.query_one("#setkey-error").render())
        assert form.query_one("#key-api_secret", Input).has_class("field-error")
        await pilot.press("escape")
        assert app.screen is screen and cell(screen, "kucoin", "Status") == "not_configured"


async def test_test_runs_in_a_worker_against_a_real_api(
    make_app: MakeApp, secret_service: str, tmp_path: Path
) -> None:
    """``t`` calls the (loopback) OpenAI API in a worker while the app keeps serving this event loop."""
    key = "sk-tui-loopback-0000-4242"
    async with OpenAILoopback.running(key) as server:
        app = make_app()
        KeyManager(load_settings(None), tmp_path / "data").save(
            "openai", {"api_key": key, "base_url": f"{server.url}/v1"}
        )
        async with app.run_test(size=SIZE) as pilot:
            notes = spy_notify(app)
            screen = await open_keys(app, pilot)
            assert cell(screen, "openai", "Status") == "saved_untested"
            await pilot.press("t")
            await workers_done(app, "keys-test")
            await pilot.pause()
            assert cell(screen, "openai", "Status") == "test_ok"
            assert cell(screen, "openai", "Last tested (UTC)") != "-"
            assert any("OpenAI: key works (3 models available" in n for n in notes)
            assert server.requests == 1


async def test_palette_offers_the_keys_screen(make_app: MakeApp, secret_service: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        provider = BotCommands(app.screen)
        commands = {text: call for text, call, _ in provider._commands()}
        commands["API keys"]()
        await pilot.pause()
        assert isinstance(app.screen, KeysScreen)
        await asyncio.wait_for(app.screen.loaded.wait(), LOAD_TIMEOUT_S)
