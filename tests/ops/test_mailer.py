"""Mail against a real SMTP server on loopback (aiosmtpd, AUTH required): the daily report at its
time (an injected clock), alert batches with the rate limit, failures kept and retried. The SMTP
login comes from a real keyring (the encrypted file backend); each received message is parsed
with the ``email`` package."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import smtp_helpers
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from test_reports import replay_prefix

from amarktai_tui.config import Settings, load_settings
from amarktai_tui.engine.events import EventBus, ReportSent
from amarktai_tui.ledger import schema
from amarktai_tui.locations import db_path
from amarktai_tui.ops import mailer, reports
from amarktai_tui.ops.audit import AuditEntry, Severity
from amarktai_tui.vault.backend import PASSPHRASE_ENV, open_backend
from amarktai_tui.vault.providers import PROVIDERS
from amarktai_tui.vault.store import SecretStore

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
USER, PASSWORD = "reports@example.com", "smtp-pass-4321"
TO = ["alice@example.com", "bob@example.org"]
HOUR = 3_600_000


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: tuple[bytes, bytes] | None
    at: float  # the injected monotonic clock when the server got it


@dataclass
class Inbox:
    """The server side: every accepted message, and how many to refuse first."""

    clock: Any = None
    reject: int = 0
    got: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.reject:
            self.reject -= 1
            return "554 5.7.1 refused for the test"
        msg = smtp_helpers.parse(envelope)
        at = self.clock() if self.clock else 0.0
        login = self.logins[-1] if session.authenticated else None
        await self.got.put(Received(str(envelope.mail_from), list(envelope.rcpt_tos), msg, login, at))
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        return smtp_helpers.check_login(data, USER, PASSWORD, self.logins)


@pytest.fixture
async def smtp_server() -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: smtp_helpers.session(inbox, inbox.authenticate),
        "127.0.0.1",
        0,
    )
    try:
        yield inbox, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
def ledger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return replay_prefix(tmp_path_factory.mktemp("mail"))


@pytest.fixture
def data_dir(ledger_dir: Path, tmp_path: Path) -> Path:
    """A copy of the replay ledger."""
    d = tmp_path / "data"
    d.mkdir()
    src, dst = sqlite3.connect(db_path(ledger_dir)), sqlite3.connect(db_path(d))
    src.backup(dst)
    src.close()
    dst.close()
    return d


@pytest.fixture
def vault(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SMTP login saved in an encrypted-file keyring in the data dir (``[keys] backend = "cryptfile"``)."""
    monkeypatch.setenv(PASSPHRASE_ENV, "test-keyring-passphrase")
    keys = load_settings(None).keys.model_copy(update={"backend": "cryptfile"})
    SecretStore(open_backend(keys, data_dir)).save(
        PROVIDERS["smtp"], {"username": USER, "password": PASSWORD}
    )


async def login() -> mailer.Credentials:
    """The same login without the keyring's key derivation (the first test covers the keyring)."""
    return USER, PASSWORD


def settings_for(tmp: Path, port: int, **smtp: object) -> Settings:
    lines = [
        "[keys]",
        'backend = "cryptfile"',
        "[smtp]",
        'host = "127.0.0.1"',
        f"port = {port}",
        'security = "none"',
        f"to = {json.dumps(TO)}",
        *(f"{k} = {json.dumps(v)}" for k, v in smtp.items()),
    ]
    path = tmp / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_settings(path, required=True)


class FakeTime:
    """An injected clock: ``sleep`` moves it forward at once (and lets the loop run); after
    ``stop_after`` is set, a sleep waits until cancelled (the service's next day)."""

    def __init__(self, start_ms: int) -> None:
        self.ms = start_ms
        self.slept: list[float] = []
        self.stop_after = asyncio.Event()

    def wall(self) -> int:
        return self.ms

    def mono(self) -> float:
        return self.ms / 1000

    async def sleep(self, seconds: float) -> None:
        if self.stop_after.is_set():
            await asyncio.Event().wait()
        self.slept.append(seconds)
        self.ms += round(seconds * 1000)
        await asyncio.sleep(0)


def sent_events(bus: EventBus, fake: FakeTime | None = None) -> tuple[list[ReportSent], asyncio.Event]:
    """The ReportSent events; the first one also stops ``fake``'s clock (the daily service then waits)."""
    events: list[ReportSent] = []
    seen = asyncio.Event()

    def on(e: ReportSent) -> None:
        events.append(e)
        seen.set()
        if fake is not None:
            fake.stop_after.set()

    bus.subscribe(ReportSent, on)
    return events, seen


def parts(msg: EmailMessage) -> tuple[str, str]:
    """The plain text and HTML bodies (SMTP's CRLF line ends as newlines)."""
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert isinstance(plain, EmailMessage) and isinstance(html, EmailMessage)
    return tuple(str(p.get_content()).replace("\r\n", "\n") for p in (plain, html))  # type: ignore[return-value]


def last_sell_day_noon(data_dir: Path) -> int:
    conn = schema.connect_readonly(str(db_path(data_dir)))
    try:
        ts = int(conn.execute("SELECT MAX(ts) FROM fills WHERE side = 'sell'").fetchone()[0])
    finally:
        conn.close()
    return ts - ts % 86_400_000 + 12 * HOUR


async def test_daily_report_is_mailed_at_its_time(
    smtp_server: tuple[Inbox, int], data_dir: Path, vault: None, tmp_path: Path
) -> None:
    inbox, port = smtp_server
    settings = settings_for(tmp_path, port, daily_report_at="23:55", alerts=False)
    start = last_sell_day_noon(data_dir) + 8 * HOUR  # 20:00 UTC of a day with a closing fill
    due = start + 3 * HOUR + 55 * 60_000
    fake = FakeTime(start)
    bus = EventBus()
    events, seen = sent_events(bus, fake)
    mail = await mailer.start_mail(bus, settings, data_dir, clock=fake.wall, sleep=fake.sleep)
    assert mail is not None and mail.daily is not None and mail.alerts is None
    try:
        got = await asyncio.wait_for(inbox.got.get(), 30)
        await asyncio.wait_for(seen.wait(), 10)
    finally:
        await mail.close()
    assert sum(fake.slept) * 1000 == due - start and max(fake.slept) <= mailer.MAX_SLEEP_S

    conn = schema.connect_readonly(str(db_path(data_dir)))
    try:
        expected = reports.build_report(conn, "daily", due)
    finally:
        conn.close()
    assert expected.period_trades > 0
    msg = got.message
    assert msg["Subject"] == reports.subject(expected)
    assert msg["From"] == USER and got.mail_from == USER  # no from_addr: the vault's user name
    assert got.rcpt_tos == TO and msg["To"] == ", ".join(TO)
    assert got.login == (USER.encode(), PASSWORD.encode())  # the login came from the keyring
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = parts(msg)
    assert plain == reports.to_markdown(expected)
    assert f"profit {reports.money(expected.period_pnl, signed=True)} USDT" in plain
    assert "<svg" in html and f"{expected.period_trades} trades closed" in html
    assert PASSWORD not in msg.as_string()
    assert [(e.period, e.recipients, e.subject) for e in events] == [("daily", tuple(TO), msg["Subject"])]


async def test_a_failed_daily_report_is_retried_and_never_fatal(
    smtp_server: tuple[Inbox, int], data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox, port = smtp_server
    inbox.reject = 1
    settings = settings_for(tmp_path, port, daily_report_at="00:05", alerts=False)
    start = last_sell_day_noon(data_dir)
    fake = FakeTime(start)
    bus = EventBus()
    events, seen = sent_events(bus, fake)
    caplog.set_level(logging.WARNING, "amarktai.mail")
    mail = await mailer.start_mail(
        bus, settings, data_dir, credentials=login, clock=fake.wall, sleep=fake.sleep
    )
    assert mail is not None
    try:
        got = await asyncio.wait_for(inbox.got.get(), 30)
        await asyncio.wait_for(seen.wait(), 10)
    finally:
        await mail.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "amarktai.mail"]
    assert len(warnings) == 1 and "attempt 1 of 3" in warnings[0] and "554" in warnings[0]
    assert PASSWORD not in warnings[0]
    assert fake.slept[-1] == mailer.RETRY_S
    next_day = start - start % 86_400_000 + 86_400_000 + 5 * 60_000
    assert events[0].ts == next_day + round(mailer.RETRY_S * 1000)
    assert got.message["Subject"].startswith(
        f"Amarktai daily report {reports.bucket_label('daily', next_day)}"
    )
    assert inbox.got.empty()


def entry(ts: int, kind: str, severity: Severity = Severity.CRITICAL, **details: str) -> AuditEntry:
    return AuditEntry(ts, kind, severity, "engine", 2, "btc-rsi", dict(details))


async def test_alerts_are_batched_and_rate_limited(
    smtp_server: tuple[Inbox, int], data_dir: Path, tmp_path: Path
) -> None:
    inbox, port = smtp_server
    settings = settings_for(tmp_path, port, daily_report_at="", alert_min_interval_s=300.0, alert_batch_s=5.0)
    fake = FakeTime(1_700_000_000_000)
    inbox.clock = fake.mono
    bus = EventBus()
    events, _ = sent_events(bus)
    mail = await mailer.start_mail(
        bus, settings, data_dir, clock=fake.wall, sleep=fake.sleep, monotonic=fake.mono, credentials=login
    )
    assert mail is not None and mail.daily is None and mail.alerts is not None
    alerts = mail.alerts
    t0 = fake.mono()
    try:
        alerts.notify(entry(fake.ms, "breaker_tripped", breaker="consecutive_losses"))
        alerts.notify(entry(fake.ms + 1, "bot_state_changed", Severity.INFO))  # not critical: no mail
        alerts.notify(entry(fake.ms + 2, "emergency_stop_triggered", reason="halt <now>"))
        first = await asyncio.wait_for(inbox.got.get(), 30)
        # within the quiet period: held for the next mail, not sent now
        alerts.notify(entry(fake.ms, "live_trade_executed", side="buy"))
        alerts.notify(entry(fake.ms + 1, "system_mode_changed", to="paper"))
        second = await asyncio.wait_for(inbox.got.get(), 30)
    finally:
        await mail.close()

    assert first.at - t0 == 5.0  # the burst's batching delay, then one mail
    assert (
        first.message["Subject"]
        == "Amarktai alert: 2 critical events (breaker tripped, emergency stop triggered)"
    )
    plain, html = parts(first.message)
    assert (
        "breaker_tripped" in plain
        and "emergency_stop_triggered" in plain
        and "bot_state_changed" not in plain
    )
    assert '{"breaker": "consecutive_losses"}' in plain
    assert html.count("<tr>") == 3 and "halt &lt;now&gt;" in html  # header + 2 entries, escaped
    assert first.rcpt_tos == TO and first.login == (USER.encode(), PASSWORD.encode())

    assert second.at - first.at == 300.0  # not one mail per entry: the next one a full interval later
    assert (
        second.message["Subject"]
        == "Amarktai alert: 2 critical events (live trade executed, system mode changed)"
    )
    assert alerts.mails == 2 and alerts.pending == 0 and inbox.got.empty()
    assert [e.period for e in events] == ["alert", "alert"]
    assert events[1].subject == second.message["Subject"]


async def test_a_failed_alert_mail_keeps_its_entries(
    smtp_server: tuple[Inbox, int], data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox, port = smtp_server
    inbox.reject = 1
    settings = settings_for(tmp_path, port, daily_report_at="", alert_min_interval_s=10.0, alert_batch_s=0.0)
    fake = FakeTime(1_700_000_000_000)
    inbox.clock = fake.mono
    mail = await mailer.start_mail(
        EventBus(),
        settings,
        data_dir,
        clock=fake.wall,
        sleep=fake.sleep,
        monotonic=fake.mono,
        credentials=login,
    )
    assert mail is not None and mail.alerts is not None
    t0 = fake.mono()
    try:
        mail.alerts.notify(entry(fake.ms, "api_key_deleted"))
        got = await asyncio.wait_for(inbox.got.get(), 30)
    finally:
        await mail.close()
    assert "1 entries" in caplog.text and "kept for the next try" in caplog.text
    assert got.at - t0 == mailer.FAILURE_BACKOFF_S  # the backoff after a failure, not the 10 s interval
    assert got.message["Subject"] == "Amarktai alert: 1 critical event (api key deleted)"


async def test_close_sends_what_is_still_waiting(
    smtp_server: tuple[Inbox, int], data_dir: Path, tmp_path: Path
) -> None:
    inbox, port = smtp_server
    settings = settings_for(tmp_path, port, daily_report_at="", alert_batch_s=3600.0)
    mail = await mailer.start_mail(
        EventBus(), settings, data_dir, credentials=login
    )  # the real clock: the batch waits an hour
    assert mail is not None and mail.alerts is not None
    mail.alerts.notify(entry(1, "bot_promoted_to_live"))
    assert mail.alerts.pending == 1
    await mail.close()
    got = inbox.got.get_nowait()
    assert got.message["Subject"] == "Amarktai alert: 1 critical event (bot promoted to live)"


async def test_mail_is_off_without_host_or_recipients(data_dir: Path, tmp_path: Path) -> None:
    assert await mailer.start_mail(EventBus(), load_settings(None), data_dir) is None
    no_to = settings_for(tmp_path, 25).model_copy()
    no_to.smtp.to = []
    assert await mailer.start_mail(EventBus(), no_to, data_dir) is None


def test_next_run_and_message_shape() -> None:
    day = 1_700_006_400_000 - 1_700_006_400_000 % 86_400_000
    at = (23, 55)
    assert mailer.next_run(day, at) == day + (23 * 60 + 55) * 60_000
    assert mailer.next_run(day + (23 * 60 + 55) * 60_000, at) == day + 86_400_000 + (23 * 60 + 55) * 60_000
    assert mailer.next_run(day + 86_399_999, (0, 0)) == day + 86_400_000
    msg = mailer.build_message(
        "S", "a@example.com", ["b@example.com", "c@example.com"], "text", "<p>html</p>"
    )
    assert msg["To"] == "b@example.com, c@example.com" and msg["Message-ID"].endswith("@example.com>")
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
