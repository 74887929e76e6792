"""The account mode modal (M): shows paper or live, and switches to the other one.

To live: the readiness checks (``ops.doctor.run_doctor``) run in a worker and are listed, each
PASS or FAIL with what it found and what to do. Only when every check passed does the phrase
field open (``CONFIRM_LIVE_TRADING``, typed exactly: the button stays disabled until then),
with a TOTP code field (hidden characters) when the second factor is enabled. To paper: one
confirmation, nothing else.

The modal does not switch anything itself: ``apply(target, phrase, code)`` (the app's worker)
stops the engine, runs ``ops.mode.switch_mode`` (which runs the whole gate again) and starts the
engine in the new mode. A refusal comes back as its one-line reason, shown here; the modal stays
open (and cannot be closed) while the switch runs.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static
from textual.worker import Worker, WorkerCancelled, WorkerFailed

from amarktai_tui.config import Settings
from amarktai_tui.domain.enums import TradingMode
from amarktai_tui.ops.doctor import Check, doctor_ok, run_doctor
from amarktai_tui.ops.mode import CONFIRM_PHRASE, ModeSwitchRefused, current_mode
from amarktai_tui.tui.screens.totp_code import CODE_LABEL
from amarktai_tui.vault.errors import VaultError
from amarktai_tui.vault.totp import TotpGate

ApplyMode = Callable[[TradingMode, str | None, str | None], Worker[ModeSwitchRefused | None]]
"""``apply(target, phrase, totp_code)``: the app's worker that makes the switch; its result is the
refusal (None: switched)."""

TO_LIVE = (
    "Live trading sends real orders with real money. The engine stops, the readiness checks run "
    "again, the account switches to live and the engine starts a live session of the bots at stage "
    "live only, after reconciling with the exchanges. The other bots wait until the account is "
    "back on paper."
)
TO_PAPER = (
    "The engine stops (no further live order leaves), the account switches to paper at once and "
    "the engine starts again on paper with every bot. Open positions on the exchanges stay there."
)


class ModeSwitchScreen(ModalScreen[TradingMode | None]):
    """The account mode and the switch to the other one; dismisses with the new mode, or None."""

    DEFAULT_CSS = """
    #mode-dialog { width: 100; max-height: 95%; }
    #mode-now { height: 1; margin-bottom: 1; }
    #mode-badge { text-style: bold; background: $primary-muted; color: $text; margin-left: 1; }
    #mode-badge.live { background: $mode-live; color: white; }
    #mode-explanation { margin-bottom: 1; }
    #mode-status { text-style: bold; }
    #mode-checks { height: auto; max-height: 16; margin-bottom: 1; }
    #mode-checks .check-pass { color: $success; }
    #mode-checks .check-fail { color: $error; text-style: bold; }
    #mode-checks .check-fix { color: $text-muted; padding-left: 5; }
    #mode-phrase-box, #mode-totp-box { height: auto; }
    #mode-error { color: $error; text-style: bold; }
    /* fixed: the label is only known once the mode is read; a width that follows it would need a
       relayout the screen may not have drawn yet (a flaky snapshot under load) */
    #mode-ok { width: 25; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="mode.cancel"),
        Binding("ctrl+s", "submit", "Switch", id="mode.submit", priority=True),
    ]

    def __init__(self, settings: Settings, data_dir: Path, apply: ApplyMode) -> None:
        super().__init__()
        self._settings = settings
        self._data_dir = data_dir
        self._apply = apply
        self.current: TradingMode | None = None
        """The account's mode as read when the modal opened (None until read)."""
        self.target: TradingMode | None = None
        self.checks: list[Check] = []
        self._needs_code = False
        self._busy = False
        self.ready = asyncio.Event()
        """Set once the modal knows the mode and (to live) the checks are listed."""

    def compose(self) -> ComposeResult:
        with Vertical(id="mode-dialog", classes="dialog"):
            yield Label("Account trading mode", id="mode-title", classes="dialog-title")
            with Horizontal(id="mode-now"):
                yield Label("Now:")
                yield Label(" ... ", id="mode-badge")
            yield Static("", id="mode-explanation")
            yield Static("reading the account mode...", id="mode-status")
            yield VerticalScroll(id="mode-checks")
            with Vertical(id="mode-phrase-box"):
                yield Label(f"Type {CONFIRM_PHRASE} to switch to live trading", classes="field-label")
                yield Input(placeholder=CONFIRM_PHRASE, id="mode-phrase")
                with Vertical(id="mode-totp-box"):
                    yield Label(CODE_LABEL, classes="field-label")
                    yield Input(
                        placeholder="123456", id="mode-totp", password=True, max_length=8, restrict=r"[0-9 ]*"
                    )
            yield Static("", id="mode-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="mode-cancel")
                yield Button("Switch (enter)", id="mode-ok", variant="error", disabled=True)

    def on_mount(self) -> None:
        self._open_phrase(False)
        self.query_one("#mode-checks").display = False
        self.query_one("#mode-cancel", Button).focus()
        self._prepare()

    def _open_phrase(self, open_: bool) -> None:
        box = self.query_one("#mode-phrase-box")
        box.display = open_
        box.disabled = not open_
        self.query_one("#mode-totp-box").display = open_ and self._needs_code

    # -- what the modal offers ----------------------------------------------------
    @work(exclusive=True, group="mode-prepare", exit_on_error=False)
    async def _prepare(self) -> None:
        status = self.query_one("#mode-status", Static)
        try:
            self.current = await asyncio.to_thread(current_mode, self._data_dir)
        except sqlite3.Error as exc:  # an unreadable ledger: nothing can be switched
            status.update(f"cannot read the account mode: {type(exc).__name__}: {exc}")
            self.ready.set()
            return
        live = self.current is TradingMode.LIVE
        self.target = TradingMode.PAPER if live else TradingMode.LIVE
        badge = self.query_one("#mode-badge", Label)
        badge.update(f" {self.current.value.upper()} ")
        badge.set_class(live, "live")
        self.query_one("#mode-explanation", Static).update(TO_PAPER if live else TO_LIVE)
        ok = self.query_one("#mode-ok", Button)
        ok.label = f"Switch to {self.target.value} (enter)"
        if self.target is TradingMode.PAPER:
            status.update("Switching to paper is immediate.")
            self._update_ok()
            ok.focus()
            self.ready.set()
            return
        status.update("Running the readiness checks (amarktai doctor)...")
        try:
            checks = await run_doctor(self._settings, self._data_dir)
        except Exception as exc:  # the gate stays closed; the reason is shown here
            status.update(f"the readiness checks could not run: {type(exc).__name__}: {exc}")
            self.ready.set()
            return
        if doctor_ok(checks):
            try:
                self._needs_code = await asyncio.to_thread(TotpGate(self._settings, self._data_dir).needed)
            except Exception:  # the ledger or keyring failed: ask for a code; the check says why
                self._needs_code = True
        await self._show_checks(checks)
        self.ready.set()

    async def _show_checks(self, checks: list[Check]) -> None:
        """List the checks; open the phrase field only when every one passed."""
        self.checks = checks
        box = self.query_one("#mode-checks", VerticalScroll)
        await box.remove_children()
        lines: list[Static] = []
        for c in checks:
            text = f"{'PASS' if c.ok else 'FAIL'} {c.name}  {c.detail}"
            lines.append(Static(text, classes="check-pass" if c.ok else "check-fail", markup=False))
            if not c.ok and c.fix:
                lines.append(Static(f"-> {c.fix}", classes="check-fix", markup=False))
        await box.mount_all(lines)
        box.display = True
        passed = doctor_ok(checks)
        failed = sum(1 for c in checks if not c.ok)
        self.query_one("#mode-status", Static).update(
            f"All {len(checks)} readiness checks passed."
            if passed
            else f"{failed} of {len(checks)} readiness checks failed: fix them, then open this again (M)."
        )
        self._open_phrase(passed)
        self._update_ok()
        if passed:
            self.query_one("#mode-phrase", Input).focus()

    @on(Input.Changed, "#mode-phrase")
    def _phrase_changed(self) -> None:
        self._update_ok()

    # -- actions ------------------------------------------------------------------------
    @on(Button.Pressed, "#mode-cancel")
    def action_cancel(self) -> None:
        if not self._busy:  # a switch under way is seen to its end (the engine is restarting)
            self.dismiss(None)

    @on(Input.Submitted, "#mode-phrase")
    def _phrase_entered(self) -> None:
        if self._needs_code and not self.query_one("#mode-totp", Input).value.strip():
            self.query_one("#mode-totp", Input).focus()
        else:
            self.action_submit()

    @on(Input.Submitted, "#mode-totp")
    @on(Button.Pressed, "#mode-ok")
    def action_submit(self) -> None:
        if self._busy or self.query_one("#mode-ok", Button).disabled:
            return
        phrase = self.query_one("#mode-phrase", Input).value
        code = self.query_one("#mode-totp", Input).value
        if self.target is TradingMode.LIVE and phrase != CONFIRM_PHRASE:
            return
        self._switch(phrase, code)

    @work(exclusive=True, group="mode-switch", exit_on_error=False)
    async def _switch(self, phrase: str, code: str) -> None:
        target = self.target
        if target is None:
            return
        error = self.query_one("#mode-error", Static)
        error.update("")
        if target is TradingMode.LIVE and self._needs_code:
            # checked before the engine is stopped, so a typo costs no restart (switch_mode checks again)
            try:
                await asyncio.to_thread(TotpGate(self._settings, self._data_dir).check, code)
            except (VaultError, sqlite3.Error) as exc:
                error.update(str(exc))
                field = self.query_one("#mode-totp", Input)
                field.add_class("field-error")
                field.value = ""
                field.focus()
                return
        self._set_busy(True)
        self.query_one("#mode-status", Static).update(
            f"Stopping the engine and switching to {target.value}..."
        )
        refused: ModeSwitchRefused | None
        try:
            refused = await self._apply(target, phrase if target is TradingMode.LIVE else None, code).wait()
        except (WorkerFailed, WorkerCancelled) as exc:
            refused = ModeSwitchRefused(f"the switch did not complete: {exc}")
        self._set_busy(False)
        if refused is None:
            self.dismiss(target)
            return
        error.update(f"Refused: {refused}")
        was = self.current.value if self.current is not None else "its old"
        if refused.checks and not doctor_ok(refused.checks):
            await self._show_checks(refused.checks)
        else:
            self.query_one("#mode-status", Static).update(
                f"Not switched: the engine starts again in {was} mode."
            )
        self._update_ok()

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.query_one("#mode-cancel", Button).disabled = busy
        self.query_one("#mode-phrase-box").disabled = busy or not doctor_ok(self.checks)
        self._update_ok()

    def _update_ok(self) -> None:
        """The switch button: to paper always; to live only with every check passed and the phrase exact."""
        ok = self.query_one("#mode-ok", Button)
        if self._busy or self.target is None:
            ok.disabled = True
        elif self.target is TradingMode.PAPER:
            ok.disabled = False
        else:
            phrase = self.query_one("#mode-phrase", Input).value
            ok.disabled = not doctor_ok(self.checks) or phrase != CONFIRM_PHRASE
