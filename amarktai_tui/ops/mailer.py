"""Mail (aiosmtplib): the daily report at ``[smtp] daily_report_at`` and alert mails for
critical audit entries, in the daemon and the TUI.

- ``Mailer`` sends one message (plain text + HTML alternative) with the ``[smtp]`` settings;
  the user name and password come from the vault (provider ``smtp``: ``amarktai keys set
  smtp``) at every send, so a key saved while the engine runs is used at once. Nothing saved:
  no login (a local relay). The From address is ``[smtp] from_addr``, else the user name.
- ``DailyReportService`` waits for the next ``HH:MM`` UTC (on an injectable wall clock), builds
  the daily report of the UTC day so far from the ledger (``ops.reports``, read-only, in a
  thread), mails it and publishes ``ReportSent``. A failed attempt is logged and retried
  (``ATTEMPTS`` in all, ``RETRY_S`` apart); never fatal. A start after today's time waits for
  tomorrow's.
- ``AlertMailer.notify(entry)`` takes a critical audit entry (anything with ``ts, type,
  severity, actor, bot, details``: ``ops.audit.AuditEntry``) and batches: the first entry after
  a quiet spell waits ``alert_batch_s`` for the rest of its burst, then at most one mail goes
  out per ``alert_min_interval_s``; entries arriving in between wait for the next mail, none is
  dropped (beyond ``MAX_PENDING`` the oldest are, and the next mail says how many). A failed
  send keeps the batch for the next try (at least ``FAILURE_BACKOFF_S`` later); ``close``
  lets a mail on its way finish (never cancelled into a second copy), then makes one last try.
  Hook: the audit recorder calls ``notify`` for its entries (non-critical ones are ignored here).

Every failure is logged with secrets scrubbed; none stops the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import html
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol

from amarktai_tui.config import Settings, SmtpSettings
from amarktai_tui.engine.events import EventBus, ReportSent
from amarktai_tui.ledger.profits import Period

log = logging.getLogger("amarktai.mail")

DAY_MS = 86_400_000
ATTEMPTS = 3
"""Tries of one daily report before it is given up until the next day."""
RETRY_S = 60.0
MAX_SLEEP_S = 600.0
"""The daily wait is slept in slices of at most this, so a wall-clock jump is noticed."""
FAILURE_BACKOFF_S = 60.0
MAX_PENDING = 500
CLOSE_TIMEOUT_S = 10.0

Credentials = tuple[str, str] | None
"""(user name, password) from the vault, or None (no login)."""
CredentialLoader = Callable[[], Awaitable[Credentials]]
WallClock = Callable[[], int]
"""ms UTC."""
Sleep = Callable[[float], Awaitable[None]]


class MailError(RuntimeError):
    """A mail could not be sent; the message is one line without secrets."""


class AlertEntry(Protocol):
    """What an alert mail shows of an audit entry (``ops.audit.AuditEntry`` satisfies it)."""

    @property
    def ts(self) -> int: ...  # ms UTC
    @property
    def type(self) -> str: ...
    @property
    def severity(self) -> str: ...  # info | warning | critical
    @property
    def actor(self) -> str: ...
    @property
    def bot(self) -> str | None: ...
    @property
    def details(self) -> object: ...  # a JSON object (dict) or text


def wall_ms() -> int:
    """The wall clock, ms UTC."""
    return int(time.time() * 1000)


def _utc(ms: int, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).strftime(fmt)


def build_message(
    subject: str,
    sender: str,
    recipients: Sequence[str],
    text: str,
    html_body: str | None = None,
    *,
    date_ms: int | None = None,
) -> EmailMessage:
    """A MIME message: ``text/plain`` (UTF-8), plus a ``text/html`` alternative when given.

    Headers: Subject, From, To (comma-separated), Date (``date_ms``, default now), Message-ID.
    """
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    when = datetime.now(UTC) if date_ms is None else datetime.fromtimestamp(date_ms / 1000, UTC)
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg.set_content(text)
    if html_body is not None:
        msg.add_alternative(html_body, subtype="html")
    return msg


_WIRE = email.policy.SMTP.clone(max_line_length=998)


def flatten(msg: EmailMessage) -> bytes:
    """The message as sent (CRLF line ends). Headers fold only beyond RFC 5322's 998 characters:
    at 78, Python moves a 70-77 character Subject whole onto a continuation line, which readers
    then show with a leading space."""
    return msg.as_bytes(policy=_WIRE)


def vault_credentials(settings: Settings, data_dir: Path) -> CredentialLoader:
    """A loader of the ``smtp`` provider's user name and password from the configured keyring
    (in a thread: keyring calls block). No keyring at all: logged, None (send without login)."""

    async def load() -> Credentials:
        from amarktai_tui.vault.backend import open_backend
        from amarktai_tui.vault.errors import VaultUnavailable
        from amarktai_tui.vault.providers import PROVIDERS
        from amarktai_tui.vault.store import SecretStore

        def read() -> dict[str, str] | None:
            return SecretStore(open_backend(settings.keys, data_dir)).load(PROVIDERS["smtp"])

        try:
            values = await asyncio.to_thread(read)
        except VaultUnavailable as exc:
            log.warning("mail: no keyring for the SMTP login (%s); sending without login", exc)
            return None
        if not values:
            return None
        return values["username"], values["password"]

    return load


class Mailer:
    """Sends mail with the ``[smtp]`` settings (see the module doc)."""

    def __init__(self, smtp: SmtpSettings, credentials: CredentialLoader) -> None:
        self.smtp = smtp
        self._credentials = credentials

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(self.smtp.to)

    async def send(self, subject: str, text: str, html_body: str | None = None) -> tuple[str, ...]:
        """Send one message to ``[smtp] to``; return the recipients. Raises MailError (one line,
        no secret) when no From address is known or the server refuses or cannot be reached."""
        import aiosmtplib

        from amarktai_tui.vault.scrub import scrub

        creds = await self._credentials()
        sender = self.smtp.from_addr or (creds[0] if creds and "@" in creds[0] else "")
        if not sender:
            raise MailError(
                "no From address: set [smtp] from_addr (or save an e-mail address as the SMTP user name)"
            )
        msg = build_message(subject, sender, self.smtp.to, text, html_body)
        smtp = self.smtp
        try:
            await aiosmtplib.send(
                flatten(msg),
                sender=sender,
                recipients=list(self.smtp.to),
                hostname=smtp.host,
                port=smtp.port,
                username=creds[0] if creds else None,
                password=creds[1] if creds else None,
                use_tls=smtp.security == "ssl",
                start_tls=smtp.security == "starttls",
                timeout=smtp.timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            secrets = [creds[1]] if creds else []
            raise MailError(
                f"mail to {smtp.host}:{smtp.port} failed: {type(exc).__name__}: {scrub(str(exc), secrets)}"
            ) from None
        return self.recipients


# -- the daily report ---------------------------------------------------------------------


def parse_hhmm(text: str) -> tuple[int, int]:
    """``"23:55"`` -> ``(23, 55)``. Raises ValueError."""
    hh, _, mm = text.partition(":")
    h, m = int(hh), int(mm)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"expected HH:MM, got {text!r}")
    return h, m


def next_run(now_ms: int, at: tuple[int, int]) -> int:
    """The first ``HH:MM`` UTC strictly after ``now_ms`` (ms UTC)."""
    day = now_ms - now_ms % DAY_MS
    t = day + (at[0] * 60 + at[1]) * 60_000
    return t if t > now_ms else t + DAY_MS


def report_mail(
    db: Path, period: Period, now_ms: int, target: Decimal, quote: str = "USDT"
) -> tuple[str, str, str]:
    """``(subject, Markdown text, HTML)`` of the report of the period containing ``now_ms``,
    read from the ledger at ``db`` (read-only; blocking: call it in a thread). ``quote``: the
    currency shown when the bots do not name one."""
    from amarktai_tui.ledger.schema import connect_readonly
    from amarktai_tui.ops import reports

    conn = connect_readonly(str(db))
    try:
        rep = reports.build_report(conn, period, now_ms, target=target, default_quote=quote)
    finally:
        conn.close()
    return reports.subject(rep), reports.to_markdown(rep), reports.to_html(rep)


class DailyReportService:
    """Mails the daily report every day at ``at`` (UTC); ``start`` it, ``close`` it (see the module doc)."""

    def __init__(
        self,
        mailer: Mailer,
        db: Path,
        at: tuple[int, int],
        *,
        bus: EventBus | None = None,
        target: Decimal = Decimal(1_000_000),
        quote: str = "USDT",
        clock: WallClock = wall_ms,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.mailer = mailer
        self.db = db
        self.at = at
        self.bus = bus
        self.target = target
        self.quote = quote
        self._clock = clock
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the schedule as a task of the running loop."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="daily report mail")

    async def close(self) -> None:
        """Cancel the schedule (a send in progress is abandoned) and wait for it to end."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Forever: wait for the next ``at``, then send (with retries). Cancel to stop."""
        while True:
            now = self._clock()
            due = next_run(now, self.at)
            while now < due:
                await self._sleep(min((due - now) / 1000, MAX_SLEEP_S))
                now = self._clock()
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    await self.send_report("daily", now_ms=due)  # as of its time, even when retried
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # never fatal: logged, retried, then left for tomorrow
                    log.warning("daily report mail, attempt %d of %d: %s", attempt, ATTEMPTS, _one_line(exc))
                    if attempt < ATTEMPTS:
                        await self._sleep(RETRY_S)

    async def send_report(self, period: Period = "daily", now_ms: int | None = None) -> ReportSent:
        """Build and mail the report of the period containing ``now_ms`` (default: the clock),
        publish ``ReportSent`` and return it. Raises MailError, sqlite3.Error, FileNotFoundError
        (no ledger yet)."""
        now = self._clock() if now_ms is None else now_ms
        subject, text, html_body = await asyncio.to_thread(
            report_mail, self.db, period, now, self.target, self.quote
        )
        recipients = await self.mailer.send(subject, text, html_body)
        event = ReportSent(self._clock(), period, recipients, subject)
        log.info("%s report mailed to %s: %s", period, ", ".join(recipients), subject)
        if self.bus is not None:
            self.bus.publish(event)
        return event


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, MailError) else f"{type(exc).__name__}: {text}"


# -- alert mails ------------------------------------------------------------------------------


def _details(details: object) -> str:
    from amarktai_tui.ops.reports import details_text

    return details_text(details, limit=400)


def alert_mail(entries: Sequence[AlertEntry], dropped: int = 0) -> tuple[str, str, str]:
    """``(subject, text, HTML)`` of one alert mail listing ``entries`` (oldest first)."""
    n = len(entries)
    types = sorted({e.type.replace("_", " ") for e in entries})  # spaces: the header folds between words
    shown = ", ".join(types[:3]) + (", ..." if len(types) > 3 else "")
    subject = f"Amarktai alert: {n} critical event{'' if n == 1 else 's'} ({shown})"
    lines = [f"{n} critical event{'' if n == 1 else 's'} (times UTC):", ""]
    rows = []
    for e in entries:
        bot = e.bot or "-"
        lines.append(f"{_utc(e.ts)}  {e.type}  actor {e.actor}  bot {bot}  {_details(e.details)}")
        cells = (_utc(e.ts), e.type, e.actor, bot, _details(e.details))
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    if dropped:
        lines += ["", f"{dropped} older entries were left out (too many waiting); see `amarktai audit`."]
    head = "".join(f"<th>{h}</th>" for h in ("Time (UTC)", "Type", "Actor", "Bot", "Details"))
    note = (
        f"<p>{dropped} older entries were left out; see <code>amarktai audit</code>.</p>" if dropped else ""
    )
    body = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head><body>"
        f"<h1>{html.escape(subject)}</h1>"
        f'<table border="1" cellpadding="4" cellspacing="0"><tr>{head}</tr>{"".join(rows)}</table>'
        f"{note}</body></html>\n"
    )
    return subject, "\n".join(lines) + "\n", body


class AlertMailer:
    """Batched, rate-limited alert mails (see the module doc). ``notify`` from the loop's thread."""

    def __init__(
        self,
        mailer: Mailer,
        *,
        min_interval_s: float,
        batch_s: float,
        bus: EventBus | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall: WallClock = wall_ms,
    ) -> None:
        self.mailer = mailer
        self.min_interval_s = min_interval_s
        self.batch_s = batch_s
        self.bus = bus
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self._pending: list[AlertEntry] = []
        self._dropped = 0
        self._not_before = float("-inf")  # monotonic s: no mail before this (rate limit, backoff)
        self._task: asyncio.Task[None] | None = None
        self._sending = False  # a mail is on its way: close lets it finish
        self._closing = False
        self.mails = 0
        """Alert mails sent so far."""

    @property
    def pending(self) -> int:
        """Entries waiting for the next mail."""
        return len(self._pending)

    def notify(self, entry: AlertEntry) -> None:
        """Queue a critical entry for the next alert mail (others are ignored); never blocks or raises."""
        if str(getattr(entry.severity, "value", entry.severity)) != "critical":
            return
        if len(self._pending) >= MAX_PENDING:
            self._pending.pop(0)
            self._dropped += 1
        self._pending.append(entry)
        if self._closing:  # closed: ``close`` sends what is left, no new task
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="alert mail")

    async def _drain(self) -> None:
        while self._pending and not self._closing:
            now = self._clock()
            due = max(now + self.batch_s, self._not_before)
            if due > now:
                await self._sleep(due - now)
            await self._send_pending()

    async def _send_pending(self) -> bool:
        batch, self._pending = self._pending, []
        dropped, self._dropped = self._dropped, 0
        self._sending = True
        try:
            subject, text, html_body = alert_mail(batch, dropped)
            recipients = await self.mailer.send(subject, text, html_body)
        except asyncio.CancelledError:
            self._pending[:0] = batch
            self._dropped += dropped
            raise
        except Exception as exc:  # kept for the next try; never fatal
            self._pending[:0] = batch
            self._dropped += dropped
            self._not_before = self._clock() + max(self.min_interval_s, FAILURE_BACKOFF_S)
            log.warning(
                "alert mail (%d entries) failed, kept for the next try: %s", len(batch), _one_line(exc)
            )
            return False
        finally:
            self._sending = False
        self._not_before = self._clock() + self.min_interval_s
        self.mails += 1
        log.info("alert mail sent to %s: %s", ", ".join(recipients), subject)
        if self.bus is not None:
            self.bus.publish(ReportSent(self._wall(), "alert", recipients, subject))
        return True

    async def close(self) -> None:
        """Stop the batching task; entries still waiting get one last mail (bounded by a timeout). A
        mail on its way is let finish first (within ``CLOSE_TIMEOUT_S``): cancelled once the server
        has taken it (while the client waits for the answer to DATA or QUIT), its entries would be
        kept and mailed a second time."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            try:
                if self._sending:
                    await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_S)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._pending:
            try:
                await asyncio.wait_for(self._send_pending(), CLOSE_TIMEOUT_S)
            except TimeoutError:
                log.warning("alert mail: %d entries not sent at shutdown (timeout)", len(self._pending))


# -- the service ------------------------------------------------------------------------------


@dataclass
class MailServices:
    """The running mail services. ``alerts`` (None when ``[smtp] alerts`` is off) is the hook the
    audit recorder passes critical entries to: ``alerts.notify(entry)``."""

    mailer: Mailer
    daily: DailyReportService | None
    alerts: AlertMailer | None

    async def close(self) -> None:
        if self.daily is not None:
            await self.daily.close()
        if self.alerts is not None:
            await self.alerts.close()


async def start_mail(
    bus: EventBus,
    settings: Settings,
    data_dir: Path,
    *,
    credentials: CredentialLoader | None = None,
    clock: WallClock = wall_ms,
    sleep: Sleep = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> MailServices | None:
    """Start the daily report schedule and the alert mailer that ``[smtp]`` enables; None (and
    a log line) when mail is off: no ``host`` or no recipient."""
    from amarktai_tui.locations import db_path

    smtp = settings.smtp
    if not smtp.host or not smtp.to:
        log.info("mail off: [smtp] %s not set", "host" if not smtp.host else "to")
        return None
    mailer = Mailer(smtp, credentials or vault_credentials(settings, data_dir))
    daily = None
    if smtp.daily_report_at:
        daily = DailyReportService(
            mailer,
            db_path(data_dir),
            parse_hhmm(smtp.daily_report_at),
            bus=bus,
            target=settings.reports.target_equity,
            quote=settings.general.quote_currency,
            clock=clock,
            sleep=sleep,
        )
        daily.start()
    alerts = None
    if smtp.alerts:
        alerts = AlertMailer(
            mailer,
            min_interval_s=smtp.alert_min_interval_s,
            batch_s=smtp.alert_batch_s,
            bus=bus,
            clock=monotonic,
            sleep=sleep,
            wall=clock,
        )
    log.info(
        "mail on: %s:%d to %s; daily report %s; alerts %s",
        smtp.host,
        smtp.port,
        ", ".join(smtp.to),
        f"at {smtp.daily_report_at} UTC" if daily else "off",
        "on" if alerts else "off",
    )
    return MailServices(mailer, daily, alerts)
