"""Control channel: the CLI's write commands reach a running engine over a Unix socket.

The engine is the only writer of its ledger (DESIGN.md), so ``amarktai halt``,
``resume`` and ``breakers reset`` ask it to act instead of writing the file.

Protocol: JSON lines, one request per connection. The client sends one line::

    {"cmd": "halt" | "resume" | "reset", "reason": str, "trip_id": int, "actor": "cli"}

(``trip_id`` only for ``reset``; ``reason`` optional for halt/resume; ``actor``
defaults to ``"cli"``) and reads one line back::

    {"ok": true, "changed": bool, "trip": TRIP | null, "retripped": TRIP | null}
    {"ok": false, "error": "one line"}

``TRIP`` is ``trip_json``'s shape (the same as ``amarktai breakers --json``).
``changed`` is false for a halt while already halted (``trip`` is the active
halt) and for a resume while not halted (``trip`` null). An ``EngineError``
(empty reason, no such active trip) is ``ok: false``. ``promote``/``demote`` (bot
lifecycle stages) are described in ``ops.stage_commands``. ``mode`` carries ``"mode": "paper"``
and answers ``{"ok": true, "changed": bool}``: the engine records the switch and, when it was
trading live, stops (``ops.mode``).
``audit`` carries ``"entry": ENTRY`` (``ops.audit.AuditEntry.to_json``'s shape) and answers
``{"ok": true}`` once the entry is written (``ops.audit.record_remote``).
``autonomy`` (``"action": "submit" | "accept" | "reject" | "revert"``) goes to the engine's
``Adjuster``; see ``ops.autonomy_commands``.

``{"cmd": "chat"}`` turns the connection into an AI console session (``ops.chat_remote``):
``amarktai chat`` while an engine runs.

The socket is ``<data_dir>/amarktai.sock``, mode 0600. A Unix socket path is
limited to 108 bytes on Linux (104 on macOS), so when that path is longer than
``MAX_SOCKET_PATH`` bytes the socket lives at ``<runtime dir>/amarktai-<hash>.sock``
instead, where the runtime dir is ``$XDG_RUNTIME_DIR`` or a private (0700)
``amarktai-<uid>`` directory in the temp dir, and the hash is of the resolved
data dir, so the engine and the CLI find the same path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amarktai_tui.risk.breakers import Breaker, Trip

if TYPE_CHECKING:
    from amarktai_tui.engine.engine import TradingEngine
    from amarktai_tui.ledger.reader import TripResetRow
    from amarktai_tui.ops.chat_remote import OpenSession

log = logging.getLogger("amarktai.control")

SOCKET_NAME = "amarktai.sock"
MAX_SOCKET_PATH = 100  # bytes; sun_path holds 108 (Linux) or 104 (macOS) including the NUL
MAX_REQUEST = 64 * 1024  # bytes of one request line
MAX_CHAT_LINE = (
    1024 * 1024
)  # bytes of a chat connection's line (ops.chat_remote); requests stay <= MAX_REQUEST
READ_TIMEOUT_S = 10.0  # a connection that sends no complete line in this time is dropped
COMMANDS = ("halt", "resume", "reset", "promote", "demote", "mode", "audit", "autonomy")
"""promote/demote: ops.stage_commands; audit: ops.audit.record_remote; autonomy: ops.autonomy_commands"""


class ControlError(RuntimeError):
    """The engine's control socket did not give a usable reply (message says why, one line)."""


class ControlUnavailable(ControlError):
    """Nothing listens on the control socket (no file, or connection refused)."""


def socket_path(data_dir: Path) -> Path:
    """Where the engine of ``data_dir`` listens: ``<data_dir>/amarktai.sock``, or a short path (see module)."""
    data_dir = data_dir.resolve()
    path = data_dir / SOCKET_NAME
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:16]
    return _runtime_dir() / f"amarktai-{digest}.sock"


_CHATS: dict[asyncio.AbstractServer, set[asyncio.Task[Any]]] = {}  # open chat connections per server


def _runtime_dir() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and len(os.fsencode(xdg)) <= MAX_SOCKET_PATH - 40:
        return Path(xdg)
    d = Path(tempfile.gettempdir()) / f"amarktai-{os.getuid()}"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def trip_json(
    trip: Any, bot: str | None = None, reset: TripResetRow | dict[str, Any] | None = None
) -> dict[str, Any]:
    """A trip (``risk.breakers.Trip`` or ``ledger.reader.TripRow``) as JSON-ready data.

    Shape: ``{"id", "ts" (ms UTC), "scope" ("account"|"bot"), "bot_id", "bot" (name|null),
    "breaker", "threshold" (str), "value" (str), "cause", "message",
    "reset": {"ts", "actor", "reason"} | null}``. Threshold and value are decimal strings:
    fractions for drawdown/daily loss, counts for losses/errors, 0 for a halt.
    """
    if reset is not None and not isinstance(reset, dict):
        reset = {"ts": reset.ts, "actor": reset.actor, "reason": reset.reason}
    return {
        "id": trip.id,
        "ts": trip.ts,
        "scope": str(trip.scope),
        "bot_id": trip.bot_id,
        "bot": bot,
        "breaker": str(trip.breaker),
        "threshold": str(trip.threshold),
        "value": str(trip.value),
        "cause": trip.cause,
        "message": trip.message,
        "reset": reset,
    }


# -- server (inside the engine's process, on the engine's loop) ----------------------------------


async def serve_control(
    engine: TradingEngine, path: Path, *, chat: OpenSession | None = None
) -> asyncio.AbstractServer:
    """Listen on ``path`` for commands to ``engine``; the caller closes it with ``stop_control``.

    ``chat`` opens an AI console session over ``engine`` for ``{"cmd": "chat"}`` connections
    (``ops.chat_remote``); without it they are refused. A stale socket file at ``path`` is
    removed first (the caller holds the engine lock, so no other engine listens there). Raises
    OSError when the path cannot be bound, or is some other kind of file.
    """
    chats: set[asyncio.Task[Any]] = set()
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise FileExistsError(f"{path} exists and is not a socket")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)  # before listen(): nobody can connect while the mode is wider
        server = await asyncio.start_unix_server(
            lambda r, w: _handle(engine, r, w, chat, chats), sock=sock, limit=MAX_CHAT_LINE
        )
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    _CHATS[server] = chats
    log.info("control socket %s", path)
    return server


async def stop_control(server: asyncio.AbstractServer) -> None:
    """Stop listening and remove the socket file."""
    socks = server.sockets if isinstance(server, asyncio.Server) else ()
    paths = [s.getsockname() for s in socks]
    server.close()
    chats = _CHATS.pop(server, set())
    for task in chats:  # an open chat connection would otherwise outlive the engine
        task.cancel()
    if chats:
        await asyncio.gather(*chats, return_exceptions=True)
    await server.wait_closed()
    for p in paths:
        if isinstance(p, str) and p:
            with contextlib.suppress(OSError):
                os.unlink(p)


async def _handle(
    engine: TradingEngine,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    chat: OpenSession | None,
    chats: set[asyncio.Task[Any]],
) -> None:
    too_long: dict[str, Any] = {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"}
    try:
        try:
            line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
        except (ValueError, asyncio.LimitOverrunError):
            line = b""
            reply: dict[str, Any] | None = too_long
        except TimeoutError:
            return
        else:
            reply = too_long if len(line) > MAX_REQUEST else None
        if reply is None and _is_chat(line):
            if chat is None:
                reply = {"ok": False, "error": "this engine serves no chat"}
            else:
                from amarktai_tui.ops.chat_remote import serve_chat  # the AI console: a heavy import

                task = asyncio.current_task()
                assert task is not None
                chats.add(task)
                try:
                    await serve_chat(chat, reader, writer)
                finally:
                    chats.discard(task)
                return
        if reply is None:
            reply = await execute(engine, line)
        writer.write(json.dumps(reply, default=str).encode() + b"\n")
        await writer.drain()
    except (ConnectionError, OSError):
        pass  # the client left; the command (if any) has been applied and logged
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def _is_chat(line: bytes) -> bool:
    try:
        req = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(req, dict) and req.get("cmd") == "chat"


async def execute(engine: TradingEngine, line: bytes | str) -> dict[str, Any]:
    """Run one request line against ``engine``; the reply (module docstring). Never raises."""
    from amarktai_tui.engine.spec import EngineError

    try:
        req = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return {"ok": False, "error": "request is not a JSON line"}
    if not isinstance(req, dict):
        return {"ok": False, "error": "request must be a JSON object"}
    cmd = req.get("cmd")
    if cmd not in COMMANDS:
        return {"ok": False, "error": f"unknown cmd {cmd!r}: use one of {', '.join(COMMANDS)}"}
    actor = req.get("actor", "cli")
    reason = req.get("reason")
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 32:
        return {"ok": False, "error": "actor must be a short non-empty string"}
    if reason is not None and not isinstance(reason, str):
        return {"ok": False, "error": "reason must be a string"}
    try:
        return await _run(engine, cmd, req, actor.strip(), reason)
    except EngineError as exc:
        return {"ok": False, "error": _one_line(str(exc))}
    except Exception as exc:  # the engine stays up; the client gets the reason
        log.exception("control command %s failed", cmd)
        return {"ok": False, "error": _one_line(f"{cmd} failed in the engine: {type(exc).__name__}: {exc}")}


async def _run(
    engine: TradingEngine, cmd: str, req: dict[str, Any], actor: str, reason: str | None
) -> dict[str, Any]:
    from amarktai_tui.engine.events import BreakerReset

    if cmd in ("promote", "demote"):  # bot lifecycle stages
        from amarktai_tui.ops.stage_commands import run_stage_command

        return await run_stage_command(engine, cmd, req, actor, reason)
    if cmd == "autonomy":  # proposals and changes through the engine's Adjuster
        from amarktai_tui.ops.autonomy_commands import run_autonomy_control

        return await run_autonomy_control(engine, req, actor)
    if cmd == "audit":  # an audit entry made by a CLI process (``ops.audit.note_offline``)
        from amarktai_tui.ops.audit import record_remote

        return await record_remote(engine, req)

    def name(trip: Trip | None) -> dict[str, Any] | None:
        if trip is None:
            return None
        runner = engine.runners.get(trip.bot_id) if trip.bot_id is not None else None
        return trip_json(trip, runner.rec.name if runner is not None else None)

    if cmd == "mode":  # a running engine switches to paper only (ops.mode): it records it and stops
        if req.get("mode") != "paper":
            return {
                "ok": False,
                "error": "a running engine switches to paper only: stop it to switch to live",
            }
        changed = await engine.switch_to_paper(actor, (reason or "").strip() or "switched to paper")
        return {"ok": True, "changed": changed}

    if cmd == "halt":
        if reason is not None and not reason.strip():
            return {"ok": False, "error": "a halt reason must not be empty"}
        trip = await engine.halt(reason.strip() if reason else "emergency stop", actor)
        changed = trip is not None
        if trip is None:  # already halted: report the halt that is active
            trip = engine.board.active.get((Breaker.HALT, None))
        return {"ok": True, "changed": changed, "trip": name(trip), "retripped": None}

    raw_id = req.get("trip_id")
    trip_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    if cmd == "reset" and trip_id is None:
        return {"ok": False, "error": "reset needs an integer trip_id"}
    resets: list[BreakerReset] = []
    unsubscribe = engine.bus.subscribe(BreakerReset, resets.append)
    try:
        if cmd == "resume":
            res = await engine.resume(reason if reason is not None else "resumed", actor)
            if res is None:
                return {"ok": True, "changed": False, "trip": None, "retripped": None}
        else:
            assert trip_id is not None
            res = await engine.reset_breaker(trip_id, reason or "", actor)
    finally:
        unsubscribe()
    done = name(res.trip)
    assert done is not None
    ev = next((e for e in resets if e.trip.id == res.trip.id), None)
    if ev is not None:
        done["reset"] = {"ts": ev.ts, "actor": ev.actor, "reason": ev.reason}
    return {"ok": True, "changed": True, "trip": done, "retripped": name(res.retripped)}


def _one_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "error"


# -- client (the CLI, a blocking socket) ------------------------------------------------------


def send_command(path: Path, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the engine listening on ``path``; return its reply (a dict with ``ok``).

    Blocks up to ``timeout`` seconds in all. Raises ControlUnavailable when
    nothing listens there, ControlError on a timeout, a dropped connection or a
    reply that is not a JSON object. An ``ok: false`` reply is returned, not raised.
    """
    deadline = time.monotonic() + timeout

    def left() -> float:
        rest = deadline - time.monotonic()
        if rest <= 0:
            raise TimeoutError
        return rest

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.settimeout(left())
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ControlUnavailable(f"no engine listens on {path} ({exc.strerror})") from None
        except (TimeoutError, OSError) as exc:
            raise ControlError(f"cannot connect to the engine at {path}: {exc}") from None
        buf = b""
        try:
            s.sendall(json.dumps(request).encode() + b"\n")
            while not buf.endswith(b"\n"):
                s.settimeout(left())
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > 16 * MAX_REQUEST:
                    raise ControlError("the engine's reply is too long")
        except TimeoutError:
            raise ControlError(f"no reply from the engine within {timeout:g}s") from None
        except OSError as exc:
            raise ControlError(f"connection to the engine failed: {exc}") from None
    try:
        reply = json.loads(buf)
    except ValueError:
        raise ControlError("the engine sent no reply (it may be shutting down)" if not buf else
                           "the engine's reply is not JSON") from None  # fmt: skip
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ControlError("the engine's reply is not a JSON object with 'ok'")
    return reply


def send_or_record(
    data_dir: Path,
    req: dict[str, Any],
    record: Callable[[], Coroutine[Any, Any, dict[str, Any]]],
    *,
    connect_wait_s: float = 5.0,
    timeout_s: float = 10.0,
) -> tuple[dict[str, Any], str]:
    """A CLI write command: ``(reply, "live")`` from the engine that holds the data dir's lock, over
    its socket; or ``(await record(), "recorded")`` under the lock when no engine runs (the next
    engine applies it at start). An engine that holds the lock but has no socket yet (starting up)
    is waited for ``connect_wait_s``. Raises ControlError (nothing answers, a bad reply)."""
    from amarktai_tui.locations import lock_path
    from amarktai_tui.ops.lock import EngineLock, EngineLockedError

    path = socket_path(data_dir)
    deadline = time.monotonic() + connect_wait_s
    while True:
        lock = EngineLock(lock_path(data_dir))
        try:
            lock.acquire()
        except EngineLockedError:
            pass
        else:
            try:
                return asyncio.run(record()), "recorded"
            finally:
                lock.release()
        try:
            return send_command(path, req, timeout_s), "live"
        except ControlUnavailable:
            if time.monotonic() > deadline:
                raise ControlError(
                    f"an engine holds {lock_path(data_dir)} but does not answer on {path}; "
                    "use its own controls, or stop it and retry"
                ) from None
            time.sleep(0.05)
