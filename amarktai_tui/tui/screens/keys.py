"""The Keys screen: every provider's key status, and set / test / delete (the ``amarktai keys`` actions).

Keyring calls block (D-Bus, or an Argon2 derivation per secret for the encrypted file) and
key tests wait on the network, so all of them run in workers; the table is redrawn from
the keyring and the ledger after each action. No secret is ever shown: the key column is
the last 4 characters of the provider's API key.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from amarktai_tui.config import Settings
from amarktai_tui.ledger.schema import SchemaTooNewError
from amarktai_tui.tui import fmt
from amarktai_tui.tui.bots_pane import StyledTable
from amarktai_tui.tui.screens.confirm import ConfirmScreen
from amarktai_tui.tui.screens.set_key import SetKeyScreen
from amarktai_tui.tui.screens.totp_code import TotpCodeScreen
from amarktai_tui.vault.errors import VaultError
from amarktai_tui.vault.manager import KeyManager, KeyRow
from amarktai_tui.vault.permissions import WITHDRAW_WARNING
from amarktai_tui.vault.providers import PROVIDERS, Provider
from amarktai_tui.vault.store import masked
from amarktai_tui.vault.totp import require_totp, totp_enabled

COLUMNS = ("Provider", "Status", "Last tested (UTC)", "Key", "Withdraw", "Reason")
STATUS_ROLE = {"not_configured": "muted", "saved_untested": "warn", "test_ok": "ok", "test_failed": "error"}
"""StyledTable colour role of each status (theme colours via app.tcss)."""
_EXPECTED = (VaultError, sqlite3.Error, SchemaTooNewError)
log = logging.getLogger(__name__)


class KeysScreen(Screen[None]):
    """Opened with ``K`` or from the palette; ``s`` set, ``t`` test, ``d`` delete the selected key
    (with TOTP enabled, deleting asks for a current code)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back", id="keys.back"),
        Binding("s", "set_key", "Set", id="keys.set"),
        Binding("t", "test_key", "Test", id="keys.test"),
        Binding("d", "delete_key", "Delete", id="keys.delete"),
    ]

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        super().__init__()
        self.settings = settings
        self.data_dir = data_dir
        self.manager: KeyManager | None = None
        self.rows: dict[str, KeyRow] = {}
        self.loaded = asyncio.Event()
        """Set once the first load finished (the table is filled, or the problem is shown)."""
        self._testing: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Label("API keys", classes="section-title")
        yield Static("opening the keyring…", id="keys-backend")
        table = StyledTable(id="keys-table", cursor_type="row", zebra_stripes=True)
        for name in COLUMNS:
            table.add_column(name, key=name)
        yield table
        yield Static(
            "s set · t test (a real authenticated call) · d delete · esc back. Keys live in the OS keyring "
            "only; the ledger keeps their status.",
            id="keys-help",
        )
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(StyledTable)
        for p in PROVIDERS.values():
            table.add_row(*self._cells(p, None), key=p.id)
        table.focus()
        self._open()

    # -- loading ------------------------------------------------------------------
    @work(exclusive=True, group="keys-load", exit_on_error=False)
    async def _open(self) -> None:
        try:
            self.manager = await asyncio.to_thread(KeyManager, self.settings, self.data_dir)
            self.query_one("#keys-backend", Static).update(f"keyring: {self.manager.store.name}")
            await self._reload()
        except _EXPECTED as exc:
            self._problem(str(exc))
        finally:
            self.loaded.set()

    async def _reload(self) -> None:
        assert self.manager is not None
        rows = await asyncio.to_thread(self.manager.rows)
        self.rows = {r.provider.id: r for r in rows}
        table = self.query_one(StyledTable)
        for r in rows:
            for column, value in zip(COLUMNS, self._cells(r.provider, r), strict=True):
                table.update_cell(r.provider.id, column, value, update_width=True)

    def _problem(self, message: str) -> None:
        widget = self.query_one("#keys-backend", Static)
        widget.update(f"Keyring unavailable: {message}")
        widget.add_class("keys-problem")

    def _cells(self, p: Provider, row: KeyRow | None) -> list[Any]:
        table = self.query_one(StyledTable)
        if row is None:
            return [p.name, table.styled("…", "muted"), "", "", "", ""]
        status = "testing…" if p.id in self._testing else row.status
        withdraw = {True: table.styled("YES", "error"), False: "no", None: "-"}[row.can_withdraw]
        return [
            p.name,
            table.styled(status, STATUS_ROLE.get(row.status, "muted")),
            fmt.ts(row.last_tested) if row.last_tested is not None else "-",
            row.masked or "-",
            withdraw,
            table.styled(row.reason, "error") if row.reason else "",
        ]

    # -- actions -------------------------------------------------------------------
    def selected(self) -> Provider:
        """The provider on the table's cursor row."""
        table = self.query_one(StyledTable)
        return list(PROVIDERS.values())[max(table.cursor_row, 0)]

    def _ready(self) -> KeyManager | None:
        if self.manager is None:
            self.notify("the keyring is not available (see the top of the screen)", severity="warning")
        return self.manager

    def action_set_key(self) -> None:
        if self._ready() is None:
            return
        p = self.selected()
        row = self.rows.get(p.id)
        replacing = row is not None and row.status != "not_configured"
        self.app.push_screen(SetKeyScreen(p, replacing), lambda values: self._save(p, values))

    def _save(self, p: Provider, values: dict[str, str] | None) -> None:
        if values is not None:
            key = values.get(p.masked_field)
            self._write(
                lambda m: m.save(p.id, values),
                f"{p.name}: key saved (untested; t tests it)",
                lambda: self._audit("added", p, masked=masked(key) if key else None),
            )

    def action_delete_key(self) -> None:
        if self._ready() is None:
            return
        p = self.selected()

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._delete(p)

        why = f"Removes every {p.name} field from the keyring. Bots trading live on it stop working."
        self.app.push_screen(ConfirmScreen(f"Delete the {p.name} key?", why, "Delete"), confirmed)

    @work(group="keys-write", exit_on_error=False)
    async def _delete(self, p: Provider) -> None:
        """Delete ``p``'s key; with TOTP enabled, only after a current code (the TOTP modal)."""
        manager = self._ready()
        if manager is None:
            return
        done = f"{p.name}: key deleted"
        try:
            needed = await asyncio.to_thread(totp_enabled, manager.store)
        except _EXPECTED as exc:
            self.notify(str(exc), title="Keys", severity="error", timeout=20)
            return
        if not needed:
            await self._apply(manager, lambda m: m.delete(p.id), done, lambda: self._audit("deleted", p))
            return

        async def run(code: str) -> None:
            def delete() -> None:
                require_totp(manager.store, code)
                manager.delete(p.id)

            await asyncio.to_thread(delete)
            self._audit("deleted", p)
            await self._reload()

        why = "TOTP is enabled: deleting a key needs a current code."
        self.app.push_screen(
            TotpCodeScreen(f"Delete the {p.name} key?", why, "Delete", run),
            lambda ok: self.notify(done) if ok else None,
        )

    @work(group="keys-write", exit_on_error=False)
    async def _write(
        self, call: Callable[[KeyManager], object], done: str, audit: Callable[[], None] | None = None
    ) -> None:
        manager = self._ready()
        if manager is not None:
            await self._apply(manager, call, done, audit)

    async def _apply(
        self,
        manager: KeyManager,
        call: Callable[[KeyManager], object],
        done: str,
        audit: Callable[[], None] | None = None,
    ) -> None:
        try:
            await asyncio.to_thread(call, manager)
        except _EXPECTED as exc:
            self.notify(str(exc), title="Keys", severity="error", timeout=20)
            return
        if audit is not None:
            audit()
        try:
            await self._reload()
        except _EXPECTED as exc:
            self.notify(str(exc), title="Keys", severity="error", timeout=20)
            return
        self.notify(done)

    def _audit(self, action: str, p: Provider, **details: Any) -> None:
        """The audit entry of a key change, as ``amarktai keys`` records it (``ops.audit.key_entry``:
        provider id and masked key id, never a secret), by the audit log beside the app's engine."""
        from amarktai_tui.ops.audit import key_entry, recorder_for

        entry = replace(key_entry(action, p.id, ts=int(time.time() * 1000), **details), actor="user")
        engine = getattr(self.app, "engine", None)
        recorder = recorder_for(engine) if engine is not None else None
        if recorder is None:
            log.warning("audit entry %s (%s) not recorded: no audit log is running", entry.type, p.id)
            return
        recorder.record(entry)

    def action_test_key(self) -> None:
        if self._ready() is None:
            return
        p = self.selected()
        if not p.testable:
            self.notify(
                f"{p.name}: no test available (its fields are stored for later use)", severity="warning"
            )
        elif p.id in self._testing:
            self.notify(f"{p.name}: a test is already running", severity="warning")
        else:
            self._test(p)

    @work(group="keys-test", exit_on_error=False)
    async def _test(self, p: Provider) -> None:
        manager = self._ready()
        if manager is None:
            return
        self._testing.add(p.id)
        row = self.rows.get(p.id)
        if row is not None:
            self.query_one(StyledTable).update_cell(p.id, "Status", self._cells(p, row)[1], update_width=True)
        try:
            outcome = await manager.test(p.id)
        except _EXPECTED as exc:
            self.notify(str(exc), title=f"{p.name} key", severity="error", timeout=20)
            return
        finally:
            self._testing.discard(p.id)
            await self._reload()
        check = outcome.check
        self._audit("tested", p, ok=check.ok, can_withdraw=check.can_withdraw)
        if check.ok:
            self.notify(f"{p.name}: key works ({check.summary})", title="Key test")
        else:
            self.notify(f"{p.name}: {check.reason}", title="Key test failed", severity="error", timeout=30)
        if check.can_withdraw:
            self.notify(WITHDRAW_WARNING, title=f"{p.name} key", severity="error", timeout=60)
