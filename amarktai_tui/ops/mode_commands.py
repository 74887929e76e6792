"""``amarktai mode [paper|live]``: show the account's trading mode, or switch it (``ops.mode``).

- ``amarktai mode [--json]``: the mode in force and its last switch.
- ``amarktai mode live [--confirm PHRASE] [--totp CODE] [--reason TEXT]``: runs the doctor
  (every check printed), then asks for the phrase ``CONFIRM_LIVE_TRADING`` (on a terminal;
  else ``--confirm``), then a TOTP code when TOTP is enabled. Refused while an engine runs.
- ``amarktai mode paper [--reason TEXT]``: immediate. A running engine is told over its
  control socket: it records the switch and stops, so no further live order leaves.

Exit codes: 0 switched (or already in that mode), 1 refused by a check or the engine,
2 bad usage (a wrong or missing phrase or TOTP code).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any, TextIO

from amarktai_tui.config import Settings
from amarktai_tui.domain.enums import TradingMode
from amarktai_tui.locations import db_path
from amarktai_tui.ops.mode import (
    CONFIRM_PHRASE,
    ModeSwitchRefused,
    current_mode,
    live_bot_count,
    switch_mode,
)


def run_mode(
    args: argparse.Namespace, settings: Settings, data_dir: Path, stdin: TextIO | None = None
) -> int:
    """Run ``amarktai mode``; returns the exit code (module doc)."""
    stdin = sys.stdin if stdin is None else stdin
    target = args.target
    try:
        if target is None:
            return _show(data_dir, as_json=args.json)
        if target == TradingMode.PAPER.value:
            return _to_paper(settings, data_dir, args)
        return _to_live(settings, data_dir, args, stdin)
    except sqlite3.Error as exc:
        print(f"amarktai mode: ledger in {data_dir} unusable: {exc}", file=sys.stderr)
        return 1


def _show(data_dir: Path, *, as_json: bool) -> int:
    mode = current_mode(data_dir)
    last = _last_switch(data_dir)
    if as_json:
        json.dump({"mode": mode.value, "last_switch": last}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif last is None:
        print(f"{mode.value} (never switched)")
    else:
        print(
            f"{mode.value} (since {last['ts']} ms UTC, by {last['actor']}: {last['reason'] or 'no reason'})"
        )
    return 0


def _last_switch(data_dir: Path) -> dict[str, Any] | None:
    path = db_path(data_dir)
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='mode_switches'").fetchone():
            return None
        row = conn.execute(
            "SELECT ts, from_mode, to_mode, actor, reason FROM mode_switches ORDER BY id DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    return {"ts": row[0], "from": row[1], "to": row[2], "actor": row[3], "reason": row[4]}


def _to_paper(settings: Settings, data_dir: Path, args: argparse.Namespace) -> int:
    from amarktai_tui.ops.doctor import engine_running

    reason = args.reason or "switched to paper"
    if engine_running(data_dir):
        from amarktai_tui.ops.control import ControlError, send_command, socket_path

        try:
            reply = send_command(socket_path(data_dir), {"cmd": "mode", "mode": "paper", "reason": reason})
        except ControlError as exc:
            print(f"amarktai mode paper: {exc}", file=sys.stderr)
            return 1
        if not reply.get("ok"):
            print(f"amarktai mode paper: {reply.get('error')}", file=sys.stderr)
            return 1
        if reply.get("changed"):
            print("paper: recorded; the live engine stopped (start it again to trade on paper)")
        else:
            print("paper: already in paper mode")
        return 0
    try:
        done = asyncio.run(switch_mode(settings, data_dir, TradingMode.PAPER, reason=reason))
    except ModeSwitchRefused as exc:
        print(f"amarktai mode paper: {exc}", file=sys.stderr)
        return 1
    print("paper: already in paper mode" if done is None else "paper: switched (live trading is off)")
    return 0


def _to_live(settings: Settings, data_dir: Path, args: argparse.Namespace, stdin: TextIO) -> int:
    from amarktai_tui.ops.doctor import doctor_ok, engine_running, run_doctor
    from amarktai_tui.ops.totp_commands import ask_code
    from amarktai_tui.vault.totp import TotpGate

    if current_mode(data_dir) is TradingMode.LIVE:
        print("live: already in live mode")
        return 0
    if engine_running(data_dir):
        print(
            "amarktai mode live: an engine is running on this data dir: stop it, switch, then start it"
            " (live trading starts only after the start-up reconciliation)",
            file=sys.stderr,
        )
        return 1
    if not live_bot_count(data_dir):  # allowed, but the live start will refuse until one is promoted
        print(
            "amarktai mode live: warning: no bot is at stage live yet: a live start refuses until one is"
            " promoted (`amarktai bots promote NAME`)",
            file=sys.stderr,
        )
    checks = asyncio.run(run_doctor(settings, data_dir))
    for c in checks:
        print(c.line())
    if not doctor_ok(checks):
        print("amarktai mode live: refused: the readiness checks above must all pass", file=sys.stderr)
        return 1
    phrase = args.confirm
    if phrase is None and stdin.isatty():
        print(
            f"Live trading uses real money. Type {CONFIRM_PHRASE} to go on: ",
            end="",
            file=sys.stderr,
            flush=True,
        )
        phrase = stdin.readline().strip()
    if phrase != CONFIRM_PHRASE:
        print(
            f"amarktai mode live: refused: type {CONFIRM_PHRASE} exactly (or --confirm {CONFIRM_PHRASE})",
            file=sys.stderr,
        )
        return 2
    gate = TotpGate(settings, data_dir)
    code = ask_code(args.totp, gate.needed, stdin)
    try:
        asyncio.run(
            switch_mode(
                settings,
                data_dir,
                TradingMode.LIVE,
                reason=args.reason or "switched to live",
                phrase=phrase,
                totp_code=code,
            )
        )
    except ModeSwitchRefused as exc:
        print(f"amarktai mode live: refused: {exc}", file=sys.stderr)
        return 2 if exc.usage else 1
    print("live: switched; the next engine start trades the bots at stage live with real money")
    return 0
