"""The reset modal: asks for the reason (recorded in the ledger), then resets a trip or resumes a halt.

The engine does the checks: an empty reason or a trip that is no longer
active comes back as its ``EngineError`` message, shown inline; the modal
stays open until the reset is done or the user cancels.

With the TOTP second factor enabled (``vault.totp``; asked of ``totp`` when the modal
opens) a code field shows too, and the code is checked before the reset is asked for.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from typing import ClassVar, Protocol

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from amarktai_tui.engine.engine import EngineError, ResetResult
from amarktai_tui.tui.screens.totp_code import CODE_LABEL, EMPTY_CODE
from amarktai_tui.vault.errors import VaultError


class SecondFactor(Protocol):
    """``vault.totp.TotpGate``: both calls block (keyring, SQLite) and run in a thread."""

    def needed(self) -> bool: ...

    def check(self, code: str | None) -> None: ...


class ResetBreakerScreen(ModalScreen[ResetResult | None]):
    """Asks ``question`` with an explanation and a reason; ``run(reason)`` does the reset.

    Dismisses with the engine's ResetResult, or None when cancelled.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="reset.cancel"),
        Binding("ctrl+s", "submit", "Reset", id="reset.submit", priority=True),
    ]

    def __init__(
        self,
        question: str,
        explanation: str,
        confirm_label: str,
        run: Callable[[str], Awaitable[ResetResult]],
        totp: SecondFactor | None = None,
    ) -> None:
        super().__init__()
        self._question = question
        self._explanation = explanation
        self._confirm_label = confirm_label
        self._run = run
        self._totp = totp
        self._needs_code = False
        self._known = asyncio.Event()
        """Set once it is known whether a TOTP code is needed."""

    def compose(self) -> ComposeResult:
        with Vertical(id="reset-dialog", classes="dialog"):
            yield Label(self._question, id="reset-question", classes="dialog-title")
            yield Static(self._explanation, id="reset-explanation")
            yield Label("Reason (required; recorded in the ledger)", classes="field-label")
            yield Input(placeholder="why is it safe to trade again?", id="reset-reason")
            with Vertical(id="reset-totp-box"):
                yield Label(CODE_LABEL, classes="field-label")
                yield Input(placeholder="123456", id="reset-totp", max_length=8, restrict=r"[0-9 ]*")
            yield Static("", id="reset-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="reset-cancel")
                yield Button(f"{self._confirm_label} (enter)", id="reset-ok", variant="error")

    def on_mount(self) -> None:
        self.query_one("#reset-totp-box").display = False
        self.query_one("#reset-reason", Input).focus()
        if self._totp is None:
            self._known.set()
        else:
            self._ask_totp(self._totp)

    @work(group="reset-totp", exit_on_error=False)
    async def _ask_totp(self, totp: SecondFactor) -> None:
        try:
            self._needs_code = await asyncio.to_thread(totp.needed)
        except Exception:  # the ledger or keyring failed: ask for a code; the check says why
            self._needs_code = True
        finally:
            self._known.set()
        self.query_one("#reset-totp-box").display = self._needs_code

    @on(Button.Pressed, "#reset-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#reset-reason")
    def _reason_entered(self) -> None:
        code = self.query_one("#reset-totp", Input)
        if self._needs_code and not code.value.strip():
            code.focus()
        else:
            self.action_submit()

    @on(Input.Submitted, "#reset-totp")
    @on(Button.Pressed, "#reset-ok")
    def action_submit(self) -> None:
        self._reset(self.query_one("#reset-reason", Input).value, self.query_one("#reset-totp", Input).value)

    @work(exclusive=True, group="reset", exit_on_error=False)
    async def _reset(self, reason: str, code: str) -> None:
        await self._known.wait()
        if self._totp is not None and self._needs_code:
            try:
                if not code.strip():
                    raise VaultError(EMPTY_CODE)
                await asyncio.to_thread(self._totp.check, code)
            except (VaultError, sqlite3.Error) as exc:
                self.query_one("#reset-error", Static).update(str(exc))
                field = self.query_one("#reset-totp", Input)
                field.add_class("field-error")
                field.value = ""
                field.focus()
                return
        try:
            result = await self._run(reason)
        except EngineError as exc:
            self.query_one("#reset-error", Static).update(str(exc))
            self.query_one("#reset-reason", Input).add_class("field-error")
            self.query_one("#reset-reason", Input).focus()
            return
        self.dismiss(result)
