"""Headless engine: ``amarktai --daemon``. Textual is never imported on this path.

Logs go to ``<data_dir>/logs/amarktai.log`` and stderr. SIGTERM/SIGINT stop
the feed; the engine flushes its last batch and a final equity snapshot,
releases the lock and the process exits 0. While it runs, the CLI's write
commands (halt, resume, breakers reset) reach it over the control socket
(``ops.control``), closed and removed on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from amarktai_tui.config import Settings
from amarktai_tui.engine.events import EventBus, OrderFilled, OrderRejected
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.locations import lock_path, logs_dir
from amarktai_tui.ops.control import serve_control, socket_path, stop_control
from amarktai_tui.ops.lock import EngineLock
from amarktai_tui.ops.services import start_services

if TYPE_CHECKING:
    from amarktai_tui.ai.session import ChatSession
    from amarktai_tui.engine.engine import TradingEngine
    from amarktai_tui.ops.chat_remote import OpenSession

log = logging.getLogger("amarktai.daemon")
_CENT = Decimal("0.01")


class ControlSocketError(RuntimeError):
    """The control socket could not be opened: an engine nobody can halt from the CLI does not start."""


def chat_opener(engine: TradingEngine, settings: Settings, data_dir: Path) -> OpenSession:
    """What the control socket calls to open an ``amarktai chat`` session over ``engine``."""

    async def open_session() -> ChatSession:
        from amarktai_tui.ai.session import ChatSession

        return await ChatSession.open(engine, settings, data_dir)

    return open_session


def setup_logging(data_dir: Path, *, stderr: bool = True, level: int = logging.INFO) -> None:
    """File log in the data dir (+ stderr for the daemon). Idempotent."""
    logs_dir(data_dir).mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    fh = logging.FileHandler(logs_dir(data_dir) / "amarktai.log")
    fh.setFormatter(fmt)
    root.addHandler(fh)
    if stderr:
        sh = logging.StreamHandler()
        sh.setFormatter(fmt)
        root.addHandler(sh)
    from amarktai_tui.ops import redact

    for handler in root.handlers:  # secrets are masked before any handler writes a record
        redact.install(handler)


async def run_daemon(settings: Settings, data_dir: Path, replay: ReplayArgs | None) -> int:
    """Run the engine until the feed ends (``--until-end``) or a signal; return the exit code."""
    with EngineLock(lock_path(data_dir)):
        bus = EventBus()
        bus.subscribe(
            OrderFilled,
            lambda e: log.debug("fill %s %s %s @ %s", e.client_order_id, e.side, e.quantity, e.price),
        )
        bus.subscribe(
            OrderRejected, lambda e: log.info("order %s %s: %s", e.client_order_id, e.state, e.reason)
        )
        engine, feed = await open_engine(settings, data_dir, replay, bus)
        sock = socket_path(data_dir)
        try:
            control = await serve_control(engine, sock, chat=chat_opener(engine, settings, data_dir))
        except OSError as exc:
            await engine.close()
            raise ControlSocketError(f"cannot listen on the control socket {sock}: {exc}") from None
        try:
            services = await start_services(engine, settings, data_dir, headless=True)
        except BaseException:
            await stop_control(control)
            await engine.close()
            raise
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, engine.stop)
        log.info(
            "engine started: %d bots, %s, data dir %s", len(engine.runners), feed.status().source, data_dir
        )
        try:
            await engine.run(feed)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await services.close()
            await stop_control(control)
            await engine.close()
        log.info(
            "engine stopped: %d candles, %d fills, equity %s",
            engine.candles_seen,
            engine.fills_seen,
            engine.account_equity().quantize(_CENT),
        )
    return 0
