"""The account trading mode, paper or live: read it, and switch it behind the readiness gate.

Rules (issue 5):
- The mode is the newest row of ``mode_switches`` (append-only: every switch
  is audited with who, when, why and, for live, the doctor's checks). No row
  means paper. Nothing else sets it: ``[general] mode = "live"`` in the config
  file or ``AMARKTAI_GENERAL__MODE=live`` is refused (``config.py``), and the
  AI console has no tool that reaches this module.
- Switching to live needs, in this order: every doctor check passing
  (``ops.doctor.run_doctor``), the typed phrase ``CONFIRM_LIVE_TRADING``
  exactly, and a current TOTP code when TOTP is enabled (``vault.totp``).
- Switching to paper is immediate and needs nothing.
- Live trading starts only when an engine starts (after it reconciled with the
  exchanges: ``engine.live_setup``), so the switch to live is refused while an
  engine runs on the data dir: stop it, switch, start it. The switch to paper
  reaches a running engine over the control socket; the engine records it and
  stops at once, so no further live order leaves (``ops.control``).

Exclusive mode: a live session runs only the bots at stage ``live`` on the
exchanges; the other bots wait and go on training on paper when the account is
back in paper mode (freqtrade's model of one mode per running bot process: no
paper order can ever reach an exchange, no real position is ever managed by
the paper broker).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from amarktai_tui.config import Settings
from amarktai_tui.domain.enums import TradingMode
from amarktai_tui.ledger.schema import configure, migrate
from amarktai_tui.locations import db_path, lock_path
from amarktai_tui.ops.backup import backup_before_switch
from amarktai_tui.ops.doctor import Check, doctor_ok, run_doctor
from amarktai_tui.ops.lock import EngineLock, EngineLockedError, is_held

CONFIRM_PHRASE = "CONFIRM_LIVE_TRADING"


class ModeSwitchRefused(Exception):
    """The switch was refused; the message says why in one line. ``checks``: the doctor's, if it ran;
    ``usage``: the user typed something wrong (the phrase, the TOTP code), not a failed check."""

    def __init__(self, message: str, checks: list[Check] | None = None, *, usage: bool = False) -> None:
        super().__init__(message)
        self.checks = checks or []
        self.usage = usage


@dataclass(frozen=True, slots=True)
class ModeSwitch:
    """One recorded switch (a ``mode_switches`` row)."""

    ts: int  # ms UTC
    from_mode: TradingMode
    to_mode: TradingMode
    actor: str
    reason: str
    checks: list[Check]

    def to_json(self) -> dict[str, object]:
        return {
            "ts": self.ts,
            "from": self.from_mode.value,
            "to": self.to_mode.value,
            "actor": self.actor,
            "reason": self.reason,
            "checks": [c.to_json() for c in self.checks],
        }


def current_mode(data_dir: Path) -> TradingMode:
    """The account's mode from the ledger (paper when there is no ledger or no switch yet).

    Raises sqlite3.Error for an unreadable file.
    """
    path = db_path(data_dir)
    if not path.exists():
        return TradingMode.PAPER
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        has = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='mode_switches'"
        ).fetchone()
        if not has:
            return TradingMode.PAPER
        row = conn.execute("SELECT to_mode FROM mode_switches ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    return TradingMode(row[0]) if row else TradingMode.PAPER


async def gate_live(
    settings: Settings,
    data_dir: Path,
    *,
    phrase: str | None,
    totp_code: str | None,
    now_ms: int | None = None,
) -> list[Check]:
    """Run the readiness gate for a switch to live; returns the (passing) doctor checks.

    Raises ModeSwitchRefused: a failing check (named, with its fix), a missing or wrong phrase, a
    missing or wrong TOTP code (``vault.totp.TotpGate``), or the keyring unavailable while TOTP is on.
    """
    checks = await run_doctor(settings, data_dir, now_ms=now_ms)
    if not doctor_ok(checks):
        failed = [c for c in checks if not c.ok]
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise ModeSwitchRefused(
            f"doctor: {first.name}: {first.detail}{more}; run `amarktai doctor` for every check", checks
        )
    if phrase != CONFIRM_PHRASE:
        raise ModeSwitchRefused(
            f"type {CONFIRM_PHRASE} exactly to switch to live trading", checks, usage=True
        )
    from amarktai_tui.vault.errors import KeyInputError, VaultUnavailable
    from amarktai_tui.vault.totp import TotpGate

    try:
        TotpGate(settings, data_dir).check(totp_code)
    except KeyInputError as exc:
        raise ModeSwitchRefused(str(exc), checks, usage=True) from None
    except VaultUnavailable as exc:
        raise ModeSwitchRefused(str(exc), checks) from None
    return checks


async def switch_mode(
    settings: Settings,
    data_dir: Path,
    target: TradingMode,
    *,
    actor: str = "cli",
    reason: str = "",
    phrase: str | None = None,
    totp_code: str | None = None,
    now_ms: int | None = None,
) -> ModeSwitch | None:
    """Switch the account to ``target`` with no engine running; None when it already is in it.

    Raises ModeSwitchRefused (the gate, or an engine holds the data dir: see the module doc),
    sqlite3.Error.
    """
    old = current_mode(data_dir)
    if old is target:
        return None
    checks: list[Check] = []
    if target is TradingMode.LIVE:
        if is_held(lock_path(data_dir)):
            raise ModeSwitchRefused(
                "an engine is running on this data dir: stop it, switch to live, then start it"
                " (live trading starts only after the start-up reconciliation)"
            )
        checks = await gate_live(settings, data_dir, phrase=phrase, totp_code=totp_code, now_ms=now_ms)
    ts = int(time.time() * 1000)
    doctor = json.dumps([c.to_json() for c in checks], sort_keys=True) if checks else ""
    try:
        with EngineLock(lock_path(data_dir)):
            failed = await asyncio.to_thread(backup_before_switch, settings, data_dir, target)
            if failed is not None:
                raise ModeSwitchRefused(failed)
            _record(data_dir, ts, old, target, actor, reason, doctor)
    except EngineLockedError:
        raise ModeSwitchRefused(
            "an engine is running on this data dir: it records the switch itself"
        ) from None
    return ModeSwitch(ts, old, target, actor, reason, checks)


def live_bot_count(data_dir: Path) -> int:
    """Bots at stage live in the ledger (0 without a ledger)."""
    path = db_path(data_dir)
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM bots WHERE stage = 'live'").fetchone()[0])
    finally:
        conn.close()


def _record(
    data_dir: Path, ts: int, old: TradingMode, new: TradingMode, actor: str, reason: str, doctor: str
) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(db_path(data_dir)), isolation_level=None)
    try:
        configure(conn)
        migrate(conn)
        conn.execute(
            "INSERT INTO mode_switches (ts, from_mode, to_mode, actor, reason, doctor) VALUES (?, ?, ?, ?, ?, ?)",
            (ts, old.value, new.value, actor, reason, doctor),
        )
        from amarktai_tui.ops.audit import mode_entry, record_in

        record_in(conn, mode_entry(ts, old, new, actor, reason))  # the audit log (no engine runs)
    finally:
        conn.close()
