"""``amarktai audit`` and ``amarktai audit report`` on a real ledger; the CLI's own audit entries
(``keys set|delete``, ``mode paper``) with no engine running and with one running, as real
subprocesses against a real Secret Service."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from vault.vault_helpers import amarktai, amarktai_async, files_containing, one_line

from amarktai_tui.cli import run
from amarktai_tui.config import load_settings
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.locations import db_path, lock_path
from amarktai_tui.ops import audit_store
from amarktai_tui.ops.audit import AuditEntry, Severity, start_audit
from amarktai_tui.ops.control import serve_control, socket_path, stop_control
from amarktai_tui.ops.lock import EngineLock

BTC_1H = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance" / "BTC_USDT-1h.json"
KEY, SECRET = "auditKEY-0000-1111-f3a9", "auditSECRET-2222-3333-4444"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


E: list[AuditEntry] = [
    AuditEntry(ms("2024-05-01T10:00:00"), "bot_created", Severity.INFO, "engine", 1, "btc-ema", {}),
    AuditEntry(ms("2024-05-01T11:00:00"), "paper_trade_executed", Severity.INFO, "engine", 1, "btc-ema",
               {"side": "buy", "price": "30000.5"}),
    AuditEntry(ms("2024-05-02T00:00:00"), "breaker_tripped", Severity.CRITICAL, "engine", 2, "eth-rsi",
               {"breaker": "bot_drawdown", "message": "<b>x</b> | pipe"}),
    AuditEntry(ms("2024-05-02T12:00:00"), "system_mode_changed", Severity.CRITICAL, "cli", None, None,
               {"from": "paper", "to": "live"}),
    AuditEntry(ms("2024-05-02T23:59:59.999"), "api_key_added", Severity.CRITICAL, "cli", None, None,
               {"provider": "binance", "masked": "••••f3a9"}),
    AuditEntry(ms("2024-05-03T00:00:00"), "ai_action_refused", Severity.WARNING, "user", None, None,
               {"tool": "halt", "detail": "wrong word"}),
    AuditEntry(ms("2024-05-03T08:00:00"), "emergency_stop_triggered", Severity.CRITICAL, "user", None, None,
               {"trip_id": 4}),
    AuditEntry(ms("2024-05-03T09:00:00"), "breaker_reset", Severity.CRITICAL, "user", None, None,
               {"trip_id": 4, "reason": "checked"}),
    AuditEntry(ms("2024-05-04T00:00:00"), "paper_trade_executed", Severity.INFO, "engine", 2, "eth-rsi",
               {"side": "sell"}),
]  # fmt: skip


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A ledger holding the entries ``E`` (written in a shuffled order: the listing sorts by time)."""
    d = tmp_path / "data"
    d.mkdir()
    audit_store.write(db_path(d), [*E[4:], *E[:4]])
    return d


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def listed(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> list[dict[str, Any]]:
    code, out, err = cli(capsys, "audit", "--json", "--data-dir", data, *args)
    assert code == 0, err
    return list(json.loads(out))


def which(rows: list[dict[str, Any]]) -> list[int]:
    """Indices into ``E`` of the listed entries."""
    return [next(i for i, e in enumerate(E) if e.ts == r["ts"] and e.type == r["type"]) for r in rows]


def test_audit_json_lists_newest_first_with_every_field(
    capsys: pytest.CaptureFixture[str], data: Path
) -> None:
    rows = listed(capsys, data)
    assert which(rows) == [8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert set(rows[0]) == {"id", "ts", "time", "type", "severity", "actor", "bot_id", "bot", "details"}
    assert rows[4]["time"] == "2024-05-02T23:59:59.999Z" and rows[4]["details"]["masked"] == "••••f3a9"
    assert which(listed(capsys, data, "--limit", "2")) == [8, 7]


def test_audit_filters(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    both = ["--type", "breaker_tripped,breaker_reset", "--type", "emergency_stop_triggered"]
    assert which(listed(capsys, data, *both)) == [7, 6, 2]
    # an --until date includes that whole day; --since is inclusive
    day = ["--severity", "critical", "--since", "2024-05-02", "--until", "2024-05-02"]
    assert which(listed(capsys, data, *day)) == [4, 3, 2]
    assert which(listed(capsys, data, "--since", "2024-05-02T12:00", "--until", "2024-05-03T08:00Z")) == [
        5,
        4,
        3,
    ]
    assert which(listed(capsys, data, "--since", "2024-05-03T10:00:00+02:00")) == [8, 7, 6]  # 08:00 UTC
    assert which(listed(capsys, data, "--severity", "warning,info")) == [8, 5, 1, 0]
    assert which(listed(capsys, data, "--bot", "btc-ema")) == [1, 0]
    assert which(listed(capsys, data, "--bot", "2")) == [8, 2]
    assert listed(capsys, data, "--type", "bot_deleted") == []


def test_audit_text_listing(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    code, out, _ = cli(capsys, "audit", "--data-dir", data, "--type", "breaker_tripped")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["TIME", "(UTC)", "SEVERITY"]
    assert re.match(r"2024-05-02 00:00:00\s+critical\s+breaker_tripped\s+engine\s+eth-rsi\s+breaker=bot_drawdown",
                    lines[1])  # fmt: skip
    assert len(lines) == 2
    code, out, _ = cli(capsys, "audit", "--data-dir", data, "--since", "2030-01-01")
    assert (code, out.splitlines()[-1]) == (0, "(no entries)")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "2024-13-01"], "--since: expected an ISO date or date-time"),
        (["--until", "yesterday"], "--until: expected an ISO date"),
        (["--type", "breaker_tripped,nope"], "--type: unknown type 'nope'; expected one of bot_created"),
        (["--severity", "loud"], "--severity: expected info, warning or critical, got 'loud'"),
        (["--since", "2024-05-03", "--until", "2024-05-02"], "--since (2024-05-03) must be before --until"),
        (["--limit", "-1"], "--limit: expected a whole number >= 0"),
        (["report", "--from", "2024-05-02", "--to", "2024-05-01"], "--from (2024-05-02) must be before --to"),
        (["report", "--from", "May 1", "--to", "2024-05-01"], "--from: expected an ISO date"),
        (["report", "--to", "2024-05-01"], "the following arguments are required: --from"),
        (
            ["report", "--from", "2024-05-01", "--to", "2024-05-02", "--format", "pdf"],
            "invalid choice: 'pdf'",
        ),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], data: Path, args: list[str], says: str
) -> None:
    code, out, err = cli(capsys, "audit", "--data-dir", data, *args)
    assert (code, out) == (2, "")
    assert one_line(err) and says in err, err


def test_no_ledger_is_a_runtime_failure(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = cli(capsys, "audit", "--json", "--data-dir", tmp_path / "none")
    assert (code, out) == (1, "") and one_line(err) and "no ledger at" in err


def test_an_older_ledger_without_the_audit_table_reads_as_empty(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    conn = sqlite3.connect(db_path(tmp_path))
    conn.execute("CREATE TABLE bots (id INTEGER PRIMARY KEY)")
    conn.execute("PRAGMA user_version=5")
    conn.close()
    assert listed(capsys, tmp_path) == []


# -- the compliance report -------------------------------------------------------------------------

RANGE = ["--from", "2024-05-02", "--to", "2024-05-03"]  # E[2] .. E[7]


def report(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> str:
    code, out, err = cli(capsys, "audit", "report", "--data-dir", data, *RANGE, *args)
    assert code == 0, err
    return out


def test_report_json_counts_and_sections(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    rep = json.loads(report(capsys, data, "--json"))
    assert (rep["from"], rep["to"], rep["total"]) == (
        "2024-05-02T00:00:00.000Z",
        "2024-05-04T00:00:00.000Z",
        6,
    )
    assert rep["by_severity"] == {"info": 0, "warning": 1, "critical": 5}
    assert {k: v for k, v in rep["by_type"].items() if v} == {
        "breaker_tripped": 1, "system_mode_changed": 1, "api_key_added": 1, "ai_action_refused": 1,
        "emergency_stop_triggered": 1, "breaker_reset": 1,
    }  # fmt: skip
    assert [r["type"] for r in rep["critical"]] == [E[i].type for i in (2, 3, 4, 6, 7)]  # oldest first
    assert [r["type"] for r in rep["mode_changes"]] == ["system_mode_changed"]
    assert [r["details"]["provider"] for r in rep["key_changes"]] == ["binance"]
    assert [r["type"] for r in rep["breakers"]] == [
        "breaker_tripped",
        "emergency_stop_triggered",
        "breaker_reset",
    ]
    assert [r["details"]["tool"] for r in rep["ai_actions"]] == ["halt"]


def test_report_markdown(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    md = report(capsys, data, "--format", "md")
    assert md.startswith("# Audit compliance report\n")
    assert (
        "| critical | 5 |" in md and "| breaker_tripped | 1 |" in md and "| paper_trade_executed | 0 |" in md
    )
    assert "## Critical entries (5)" in md and "## Mode changes (1)" in md and "## AI actions (1)" in md
    assert "<b>x</b> \\| pipe" in md  # a pipe in a detail cannot break the table
    assert "btc-ema" not in md  # outside the range


def test_report_html_is_self_contained_and_escaped(
    capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.html"
    code, stdout, err = cli(
        capsys, "audit", "report", "--data-dir", data, *RANGE, "--format", "html", "--output", out
    )
    assert (code, stdout) == (0, "") and f"written to {out}" in err
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and not re.search(r"(src|href)\s*=", page) and "<style>" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert page.count('<tr class="critical">') == 5 + 1 + 1 + 3  # critical list, mode, key, breakers
    code, _, err = cli(
        capsys, "audit", "report", "--data-dir", data, *RANGE, "--output", tmp_path / "no" / "r.md"
    )
    assert code == 1 and one_line(err) and not (tmp_path / "no").exists()


def test_report_csv_one_row_per_entry(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(report(capsys, data, "--format", "csv"))))
    assert [r["type"] for r in rows] == [E[i].type for i in range(2, 8)]
    assert list(rows[0]) == ["id", "ts", "time_utc", "type", "severity", "actor", "bot_id", "bot", "details"]
    assert (rows[0]["bot_id"], rows[0]["bot"], rows[1]["bot_id"]) == ("2", "eth-rsi", "")
    assert json.loads(rows[0]["details"]) == E[2].details
    assert [int(r["ts"]) for r in rows] == [E[i].ts for i in range(2, 8)]


# -- the CLI's own entries ---------------------------------------------------------------------


def audit_rows(data: Path, where: str) -> list[dict[str, Any]]:
    conn = connect_readonly(str(db_path(data)))
    try:
        return [{**dict(r), "details": json.loads(r["details"])} for r in
                conn.execute(f"SELECT * FROM audit_log WHERE {where} ORDER BY id")]  # fmt: skip
    finally:
        conn.close()


def test_keys_set_and_delete_without_an_engine_are_critical_entries(
    secret_service: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    r = amarktai("keys", "set", "binance", "--data-dir", data, stdin=f"{KEY}\n{SECRET}\n")
    assert r.code == 0 and r.stderr == "", r.stderr
    r = amarktai("keys", "delete", "binance", "--data-dir", data)
    assert r.code == 0 and r.stderr == "", r.stderr
    rows = audit_rows(data, "type LIKE 'api_key%'")
    assert [(x["type"], x["severity"], x["actor"], x["details"]) for x in rows] == [
        ("api_key_added", "critical", "cli", {"provider": "binance", "masked": "••••f3a9"}),
        ("api_key_deleted", "critical", "cli", {"provider": "binance", "found": True}),
    ]
    assert files_containing(data, [KEY, SECRET]) == []


def test_mode_paper_with_no_engine_is_a_critical_entry(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    conn = audit_store.connect(db_path(data))
    conn.execute(
        "INSERT INTO mode_switches (ts, from_mode, to_mode, actor, reason) VALUES (1, 'paper', 'live', 'cli', 'x')"
    )
    conn.close()
    r = amarktai("mode", "paper", "--reason", "done for today", "--data-dir", data)
    assert r.code == 0, r.stderr
    [row] = audit_rows(data, "type = 'system_mode_changed'")
    assert (row["severity"], row["actor"], row["details"]) == (
        "critical",
        "cli",
        {"from": "live", "to": "paper", "reason": "done for today"},
    )


async def test_keys_set_while_an_engine_runs_is_recorded_by_it_and_readable(
    secret_service: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = load_settings(None)
    with EngineLock(lock_path(data)):  # as a daemon or the TUI holds it
        engine, _feed = await open_engine(settings, data, ReplayArgs([str(BTC_1H)], speed=0, until_end=True))
        recorder = await start_audit(engine, settings, data)
        seen: list[AuditEntry] = []
        recorder.subscribe(seen.append)
        server = await serve_control(engine, socket_path(data))
        try:
            r = await amarktai_async("keys", "set", "binance", "--data-dir", data, stdin=f"{KEY}\n{SECRET}\n")
            assert r.code == 0 and r.stderr == "", r.stderr
            assert [e.type for e in seen] == ["api_key_added"]  # the engine's recorder took it
            r = await amarktai_async("audit", "--json", "--type", "api_key_added", "--data-dir", data)
            assert r.code == 0, r.stderr  # a reader while the engine runs
            [row] = json.loads(r.stdout)
            assert (row["severity"], row["actor"], row["details"]) == (
                "critical",
                "cli",
                {"provider": "binance", "masked": "••••f3a9"},
            )
        finally:
            await stop_control(server)
            await recorder.close()
            await engine.close()
    assert files_containing(data, [KEY, SECRET]) == []
