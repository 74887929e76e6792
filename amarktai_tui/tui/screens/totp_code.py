"""The TOTP modal: asks for a current code, then runs the action it protects (deleting a key).

``run(code)`` checks the code and does the action; a wrong or missing code (``TotpRequired``)
or a keyring problem comes back as its one-line message, shown inline, and the modal stays
open until the action is done or the user cancels.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from amarktai_tui.ledger.schema import SchemaTooNewError
from amarktai_tui.vault.errors import VaultError

CODE_LABEL = "TOTP code (6 digits from your authenticator app)"
EMPTY_CODE = "enter the current 6-digit code from your authenticator app"


class TotpCodeScreen(ModalScreen[bool]):
    """Asks ``question`` with an explanation and a TOTP code; ``run(code)`` does the action.

    Dismisses with True once ``run`` succeeded, False when cancelled.
    """

    DEFAULT_CSS = """
    #totp-dialog { width: 70; }
    #totp-explanation { margin-bottom: 1; }
    #totp-error { color: $error; text-style: bold; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="totp.cancel"),
        Binding("ctrl+s", "submit", "Confirm", id="totp.submit", priority=True),
    ]

    def __init__(
        self, question: str, explanation: str, confirm_label: str, run: Callable[[str], Awaitable[None]]
    ) -> None:
        super().__init__()
        self._question = question
        self._explanation = explanation
        self._confirm_label = confirm_label
        self._run = run

    def compose(self) -> ComposeResult:
        with Vertical(id="totp-dialog", classes="dialog"):
            yield Label(self._question, id="totp-question", classes="dialog-title")
            yield Static(self._explanation, id="totp-explanation")
            yield Label(CODE_LABEL, classes="field-label")
            yield Input(placeholder="123456", id="totp-code", max_length=8, restrict=r"[0-9 ]*")
            yield Static("", id="totp-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="totp-cancel")
                yield Button(f"{self._confirm_label} (enter)", id="totp-ok", variant="error")

    def on_mount(self) -> None:
        self.query_one("#totp-code", Input).focus()

    @on(Button.Pressed, "#totp-cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Input.Submitted, "#totp-code")
    @on(Button.Pressed, "#totp-ok")
    def action_submit(self) -> None:
        self._submit(self.query_one("#totp-code", Input).value)

    @work(exclusive=True, group="totp", exit_on_error=False)
    async def _submit(self, code: str) -> None:
        try:
            if not code.strip():
                raise VaultError(EMPTY_CODE)
            await self._run(code)
        except (VaultError, sqlite3.Error, SchemaTooNewError) as exc:
            self.query_one("#totp-error", Static).update(str(exc))
            field = self.query_one("#totp-code", Input)
            field.add_class("field-error")
            field.value = ""
            field.focus()
            return
        self.dismiss(True)
