"""The Balances screen (B): keys from a real Secret Service, real ccxt against the loopback Binance,
VALR and OVEX accounts (``loopback.accounts``), one of them failing; refreshes in a worker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from loopback.accounts import KEYS, SECRETS, START_MS, Accounts, q8, running_accounts
from loopback.secret_service import missing_binaries, private_secret_service
from textual.pilot import Pilot
from textual.widgets import Static
from tui_helpers import SIZE, replay_done, workers_done

from amarktai_tui.config import ExchangeSettings, Settings
from amarktai_tui.domain.enums import TradingMode
from amarktai_tui.exchanges.api_breaker import ApiBreaker
from amarktai_tui.ops.balances import Clock, ExchangeBalances
from amarktai_tui.tui import fmt
from amarktai_tui.tui.app import AmarktaiApp, _all_bindings
from amarktai_tui.tui.bots_pane import StyledTable
from amarktai_tui.tui.palette import BotCommands
from amarktai_tui.tui.screens.balances import TOTAL_ROW, BalancesScreen
from amarktai_tui.vault.manager import KeyManager

MakeApp = Callable[..., AmarktaiApp]
LOAD_TIMEOUT_S = 60  # a guard against a hang, not a wait
FIXED_CLOCK = Clock(wall_ms=lambda: START_MS, monotonic=lambda: 0.0)
"""Read times and latencies that do not move, for a repeatable snapshot."""
T = TypeVar("T")


@pytest.fixture
def secret_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    missing = missing_binaries()
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages: dbus gnome-keyring)")
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    with private_secret_service(tmp_path / "secret-service") as address:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        yield address


def point_at(settings: Settings, accounts: Accounts, data: Path) -> None:
    """Each exchange at its loopback server, and its key in the keyring."""
    settings.exchanges = {ex: ExchangeSettings(api_url=url) for ex, url in accounts.urls.items()}
    manager = KeyManager(settings, data)
    for ex, fields in KEYS.items():
        manager.save(ex, fields)


def text(widget: Static) -> str:
    return str(widget.render())


def cells(screen: BalancesScreen, exchange: str, column: str) -> dict[str, str]:
    table = screen.query_one(f"#balances-{exchange}", StyledTable)
    return {str(row.value): str(table.get_cell(row, column)) for row in table.rows}


async def open_balances(app: AmarktaiApp, pilot: Pilot[None]) -> BalancesScreen:
    await pilot.press("B")
    screen = app.screen
    assert isinstance(screen, BalancesScreen)
    await asyncio.wait_for(screen.loaded.wait(), LOAD_TIMEOUT_S)
    await pilot.pause()
    return screen


async def test_open_with_b_see_the_rows_and_the_failing_exchange(
    make_app: MakeApp, settings: Settings, secret_service: str, tmp_path: Path
) -> None:
    async with running_accounts() as accounts:
        point_at(settings, accounts, tmp_path / "data")
        accounts.ovex.faults.add("5xx", count=1000)  # OVEX answers 503 to everything
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_balances(app, pilot)

            book = accounts.binance.book
            btc = q8(Decimal("0.5") * book.price("BTCUSDT"))
            eth = q8(Decimal(2) * book.price("ETHUSDT"))
            values = cells(screen, "binance", "Value")
            assert list(values) == ["BTC", "ETH", "USDT", "XYZ", TOTAL_ROW]
            assert values == {
                "BTC": fmt.money(btc),
                "ETH": fmt.money(eth),
                "USDT": "1,000.00",
                "XYZ": "unknown",  # no market prices XYZ: named, not counted as zero
                TOTAL_ROW: fmt.money(btc + eth + 1000),
            }
            assert cells(screen, "binance", "Total")["BTC"] == "0.5"
            assert cells(screen, "valr", "Value")["ZAR"] == "unknown"
            title = text(screen.query_one("#balances-title-binance", Static))
            assert title.startswith(f"Binance · {fmt.money(btc + eth + 1000)} USDT + XYZ (no price) · ")
            assert "balance read in " in title

            assert not screen.query("#balances-ovex")  # no table for the failed exchange: its error line
            assert text(screen.query_one("#balances-title-ovex", Static)).startswith("OVEX · FAILED")
            error = text(screen.query_one("#balances-error-ovex", Static))
            assert error.startswith("ExchangeNotAvailable: ") and "503" in error
            assert "no withdrawal rights" in text(screen.query_one("#balances-footnote", Static))
            shown = " ".join(text(w) for w in screen.query(Static))
            assert not [s for s in SECRETS if s in shown]

            accounts.ovex.faults.clear()  # OVEX is back: r reads again, in a worker
            await pilot.press("r")
            await workers_done(app, "balances")
            await pilot.pause()
            assert screen.reads == 2 and not screen.query("#balances-error-ovex")
            assert cells(screen, "ovex", "Total")["ZAR"] == "50000"

            assert screen.tick() is False  # paper: the timer reads nothing
            engine = app.engine
            assert engine is not None
            engine.mode = TradingMode.LIVE  # the timer's view of a live account
            try:
                assert screen.tick() is True
                await workers_done(app, "balances")
            finally:
                engine.mode = TradingMode.PAPER
            assert screen.reads == 3

            await pilot.press("escape")
            assert not isinstance(app.screen, BalancesScreen)


async def test_the_palette_opens_balances(make_app: MakeApp, secret_service: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        commands = {text: call for text, call, _ in BotCommands(app.screen)._commands()}
        commands["Balances"]()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, BalancesScreen)
        await asyncio.wait_for(screen.loaded.wait(), LOAD_TIMEOUT_S)
        await pilot.pause()
        assert screen.query_one("#balances-none", Static)  # no key saved yet: it says so


class ThreadedAccounts:
    """``loopback.accounts`` served from an event loop in its own thread (the snapshot test is
    synchronous: the app runs on a loop of its own)."""

    def __enter__(self) -> Accounts:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="loopback-accounts", daemon=True)
        self.thread.start()
        self._cm = running_accounts()
        return self.run(self._cm.__aenter__())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(LOAD_TIMEOUT_S)

    def __exit__(self, *exc: object) -> None:
        self.run(self._cm.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(LOAD_TIMEOUT_S)
        self.loop.close()


def test_balances_screen_snapshot(
    snap_compare: Any, make_app: MakeApp, settings: Settings, secret_service: str, tmp_path: Path
) -> None:
    """Binance refuses the key (a message with no URL or port in it); VALR and OVEX answer."""
    with ThreadedAccounts() as accounts:
        point_at(settings, accounts, tmp_path / "data")
        accounts.binance.secret = "not-the-saved-secret"  # signatures no longer match
        app = make_app()

        async def run_before(pilot: Pilot[None]) -> None:
            await replay_done(app, pilot)
            screen = BalancesScreen(app.settings, app.data_dir, clock=FIXED_CLOCK)
            await app.push_screen(screen)
            await asyncio.wait_for(screen.loaded.wait(), LOAD_TIMEOUT_S)
            await pilot.pause()

        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_the_title_shows_a_live_brokers_api_health() -> None:
    """With a live broker, its breaker (exchanges.api_breaker) says how the exchange's API is doing."""
    breaker = ApiBreaker("valr", failures=2, cooldown_s=30, clock=lambda: 100.0)
    breaker.success(0.020)
    read = ExchangeBalances("valr", True, latency_ms=7, health=breaker.health())
    assert BalancesScreen._health(read) == "API ok: p50 20 ms, 0 errors in 1 calls"
    breaker.failure("NetworkError: connection reset")
    breaker.failure("RequestTimeout: no answer")
    read = ExchangeBalances("valr", False, "RequestTimeout: no answer", health=breaker.health())
    assert BalancesScreen._health(read) == "API breaker open (retry in 30 s): RequestTimeout: no answer"
    assert BalancesScreen._health(ExchangeBalances("valr", True, latency_ms=7)) == "balance read in 7 ms"
    assert BalancesScreen._health(ExchangeBalances("valr", False, "AuthenticationError: x")) == ""


def test_balances_bindings_have_ids_the_keymap_knows() -> None:
    ids = {b.id for b in _all_bindings()}
    assert {"app.balances", "balances.refresh", "balances.back"} <= ids
