"""The TOTP second factor in the TUI, against a real Secret Service: deleting a key (Keys screen)
and resuming after an emergency stop (the reset modal) ask for a current code once it is enabled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyotp
import pytest
from loopback.secret_service import missing_binaries, private_secret_service
from textual.widgets import Input, Static
from tui_helpers import SIZE, commands_done, replay_done, spy_notify, workers_done

from amarktai_tui.config import load_settings
from amarktai_tui.engine.events import BreakerReset, Event, EventBus
from amarktai_tui.risk.breakers import Breaker
from amarktai_tui.tui.app import AmarktaiApp
from amarktai_tui.tui.bots_pane import StyledTable
from amarktai_tui.tui.screens.confirm import ConfirmScreen
from amarktai_tui.tui.screens.keys import KeysScreen
from amarktai_tui.tui.screens.reset_breaker import ResetBreakerScreen
from amarktai_tui.tui.screens.totp_code import EMPTY_CODE, TotpCodeScreen
from amarktai_tui.vault.manager import KeyManager
from amarktai_tui.vault.providers import PROVIDERS
from amarktai_tui.vault.totp import confirm_enrollment, enroll, record_enabled

MakeApp = Callable[..., AmarktaiApp]
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


def enable(data: Path) -> pyotp.TOTP:
    """TOTP enrolled and confirmed (as ``amarktai totp enroll`` does); its code generator."""
    store = KeyManager(load_settings(None), data).store
    secret, _ = enroll(store)
    gen = pyotp.TOTP(secret)
    assert confirm_enrollment(store, gen.now())
    record_enabled(data, int(time.time() * 1000))
    return gen


def wrong(gen: pyotp.TOTP) -> str:
    taken = {gen.at(int(time.time()) + 30 * i) for i in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in taken)


def next_event(bus: EventBus, kind: type[Event]) -> asyncio.Future[Event]:
    fut: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
    unsubscribe = bus.subscribe(kind, lambda e: None if fut.done() else fut.set_result(e))
    fut.add_done_callback(lambda _: unsubscribe())
    return fut


async def test_key_deletion_asks_for_a_code(make_app: MakeApp, secret_service: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = KeyManager(load_settings(None), data)
    manager.save("binance", {"api_key": "tuiTotpKey-0000-beef", "api_secret": "tuiTotpSecret-1111"})
    gen = enable(data)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        notes = spy_notify(app)
        await pilot.press("K")
        screen = app.screen
        assert isinstance(screen, KeysScreen)
        await asyncio.wait_for(screen.loaded.wait(), LOAD_TIMEOUT_S)
        screen.query_one(StyledTable).move_cursor(row=list(PROVIDERS).index("binance"))
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await workers_done(app, "keys-write")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, TotpCodeScreen)

        await pilot.press("enter")  # no code yet
        await workers_done(app, "totp")
        await pilot.pause()
        assert str(modal.query_one("#totp-error", Static).content) == EMPTY_CODE

        await pilot.press(*wrong(gen), "enter")
        await workers_done(app, "totp")
        await pilot.pause()
        assert app.screen is modal
        assert "wrong TOTP code" in str(modal.query_one("#totp-error", Static).content)
        assert manager.store.load(PROVIDERS["binance"]) is not None

        await pilot.press(*gen.now(), "enter")
        await workers_done(app, "totp")
        await pilot.pause()
        assert app.screen is screen
        assert manager.store.load(PROVIDERS["binance"]) is None
        assert str(screen.query_one(StyledTable).get_cell("binance", "Status")) == "not_configured"
        assert "Binance: key deleted" in notes


async def test_resume_asks_for_a_code_in_the_reset_modal(
    make_app: MakeApp, secret_service: str, tmp_path: Path
) -> None:
    gen = enable(tmp_path / "data")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        engine = app.engine
        assert engine is not None
        await pilot.press("H", "y")
        await commands_done(app, pilot)
        assert (Breaker.HALT, None) in engine.board.active

        await pilot.press("U")
        modal = app.screen
        assert isinstance(modal, ResetBreakerScreen)
        await workers_done(app, "reset-totp")
        await pilot.pause()
        code = modal.query_one("#reset-totp", Input)
        assert modal.query_one("#reset-totp-box").display
        await pilot.press(*"drill over", "enter")  # enter on the reason moves on to the empty code
        assert code.has_focus
        await pilot.press(*wrong(gen), "enter")
        await workers_done(app, "reset")
        await pilot.pause()
        assert app.screen is modal
        assert "wrong TOTP code" in str(modal.query_one("#reset-error", Static).content)
        assert (Breaker.HALT, None) in engine.board.active

        reset = next_event(app.bus, BreakerReset)
        await pilot.press(*gen.now(), "enter")
        await asyncio.wait_for(reset, 10)
        await pilot.pause()
        assert not isinstance(app.screen, ResetBreakerScreen)
        assert (Breaker.HALT, None) not in engine.board.active
