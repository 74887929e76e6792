"""``start_services`` as a whole, beside a real engine on a real SQLite ledger: the audit recorder,
daily backups, the loop-lag monitor and the mail service (alert mails to a real SMTP server on
loopback, the login read from a real keyring); closing leaves no task behind and sends nothing
twice; a service that fails to start stops those already started; ``amarktai --daemon`` as a
subprocess leaves its audit trail and its daily backup. The health server is off here (its own
tests cover it)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from services_helpers import (
    BTC_1H,
    PASSPHRASE,
    PASSWORD,
    TO,
    USER,
    Received,
    SmtpThread,
    audit_rows,
    count_rows,
    open_btc_engine,
    plain_body,
    save_smtp_login,
    settings_for,
    smtp_section,
    smtp_thread,
)

from amarktai_tui.engine.events import BackupCreated, ReportSent
from amarktai_tui.locations import db_path
from amarktai_tui.ops import backup, looplag, mailer
from amarktai_tui.ops.audit import recorder_for
from amarktai_tui.ops.backup import read_manifest
from amarktai_tui.ops.services import start_services
from amarktai_tui.vault.backend import PASSPHRASE_ENV

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
WAIT_S = 30  # a guard against a hang, not a wait
MIN_INTERVAL_S = 1.0
BATCH_S = 0.05


def new_tasks(before: set[asyncio.Task[Any]]) -> set[str]:
    """Names of the tasks of this loop started since ``before`` that have not ended."""
    return {t.get_name() for t in asyncio.all_tasks() - before if not t.done()}


@pytest.fixture
def smtp() -> Iterator[SmtpThread]:
    with smtp_thread() as server:
        yield server


@pytest.fixture
def keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)


async def test_a_halt_and_a_reset_are_audited_and_mailed_once_each(
    smtp: SmtpThread, keyring: None, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    smtp_cfg = smtp_section(
        smtp.port, alerts=True, alert_min_interval_s=MIN_INTERVAL_S, alert_batch_s=BATCH_S
    )
    settings = settings_for(tmp_path, smtp=smtp_cfg)
    engine = await open_btc_engine(settings, data)
    save_smtp_login(settings, data)
    sent: list[ReportSent] = []
    engine.bus.subscribe(ReportSent, sent.append)
    backed_up = asyncio.Event()
    engine.bus.subscribe(BackupCreated, lambda e: backed_up.set())

    before = asyncio.all_tasks()
    try:
        services = await start_services(engine, settings, data, headless=True)
        try:
            running = new_tasks(before)
            assert {"audit.writer", "daily-backups", "loop-lag", "daily report mail"} <= running
            assert recorder_for(engine) is not None and looplag.current() is not None
            await asyncio.wait_for(backed_up.wait(), WAIT_S)  # the daily backup, due since 00:00 UTC

            halt = await engine.halt("test", "user")
            assert halt is not None
            first = await smtp.next_message()
            reset = await engine.resume("checked", "user")  # while the first mail is (just) out
            assert reset is not None
            second = await smtp.next_message()
        finally:
            await services.close()
        assert new_tasks(before) == set()  # every service task ended
        assert recorder_for(engine) is None and looplag.current() is None
    finally:
        await engine.close()

    assert smtp.received.empty() and smtp.connections == 2  # nothing sent twice, nothing else sent
    for got in (first, second):
        assert got.login == (USER.encode(), PASSWORD.encode())  # the login came from the keyring
        assert got.mail_from == USER and got.rcpt_tos == TO
    assert first.message["Message-ID"] != second.message["Message-ID"]

    assert first.message["Subject"] == "Amarktai alert: 1 critical event (emergency stop triggered)"
    body = plain_body(first.message)
    assert "emergency_stop_triggered  actor user" in body and "test (by user)" in body
    assert "breaker_reset" not in body
    assert second.message["Subject"] == "Amarktai alert: 1 critical event (breaker reset)"
    assert "breaker_reset  actor user" in plain_body(second.message)
    assert "emergency_stop_triggered" not in plain_body(second.message)
    assert second.at - first.at >= MIN_INTERVAL_S  # the rate limit held the reset for the next mail

    assert [(e.period, e.recipients) for e in sent] == [("alert", tuple(TO))] * 2
    assert [e.subject for e in sent] == [first.message["Subject"], second.message["Subject"]]

    stop = audit_rows(data, "type = 'emergency_stop_triggered'")
    assert [(r["severity"], r["actor"], r["details"]["trip_id"]) for r in stop] == [
        ("critical", "user", halt.id)
    ]
    resets = audit_rows(data, "type = 'breaker_reset'")
    assert [(r["severity"], r["actor"], r["details"]["trip_id"], r["details"]["resumed_trading"]) for r in resets] \
        == [("critical", "user", halt.id, True)]  # fmt: skip
    alerts = audit_rows(data, "type = 'alert_sent'")
    assert [(r["severity"], r["details"]["subject"]) for r in alerts] == [("info", e.subject) for e in sent]
    [made] = audit_rows(data, "type = 'backup_created'")
    assert made["details"]["reason"] == "daily"
    [listed] = read_manifest(db_path(data).parent / "backups")
    assert (listed.reason, str(listed.path), listed.sha256) == (
        "daily",
        made["details"]["path"],
        made["details"]["sha256"],
    )
    bots = count_rows(data, "SELECT id, name FROM bots ORDER BY id")
    created = audit_rows(data, "type = 'bot_created'")
    assert len(bots) >= 1 and [(r["bot_id"], r["bot"]) for r in created] == bots


async def test_with_alerts_off_nothing_is_mailed_but_everything_is_audited(
    smtp: SmtpThread, keyring: None, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    smtp_cfg = smtp_section(smtp.port, alerts=False, alert_min_interval_s=0.0, alert_batch_s=0.0)
    settings = settings_for(tmp_path, smtp=smtp_cfg)
    engine = await open_btc_engine(settings, data)
    sent: list[ReportSent] = []
    engine.bus.subscribe(ReportSent, sent.append)
    before = asyncio.all_tasks()
    try:
        services = await start_services(engine, settings, data, headless=True)
        try:
            assert "daily report mail" in new_tasks(before)  # mail is on: the daily report only
            halt = await engine.halt("test", "user")
            assert halt is not None
            assert await engine.resume("checked", "user") is not None
        finally:
            await services.close()  # an alert still waiting would be sent here
        assert new_tasks(before) == set()
    finally:
        await engine.close()

    assert smtp.connections == 0 and smtp.received.empty() and sent == []
    kinds = [r["type"] for r in audit_rows(data, "severity = 'critical'")]
    assert kinds == ["emergency_stop_triggered", "breaker_reset"]
    assert audit_rows(data, "type = 'alert_sent'") == []


@pytest.mark.parametrize(
    ("module", "name"),
    [(backup, "start_daily_backups"), (looplag, "start_monitor"), (mailer, "start_mail")],
    ids=["daily-backups", "loop-lag", "mail"],
)
async def test_a_service_that_fails_to_start_stops_the_others_and_raises(
    module: Any, name: str, smtp: SmtpThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    settings = settings_for(tmp_path, smtp=smtp_section(smtp.port, alerts=True))
    engine = await open_btc_engine(settings, data)
    started: list[str] = []

    def fail(*args: Any, **kwargs: Any) -> Any:
        started.extend(new_tasks(before))  # what ran before this one
        raise RuntimeError(f"{name} cannot start")

    monkeypatch.setattr(module, name, fail)
    before = asyncio.all_tasks()
    try:
        with pytest.raises(RuntimeError, match=f"^{name} cannot start$"):
            await start_services(engine, settings, data, headless=True)
        assert new_tasks(before) == set()
        assert recorder_for(engine) is None and looplag.current() is None
    finally:
        await engine.close()
    assert "audit.writer" in started  # the audit log was running and was stopped
    assert ("loop-lag" in started) is (name == "start_mail")
    assert ("daily-backups" in started) is (name != "start_daily_backups")
    assert smtp.connections == 0


async def test_closing_while_an_alert_mail_is_on_its_way_sends_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def login() -> mailer.Credentials:  # the first test reads it from the keyring (slow on purpose)
        return USER, PASSWORD

    monkeypatch.setattr(mailer, "vault_credentials", lambda settings, data_dir: login)
    data = tmp_path / "data"
    with smtp_thread(quit_delay_s=1.0) as slow:  # the message is taken; QUIT is answered a second later
        smtp_cfg = smtp_section(
            slow.port, alerts=True, alert_min_interval_s=0.0, alert_batch_s=0.0, daily_report_at=""
        )
        settings = settings_for(tmp_path, smtp=smtp_cfg)
        engine = await open_btc_engine(settings, data)
        sent: list[ReportSent] = []
        engine.bus.subscribe(ReportSent, sent.append)
        before = asyncio.all_tasks()
        try:
            services = await start_services(engine, settings, data, headless=True)
            try:
                await engine.halt("test", "user")
                got: Received = await slow.next_message()
                await slow.next_quit()  # the message is taken: the client waits for QUIT's answer
            finally:
                await services.close()
            assert new_tasks(before) == set()
        finally:
            await engine.close()
        assert slow.received.empty() and slow.connections == 1  # not sent again at close
    assert got.message["Subject"] == "Amarktai alert: 1 critical event (emergency stop triggered)"
    assert [e.subject for e in sent] == [got.message["Subject"]]
    assert [r["details"]["subject"] for r in audit_rows(data, "type = 'alert_sent'")] == [
        got.message["Subject"]
    ]


def test_the_daemon_leaves_an_audit_trail_and_a_daily_backup(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "AMARKTAI_HEALTH__ENABLED": "false", "AMARKTAI_BACKUP__DAILY_AT": "00:00"}
    cmd = [sys.executable, "-c", "from amarktai_tui.cli import main; main()", "--daemon",
           "--replay", str(BTC_1H), "--speed", "0", "--until-end", "--data-dir", str(data)]  # fmt: skip
    done = subprocess.run(
        cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr

    fills = count_rows(data, "SELECT client_order_id, bot_id, side, quantity, price FROM fills ORDER BY id")
    trades = audit_rows(data, "type = 'paper_trade_executed'")
    assert len(fills) > 10
    assert sorted(fills) == sorted(
        (t["details"]["client_order_id"], t["bot_id"], t["details"]["side"], t["details"]["quantity"],
         t["details"]["price"]) for t in trades
    )  # fmt: skip
    assert audit_rows(data, "type = 'live_trade_executed'") == []

    manifest = json.loads((data / "backups" / "manifest.json").read_text())
    [entry] = manifest["backups"]
    assert entry["reason"] == "daily" and (data / "backups" / entry["file"]).is_file()
    [listed] = read_manifest(data / "backups")
    assert listed.sha256 == backup.sha256_file(listed.path)
