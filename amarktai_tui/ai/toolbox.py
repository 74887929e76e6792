"""ToolBox: what a chat session calls for each tool call the model makes.

Read tools answer from the engine at once. Action tools never run here:
they become a proposal (``ProposalBook.propose``) and the model is told that
nothing happened until the user confirms. Unknown tools and invalid
arguments come back as an error result for the model, never an exception.
There is no confirm tool: only the user (the pane's modal, ``amarktai chat``'s
prompt, or a typed ``/confirm``) calls ``ProposalBook.confirm``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from amarktai_tui.ai.actions import ActionRefused
from amarktai_tui.ai.figures import MarketWatch, ReadError, clean
from amarktai_tui.ai.proposals import Proposal, ProposalBook
from amarktai_tui.ai.reads import READERS
from amarktai_tui.ai.tools import ACTION_TOOLS, READ_TOOLS, ToolArgsError, tool_schemas, validate_args
from amarktai_tui.engine.engine import EngineError, TradingEngine

PROPOSED_NOTE = (
    "Nothing has been done. The user sees this proposal and must confirm it; tell them what it "
    "would do and, when confirm_word is set, that they must type that word."
)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool call's answer: ``content`` (JSON-ready) goes back to the model as the tool message;
    ``proposal`` is set when an action became a proposal (the pane shows its card)."""

    name: str
    ok: bool
    content: dict[str, Any]
    proposal: Proposal | None = None

    def to_json(self) -> str:
        """``content`` as compact JSON: the ``tool`` message's text."""
        return json.dumps(self.content, separators=(",", ":"), default=str)


class ToolBox:
    """The tools over one engine: ``schemas()`` for the request, ``call()`` for each tool call."""

    def __init__(self, engine: TradingEngine, book: ProposalBook | None = None, *, actor: str = "ai") -> None:
        self.engine = engine
        self.book = book or ProposalBook(engine)
        self.actor = actor
        self.market = MarketWatch(engine)

    @staticmethod
    def schemas() -> list[dict[str, Any]]:
        """The tools in OpenAI's function-tool format (``tools=`` of a chat completion)."""
        return tool_schemas()

    async def call(self, name: str, arguments: str | Mapping[str, Any] | None) -> ToolResult:
        """Run a read tool, or turn an action tool call into a proposal; errors become results."""
        if name in READ_TOOLS:
            try:
                args = validate_args(name, arguments)
                return ToolResult(name, True, READERS[name](self.engine, args, self.market))
            except (ToolArgsError, ReadError, EngineError) as exc:
                return _error(name, clean(str(exc), 400))
        try:
            p = await self.book.propose(name, arguments, actor=self.actor)
        except ActionRefused as exc:
            return _error(name if name in ACTION_TOOLS else clean(name, 60), str(exc))
        content = {"status": "proposed", "proposal": p.card(), "note": PROPOSED_NOTE}
        return ToolResult(name, True, content, p)

    def close(self) -> None:
        """Stop following the market (unsubscribe from the bus)."""
        self.market.close()


def _error(name: str, message: str) -> ToolResult:
    return ToolResult(name, False, {"status": "error", "error": message, "executed": False})
