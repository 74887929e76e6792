"""The AI console over the control socket: ``amarktai chat`` talking to a running engine.

The chat's tools act on the engine's memory, so a session runs in the engine's process (the
daemon or the TUI). A CLI chat connects to the control socket (``ops.control``) and sends
``{"cmd": "chat"}`` as its first line; the connection then stays open and carries JSON lines:

client -> engine, one at a time, each answered before the next::

    {"say": TEXT}                              a turn: events, then {"end": true, "status": LINE}
    {"confirm": ID, "word": TEXT | null}       -> {"result": LINE, "pending": bool}
    {"cancel": ID}                             -> {"result": LINE, "pending": bool}

engine -> client, during a turn: ``{"chunk": TEXT}``, ``{"reply": TEXT, "model": NAME}``,
``{"output": TEXT}``, ``{"failed": LINE}``, ``{"proposal": CARD}`` where CARD is
``Proposal.card()`` plus ``"actor"``, ``"created_ms"`` and ``"expires_ms"`` (ms UTC). The first
answer is ``{"ok": true, "status": LINE}`` (the session's status line), or ``{"ok": false,
"error": LINE}`` when the engine serves no chat. A malformed line gets ``{"error": LINE}`` and the
connection stays usable.

Each connection is its own ``ChatSession`` (own proposals; the same ledger history), closed when
the client leaves; its pending proposals are then never confirmed (they expire). The engine
closes open chats when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amarktai_tui.ai.proposals import Proposal
from amarktai_tui.ai.turn import ChatEvent, Chunk, CommandOutput, Failed, ProposalMade, Reply
from amarktai_tui.ops.control import MAX_CHAT_LINE as MAX_LINE
from amarktai_tui.ops.control import ControlUnavailable

if TYPE_CHECKING:
    from amarktai_tui.ai.session import ChatSession

OpenSession = Callable[[], Awaitable["ChatSession"]]

log = logging.getLogger("amarktai.chat")


GONE = "the engine closed the chat (it may be shutting down)"


class ChatLink(RuntimeError):
    """The engine's chat connection failed or answered something unusable (one line)."""


def _card(p: Proposal) -> dict[str, Any]:
    return {**p.card(), "actor": p.actor, "created_ms": p.created_ms, "expires_ms": p.expires_ms}


def _proposal(card: dict[str, Any]) -> Proposal:
    """A proposal rebuilt from its card (what the client shows and decides on; no arguments)."""
    return Proposal(
        id=str(card["proposal_id"]),
        tool=str(card["tool"]),
        args={},
        actor=str(card.get("actor", "ai")),
        what=str(card["what"]),
        bots=tuple(str(b) for b in card.get("bots", ())),
        why=str(card.get("why", "")),
        effect=str(card.get("expected_effect", "")),
        confirm_word=card.get("confirm_word") or None,
        created_ms=int(card.get("created_ms", 0)),
        expires_ms=int(card.get("expires_ms", 0)),
    )


def _event_json(ev: ChatEvent) -> dict[str, Any]:
    if isinstance(ev, Chunk):
        return {"chunk": ev.text}
    if isinstance(ev, Reply):
        return {"reply": ev.text, "model": ev.model}
    if isinstance(ev, CommandOutput):
        return {"output": ev.text}
    if isinstance(ev, Failed):
        return {"failed": ev.reason}
    return {"proposal": _card(ev.proposal)}


# -- server (in the engine's process) -------------------------------------------------------------


async def serve_chat(
    open_session: OpenSession,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Serve one chat connection whose ``{"cmd": "chat"}`` line has been read (module docstring).
    ``open_session`` makes a ``ChatSession`` over the engine. Returns when the client
    leaves; the session is closed. Never raises for a client's fault."""

    async def send(obj: dict[str, Any]) -> None:
        writer.write(json.dumps(obj, default=str).encode() + b"\n")
        await writer.drain()

    try:
        session = await open_session()
    except Exception as exc:
        log.exception("chat session did not open")
        await send({"ok": False, "error": f"the chat session did not open: {type(exc).__name__}: {exc}"})
        return
    try:
        await send({"ok": True, "status": session.status_line})
        while True:
            try:
                line = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                await send({"error": f"line longer than {MAX_LINE} bytes"})
                return
            if not line:
                return  # the client left
            try:
                req = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                req = None
            if not isinstance(req, dict):
                await send({"error": "each line must be a JSON object: say, confirm or cancel"})
            elif isinstance(req.get("say"), str):
                async for ev in session.send(req["say"]):
                    await send(_event_json(ev))
                await send({"end": True, "status": session.status_line})
            elif isinstance(req.get("confirm"), str):
                word = req.get("word")
                result = await session.confirm(req["confirm"], word if isinstance(word, str) else "")
                await send({"result": result, "pending": session.book.get(req["confirm"]) is not None})
            elif isinstance(req.get("cancel"), str):
                result = await session.cancel(req["cancel"])
                await send({"result": result, "pending": session.book.get(req["cancel"]) is not None})
            else:
                await send({"error": 'expected {"say": TEXT}, {"confirm": ID} or {"cancel": ID}'})
    except (ConnectionError, OSError):
        pass  # the client left mid-answer
    finally:
        await session.close()


# -- client (``amarktai chat`` while an engine runs) -------------------------------------------


class RemoteChat:
    """A chat session in the engine's process, driven over its control socket. The same surface
    ``ops.chat_commands.converse`` uses on a local ``ChatSession``: ``status_line``, ``send``,
    ``confirm``, ``cancel``, ``is_pending``, ``now``. Raises ChatLink when the link fails."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: str) -> None:
        self._reader, self._writer = reader, writer
        self.status_line = status
        self._pending: set[str] = set()

    @classmethod
    async def connect(cls, path: Path, timeout_s: float = 10.0) -> RemoteChat:
        """Connect to the engine listening on ``path`` and open a session there. Raises
        ControlUnavailable (nothing listens), ChatLink (no usable answer, or the engine refused)."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(path), limit=MAX_LINE), timeout_s
            )
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ControlUnavailable(f"no engine listens on {path} ({exc.strerror})") from None
        except (TimeoutError, OSError) as exc:
            raise ChatLink(f"cannot connect to the engine at {path}: {exc}") from None
        chat = cls(reader, writer, "")
        try:
            first = await asyncio.wait_for(chat._request({"cmd": "chat", "actor": "cli"}), timeout_s)
        except TimeoutError:
            await chat.close()
            raise ChatLink(f"no answer from the engine within {timeout_s:g}s") from None
        except ChatLink:
            await chat.close()
            raise
        if not first.get("ok"):
            await chat.close()
            raise ChatLink(str(first.get("error") or "the engine refused the chat"))
        chat.status_line = str(first.get("status", ""))
        return chat

    async def _request(self, obj: dict[str, Any]) -> dict[str, Any]:
        try:
            self._writer.write(json.dumps(obj).encode() + b"\n")
            await self._writer.drain()
        except (ConnectionError, OSError):
            raise ChatLink(GONE) from None
        return await self._read()

    async def _read(self) -> dict[str, Any]:
        try:
            line = await self._reader.readline()
        except (ConnectionError, OSError, ValueError, asyncio.LimitOverrunError) as exc:
            raise ChatLink(f"the connection to the engine failed: {exc}") from None
        if not line:
            raise ChatLink(GONE)
        try:
            obj = json.loads(line)
        except ValueError:
            raise ChatLink("the engine's answer is not JSON") from None
        if not isinstance(obj, dict):
            raise ChatLink("the engine's answer is not a JSON object")
        if "error" in obj and "ok" not in obj:
            raise ChatLink(str(obj["error"]))
        return obj

    async def send(self, text: str) -> AsyncIterator[ChatEvent]:
        """One turn in the engine's session; its events as they arrive."""
        obj = await self._request({"say": text})
        while not obj.get("end"):
            if "chunk" in obj:
                yield Chunk(str(obj["chunk"]))
            elif "reply" in obj:
                yield Reply(str(obj["reply"]), str(obj.get("model", "")))
            elif "output" in obj:
                yield CommandOutput(str(obj["output"]))
            elif "failed" in obj:
                yield Failed(str(obj["failed"]))
            elif isinstance(obj.get("proposal"), dict):
                try:
                    p = _proposal(obj["proposal"])
                except (KeyError, TypeError, ValueError):
                    raise ChatLink("the engine sent an unreadable proposal card") from None
                self._pending.add(p.id)
                yield ProposalMade(p)
            obj = await self._read()
        self.status_line = str(obj.get("status", self.status_line))

    async def confirm(self, proposal_id: str, typed: str = "") -> str:
        obj = await self._request({"confirm": proposal_id, "word": typed or None})
        return self._decided(proposal_id, obj)

    async def cancel(self, proposal_id: str) -> str:
        return self._decided(proposal_id, await self._request({"cancel": proposal_id}))

    def _decided(self, proposal_id: str, obj: dict[str, Any]) -> str:
        if not obj.get("pending"):
            self._pending.discard(proposal_id)
        return str(obj.get("result", ""))

    def is_pending(self, proposal_id: str) -> bool:
        return proposal_id in self._pending

    def now(self) -> int:
        import time

        return int(time.time() * 1000)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
