"""A yes/no confirmation modal (stopping a bot, later: going live)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ConfirmScreen(ModalScreen[bool]):
    """Asks ``question`` with an explanation; dismisses with True (confirm) or False (cancel)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "cancel", "Cancel", id="confirm.cancel"),
        Binding("y", "confirm", "Confirm", id="confirm.confirm"),
    ]

    def __init__(self, question: str, explanation: str, confirm_label: str) -> None:
        super().__init__()
        self._question = question
        self._explanation = explanation
        self._confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog"):
            yield Label(self._question, id="confirm-question", classes="dialog-title")
            yield Static(self._explanation, id="confirm-explanation")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (n)", id="confirm-cancel")
                yield Button(f"{self._confirm_label} (y)", id="confirm-ok", variant="error")

    def on_mount(self) -> None:
        self.query_one("#confirm-cancel", Button).focus()  # the safe choice has the focus

    @on(Button.Pressed, "#confirm-ok")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)
