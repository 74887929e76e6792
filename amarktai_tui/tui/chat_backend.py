"""What the chat pane needs of a chat session, and the stand-in used when ``ChatSession.open`` fails.

``ChatBackend`` is the part of ``ai.session.ChatSession`` the pane uses. When opening the
session raises (the ledger unreadable, a bug), the pane still offers the deterministic
commands over the running engine through ``CommandsOnly``: the same proposals and
confirmations (``ai.commands``), no AI, nothing kept in the chat history.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from amarktai_tui.ai.commands import CommandConsole
from amarktai_tui.ai.proposals import Proposal, ProposalBook
from amarktai_tui.ai.session import ChatEvent, ChatMessage, CommandOutput, ProposalMade
from amarktai_tui.engine.engine import TradingEngine


class ChatBackend(Protocol):
    """The chat session as the pane sees it (``ai.session.ChatSession``); ``book.now()`` is the
    clock its proposals expire by."""

    @property
    def book(self) -> ProposalBook: ...

    @property
    def ai_available(self) -> bool: ...

    @property
    def status_line(self) -> str: ...

    def send(self, text: str) -> AsyncIterator[ChatEvent]: ...

    async def confirm(self, proposal_id: str, typed: str = "") -> str: ...

    async def cancel(self, proposal_id: str) -> str: ...

    def pending(self) -> list[Proposal]: ...

    def history(self, limit: int | None = None) -> list[ChatMessage]: ...

    async def clear(self) -> None: ...

    async def close(self) -> None: ...


class CommandsOnly:
    """The console's commands over ``engine`` when the chat session could not open (``reason``).

    ``clock``: the proposals' wall clock (ms UTC; default the system's).
    """

    ai_available = False

    def __init__(self, engine: TradingEngine, reason: str, *, clock: Callable[[], int] | None = None) -> None:
        self.reason = reason
        self.book = ProposalBook(engine, clock=clock)
        self._console = CommandConsole(engine, self.book)

    @property
    def status_line(self) -> str:
        return f"the chat session did not open: {self.reason}"

    async def send(self, text: str) -> AsyncIterator[ChatEvent]:
        reply = await self._console.handle(text)
        if reply.proposal is not None:
            yield ProposalMade(reply.proposal)
        else:
            yield CommandOutput(reply.text)

    async def confirm(self, proposal_id: str, typed: str = "") -> str:
        return (await self._console.handle(f"/confirm {proposal_id} {typed}".rstrip())).text

    async def cancel(self, proposal_id: str) -> str:
        return (await self._console.handle(f"/cancel {proposal_id}")).text

    def pending(self) -> list[Proposal]:
        return self.book.pending()

    def history(self, limit: int | None = None) -> list[ChatMessage]:
        return []

    async def clear(self) -> None:
        return None

    async def close(self) -> None:
        await self.book.expire_due()
