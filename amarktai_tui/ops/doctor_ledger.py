"""The readiness checks that read the ledger (``amarktai doctor``; see ``ops.doctor``).

``read_ledger`` reads everything in one read-only pass; each ``check_*`` turns that into
``Check`` results. Nothing here writes the ledger.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from amarktai_tui.config import Settings
from amarktai_tui.locations import db_path, logs_dir
from amarktai_tui.ops.doctor import Check

LIVE_STAGES = ("live", "eligible_for_live")
_HOUR_MS = 3_600_000


# -- what the ledger says ---------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the checks read from the ledger, in one read-only pass. ``error``: why it could not
    be read ("" when it could); the other fields are then empty."""

    path: Path
    error: str = ""
    fix: str = ""
    live_bots: dict[str, list[str]] = field(default_factory=dict)  # exchange -> bot names
    keys: dict[str, tuple[str, int | None, str, bool | None]] = field(default_factory=dict)
    """provider -> (status, tested_ts, reason, can_withdraw)"""
    reconciliations: list[tuple[str, bool, int, str]] = field(default_factory=list)
    """(exchange, ok, ts, details JSON): the latest row of each exchange"""
    storms: list[tuple[str, int]] = field(default_factory=list)  # (bot name, errors in the window)
    account_trips: list[tuple[int, str, str]] = field(default_factory=list)  # (id, breaker, message)


def read_ledger(data_dir: Path, settings: Settings, now_ms: int) -> Ledger:
    """Read everything the checks need (read-only; never raises: problems land in ``error``)."""
    from amarktai_tui.ledger.schema import SCHEMA_VERSION

    path = db_path(data_dir)
    led = Ledger(path)
    if not path.is_file():
        led.error = f"no ledger at {path}"
        led.fix = "start amarktai once (paper mode) to create it, or pass the right --data-dir"
        return led
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
            conn.execute("PRAGMA busy_timeout=5000")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                led.error = f"{path} has schema v{version}, newer than this app (v{SCHEMA_VERSION})"
                led.fix = "upgrade amarktai-tui"
                return led
            found = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(20)")]
            if found != ["ok"]:
                led.error = f"integrity check failed: {'; '.join(found[:3])}"
                led.fix = f"stop the engine and restore the ledger from a backup ({data_dir / 'backups'})"
                return led
            _read_tables(conn, led, settings, now_ms)
    except sqlite3.Error as exc:
        led.error = f"{path} unreadable: {type(exc).__name__}: {exc}"
        led.fix = f"stop the engine and restore the ledger from a backup ({data_dir / 'backups'})"
    return led


def _read_tables(conn: sqlite3.Connection, led: Ledger, settings: Settings, now_ms: int) -> None:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "bots" in tables:
        marks = ",".join("?" * len(LIVE_STAGES))
        for name, ex in conn.execute(
            f"SELECT name, exchange FROM bots WHERE stage IN ({marks}) ORDER BY name", LIVE_STAGES
        ):
            led.live_bots.setdefault(ex, []).append(name)
    if "api_keys" in tables:
        for p, st, tested, reason, withdraw in conn.execute(
            "SELECT provider, status, tested_ts, reason, can_withdraw FROM api_keys ORDER BY provider"
        ):
            led.keys[p] = (st, tested, reason or "", None if withdraw is None else bool(withdraw))
    if "reconciliations" in tables:
        led.reconciliations = [
            (ex, bool(ok), ts, details or "")
            for ex, ok, ts, details in conn.execute(
                "SELECT r.exchange, r.ok, r.ts, r.details FROM reconciliations r WHERE r.id = "
                "(SELECT r2.id FROM reconciliations r2 WHERE r2.exchange = r.exchange"
                " ORDER BY r2.ts DESC, r2.id DESC LIMIT 1) ORDER BY r.exchange"
            )
        ]
    if "bot_errors" in tables:
        window_ms = int(settings.risk.error_window_minutes * 60_000)
        led.storms = [
            (name, n)
            for name, n in conn.execute(
                "SELECT COALESCE(b.name, 'bot ' || e.bot_id), COUNT(*) FROM bot_errors e"
                " LEFT JOIN bots b ON b.id = e.bot_id WHERE e.ts > ? GROUP BY e.bot_id"
                " HAVING COUNT(*) >= ? ORDER BY 1",
                (now_ms - window_ms, settings.risk.error_storm_errors),
            )
        ]
    if "breaker_trips" in tables and "breaker_resets" in tables:
        led.account_trips = list(
            conn.execute(
                "SELECT t.id, t.breaker, t.message FROM breaker_trips t"
                " LEFT JOIN breaker_resets r ON r.trip_id = t.id"
                " WHERE r.trip_id IS NULL AND t.scope = 'account' ORDER BY t.id"
            )
        )


def unread(name: str, ledger: Ledger) -> Check:
    """A failing ``name`` check that could not run because the ledger cannot be read."""
    return Check(name, False, "not checked: the ledger cannot be read", "see the database check")


# -- the checks --------------------------------------------------------------------------------------


def check_database(ledger: Ledger) -> Check:
    """``database``: the ledger exists, is readable (schema not newer), integrity ``ok``."""
    if ledger.error:
        return Check("database", False, ledger.error, ledger.fix)
    return Check("database", True, "integrity ok", "")


def _ago(ms: int) -> str:
    if ms < _HOUR_MS:
        return f"{max(ms // 60_000, 0)} min ago"
    if ms < 48 * _HOUR_MS:
        return f"{ms // _HOUR_MS} h ago"
    return f"{ms // (24 * _HOUR_MS)} days ago"


def check_keys(
    settings: Settings, data_dir: Path, ledger: Ledger, used: list[str], now_ms: int
) -> list[Check]:
    """One ``keys`` check per exchange in ``used`` (one passing check when there is none).
    Blocks: the keyring is asked whether it still holds each key (masked lookups only)."""
    if ledger.error:
        return [unread("keys", ledger)]
    if not used:
        return [Check("keys", True, "no live or eligible bot: no exchange key needed", "")]
    present, problem = _keyring_has(settings, data_dir, used)
    max_ms = int(settings.doctor.key_max_age_hours * _HOUR_MS)
    return [key_check(ex, ledger, now_ms, max_ms, present.get(ex), problem) for ex in used]


def _keyring_has(settings: Settings, data_dir: Path, used: list[str]) -> tuple[dict[str, bool], str]:
    """Which exchanges' keys the keyring holds (masked lookups only), or why it cannot be read."""
    from amarktai_tui.exchanges.registry import EXCHANGES
    from amarktai_tui.vault.errors import VaultUnavailable
    from amarktai_tui.vault.manager import KeyManager
    from amarktai_tui.vault.providers import get_provider

    try:
        store = KeyManager(settings, data_dir).store
        return {ex: store.masked(get_provider(ex)) is not None for ex in used if ex in EXCHANGES}, ""
    except VaultUnavailable as exc:
        return {}, str(exc)


def key_check(
    ex: str, ledger: Ledger, now_ms: int, max_age_ms: int, in_keyring: bool | None, keyring_problem: str
) -> Check:
    """The ``keys`` check of exchange ``ex`` (``in_keyring`` None: not known)."""
    from amarktai_tui.exchanges.registry import EXCHANGES

    if ex not in EXCHANGES:
        return Check("keys", False, f"unknown exchange {ex!r}", f"use one of {', '.join(EXCHANGES)}")
    bots = ledger.live_bots.get(ex, [])
    who = f" (bots: {', '.join(bots)})" if bots else ""
    test = f"run: amarktai keys test {ex}"
    setup = f"run: amarktai keys set {ex}, then amarktai keys test {ex}"
    status, tested, reason, _ = ledger.keys.get(ex, ("not_configured", None, "", None))
    if keyring_problem:
        return Check(
            "keys",
            False,
            f"{ex}: the keyring cannot be read: {keyring_problem}",
            "make the keyring available",
        )
    if status == "not_configured" or in_keyring is False:
        return Check("keys", False, f"{ex}: no key saved{who}", setup)
    if status == "saved_untested" or tested is None:
        return Check("keys", False, f"{ex} key saved but never tested{who}", test)
    if status == "test_failed":
        return Check(
            "keys", False, f"{ex} key failed its last test ({_ago(now_ms - tested)}): {reason}", test
        )
    if now_ms - tested > max_age_ms:
        return Check("keys", False, f"{ex} key last tested {_ago(now_ms - tested)}", test)
    return Check("keys", True, f"{ex} key tested {_ago(now_ms - tested)}{who}", "")


def check_reconcile(ledger: Ledger) -> list[Check]:
    """One ``reconcile`` check per exchange with a reconciliation (one passing check when none)."""
    if ledger.error:
        return [unread("reconcile", ledger)]
    if not ledger.reconciliations:
        return [Check("reconcile", True, "no reconciliation recorded yet (a live start runs one)", "")]
    out = []
    for ex, ok, _ts, details in ledger.reconciliations:
        if ok:
            out.append(Check("reconcile", True, f"{ex}: last reconciliation clean", ""))
            continue
        out.append(
            Check(
                "reconcile",
                False,
                f"{ex}: last reconciliation failed: {_reconcile_why(details)}",
                f"settle it on {ex} (open orders, balances the ledger's positions need), then start "
                "the engine live again: it reconciles before any bot trades",
            )
        )
    return out


def _reconcile_why(details: str) -> str:
    try:
        d = json.loads(details) if details else {}
    except ValueError:
        return "see the reconciliations table"
    if not isinstance(d, dict):
        return "see the reconciliations table"
    if d.get("error"):
        return str(d["error"])[:200]
    drift = d.get("drift") or {}
    if isinstance(drift, dict) and drift:
        return "balances drift from the ledger: " + ", ".join(f"{a} {w}" for a, w in sorted(drift.items()))
    return "see the reconciliations table"


def check_errors(ledger: Ledger, settings: Settings) -> Check:
    if ledger.error:
        return unread("errors", ledger)
    r = settings.risk
    window = f"{r.error_window_minutes:g} min"
    if not ledger.storms:
        return Check(
            "errors", True, f"no error storm in the last {window} (limit {r.error_storm_errors})", ""
        )
    storms = ", ".join(f"{name} {n} errors" for name, n in ledger.storms)
    return Check(
        "errors",
        False,
        f"error storm in the last {window} (limit {r.error_storm_errors}): {storms}",
        f"find the cause in {logs_dir(ledger.path.parent) / 'amarktai.log'} and fix it; "
        f"this passes once fewer errors fall in the last {window}",
    )


def check_breakers(ledger: Ledger) -> Check:
    if ledger.error:
        return unread("breakers", ledger)
    if not ledger.account_trips:
        return Check("breakers", True, "no account breaker tripped", "")
    trips = "; ".join(f"trip {i} {b}: {m}" for i, b, m in ledger.account_trips)
    if any(b == "halt" for _, b, _ in ledger.account_trips):
        fix = "run: amarktai resume --reason TEXT"
        if len(ledger.account_trips) > 1:
            fix += ", and amarktai breakers reset ID --reason TEXT for the others"
    else:
        fix = f"run: amarktai breakers reset {ledger.account_trips[0][0]} --reason TEXT"
        if len(ledger.account_trips) > 1:
            fix = "run: amarktai breakers reset ID --reason TEXT for each"
    return Check("breakers", False, f"account breaker tripped: {trips}", fix)


def check_withdraw(ledger: Ledger) -> Check:
    if ledger.error:
        return unread("withdraw", ledger)
    bad = sorted(p for p, (_, _, _, w) in ledger.keys.items() if w)
    if not bad:
        return Check("withdraw", True, "no saved key can withdraw", "")
    first = bad[0]
    return Check(
        "withdraw",
        False,
        f"key{'s' if len(bad) > 1 else ''} with withdrawal permission: {', '.join(bad)}",
        f"create a trade-only key (no withdrawals) on the exchange, then run: amarktai keys set {first}, "
        f"then amarktai keys test {first}",
    )
