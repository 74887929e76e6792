"""The Balances screen: each exchange's free, used and total per asset, valued in the quote currency.

Opened with ``B`` or from the palette. One section per exchange with a key in the keyring: a
title line (the exchange total, and its API health: the live broker's breaker state and call
latency when one runs, else the balance call's round trip), then its table, or its error line
when the read failed; one failing exchange never blanks the others (``ops.balances``).

Reads run in a worker (keyring in a thread, exchanges concurrently), so neither the UI nor the
trading loop waits. ``r`` reads again; while the account is live the screen also reads every
``[balances] refresh_s`` seconds. There are no transfers: the app holds no withdrawal rights.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Label, Static

from amarktai_tui.config import Settings
from amarktai_tui.domain.enums import TradingMode
from amarktai_tui.exchanges.api_breaker import ApiState
from amarktai_tui.exchanges.registry import exchange_info
from amarktai_tui.ops.balances import (
    NO_WITHDRAWALS,
    SYSTEM_CLOCK,
    BalancesReport,
    Clock,
    ExchangeBalances,
    read_balances,
)
from amarktai_tui.tui import fmt
from amarktai_tui.tui.bots_pane import StyledTable
from amarktai_tui.vault.errors import VaultError

if TYPE_CHECKING:
    from amarktai_tui.engine.engine import TradingEngine

COLUMNS = ("Asset", "Free", "Used", "Total", "Value")
TOTAL_ROW = "__total__"


class BalancesScreen(Screen[None]):
    """Every exchange's balances (``ops.balances``); ``r`` refresh, ``esc`` back."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back", id="balances.back"),
        Binding("r", "refresh_balances", "Refresh", id="balances.refresh"),
    ]
    DEFAULT_CSS = """
    BalancesScreen #balances-status { padding: 0 1; color: $text-muted; }
    BalancesScreen #balances-status.balances-problem { color: $error; text-style: bold; }
    BalancesScreen #balances-body { height: 1fr; }
    BalancesScreen .balances-title { padding: 0 1; margin-top: 1; text-style: bold; }
    BalancesScreen .balances-failed { color: $error; }
    BalancesScreen .balances-error { padding: 0 1; color: $error; }
    BalancesScreen .balances-note { padding: 0 1; color: $warning; }
    BalancesScreen .balances-table { height: auto; margin: 0 1; }
    BalancesScreen #balances-footnote { padding: 0 1; color: $text-muted; text-style: dim; }
    """

    def __init__(self, settings: Settings, data_dir: Path, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__()
        self.settings = settings
        self.data_dir = data_dir
        self.clock = clock
        self.quote = settings.general.quote_currency
        self.report: BalancesReport | None = None
        self.loaded = asyncio.Event()
        """Set once the first read is shown (or the keyring problem is)."""
        self.reads = 0
        """Reads finished since the screen opened."""
        self._reading = False
        self._read_ms: int | None = None

    def compose(self) -> ComposeResult:
        yield Label(f"Balances in {self.quote}", classes="section-title")
        yield Static("reading the keyring…", id="balances-status")
        yield VerticalScroll(id="balances-body")
        yield Static(
            f"{NO_WITHDRAWALS} Values from each exchange's own prices; r refreshes.",
            id="balances-footnote",
        )
        yield Footer()

    def on_mount(self) -> None:
        self.read()
        if self.settings.balances.refresh_s > 0:
            self.set_interval(self.settings.balances.refresh_s, self.tick, name="balances-refresh")

    # -- when to read -------------------------------------------------------------
    def engine(self) -> TradingEngine | None:
        """The app's engine, once it has started."""
        engine: TradingEngine | None = getattr(self.app, "engine", None)
        return engine

    def live(self) -> bool:
        engine = self.engine()
        return engine is not None and engine.mode is TradingMode.LIVE

    def tick(self) -> bool:
        """The refresh timer: read again when the account is live and no read is running.

        Returns True when a read was started.
        """
        self._show_status()
        return self.live() and self.read()

    def action_refresh_balances(self) -> None:
        if not self.read():
            self.notify("balances are being read already", severity="warning")

    def read(self) -> bool:
        """Start a read in a worker unless one is running; True when started."""
        if self._reading:
            return False
        self._reading = True
        self._show_status()
        self._read()
        return True

    @work(group="balances", exit_on_error=False)
    async def _read(self) -> None:
        engine = self.engine()
        health = engine.api_health() if engine is not None else None
        try:
            report = await read_balances(self.settings, self.data_dir, health=health, clock=self.clock)
        except VaultError as exc:
            status = self.query_one("#balances-status", Static)
            status.update(f"Keyring unavailable: {exc}")
            status.add_class("balances-problem")
        else:
            self.report = report
            self._read_ms = self.clock.wall_ms()
            await self._show(report)
        finally:
            self._reading = False
            self.reads += 1
            if self.report is not None:
                self._show_status()
            self.loaded.set()

    # -- drawing ----------------------------------------------------------------------
    def _show_status(self) -> None:
        if self.report is None and not self._reading:
            return
        status = self.query_one("#balances-status", Static)
        every = self.settings.balances.refresh_s
        if every <= 0:
            auto = "automatic refresh off"
        elif self.live():
            auto = f"refreshed every {every:g} s (live)"
        else:
            auto = f"refreshed every {every:g} s in live mode (paper now: r refreshes)"
        if self._reading:
            when = "reading…"
        elif self.report is None:
            return
        else:
            n = len(self.report.exchanges)
            when = f"{n} exchange{'' if n == 1 else 's'} read {fmt.ts(self._read_ms, seconds=True)} UTC"
        status.update(f"{when} · {auto}")

    async def _show(self, report: BalancesReport) -> None:
        body = self.query_one("#balances-body", VerticalScroll)
        await body.remove_children()
        widgets: list[Widget] = []
        tables: list[tuple[StyledTable, ExchangeBalances]] = []
        for e in report.exchanges:
            classes = "balances-title" if e.ok else "balances-title balances-failed"
            widgets.append(Static(self._title(e), classes=classes, id=f"balances-title-{e.exchange}"))
            if not e.ok:
                widgets.append(Static(e.error, classes="balances-error", id=f"balances-error-{e.exchange}"))
                continue
            if e.error:
                widgets.append(Static(e.error, classes="balances-note", id=f"balances-note-{e.exchange}"))
            table = StyledTable(id=f"balances-{e.exchange}", classes="balances-table", cursor_type="row")
            for name in COLUMNS:
                table.add_column(f"Value ({self.quote})" if name == "Value" else name, key=name)
            widgets.append(table)
            tables.append((table, e))
        if not report.exchanges:
            widgets.append(
                Static(
                    "No exchange key in the keyring: save one on the Keys screen (K).",
                    classes="balances-note",
                    id="balances-none",
                )
            )
        await body.mount_all(widgets)
        for table, e in tables:
            self._fill(table, e)
        if tables:
            tables[0][0].focus()

    def _fill(self, table: StyledTable, e: ExchangeBalances) -> None:
        for a in e.assets:
            value = _right(fmt.money(a.value)) if a.value is not None else table.styled("unknown", "warn")
            value.justify = "right"
            cells = (_right(fmt.qty(a.free)), _right(fmt.qty(a.used)), _right(fmt.qty(a.total)))
            table.add_row(a.asset, *cells, value, key=a.asset)
        if not e.assets:
            table.add_row(table.styled("no assets held", "muted"), "", "", "", "", key=TOTAL_ROW)
            return
        total = _right(fmt.money(e.total_value or Decimal(0)), bold=True)
        label = "Total" if not e.unpriced else f"Total (not counted: {', '.join(e.unpriced)})"
        table.add_row(Text(label, style="bold"), "", "", "", total, key=TOTAL_ROW)

    def _title(self, e: ExchangeBalances) -> Text:
        name = exchange_info(e.exchange).name
        title = Text(name, style="bold")
        if not e.ok:
            title.append(" · FAILED")
        else:
            title.append(f" · {fmt.money(e.total_value or Decimal(0))} {self.quote}")
            if e.unpriced:
                title.append(f" + {', '.join(e.unpriced)} (no price)")
        health = self._health(e)
        if health:
            title.append(f" · {health}", style="not bold")
        return title

    @staticmethod
    def _health(e: ExchangeBalances) -> str:
        h = e.health
        if h is None:
            return f"balance read in {e.latency_ms} ms" if e.latency_ms is not None else ""
        if h.state is ApiState.CLOSED:
            p50 = "-" if h.latency_p50_ms is None else f"{h.latency_p50_ms:.0f} ms"
            return f"API ok: p50 {p50}, {h.errors} errors in {h.calls} calls"
        if h.state is ApiState.OPEN:
            return f"API breaker open (retry in {h.retry_in_s:g} s): {h.last_error}"
        return f"API breaker half open (probing): {h.last_error}"


def _right(text: str, *, bold: bool = False) -> Text:
    return Text(text, justify="right", style="bold" if bold else "")
