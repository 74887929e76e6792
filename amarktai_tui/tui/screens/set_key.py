"""The set-key form: one input per field of a provider (secrets as password inputs).

It only collects the values: required fields are checked here so the message points at the
field; the Keys screen saves them (in a worker: the keyring may block).
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from amarktai_tui.vault.providers import Provider


class SetKeyScreen(ModalScreen[dict[str, str] | None]):
    """Asks for ``provider``'s fields; dismisses with {field: value} or None when cancelled.

    Input ids are ``key-<field>`` (e.g. ``#key-api_secret``).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="setkey.cancel"),
        Binding("ctrl+s", "submit", "Save", id="setkey.submit", priority=True),
    ]

    def __init__(self, provider: Provider, replacing: bool) -> None:
        super().__init__()
        self.provider = provider
        self._replacing = replacing

    def compose(self) -> ComposeResult:
        p = self.provider
        with Vertical(id="setkey-dialog", classes="dialog"):
            yield Label(
                f"{p.name}: {'replace the' if self._replacing else 'save a'} key", classes="dialog-title"
            )
            yield Static(
                "Stored in the OS keyring only, never in the ledger or the logs. "
                + (
                    "Exchange keys: give trade and read rights only, never withdrawal."
                    if p.kind == "exchange"
                    else ""
                ),
                id="setkey-explanation",
            )
            for f in p.fields:
                yield Label(f.label + (" (optional)" if f.optional else ""), classes="field-label")
                yield Input(password=f.secret, id=f"key-{f.name}")
            yield Static("", id="setkey-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="setkey-cancel")
                yield Button("Save (ctrl+s)", id="setkey-save", variant="primary")

    def on_mount(self) -> None:
        self.query_one(f"#key-{self.provider.fields[0].name}", Input).focus()

    @on(Input.Changed)
    def _clear_invalid(self, event: Input.Changed) -> None:
        event.input.remove_class("field-error")

    @on(Input.Submitted)
    def _next(self, event: Input.Submitted) -> None:
        """Enter moves to the next field; on the last one it saves."""
        names = [f.name for f in self.provider.fields]
        i = names.index((event.input.id or "").removeprefix("key-"))
        if i + 1 < len(names):
            self.query_one(f"#key-{names[i + 1]}", Input).focus()
        else:
            self.action_submit()

    @on(Button.Pressed, "#setkey-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#setkey-save")
    def action_submit(self) -> None:
        values = {f.name: self.query_one(f"#key-{f.name}", Input).value.strip() for f in self.provider.fields}
        for f in self.provider.fields:
            if not f.optional and not values[f.name]:
                widget = self.query_one(f"#key-{f.name}", Input)
                widget.add_class("field-error")
                widget.focus()
                self.query_one("#setkey-error", Static).update(f"{f.label} must not be empty")
                return
        self.dismiss(values)
