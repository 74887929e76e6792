"""Chat pane: the AI console (or, without the AI, the console's commands) in the TUI's Chat tab.

    status line (session.status_line), a "commands only" banner when the AI is unavailable
    the last ``limit`` messages: the user's lines, replies as Markdown, command answers,
      proposal cards (Confirm / Cancel) and their outcome lines
    an input with history (up/down), ``/clear`` for a new conversation

The session (``ai.session.ChatSession``) is opened by the app once the engine runs
(``open_session``) and closed before the engine closes (``close_session``); if it cannot
open, ``tui.chat_backend.CommandsOnly`` serves the commands and the banner says why.
Sending runs in a worker (group ``chat``) that turns the session's events into typed
messages (``Started``, ``Chunk``, ``Replied``, ``Proposed``, ``Output``); the one
``Worker.StateChanged`` handler ends each turn (``Failed`` on an error, then ``Finished``),
so neither the UI nor the engine waits for a model; esc stops a turn. The messages stay in
the pane (they do not bubble; ``run_test(message_hook=...)`` sees them). A streamed reply
grows as plain text and becomes Markdown when it is complete. Confirmations and
cancellations run in ``chat`` workers too; ``settled`` is set whenever no turn or decision
is under way. A card's expiry follows the session's clock (``book.now``), checked every second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Markdown, Static
from textual.worker import Worker, WorkerState

from amarktai_tui.ai import session as chat
from amarktai_tui.ai.figures import clean
from amarktai_tui.ai.proposals import Proposal
from amarktai_tui.config import Settings
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.tui.chat_backend import ChatBackend, CommandsOnly
from amarktai_tui.tui.screens.confirm_action import ConfirmActionScreen
from amarktai_tui.tui.widgets.chat_input import ChatInput
from amarktai_tui.tui.widgets.proposal_card import ProposalCard

log = logging.getLogger(__name__)

BANNER = "COMMANDS ONLY: the AI is not available. /help lists the commands; actions still ask you to confirm."
NOT_READY = "The chat opens once the engine has started."
CLOSED = "The chat closed with its engine (it opens again when an engine starts)."
OUTCOME_STATES = {"done": "executed", "cancelled": "cancelled", "expired": "expired", "failed": "failed"}
"""An outcome line's first word -> the state its card ends in."""
CARD_ENDS = {
    "executed": "confirmed and done (see below)",
    "cancelled": "cancelled",
    "expired": "expired unconfirmed: nothing was done",
    "failed": "confirmed, but it failed (see below)",
    "ended": "no longer pending (see below)",
}
"""The last line of a card that ended, by state."""


def wall_ms() -> int:
    return int(time.time() * 1000)


def _proposal_noted(message: chat.ChatMessage) -> str:
    """The proposal id of the session's note of a proposal (``Proposal.text``: "Proposal ID: ..."
    or "Proposal ID, expires in ..."), else ""."""
    if message.role != "system" or not message.content.startswith("Proposal "):
        return ""
    return message.content.split(" ", 2)[1].rstrip(":,")


class ChatPane(Vertical):
    """The Chat tab: status, banner, messages, proposal cards, input."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop_reply", "Stop the reply", id="chat.stop"),
        # out of the input, the app's keys (1-4 for the tabs...) work again; tab or a click comes back
        Binding("escape", "leave_input", "Leave the input", id="chat.leave", show=False),
    ]

    class Started(Message, bubble=False):
        """A turn began: ``text`` was sent."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Chunk(Message, bubble=False):
        """A piece of the reply being streamed."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Replied(Message, bubble=False):
        """The complete reply (Markdown) and the model that wrote it."""

        def __init__(self, text: str, model: str) -> None:
            super().__init__()
            self.text = text
            self.model = model

    class Proposed(Message, bubble=False):
        """An action waits for the user's confirmation."""

        def __init__(self, proposal: Proposal) -> None:
            super().__init__()
            self.proposal = proposal

    class Output(Message, bubble=False):
        """A command's answer (plain text)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Failed(Message, bubble=False):
        """The turn (or a confirmation) failed; ``reason`` is one line."""

        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    class Finished(Message, bubble=False):
        """The turn or decision is over (answered, failed or stopped)."""

    class Decided(Message, bubble=False):
        """``line`` is the outcome of confirming or cancelling the proposal of ``card``."""

        def __init__(self, card: ProposalCard, line: str) -> None:
            super().__init__()
            self.card = card
            self.line = line

    def __init__(self, *, limit: int = 50, id: str | None = None) -> None:
        super().__init__(id=id)
        self.limit = limit
        self.session: ChatBackend | None = None
        self.settled = asyncio.Event()
        """Set while no turn or decision is under way (tests wait on it)."""
        self.settled.set()
        self.opened = asyncio.Event()
        """Set while a session is attached (tests wait on it)."""
        self._stream: Static | None = None
        """The reply being streamed (plain text until it is complete)."""
        self._stream_meta: Static | None = None
        self._streamed = ""
        self._deciding: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Static(BANNER, id="chat-banner")
        yield Static(NOT_READY, id="chat-status")
        yield VerticalScroll(id="chat-log", can_focus=True)
        yield ChatInput(placeholder="Ask, or type a command: /help, /status, /bots...", id="chat-input")

    def on_mount(self) -> None:
        self.query_one("#chat-banner").display = False
        self.query_one("#chat-log").anchor()
        self.ticker = self.set_interval(1.0, self.tick, name="chat-tick")

    # -- the session -----------------------------------------------------------------
    async def open_session(self, engine: TradingEngine, settings: Settings, data_dir: Path) -> None:
        """Open the chat session on the running ``engine`` and show it; never raises (but for a
        cancellation): a failure leaves the commands only, with the reason in the banner."""
        try:
            session: ChatBackend = await chat.ChatSession.open(engine, settings, data_dir)
        except Exception as exc:
            log.exception("the chat session did not open")
            session = CommandsOnly(engine, clean(f"{type(exc).__name__}: {exc}", 300))
        await self.attach(session)

    async def attach(self, session: ChatBackend) -> None:
        """Show ``session``: its status, the banner if commands only, its latest messages (in place
        of those of an earlier session, e.g. before a mode switch)."""
        self.session = session
        self.opened.set()
        if not self.is_mounted:
            return
        await self.query_one("#chat-log").remove_children()
        chat_input = self.query_one(ChatInput)
        cards = {p.id: ProposalCard(p, self._now()) for p in session.pending()}
        widgets: list[Widget] = []
        for message in session.history(self.limit):
            card = cards.pop(_proposal_noted(message), None)  # a pending one: its card, in its place
            widgets.extend([card] if card is not None else self._history_widgets(message))
            if message.role == "user":
                chat_input.remember(message.content)
        widgets.extend(cards.values())  # pending proposals whose note is older than the messages shown
        self._append(*widgets)
        self._show_status()

    def _now(self) -> int:
        """The clock the session's proposals expire by (ms UTC)."""
        return self.session.book.now() if self.session is not None else wall_ms()

    async def close_session(self) -> None:
        """Close the session (before its engine closes): a turn under way stops, live cards end.
        Never raises: the engine worker closes the engine after it."""
        session, self.session = self.session, None
        self.opened.clear()
        if session is None:
            return
        for worker in self._workers():
            worker.cancel()
        try:
            await session.close()
        except Exception:
            log.exception("closing the chat session failed")
        if not self.is_mounted:
            return
        with suppress(NoMatches):  # the app is closing: its widgets are going away
            for card in self.query(ProposalCard):
                card.close("ended", "the engine stopped: this proposal ended unconfirmed")
            self.query_one("#chat-banner").display = False
            self.query_one("#chat-status", Static).update(CLOSED)

    def _show_status(self) -> None:
        session = self.session
        if session is None or not self.is_mounted:
            return
        status = self.query_one("#chat-status", Static)
        line = session.status_line
        if str(status.content) != line:
            status.update(Text(line))
        self.query_one("#chat-banner").display = not session.ai_available

    # -- sending -----------------------------------------------------------------------
    @on(Input.Submitted, "#chat-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            return
        if not self.settled.is_set():
            self.notify("wait for the answer (esc stops it)", severity="warning")
            return
        chat_input = self.query_one(ChatInput)
        chat_input.value = ""
        chat_input.remember(text)
        session = self.session
        if text.lower() == "/clear":
            self._begin()
            self._clear(session)
        elif session is None:
            self._append(self._line(text, "chat-user"), self._line(NOT_READY, "chat-note"))
        else:
            self._begin()
            self._send(session, text)

    def _begin(self) -> None:
        self.settled.clear()
        self._stream, self._stream_meta, self._streamed = None, None, ""
        self.refresh_bindings()

    def _workers(self, name: str | None = None) -> list[Worker[None]]:
        """This pane's workers (``self.workers`` is the app's manager: the engine's too)."""
        return [w for w in self.workers if w.node is self and (name is None or w.name == name)]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """esc stops a reply that is coming (the footer offers it then), else leaves the input."""
        if action == "stop_reply":
            return bool(self._workers("chat.send"))
        if action == "leave_input":
            return not self._workers("chat.send") and isinstance(self.app.focused, ChatInput)
        return True

    def action_leave_input(self) -> None:
        self.query_one("#chat-log").focus()

    @work(group="chat", exit_on_error=False, name="chat.send")
    async def _send(self, session: ChatBackend, text: str) -> None:
        """One turn: the session's events become this pane's messages."""
        self.post_message(self.Started(text))
        events = session.send(text)
        try:
            async for event in events:
                self.post_message(self._message(event))
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    def _message(self, event: chat.ChatEvent) -> Message:
        if isinstance(event, chat.Chunk):
            return self.Chunk(event.text)
        if isinstance(event, chat.Reply):
            return self.Replied(event.text, event.model)
        if isinstance(event, chat.ProposalMade):
            return self.Proposed(event.proposal)
        if isinstance(event, chat.CommandOutput):
            return self.Output(event.text)
        return self.Failed(event.reason)

    @work(group="chat", exit_on_error=False, name="chat.clear")
    async def _clear(self, session: ChatBackend | None) -> None:
        if session is not None:
            await session.clear()
        for widget in list(self.query_one("#chat-log").children):
            if not (isinstance(widget, ProposalCard) and widget.live):
                await widget.remove()
        note = "New conversation. Earlier messages stay in the history."
        self._append(self._line(note, "chat-note"))

    def action_stop_reply(self) -> None:
        """Stop the turn under way (the reply so far stays, marked as stopped)."""
        for worker in self._workers("chat.send"):
            worker.cancel()

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        """The one place a chat worker ends: its error becomes a Failed line, then Finished."""
        event.stop()
        if event.state is WorkerState.ERROR:
            error = event.worker.error
            self.post_message(self.Failed(clean(f"{type(error).__name__}: {error}", 400)))
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            if event.worker.name == "chat.decide" and event.state is not WorkerState.SUCCESS:
                self._deciding.clear()
            self.post_message(self.Finished())

    # -- drawing the turn ----------------------------------------------------------------
    @on(Started)
    def _started(self, message: Started) -> None:
        self._append(self._line(message.text, "chat-user"))

    @on(Chunk)
    def _chunk(self, message: Chunk) -> None:
        self._streamed += message.text
        if self._stream is None:
            self._stream_meta = self._line("AI (answering...)", "chat-meta")
            self._stream = self._line(self._streamed, "chat-streaming")
            self._append(self._stream_meta, self._stream)
        else:
            self._stream.update(Text(self._streamed))

    @on(Replied)
    def _replied(self, message: Replied) -> None:
        reply = Markdown(message.text, classes="chat-assistant", open_links=False)
        meta = f"AI ({message.model})" if message.model else "AI"
        stream, stream_meta = self._stream, self._stream_meta
        self._stream, self._stream_meta, self._streamed = None, None, ""
        if stream is None or stream_meta is None or not stream.is_attached:
            self._append(self._line(meta, "chat-meta"), reply)
            return
        stream_meta.update(Text(meta))
        self.query_one("#chat-log").mount(reply, after=stream)
        stream.remove()

    @on(Proposed)
    def _proposed(self, message: Proposed) -> None:
        self._append(ProposalCard(message.proposal, self._now()))

    @on(Output)
    def _output(self, message: Output) -> None:
        self._append(self._line(message.text, "chat-output"))

    @on(Failed)
    def _failed(self, message: Failed) -> None:
        self._append(self._line(message.reason, "chat-failed"))

    @on(Finished)
    def _finished(self) -> None:
        if self._stream is not None and self._stream_meta is not None:  # stopped or cut off
            self._stream_meta.update("AI (stopped: the reply so far)")
            self._stream, self._stream_meta, self._streamed = None, None, ""
        self.refresh_bindings()
        self._show_status()
        self._sync_cards()
        self.settled.set()

    # -- proposals -----------------------------------------------------------------------
    @on(ProposalCard.Decided)
    def _card_decided(self, message: ProposalCard.Decided) -> None:
        card = message.card
        if not card.live:
            return
        if not self.settled.is_set():
            self.notify("wait for the answer (esc stops it)", severity="warning")
            return
        if not message.confirm:
            self.query_one(ChatInput).focus()  # the card's buttons are about to go
            self._decide(card, None)
            return
        if self._now() >= card.proposal.expires_ms:
            card.expire()
            self.notify("this proposal has expired: ask again", severity="warning")
            return

        def confirmed(typed: str | None) -> None:
            self.query_one(ChatInput).focus()
            if typed is not None:  # expired meanwhile: the session refuses it and says so
                self._decide(card, typed)

        self.app.push_screen(ConfirmActionScreen(card.proposal), confirmed)

    @on(ProposalCard.Ended)
    def _card_ended(self) -> None:
        self.query_one(ChatInput).focus()

    def _decide(self, card: ProposalCard, typed: str | None) -> None:
        session = self.session
        if session is None:
            return
        self.settled.clear()
        self._deciding.add(card.proposal.id)
        self._decision(session, card, typed)

    @work(group="chat", exit_on_error=False, name="chat.decide")
    async def _decision(self, session: ChatBackend, card: ProposalCard, typed: str | None) -> None:
        """Confirm (``typed``: the word typed, "" for none) or cancel (None) ``card``'s proposal."""
        pid = card.proposal.id
        line = await session.cancel(pid) if typed is None else await session.confirm(pid, typed)
        self.post_message(self.Decided(card, line))

    @on(Decided)
    def _outcome(self, message: Decided) -> None:
        card = message.card
        self._deciding.discard(card.proposal.id)
        ended = self.session is None or card.proposal.id not in {p.id for p in self.session.pending()}
        role = "chat-outcome" if ended else "chat-failed"
        if ended:
            state = OUTCOME_STATES.get(message.line.split(":", 1)[0].strip().lower(), "ended")
            card.close(state, CARD_ENDS[state])
            role += f" outcome-{state}"
        self._append(self._line(message.line, role))

    def _sync_cards(self) -> None:
        """End live cards whose proposal is no longer pending (e.g. ``/confirm ID`` typed), and
        those past their expiry."""
        session, now = self.session, self._now()
        pending = {p.id for p in session.pending()} if session is not None else set()
        for card in self.query(ProposalCard):
            if not card.live or card.proposal.id in self._deciding:
                continue
            if now >= card.proposal.expires_ms:
                card.expire()
            elif card.proposal.id not in pending:
                card.close("ended", "no longer pending (confirmed, cancelled or expired: see below)")

    def tick(self) -> None:
        """Every second: the cards' time left (and their expiry), the status line."""
        for card in self.query(ProposalCard):
            card.tick(self._now())
        if self.settled.is_set():
            self._sync_cards()
            self._show_status()

    # -- the log -------------------------------------------------------------------------
    @staticmethod
    def _line(text: str, classes: str) -> Static:
        return Static(Text(text), classes=classes)

    def _history_widgets(self, message: chat.ChatMessage) -> list[Widget]:
        if message.role == "user":
            return [self._line(message.content, "chat-user")]
        if message.role == "assistant" and message.model:  # a model's reply (commands have none)
            meta = f"AI ({message.model})"
            md = Markdown(message.content, classes="chat-assistant", open_links=False)
            return [self._line(meta, "chat-meta"), md]
        return [self._line(message.content, "chat-output")]

    def _append(self, *widgets: Widget) -> None:
        """Add ``widgets`` at the end and keep the last ``limit`` messages (live cards stay)."""
        if not widgets or not self.is_mounted:
            return
        chat_log = self.query_one("#chat-log", VerticalScroll)
        chat_log.mount_all(widgets)
        extra = sum(not w.has_class("chat-meta") for w in chat_log.children) - self.limit
        for old in list(chat_log.children):
            if extra <= 0:
                break
            if isinstance(old, ProposalCard) and old.live:
                continue
            if not old.has_class("chat-meta"):
                extra -= 1
            old.remove()
