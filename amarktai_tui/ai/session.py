"""ChatSession: one chat of the AI console over a running engine (the chat pane and ``amarktai chat``).

A turn (``send``) yields ChatEvents:

- ``/...``: a command (``ai.commands``, plus ``/clear`` here): CommandOutput, or ProposalMade when
  it proposes an action. Commands work with or without the AI.
- text, with a router: the prompt is built fresh each turn: the system prompt and the engine's
  state (``ai.context``: no settings, paths or secrets) in one system message, the conversation's
  last ``HISTORY_MESSAGES`` user and assistant texts, the new text (key-like tokens masked).
  ``router.complete`` offers the toolbox's tools; read tools run and their results go back to
  the model; action tools only become proposals (ProposalMade; nothing runs until the user
  confirms, see ``confirm``). A round without tool calls is the answer: its text comes as a
  Chunk, then Reply. After ``MAX_TOOL_ROUNDS`` rounds that all called tools, one streamed call
  without tools (``router.stream``) makes the model answer with what it has (Chunks, then Reply).
- text, without a router (no key saved): CommandOutput saying why, and what works.

Mode (``choose_mode``): ``fast`` for a short question (at most ``FAST_MAX_CHARS`` characters,
ending in ``?`` or starting with a question word: "why did btc-fast stop trading?"),
``balanced`` for everything else ("pause all ETH bots", longer requests).

When the budget is used up, the key is unusable or every model of the chain fails, the turn
ends with Failed (one line: commands only, and why); ``status_line`` says "commands only" until
a later turn gets an answer again (each text turn tries the AI once more; the budget check
costs no request). Any other failure is a Failed line too; the session stays usable.

Every message is a row of ``chat_messages`` (``ai.chatlog``): the user's lines, the assistant's
texts and tool calls, each tool result, and the console's notes (role ``system``: proposals,
confirmations, failures, ``/clear``). Writes are short ``sqlite3`` transactions in a thread;
a failed write is logged and the chat goes on. A session continues the newest conversation
when it had a message today (UTC), else starts the next one; ``clear`` starts a new one.

One turn at a time: the caller awaits a turn's events before sending the next line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amarktai_tui.ai import chatlog
from amarktai_tui.ai.budget import BudgetStatus, tokens_used, utc_day
from amarktai_tui.ai.chatlog import ChatMessage, Row
from amarktai_tui.ai.commands import CommandConsole
from amarktai_tui.ai.errors import AIError, AIUnavailable, AllModelsFailed, BudgetExceeded
from amarktai_tui.ai.figures import clean
from amarktai_tui.ai.proposals import Proposal, ProposalBook
from amarktai_tui.ai.replies import AssistantMessage, StreamResult, ToolCall
from amarktai_tui.ai.router import Router, open_router
from amarktai_tui.ai.toolbox import ToolBox, ToolResult
from amarktai_tui.ai.turn import (
    ROUNDS_DONE,
    ChatEvent,
    Chunk,
    CommandOutput,
    Failed,
    ProposalMade,
    Reply,
    choose_mode,
    masked,
    prompt,
)
from amarktai_tui.config import Settings
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.ledger.schema import SchemaTooNewError

__all__ = [
    "ChatEvent",
    "ChatMessage",
    "ChatSession",
    "Chunk",
    "CommandOutput",
    "Failed",
    "ProposalMade",
    "Reply",
    "choose_mode",
]

log = logging.getLogger("amarktai.ai")

MAX_TOOL_ROUNDS = 5  # model calls with tools per turn; then one streamed call without them
MAX_CALLS_PER_ROUND = 8  # tool calls run per model reply; further ones get an error result
HISTORY_MESSAGES = 20  # earlier user/assistant texts of the conversation sent with each turn
_VERB = {"executed": "Done", "cancelled": "Cancelled", "failed": "Failed", "expired": "Expired"}
_CLEAR_HELP = (
    "\n  /clear                  start a new conversation (the history is kept)"
    "\n  /history [YYYY-MM-DD]   the days with messages, or one day's messages (UTC)"
    "\n  /search TEXT            messages of every conversation containing TEXT"
)
_WHO = {"user": "you", "assistant": "AI", "system": "console"}
_LOOKUPS = ("/history", "/search")


def _wall_ms() -> int:
    return int(time.time() * 1000)


def iso_day(ms: int) -> str:
    """``YYYY-MM-DD`` of ``ms`` (ms UTC)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def _line(m: ChatMessage, *, day: bool = False) -> str:
    """One stored message on one line: time (UTC), who, the text shortened."""
    when = datetime.fromtimestamp(m.ts / 1000, UTC).strftime("%Y-%m-%d %H:%M" if day else "%H:%M")
    text = " ".join(m.content.split())
    return f"  {when} {_WHO.get(m.role, m.role)}: {text[:157] + '...' if len(text) > 160 else text}"


def _budget_line(st: BudgetStatus) -> str:
    return f"AI token budget used up ({st.used:,} / {st.limit:,} tokens today; resets at 00:00 UTC)"


class ChatSession:
    """One chat over ``engine``: commands, and model turns through ``router`` (None: commands only).

    ``book``: the proposal book (default: a new one on ``clock``); ``clock``: wall ms UTC (tests
    inject one) for the messages' times and the default book's expiry.
    """

    def __init__(
        self,
        engine: TradingEngine,
        settings: Settings,
        data_dir: Path,
        *,
        router: Router | None,
        book: ProposalBook | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.data_dir = data_dir
        self.router = router
        self._clock = clock or _wall_ms
        self.book = book or ProposalBook(engine, clock=self._clock)
        self.box = ToolBox(engine, self.book, actor="ai")
        self.commands = CommandConsole(engine, self.book)
        self._down: str | None = None if router is not None else "no AI configured"
        self._model = router.chain("balanced")[0] if router is not None else ""
        self._budget: BudgetStatus | None = None
        self._conversation, self._history = self._load()
        if router is not None:
            self._budget = self._read_budget(router)
            if self._budget is not None and self._budget.exceeded:
                self._down = _budget_line(self._budget)

    @classmethod
    async def open(cls, engine: TradingEngine, settings: Settings, data_dir: Path) -> ChatSession:
        """A session with the router from the vault (``open_router``); commands only (router None,
        ``status_line`` says why) when no OpenAI key is saved or the keyring cannot be read."""
        try:
            router: Router | None = await open_router(settings, data_dir)
            reason = None
        except AIUnavailable as exc:
            router, reason = None, str(exc).removesuffix(" (commands only until then)")
        session = cls(engine, settings, data_dir, router=router)
        if reason is not None:
            session._down = reason
        return session

    # -- state -----------------------------------------------------------------------------------
    @property
    def ai_available(self) -> bool:
        """True when text goes to the model (a router, and no fallback in force)."""
        return self.router is not None and self._down is None

    @property
    def status_line(self) -> str:
        """One line for the pane's banner: the model and today's tokens, or "commands only: why"."""
        if self._down is not None:
            return f"commands only: {self._down}"
        b = self._budget
        if b is None:
            return f"AI {self._model}"
        if b.limit == 0:
            return f"AI {self._model} · {b.used:,} tokens today (no daily budget)"
        return f"AI {self._model} · {b.used:,} / {b.limit:,} tokens today"

    def pending(self) -> list[Proposal]:
        """Proposals waiting for the user and still in time, oldest first."""
        now = self.book.now()
        return [p for p in self.book.pending() if now < p.expires_ms]

    def is_pending(self, proposal_id: str) -> bool:
        """True while the proposal waits for the user (not yet confirmed, cancelled or expired)."""
        return self.book.get(proposal_id) is not None

    def now(self) -> int:
        """The session's clock (ms UTC): what its proposals expire by."""
        return self.book.now()

    def history(self, limit: int | None = None) -> list[ChatMessage]:
        """The current conversation as shown (user, assistant texts, the console's notes), oldest
        first; the last ``limit`` messages when given."""
        if limit is None:
            return list(self._history)
        return list(self._history[-limit:]) if limit > 0 else []

    def search(self, text: str, limit: int = 50) -> list[ChatMessage]:
        """Shown messages of every conversation containing ``text`` (case-insensitive), newest
        first, at most ``limit``. A short read-only query; [] (logged) if the ledger cannot be read."""
        try:
            return chatlog.search(self.data_dir, text, limit)
        except sqlite3.Error as exc:
            log.error("chat search failed: %s", exc)
            return []

    # -- a turn ----------------------------------------------------------------------------------
    async def send(self, text: str) -> AsyncIterator[ChatEvent]:
        """One user turn (see the module docstring); lines starting with ``/`` are commands.
        Never raises for a failed turn: it ends with Failed."""
        line = text.strip()
        if not line:
            yield CommandOutput("Type a question, or a command such as /status (/help lists them).")
            return
        await self.book.expire_due()
        past = self._dialogue()
        user = masked(line)
        await self._store(self._row("user", user))
        if line.startswith("/"):
            async for ev in self._command(line):
                yield ev
        elif self.router is None:
            reply = await self.commands.handle(line)
            out = f"{reply.text}\nWhy: {self._down}."
            await self._store(self._row("assistant", out))
            yield CommandOutput(out)
        else:
            async for ev in self._ai_turn(self.router, user, past):
                yield ev

    async def _command(self, line: str) -> AsyncIterator[ChatEvent]:
        word = line[1:].split(maxsplit=1)[0].lower() if len(line) > 1 else ""
        if word == "clear":
            await self.clear()
            yield CommandOutput(
                "New conversation: the earlier messages stay in the history (search finds them)."
            )
            return
        if word in ("history", "search"):  # reads of the stored history: answered, not stored
            rest = line[1:].split(maxsplit=1)[1].strip() if len(line[1:].split(maxsplit=1)) > 1 else ""
            yield CommandOutput(await self._lookup(word, rest))
            return
        reply = await self.commands.handle(line)
        if reply.proposal is not None:
            yield await self._proposed(reply.proposal)
            return
        text = reply.text + (_CLEAR_HELP if word == "help" else "")
        await self._store(self._row("assistant", text))
        yield CommandOutput(text)

    async def _lookup(self, word: str, arg: str) -> str:
        """``/history``, ``/history YYYY-MM-DD`` and ``/search TEXT`` over the stored chat (one answer)."""
        try:
            if word == "search":
                if not arg:
                    return "Usage: /search TEXT (finds messages of every conversation containing TEXT)."
                found = await asyncio.to_thread(chatlog.search, self.data_dir, arg, 51)
                found = [m for m in found if not (m.role == "user" and m.content.startswith(_LOOKUPS))]
                if not found:
                    return f"No message contains {clean(arg, 60)!r}."
                head = f"Messages containing {clean(arg, 60)!r}, newest first"
                more = " (the 50 newest)" if len(found) > 50 else ""
                return "\n".join([f"{head}{more}:", *(_line(m, day=True) for m in found[:50])])
            if not arg:
                listed = await asyncio.to_thread(chatlog.days, self.data_dir, 14)
                if not listed:
                    return "No chat history yet."
                rows = [f"  {iso_day(d)}  {n} message{'s' if n != 1 else ''}" for d, n in listed]
                return "\n".join(
                    ["Chat history by day (UTC), newest first:", *rows, "/history YYYY-MM-DD shows a day."]
                )
            try:
                day = datetime.strptime(arg, "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError:
                return f"Not a date: {clean(arg, 40)!r}. Use /history YYYY-MM-DD, e.g. /history {iso_day(self._clock())}."
            day_ms = int(day.timestamp() * 1000)
            msgs = await asyncio.to_thread(chatlog.on_day, self.data_dir, day_ms, 201)
            if not msgs:
                return f"No messages on {arg} (UTC)."
            more = " (the first 200)" if len(msgs) > 200 else ""
            return "\n".join([f"{arg} (UTC){more}:", *(_line(m) for m in msgs[:200])])
        except sqlite3.Error as exc:
            log.error("chat history read failed: %s", exc)
            return f"The chat history could not be read: {clean(str(exc), 120)}"

    async def _ai_turn(self, router: Router, user: str, past: list[ChatMessage]) -> AsyncIterator[ChatEvent]:
        messages = prompt(self.engine, self.pending(), user, past)
        mode = choose_mode(user)
        tools = self.box.schemas()
        texts: list[str] = []
        model = ""
        try:
            for _ in range(MAX_TOOL_ROUNDS):
                reply = await router.complete(messages, tools, mode=mode)
                model = reply.model
                if reply.content:
                    yield Chunk(("\n\n" if texts else "") + reply.content)
                    texts.append(reply.content)
                if not reply.tool_calls:
                    await self._store(self._row("assistant", reply.content, model))
                    break
                async for ev in self._tool_round(reply, messages):
                    yield ev
            else:
                messages.append({"role": "system", "content": ROUNDS_DONE})
                parts: list[str] = []
                async for item in router.stream(messages, mode=mode):
                    if isinstance(item, StreamResult):
                        model = item.model
                    else:
                        yield Chunk(("\n\n" if texts and not parts else "") + item)
                        parts.append(item)
                final = "".join(parts)
                texts.append(final)
                await self._store(self._row("assistant", final, model))
        except AIError as exc:
            yield await self._failed(exc)
            return
        except Exception as exc:  # a bug must not take the console down
            log.exception("AI turn failed")
            yield await self._failed(AIError(clean(f"{type(exc).__name__}: {exc}", 200)))
            return
        self._down = None
        self._model = model or self._model
        await self._refresh_budget(router)
        if self._budget is not None and self._budget.exceeded:  # this answer used the rest of it
            self._down = _budget_line(self._budget)
        yield Reply("\n\n".join(t for t in texts if t), model)

    async def _tool_round(
        self, reply: AssistantMessage, messages: list[dict[str, Any]]
    ) -> AsyncIterator[ChatEvent]:
        """Run one reply's tool calls; append the assistant message and each result to ``messages``."""
        messages.append(reply.to_param())
        calls = [{"id": c.id, "name": c.name, "arguments": c.raw_arguments} for c in reply.tool_calls]
        rows = [self._row("assistant", reply.content, reply.model, json.dumps(calls))]
        made: list[Proposal] = []
        for i, call in enumerate(reply.tool_calls):
            result = await self._call(call, i)
            content = result.to_json()
            messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
            rows.append(self._row("tool", content, "", json.dumps(calls[i])))
            if result.proposal is not None:
                made.append(result.proposal)
        await self._store(*rows)
        for p in made:
            yield await self._proposed(p)

    async def _call(self, call: ToolCall, index: int) -> ToolResult:
        if index >= MAX_CALLS_PER_ROUND:
            error = f"too many tool calls in one reply (at most {MAX_CALLS_PER_ROUND}); nothing was done"
        elif not call.name:
            error = call.error
        else:  # unusable arguments and unknown tools are refused (and audited) by the tool box
            return await self.box.call(call.name, call.arguments if call.ok else call.raw_arguments)
        return ToolResult(call.name, False, {"status": "error", "error": error, "executed": False})

    async def _failed(self, exc: AIError) -> Failed:
        reason = str(exc)
        if isinstance(exc, BudgetExceeded | AIUnavailable | AllModelsFailed):
            if self.router is not None:
                await self._refresh_budget(self.router)
            if isinstance(exc, BudgetExceeded) and self._budget is not None and self._budget.exceeded:
                reason = _budget_line(self._budget)
            self._down = reason
            line = (
                f"commands only for now: {reason}. The commands still work: /status, /bots, /breakers, /help"
            )
        else:
            line = f"the AI could not answer: {reason}. The commands still work (/help)"
        await self._store(self._row("system", line))
        return Failed(line)

    def _dialogue(self) -> list[ChatMessage]:
        """The conversation's texts the model sees again: the user's (not commands) and the model's."""
        said = [
            m
            for m in self._history
            if (m.role == "user" and not m.content.startswith("/")) or (m.role == "assistant" and m.model)
        ]
        return said[-HISTORY_MESSAGES:]

    # -- the user's decisions ------------------------------------------------------------------
    async def confirm(self, proposal_id: str, typed: str = "") -> str:
        """The user's confirmation of a proposal (``typed``: the confirm word it asks for, if any).
        Returns one line: "Done: ...", "Refused: ..." (a wrong word: still pending), "Expired: ...",
        "Failed: ...". Audited by the book; never raises."""
        out = await self.book.confirm(proposal_id, typed)
        line = f"{_VERB.get(out.event, 'Refused')}: {out.detail}"
        await self._store(self._row("system", line))
        return line

    async def cancel(self, proposal_id: str) -> str:
        """Drop a pending proposal; one line ("Cancelled: ..." or "Refused: ..."). Never raises."""
        out = await self.book.cancel(proposal_id)
        line = f"{_VERB.get(out.event, 'Refused')}: {out.detail}"
        await self._store(self._row("system", line))
        return line

    async def clear(self) -> None:
        """Start a new conversation (``/clear``); every earlier message stays in the ledger."""
        self._conversation += 1
        self._history = []
        await self._store(self._row("system", "New conversation (the earlier ones stay in the history)."))

    async def close(self) -> None:
        """Stop following the market and close the router's HTTP client."""
        self.box.close()
        if self.router is not None:
            await self.router.aclose()

    # -- storage ---------------------------------------------------------------------------------
    async def _proposed(self, p: Proposal) -> ProposalMade:
        await self._store(self._row("system", p.text(self.book.now())))
        return ProposalMade(p)

    def _row(self, role: str, content: str, model: str = "", tool_call: str = "") -> Row:
        return Row(ChatMessage(self._clock(), self._conversation, role, content, model), tool_call)

    async def _store(self, *rows: Row) -> None:
        self._history += [r.message for r in rows if chatlog.shown(r.message.role, r.message.content)]
        try:
            await asyncio.to_thread(chatlog.insert, self.data_dir, rows)
        except (sqlite3.Error, OSError, SchemaTooNewError) as exc:
            log.error("chat messages not stored: %s", exc)

    def _load(self) -> tuple[int, list[ChatMessage]]:
        """The conversation to continue (the newest, if it had a message today UTC) or the next one."""
        try:
            found = chatlog.latest(self.data_dir)
            if found is None:
                return 1, []
            number, last_ts = found
            if utc_day(last_ts) != utc_day(self._clock()):
                return number + 1, []
            return number, chatlog.conversation(self.data_dir, number)
        except sqlite3.Error as exc:
            log.error("chat history unreadable: %s", exc)
            return 1, []

    def _read_budget(self, router: Router) -> BudgetStatus | None:
        day = utc_day(router.budget.clock())
        try:
            return BudgetStatus(day, tokens_used(router.budget.data_dir, day), router.budget.daily_tokens)
        except sqlite3.Error as exc:
            log.error("AI token budget unreadable: %s", exc)
            return None

    async def _refresh_budget(self, router: Router) -> None:
        try:
            self._budget = await router.budget.status()
        except sqlite3.Error as exc:
            log.error("AI token budget unreadable: %s", exc)
