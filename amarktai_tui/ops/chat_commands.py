"""``amarktai chat``: the AI console in a plain terminal (no Textual), for daemon users.

The engine is the ledger's only writer and the console's tools act on its memory, so a chat
session runs in the process that runs the engine:

- An engine runs on the data dir (``--daemon`` or the TUI): the chat connects to its control
  socket and the session runs there (``ops.chat_remote``): the same tools, proposals and
  confirmations, on the engine that trades.
- No engine runs: ``amarktai chat`` opens one in this process, as the daemon does
  (``open_engine``; it holds the engine lock and serves the control socket, so ``amarktai halt``
  still reaches it), but never starts its market feed: no candle is processed and no order is
  sent while the chat is open. Confirmed actions change the bots' states (and the ledger) at
  once; orders follow only when an engine runs the market again.

The session is ``ai.session.ChatSession``: commands only when no OpenAI key is saved. After each
turn every proposal it made is put to the user: ``[y/N]`` for a plain one; for a stop (the bot's
name), the emergency stop (``HALT``) and a breaker reset (``RESET``) the word must be typed.
Anything else cancels it. ``/quit`` (or end of input) leaves. Standard input is read by a daemon
thread, so the event loop (and the control socket) never waits on the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol, TextIO

from amarktai_tui.ai.proposals import Proposal
from amarktai_tui.ai.session import (
    ChatEvent,
    ChatSession,
    Chunk,
    CommandOutput,
    Failed,
    ProposalMade,
    Reply,
)
from amarktai_tui.config import Settings
from amarktai_tui.locations import lock_path

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
QUIT = ("/quit", "/exit")
BANNER = (
    "The engine runs in this process without its market feed: confirmed actions change the bots' "
    "states now; no candle is processed and no order is sent while the chat is open. "
    "/help lists the commands, /quit leaves."
)


ATTACHED = (
    "Connected to the running engine: confirmed actions apply to it at once. "
    "/help lists the commands, /quit leaves."
)


class EngineRunning(RuntimeError):
    """Another process took the engine lock as this chat started: retry to connect to it."""


class Console(Protocol):
    """What the loop needs of a chat: ``ai.session.ChatSession`` here, ``ops.chat_remote.RemoteChat``
    over the socket of an engine that runs elsewhere."""

    @property
    def status_line(self) -> str: ...

    def send(self, text: str) -> AsyncIterator[ChatEvent]: ...

    async def confirm(self, proposal_id: str, typed: str = "") -> str: ...

    async def cancel(self, proposal_id: str) -> str: ...

    def is_pending(self, proposal_id: str) -> bool: ...

    def now(self) -> int: ...


def run_chat(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """``amarktai chat``: exit 0 when the user leaves, 1 when an engine runs elsewhere or the
    engine cannot open (one line on stderr), 2 for a bad replay file in the config."""
    from amarktai_tui.engine.live_setup import LiveSetupError
    from amarktai_tui.engine.reconcile import ReconcileError
    from amarktai_tui.ledger.schema import SchemaTooNewError
    from amarktai_tui.market.loaders import CandleFileError
    from amarktai_tui.ops.daemon import ControlSocketError, setup_logging
    from amarktai_tui.ops.lock import is_held
    from amarktai_tui.vault.errors import VaultUnavailable

    if is_held(lock_path(data_dir)):
        return _attach(data_dir)
    setup_logging(data_dir, stderr=False)  # the terminal is the chat's; the log file gets the rest
    try:
        return asyncio.run(chat(settings, data_dir, sys.stdin, sys.stdout))
    except EngineRunning:  # an engine started meanwhile: chat with it
        return _attach(data_dir)
    except CandleFileError as exc:
        print(f"amarktai chat: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ControlSocketError, SchemaTooNewError) as exc:
        print(f"amarktai chat: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except (LiveSetupError, ReconcileError, VaultUnavailable) as exc:
        print(f"amarktai chat: the live engine refused to start: {exc}", file=sys.stderr)
        return EXIT_FAIL


def _attach(data_dir: Path) -> int:
    from amarktai_tui.ops.chat_remote import ChatLink
    from amarktai_tui.ops.control import ControlError

    try:
        return asyncio.run(attach(data_dir, sys.stdin, sys.stdout))
    except (ChatLink, ControlError) as exc:
        print(f"amarktai chat: {exc}", file=sys.stderr)
        return EXIT_FAIL


async def attach(data_dir: Path, stdin: TextIO, stdout: TextIO) -> int:
    """Chat with the engine that runs on ``data_dir`` over its control socket until ``/quit`` or
    the end of ``stdin``. Raises ControlUnavailable (nothing listens) and ChatLink (the link failed)."""
    from amarktai_tui.ops.chat_remote import RemoteChat
    from amarktai_tui.ops.control import socket_path

    remote = await RemoteChat.connect(socket_path(data_dir))
    try:
        await converse(remote, _Lines(stdin), stdout, ATTACHED)
    finally:
        await remote.close()
    return EXIT_OK


async def chat(settings: Settings, data_dir: Path, stdin: TextIO, stdout: TextIO) -> int:
    """Open the engine (lock, ledger, bots, control socket; no feed), then chat until ``/quit`` or
    the end of ``stdin``; everything is closed on the way out. Raises EngineRunning, and what
    ``open_engine`` raises."""
    from amarktai_tui.engine.setup import open_engine
    from amarktai_tui.ops.control import serve_control, socket_path, stop_control
    from amarktai_tui.ops.daemon import ControlSocketError
    from amarktai_tui.ops.lock import EngineLock, EngineLockedError

    lines = _Lines(stdin)
    lock = EngineLock(lock_path(data_dir))
    try:
        lock.acquire()
    except EngineLockedError:
        raise EngineRunning(str(data_dir)) from None
    try:
        engine, _feed = await open_engine(settings, data_dir, None)  # the feed is never started
        try:
            sock = socket_path(data_dir)
            try:
                control = await serve_control(engine, sock)
            except OSError as exc:
                raise ControlSocketError(f"cannot listen on the control socket {sock}: {exc}") from None
            session = await ChatSession.open(engine, settings, data_dir)
            try:
                await converse(session, lines, stdout, BANNER)
            finally:
                await session.close()
                await stop_control(control)
        finally:
            await engine.flush()
            await engine.close()
    finally:
        lock.release()
    return EXIT_OK


async def converse(session: Console, lines: _Lines, out: TextIO, banner: str) -> None:
    """The read-answer-confirm loop over an open session."""

    def say(text: str = "") -> None:
        out.write(text + "\n")
        out.flush()

    say(f"amarktai chat: {session.status_line}")
    say(banner)
    while True:
        out.write("you> ")
        out.flush()
        line = await lines.next()
        if line is None:
            say()
            return
        if line.strip().lower() in QUIT:
            return
        made: list[Proposal] = []
        open_text = False
        async for ev in session.send(line):
            if isinstance(ev, Chunk):
                out.write(("ai> " if not open_text else "") + ev.text)
                out.flush()
                open_text = True
                continue
            if open_text:
                say()
                open_text = False
            if isinstance(ev, ProposalMade):
                made.append(ev.proposal)
                say(ev.proposal.text(session.now()))
            elif isinstance(ev, CommandOutput):
                say(ev.text)
            elif isinstance(ev, Failed):
                say(f"! {ev.reason}")
            elif isinstance(ev, Reply) and not ev.text:
                say("ai> (no answer)")
        if open_text:
            say()
        for p in made:
            await decide(session, p, lines, out)


async def decide(session: Console, p: Proposal, lines: _Lines, out: TextIO) -> None:
    """Put one proposal to the user: y/N, or its confirm word; anything else cancels it."""
    if not session.is_pending(p.id):
        return  # already decided (a /confirm or /cancel typed meanwhile)
    if p.confirm_word:
        out.write(f"{p.what}: type {p.confirm_word} to confirm (anything else cancels): ")
    else:
        out.write(f"{p.what}? [y/N] ")
    out.flush()
    answer = (await lines.next() or "").strip()
    if p.confirm_word:
        if answer:
            out.write(await session.confirm(p.id, answer) + "\n")
    elif answer.lower() in ("y", "yes"):
        out.write(await session.confirm(p.id) + "\n")
    if session.is_pending(p.id):  # not confirmed (or a wrong word): nothing stays pending
        out.write(await session.cancel(p.id) + "\n")
    out.flush()


class _Lines:
    """Lines of a text stream, read by a daemon thread into a queue (None at the end)."""

    def __init__(self, stream: TextIO) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[str | None] | None = None
        self._stream = stream
        self._ended = False

    def _start(self) -> asyncio.Queue[str | None]:
        if self._queue is None:
            self._loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue()
            threading.Thread(target=self._read, name="amarktai-chat-stdin", daemon=True).start()
        return self._queue

    def _read(self) -> None:
        assert self._loop is not None and self._queue is not None
        queue, loop = self._queue, self._loop
        try:
            for line in iter(self._stream.readline, ""):
                loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except (RuntimeError, OSError, ValueError):  # the loop closed, or stdin did
            return

    async def next(self) -> str | None:
        """The next line (without its newline), or None at the end of the stream."""
        queue = self._start()
        if self._ended:
            return None
        line = await queue.get()
        self._ended = line is None
        return line
