"""The subcommands: status, ledger verify|export, report, breakers (reads); halt, resume, breakers reset.

Read commands open the ledger read-only (a running engine keeps writing; WAL
lets both work) and print only their result on stdout. The write commands
(``ops.risk_commands``) go through the running engine, or record offline.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from amarktai_tui.config import Settings
from amarktai_tui.ledger.reader import LedgerDataError
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.locations import db_path, lock_path


def dispatch(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """Run the subcommand named in ``args``; return the exit code."""
    if args.command in ("halt", "resume") or (
        args.command == "breakers" and args.breakers_command == "reset"
    ):
        from amarktai_tui.ops.risk_commands import write_command

        return write_command(args, data_dir, settings=settings)
    try:
        conn = connect_readonly(str(db_path(data_dir)))
    except FileNotFoundError as exc:
        print(f"amarktai: {exc}", file=sys.stderr)
        return 1
    try:
        if args.command == "status":
            return _status(conn, data_dir, as_json=args.json)
        if args.command == "ledger" and args.ledger_command == "verify":
            return _verify(conn, as_json=args.json)
        if args.command == "ledger" and args.ledger_command == "export":
            return _export(conn, args.format)
        if args.command == "report":
            return _report(conn, args, settings, data_dir)
        if args.command == "breakers":
            from amarktai_tui.ops.risk_commands import show_breakers

            return show_breakers(
                conn, engine_running=_engine_running(data_dir), as_json=args.json, limit=args.limit
            )
    except LedgerDataError as exc:
        print(f"amarktai: ledger {db_path(data_dir)}: {exc}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as exc:
        print(f"amarktai: ledger {db_path(data_dir)} unreadable: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(f"amarktai: unknown command {args.command!r}", file=sys.stderr)
    return 2


def ledger_now_ms(conn: sqlite3.Connection) -> int:
    """Ledger time: the newest snapshot or fill (a replay's simulated clock), else the wall clock."""
    row = conn.execute(
        "SELECT MAX(t) FROM (SELECT MAX(ts) AS t FROM equity_snapshots UNION ALL SELECT MAX(ts) FROM fills)"
    ).fetchone()
    if row and row[0]:
        return int(row[0])
    import time

    return int(time.time() * 1000)


def _engine_running(data_dir: Path) -> bool:
    from amarktai_tui.ops.lock import is_held

    return is_held(lock_path(data_dir))


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _status(conn: sqlite3.Connection, data_dir: Path, *, as_json: bool) -> int:
    from amarktai_tui.ledger.report import status_report

    rep = status_report(conn, ledger_now_ms(conn))
    rep["engine_running"] = _engine_running(data_dir)
    rep["data_dir"] = str(data_dir)
    if as_json:
        _print_json(rep)
        return 0
    print(
        f"mode {rep.get('mode')}  engine {'running' if rep['engine_running'] else 'stopped'}  data {data_dir}"
    )
    for k in ("equity", "realised", "unrealised", "fees"):
        if k in rep:
            print(f"{k:>11}: {rep[k]}")
    for b in rep.get("bots", []):
        print(f"  {b.get('name', '?'):<20} {b.get('state', '?'):<8} {b.get('pair', '')}")
    return 0


def _verify(conn: sqlite3.Connection, *, as_json: bool) -> int:
    from amarktai_tui.ledger.verify import verify

    res = verify(conn)
    if as_json:
        _print_json({"ok": res.ok, "checks": res.checks, "first_discrepancy": res.first_discrepancy})
    elif res.ok:
        print(f"ledger consistent: {res.checks} checks passed")
    else:
        print(f"ledger INCONSISTENT: {res.first_discrepancy}")
    return 0 if res.ok else 1


def _export(conn: sqlite3.Connection, fmt: str) -> int:
    from amarktai_tui.ledger import export

    rows = export.export_rows(conn)
    if fmt == "csv":
        export.write_csv(rows, sys.stdout)
    else:
        export.write_json(rows, sys.stdout)
    return 0


def _report_target(args: argparse.Namespace) -> Path | None:
    """Where ``--md FILE`` / ``--html FILE`` goes (None = stdout); checked before the ledger is read."""
    value = args.html if args.html is not None else args.md
    if value is None or value == "-":
        return None
    flag = "--html" if args.html is not None else "--md"
    if value in ("daily", "weekly", "monthly"):
        raise ValueError(f"{flag} {value}: put the period before {flag} (or name a file like {value}.md)")
    path = Path(value)
    if path.is_dir():
        raise ValueError(f"{flag} {value}: is a directory")
    if not path.parent.is_dir():
        raise ValueError(f"{flag} {value}: directory {path.parent} does not exist")
    return path


def _report(conn: sqlite3.Connection, args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """``report [daily|weekly|monthly] [--json | --md [FILE] | --html FILE]`` (Markdown by default).

    The period is the one containing now: the wall clock while an engine runs, else the ledger's
    latest time (a replay's or a stopped account's). A file is written whole or not at all.
    """
    import os
    import tempfile
    import time

    from amarktai_tui.ops import reports

    try:
        target = _report_target(args)
    except ValueError as exc:
        print(f"amarktai report: {exc}", file=sys.stderr)
        return 2
    now = int(time.time() * 1000) if _engine_running(data_dir) else ledger_now_ms(conn)
    rep = reports.build_report(
        conn,
        args.period,
        now,
        target=settings.reports.target_equity,
        default_quote=settings.general.quote_currency,
    )
    if args.json:
        _print_json(reports.to_json(rep))
        return 0
    text = reports.to_html(rep) if args.html is not None else reports.to_markdown(rep)
    if target is None:
        sys.stdout.write(text)
        return 0
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        print(f"amarktai report: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"report written to {target}", file=sys.stderr)
    return 0
    for k, v in rep.items():
        if k != "bots":
            print(f"{k:>16}: {v}")
    return 0
