"""Helpers of ``test_services``: an SMTP server on loopback in a thread of its own (its connection
tasks never show in the test loop's ``asyncio.all_tasks``), settings written as TOML, the SMTP login
saved in a real keyring (the encrypted file backend), a real engine over a real SQLite ledger."""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import smtp_helpers
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from amarktai_tui.config import Settings, load_settings
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.locations import db_path
from amarktai_tui.vault.backend import open_backend
from amarktai_tui.vault.providers import PROVIDERS
from amarktai_tui.vault.store import SecretStore

BTC_1H = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance" / "BTC_USDT-1h.json"
USER, PASSWORD = "alerts@example.com", "smtp-pass-9876"
TO = ["ops@example.com", "owner@example.org"]
PASSPHRASE = "services-test-passphrase"
WAIT_S = 30.0  # a guard against a hang, not a wait


@dataclass(frozen=True)
class Received:
    message: EmailMessage
    mail_from: str
    rcpt_tos: list[str]
    login: tuple[bytes, bytes] | None
    at: float  # time.monotonic() when the server took the message


@dataclass
class SmtpThread:
    """aiosmtpd on 127.0.0.1 (a free port), AUTH LOGIN/PLAIN required, run by its own loop in a
    thread. ``quit_delay_s``: how long the server takes to answer QUIT (a slow server: the
    message is taken, the client still waits for the end of the session)."""

    quit_delay_s: float = 0.0
    port: int = 0
    connections: int = 0
    received: queue.Queue[Received] = field(default_factory=queue.Queue)
    quits: queue.Queue[float] = field(default_factory=queue.Queue)
    """time.monotonic() of each QUIT, as it arrives (before the answer)."""
    _logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    # -- aiosmtpd handler hooks (on the server's loop) --

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        msg = smtp_helpers.parse(envelope)
        login = self._logins[-1] if session.authenticated else None
        got = Received(msg, str(envelope.mail_from), list(envelope.rcpt_tos), login, time.monotonic())
        self.received.put(got)
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits.put(time.monotonic())
        if self.quit_delay_s:
            await asyncio.sleep(self.quit_delay_s)  # the slow server itself, not a test's wait
        return "221 Bye"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        return smtp_helpers.check_login(data, USER, PASSWORD, self._logins)

    def _protocol(self) -> SMTP:
        self.connections += 1
        return smtp_helpers.session(self, self.authenticate)

    # -- the thread --

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        server = loop.run_until_complete(loop.create_server(self._protocol, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            loop.run_until_complete(server.wait_closed())
            rest = asyncio.all_tasks(loop)
            for task in rest:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.close()

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="smtp-server", daemon=True)
        self._thread.start()
        if not ready.wait(WAIT_S):
            raise RuntimeError("the SMTP server did not start")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(WAIT_S)

    async def next_message(self, timeout: float = WAIT_S) -> Received:
        """The next message the server took (waits for it; raises queue.Empty after ``timeout``)."""
        return await asyncio.to_thread(self.received.get, True, timeout)

    async def next_quit(self, timeout: float = WAIT_S) -> float:
        """Wait for the next QUIT to arrive (the server has not answered it yet when
        ``quit_delay_s`` is set); its time.monotonic()."""
        return await asyncio.to_thread(self.quits.get, True, timeout)


@contextmanager
def smtp_thread(quit_delay_s: float = 0.0) -> Iterator[SmtpThread]:
    server = SmtpThread(quit_delay_s)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def settings_for(tmp: Path, **sections: dict[str, Any]) -> Settings:
    """Settings from TOML: ``[keys] backend = "cryptfile"``, the health server off, the daily backup
    due at 00:00 UTC (so one is made at start), plus ``sections`` (``smtp={"port": 25, ...}``)."""
    base: dict[str, dict[str, Any]] = {
        "keys": {"backend": "cryptfile"},
        "health": {"enabled": False},
        "backup": {"daily": True, "daily_at": "00:00"},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    lines: list[str] = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = tmp / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_settings(path, required=True)


def smtp_section(port: int, **extra: Any) -> dict[str, Any]:
    """``[smtp]`` for the loopback server; the daily report due 12 hours from now (its task runs
    but does not fire during a test)."""
    later = time.gmtime(time.time() + 12 * 3600)
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "to": TO,
        "daily_report_at": f"{later.tm_hour:02d}:{later.tm_min:02d}",
        **extra,
    }


def save_smtp_login(settings: Settings, data_dir: Path) -> None:
    """The SMTP login in the keyring the settings name (PASSPHRASE_ENV must be set)."""
    SecretStore(open_backend(settings.keys, data_dir)).save(
        PROVIDERS["smtp"], {"username": USER, "password": PASSWORD}
    )


async def open_btc_engine(settings: Settings, data_dir: Path) -> TradingEngine:
    """A real engine (bots from the default config) over a new SQLite ledger in ``data_dir``; its
    BTC 1h replay feed is not run."""
    engine, _feed = await open_engine(settings, data_dir, ReplayArgs([str(BTC_1H)], speed=0, until_end=True))
    return engine


def audit_rows(data_dir: Path, where: str = "1=1") -> list[dict[str, Any]]:
    """The audit_log rows (``details`` parsed), oldest first."""
    conn = connect_readonly(str(db_path(data_dir)))
    try:
        rows = [dict(r) for r in conn.execute(f"SELECT * FROM audit_log WHERE {where} ORDER BY id")]
    finally:
        conn.close()
    for r in rows:
        r["details"] = json.loads(r["details"])
    return rows


def count_rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db_path(data_dir)}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def plain_body(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content()).replace("\r\n", "\n")
