"""``amarktai audit``: list the audit log's entries, or write its compliance report for a date range.

- ``amarktai audit [--since WHEN] [--until WHEN] [--type T[,T]]... [--severity S[,S]]...
  [--bot NAME_OR_ID] [--limit N] [--json]``: the newest ``N`` matching entries (default 100, 0 =
  all), newest first; ``--json`` prints a JSON list of entries (``ops.audit_store.AuditRow.to_json``:
  ``id``, ``ts`` ms UTC, ``time`` ISO UTC, ``type``, ``severity``, ``actor``, ``bot_id``, ``bot``,
  ``details``) and nothing else.
- ``amarktai audit report --from DATE --to DATE [--format md|html|csv|json] [--json] [--output FILE]``:
  the compliance report (``ops.audit_report``) on stdout or into FILE.

``WHEN``/``DATE``: an ISO 8601 date (``2024-05-01``) or date-time (``2024-05-01T12:30``,
``2024-05-01 12:30:00``, ``...Z`` or with an offset); without an offset it is UTC. A start includes
its moment; an end is exclusive, and an end given as a date includes that whole day. Both read the
ledger read-only, so they work while an engine runs. Exit codes: 0 ok, 1 no ledger or an unreadable
one or an unwritable FILE, 2 bad usage (a bad time, type or severity, an empty range): one line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from amarktai_tui.config import Settings
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.locations import db_path
from amarktai_tui.ops.audit import AUDIT_TYPES, Severity
from amarktai_tui.ops.audit_report import build_report, details_text, to_html, to_json, to_markdown, write_csv
from amarktai_tui.ops.audit_store import AuditFilter, AuditRow, query

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DETAIL_WIDTH = 60
"""Characters of each detail value in the text listing (``--json`` has them whole)."""


class AuditUsageError(ValueError):
    """Bad usage of ``amarktai audit``: the message names the flag, one line (exit 2)."""


def parse_when(flag: str, text: str, *, end: bool = False) -> int:
    """An ISO date or date-time (UTC unless it has an offset) as ms UTC; an ``end`` date means the next
    midnight (the whole day included). Raises AuditUsageError naming ``flag``."""
    text = text.strip()
    try:
        if _DATE.fullmatch(text):
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            when = day + timedelta(days=1) if end else day
        else:
            when = datetime.fromisoformat(text)
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except ValueError:
        raise AuditUsageError(
            f"{flag}: expected an ISO date or date-time in UTC (2024-05-01 or 2024-05-01T12:30), got {text!r}"
        ) from None
    return int(when.timestamp() * 1000)


def _listed(values: list[str] | None) -> list[str]:
    return [v.strip() for raw in values or () for v in raw.split(",") if v.strip()]


def parse_filter(args: argparse.Namespace) -> AuditFilter:
    """The filter of ``amarktai audit``'s flags. Raises AuditUsageError."""
    since = parse_when("--since", args.since) if args.since else None
    until = parse_when("--until", args.until, end=True) if args.until else None
    if since is not None and until is not None and since >= until:
        raise AuditUsageError(f"--since ({args.since}) must be before --until ({args.until})")
    types = _listed(args.type)
    unknown = [t for t in types if t not in AUDIT_TYPES]
    if unknown:
        raise AuditUsageError(
            f"--type: unknown type {unknown[0]!r}; expected one of {', '.join(AUDIT_TYPES)}"
        )
    sevs = _listed(args.severity)
    bad = [s for s in sevs if s not in tuple(Severity)]
    if bad:
        raise AuditUsageError(f"--severity: expected info, warning or critical, got {bad[0]!r}")
    bot = args.bot.strip() if args.bot else None
    if args.bot is not None and not bot:
        raise AuditUsageError("--bot must not be empty")
    return AuditFilter(since, until, tuple(dict.fromkeys(types)), tuple(Severity(s) for s in dict.fromkeys(sevs)),
                       bot, args.limit)  # fmt: skip


def run_audit(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """Run ``amarktai audit [report]``; returns the exit code (module doc)."""
    report = getattr(args, "audit_command", None) == "report"
    try:
        if report:
            start = parse_when("--from", args.date_from)
            end = parse_when("--to", args.date_to, end=True)
            if start >= end:
                raise AuditUsageError(f"--from ({args.date_from}) must be before --to ({args.date_to})")
            fmt = "json" if args.json else args.format
        else:
            f = parse_filter(args)
    except AuditUsageError as exc:
        print(f"amarktai audit{' report' if report else ''}: {exc}", file=sys.stderr)
        return 2
    try:
        conn = connect_readonly(str(db_path(data_dir)))
    except FileNotFoundError as exc:
        print(f"amarktai: {exc}", file=sys.stderr)
        return 1
    try:
        if report:
            return _report(conn, start, end, fmt, args.output)
        return _list(query(conn, f), as_json=args.json)
    except sqlite3.DatabaseError as exc:
        print(f"amarktai: ledger {db_path(data_dir)} unreadable: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()


def _list(rows: list[AuditRow], *, as_json: bool) -> int:
    if as_json:
        json.dump([r.to_json() for r in rows], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    print(f"{'TIME (UTC)':<19}  {'SEVERITY':<8}  {'TYPE':<24}  {'ACTOR':<9}  {'BOT':<14}  DETAILS")
    for r in rows:
        e = r.entry
        when = datetime.fromtimestamp(e.ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        line = f"{when:<19}  {e.severity.value:<8}  {e.type:<24}  {e.actor:<9}  {e.bot or '-':<14}  "
        print((line + details_text(e.details, width=DETAIL_WIDTH)).rstrip())
    if not rows:
        print("(no entries)")
    return 0


def _report(conn: sqlite3.Connection, start: int, end: int, fmt: str, output: Path | None) -> int:
    if fmt == "csv":
        buf = io.StringIO()
        write_csv(conn, start, end, buf)
        text = buf.getvalue()
    else:
        rep = build_report(conn, start, end, int(time.time() * 1000))
        if fmt == "json":
            text = json.dumps(to_json(rep), indent=2, default=str) + "\n"
        else:
            text = to_html(rep) if fmt == "html" else to_markdown(rep)
    if output is None:
        sys.stdout.write(text)
        return 0
    tmp = output.with_name(f".{output.name}.tmp")
    try:  # whole or not at all: a failed write never leaves half a report
        tmp.write_text(text, encoding="utf-8", newline="")
        os.replace(tmp, output)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        print(f"amarktai audit report: --output {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"audit report ({fmt}) written to {output}", file=sys.stderr)
    return 0
