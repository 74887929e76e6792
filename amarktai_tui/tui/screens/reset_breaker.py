"""The reset modal: asks for the reason (recorded in the ledger), then resets a trip or resumes a halt.

The engine does the checks: an empty reason or a trip that is no longer
active comes back as its ``EngineError`` message, shown inline; the modal
stays open until the reset is done or the user cancels.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from amarktai_tui.engine.engine import EngineError, ResetResult


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
    ) -> None:
        super().__init__()
        self._question = question
        self._explanation = explanation
        self._confirm_label = confirm_label
        self._run = run

    def compose(self) -> ComposeResult:
        with Vertical(id="reset-dialog", classes="dialog"):
            yield Label(self._question, id="reset-question", classes="dialog-title")
            yield Static(self._explanation, id="reset-explanation")
            yield Label("Reason (required; recorded in the ledger)", classes="field-label")
            yield Input(placeholder="why is it safe to trade again?", id="reset-reason")
            yield Static("", id="reset-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="reset-cancel")
                yield Button(f"{self._confirm_label} (enter)", id="reset-ok", variant="error")

    def on_mount(self) -> None:
        self.query_one("#reset-reason", Input).focus()

    @on(Button.Pressed, "#reset-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#reset-reason")
    @on(Button.Pressed, "#reset-ok")
    def action_submit(self) -> None:
        self._reset(self.query_one("#reset-reason", Input).value)

    @work(exclusive=True, group="reset", exit_on_error=False)
    async def _reset(self, reason: str) -> None:
        try:
            result = await self._run(reason)
        except EngineError as exc:
            self.query_one("#reset-error", Static).update(str(exc))
            self.query_one("#reset-reason", Input).add_class("field-error")
            self.query_one("#reset-reason", Input).focus()
            return
        self.dismiss(result)
