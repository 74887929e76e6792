"""A proposal card in the chat: what, which bots, why, the expected effect, the expiry; Confirm / Cancel.

The card only asks: its buttons post ``ProposalCard.Decided`` and the chat pane runs the
confirmation (a modal first) or the cancellation through the session. A card is live
while its proposal waits; ``expire`` and ``close`` end it (the buttons go, a line says why).
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Static

from amarktai_tui.ai.proposals import Proposal


def clock_time(ms: int) -> str:
    """ms UTC -> ``"14:07:03 UTC"``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S UTC")


def how_to_confirm(proposal: Proposal) -> str:
    """``type HALT to confirm`` for a proposal with a confirm word, else a plain confirmation."""
    if proposal.confirm_word:
        return f"type {proposal.confirm_word} to confirm"
    return "a plain confirmation"


def card_lines(proposal: Proposal) -> Text:
    """The card's body: which bots, why, the expected effect, how to confirm (plain text, no markup)."""
    text = Text()
    rows = [("which", ", ".join(proposal.bots)), ("why", proposal.why), ("effect", proposal.effect)]
    rows.append(("to run it", how_to_confirm(proposal)))
    for label, value in rows:
        if not value:
            continue
        if text:
            text.append("\n")
        text.append(f"{label:<10}", style="bold")
        text.append(value)
    return text


class ProposalCard(Vertical):
    """One proposal in the chat; ``state`` is live, expired, or how it ended (executed, cancelled...)."""

    class Decided(Message):
        """The user pressed Confirm (``confirm``) or Cancel on ``card``."""

        def __init__(self, card: ProposalCard, confirm: bool) -> None:
            super().__init__()
            self.card = card
            self.confirm = confirm

    class Ended(Message):
        """``card`` ended while one of its buttons had the focus (the focus must go elsewhere)."""

        def __init__(self, card: ProposalCard) -> None:
            super().__init__()
            self.card = card

    def __init__(self, proposal: Proposal, now_ms: int) -> None:
        super().__init__(classes="proposal-card", id=f"card-{proposal.id}")
        self.proposal = proposal
        self.state = "live"
        self._now_ms = now_ms
        self._line = ""

    @property
    def live(self) -> bool:
        return self.state == "live"

    def compose(self) -> ComposeResult:
        p = self.proposal
        yield Static(Text(f"Proposal {p.id}: {p.what}"), classes="proposal-title")
        yield Static(card_lines(p), classes="proposal-body")
        yield Static(
            Text(self._line) if self._line else self._expiry_text(self._now_ms), classes="proposal-expiry"
        )
        if self.live:
            with Horizontal(classes="proposal-buttons"):
                yield Button(
                    "Confirm",
                    id=f"confirm-{p.id}",
                    classes="proposal-confirm",
                    variant="warning",
                    compact=True,
                )
                yield Button("Cancel", id=f"cancel-{p.id}", classes="proposal-cancel", compact=True)

    def _expiry_text(self, now_ms: int) -> str:
        expires = self.proposal.expires_ms
        if now_ms >= expires:
            return f"expired at {clock_time(expires)}: it can no longer be confirmed"
        return f"expires {clock_time(expires)} (in {(expires - now_ms + 999) // 1000} s)"

    def tick(self, now_ms: int) -> None:
        """Show the time left; past the expiry the card expires."""
        if not self.live:
            return
        if now_ms >= self.proposal.expires_ms:
            self.expire()
        elif self.is_mounted:
            self.query_one(".proposal-expiry", Static).update(self._expiry_text(now_ms))

    def expire(self) -> None:
        """The proposal ran out of time: no buttons, a line says so."""
        self.close("expired", self._expiry_text(self.proposal.expires_ms))

    def close(self, state: str, line: str) -> None:
        """End the card: ``state`` (executed, cancelled, failed, expired, ended) and a line saying how."""
        if not self.live:
            return
        self.state, self._line = state, line
        self.add_class(f"proposal-{state}")
        if self.is_mounted:
            self.query_one(".proposal-expiry", Static).update(Text(line))
            had_focus = any(button.has_focus for button in self.query(Button))
            if had_focus:  # let go of it first, or removing the button hands it to the chat log
                self.screen.set_focus(None)
                self.post_message(self.Ended(self))
            self.query_one(".proposal-buttons").remove()

    @on(Button.Pressed, ".proposal-confirm")
    def _confirm(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.Decided(self, True))

    @on(Button.Pressed, ".proposal-cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.Decided(self, False))
