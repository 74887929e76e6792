"""The confirmation modal of a chat proposal (an action the AI or a command proposed).

Shows the card (what, which bots, why, the expected effect, the expiry). A proposal with a
confirm word (stopping a bot: its name; the emergency stop: HALT; a breaker reset: RESET)
is confirmed only once that word is typed exactly; others with one press. Dismisses with the
typed word ("" for a plain confirmation) or None when cancelled: the session then confirms
it, and still refuses a late or wrong confirmation itself.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from amarktai_tui.ai.proposals import Proposal
from amarktai_tui.tui.widgets.proposal_card import card_lines, clock_time


class ConfirmActionScreen(ModalScreen[str | None]):
    """Asks to confirm ``proposal``; with a confirm word, the Confirm button waits for it typed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="confirm_action.cancel"),
        Binding("ctrl+s", "submit", "Confirm", id="confirm_action.submit", priority=True),
        Binding("y", "submit", "Confirm", id="confirm_action.yes", show=False),  # not while typing the word
    ]

    def __init__(self, proposal: Proposal) -> None:
        super().__init__()
        self.proposal = proposal

    def compose(self) -> ComposeResult:
        p = self.proposal
        with Vertical(id="confirm-action-dialog", classes="dialog"):
            yield Label(Text(f"Confirm: {p.what}?"), id="confirm-action-question", classes="dialog-title")
            yield Static(card_lines(p), id="confirm-action-card")
            yield Static(f"proposal {p.id}, expires {clock_time(p.expires_ms)}", id="confirm-action-expiry")
            if p.confirm_word:
                yield Label(Text(f"Type {p.confirm_word} to confirm"), classes="field-label")
                yield Input(placeholder=p.confirm_word, id="confirm-action-word")
            yield Static("", id="confirm-action-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="confirm-action-cancel")
                yield Button(
                    "Confirm (enter)" if p.confirm_word else "Confirm (y)",
                    id="confirm-action-ok",
                    variant="error",
                    disabled=bool(p.confirm_word),
                )

    def on_mount(self) -> None:
        if self.proposal.confirm_word:
            self.query_one("#confirm-action-word", Input).focus()
        else:
            self.query_one("#confirm-action-cancel", Button).focus()  # the safe choice has the focus

    @on(Input.Changed, "#confirm-action-word")
    def _typed(self, event: Input.Changed) -> None:
        self.query_one("#confirm-action-ok", Button).disabled = event.value != self.proposal.confirm_word
        self.query_one("#confirm-action-error", Static).update("")

    @on(Button.Pressed, "#confirm-action-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#confirm-action-word")
    @on(Button.Pressed, "#confirm-action-ok")
    def action_submit(self) -> None:
        word = self.proposal.confirm_word
        if not word:
            self.dismiss("")
            return
        typed = self.query_one("#confirm-action-word", Input).value
        if typed != word:
            self.query_one("#confirm-action-error", Static).update(
                Text(f"type {word} exactly (upper and lower case count) to confirm, or esc to cancel")
            )
            return
        self.dismiss(typed)
