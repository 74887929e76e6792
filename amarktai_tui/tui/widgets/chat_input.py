"""The chat's input line with a history: up recalls earlier inputs, down comes back (to the line
being typed, which is kept)."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import Input

INPUT_HISTORY = 200
"""Earlier inputs the up key can recall."""


class ChatInput(Input):
    """The chat's input line; up and down recall earlier inputs (the line being typed is kept)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history(-1)", "Earlier input", id="chat.history_back", show=False),
        Binding("down", "history(1)", "Later input", id="chat.history_forward", show=False),
    ]

    def __init__(self, placeholder: str = "", *, id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, id=id)
        self.past: list[str] = []
        self._at = 0
        self._draft = ""

    def remember(self, text: str) -> None:
        """Add a sent line to the history (a repeat of the last one is not added again)."""
        if not self.past or self.past[-1] != text:
            self.past.append(text)
            del self.past[:-INPUT_HISTORY]
        self._at = len(self.past)
        self._draft = ""

    def action_history(self, step: int) -> None:
        at = self._at + step
        if at < 0 or at > len(self.past):
            return
        if self._at == len(self.past):
            self._draft = self.value
        self._at = at
        self.value = self.past[at] if at < len(self.past) else self._draft
        self.cursor_position = len(self.value)
