"""``amarktai doctor``: the readiness checks that must all pass before the account goes live.

Each check gives pass/fail, what it found, and (when it fails) what to do. The checks:

``database``   the ledger exists, is a SQLite file this app can read (schema not newer) and
               ``PRAGMA integrity_check`` says ``ok``.
``writable``   the data dir takes a new file; the ledger's write lock can be taken and given
               back (``BEGIN IMMEDIATE; ROLLBACK``: nothing is written). While an engine holds
               the data dir (``ops.lock``) the ledger is not touched: the running engine is
               writing it.
``keys``       one per exchange live bots use: its key passed ``amarktai keys test``
               (``api_keys.status = test_ok``) within ``[doctor] key_max_age_hours`` (24 h),
               and the keyring still holds it.
``reconcile``  one per exchange with a ``reconciliations`` row: the latest row is clean
               (``engine.reconcile``: orders resolved, no balance drift).
``clock``      one per exchange live bots use: ``|exchange time - local time| <
               [doctor] max_clock_skew_ms`` (1 s), by ccxt ``fetch_time`` (a public call: no
               key is sent) with the ``[exchanges.<id>]`` settings; local time is the middle of
               the request. Exchanges whose API has no server time (Luno, VALR, OVEX in ccxt
               and our adapters) pass with "not measured".
``errors``     no bot had an error storm in the last ``[risk] error_window_minutes`` (60): fewer
               than ``[risk] error_storm_errors`` (10) ``bot_errors`` rows, the error storm
               breaker's own threshold.
``breakers``   no account breaker trip (daily loss, account drawdown, the emergency stop)
               without a reset.
``withdraw``   no saved key the exchange reported as able to withdraw (``api_keys.can_withdraw``).
``disk``       at least ``[doctor] min_free_mb`` (500 MB) free where the data dir is.

"The exchanges live bots use": the exchanges of the bots whose stage is ``live`` or
``eligible_for_live`` in the ledger (an eligible bot is one confirmation away from trading
live). Configured ``[[bots]]`` add nothing: a bot is created at ``paper_training`` and only
promotion moves it on, so a config entry alone never trades live.

The checks of the ledger live in ``ops.doctor_ledger``; this module runs them all.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amarktai_tui.config import Settings
from amarktai_tui.locations import db_path, lock_path

MB = 1_000_000


@dataclass(frozen=True)
class Check:
    """One readiness check: ``fix`` says what to do when it fails ("" when ``ok``)."""

    name: str
    ok: bool
    detail: str
    fix: str

    def to_json(self) -> dict[str, Any]:
        """``{"name", "ok", "detail", "fix"}``: an item of ``amarktai doctor --json``'s ``checks``."""
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}

    def line(self) -> str:
        """``PASS name  detail`` or ``FAIL name  detail -> fix``."""
        text = f"{'PASS' if self.ok else 'FAIL'} {self.name}  {self.detail}"
        return f"{text} -> {self.fix}" if not self.ok and self.fix else text


def doctor_ok(checks: Iterable[Check]) -> bool:
    """True when every check passed (and there was at least one)."""
    checks = list(checks)
    return bool(checks) and all(c.ok for c in checks)


def report_json(checks: list[Check]) -> dict[str, Any]:
    """``{"ok": bool, "checks": [{"name", "ok", "detail", "fix"}, ...]}`` (``amarktai doctor --json``)."""
    return {"ok": doctor_ok(checks), "checks": [c.to_json() for c in checks]}


async def run_doctor(
    settings: Settings,
    data_dir: Path,
    *,
    now_ms: int | None = None,
    exchanges: Iterable[str] | None = None,
) -> list[Check]:
    """Run every readiness check (see the module doc) and return them in a fixed order:
    database, writable, keys (one per exchange), reconcile, clock (one per exchange), errors,
    breakers, withdraw, disk.

    ``now_ms``: ms UTC the key ages and the error window are measured at (default: the wall
    clock; the clock check always compares with the wall clock). ``exchanges``: replaces "the
    exchanges live bots use" (the keys and clock checks). Never raises for a failing check:
    each problem is a failing Check. Blocking work (SQLite, the keyring) runs in threads.
    """
    from amarktai_tui.ops import doctor_ledger as dl

    now = int(time.time() * 1000) if now_ms is None else now_ms
    ledger = await asyncio.to_thread(dl.read_ledger, data_dir, settings, now)
    used = sorted(set(exchanges)) if exchanges is not None else sorted(ledger.live_bots)
    writable = await asyncio.to_thread(check_writable, data_dir)
    keys = await asyncio.to_thread(dl.check_keys, settings, data_dir, ledger, used, now)
    if ledger.error and exchanges is None:  # which exchanges live bots use is unknown
        clocks = [dl.unread("clock", ledger)]
    else:
        clocks = list(await asyncio.gather(*(check_clock(settings, ex) for ex in used)))
    return [
        dl.check_database(ledger),
        writable,
        *keys,
        *dl.check_reconcile(ledger),
        *(clocks or [Check("clock", True, "no live or eligible bot: no exchange clock to compare", "")]),
        dl.check_errors(ledger, settings),
        dl.check_breakers(ledger),
        dl.check_withdraw(ledger),
        check_disk(data_dir, settings.doctor.min_free_mb),
    ]


# -- checks of this computer ----------------------------------------------------------------------


def engine_running(data_dir: Path) -> bool:
    """True when a process holds the data dir's engine lock (``ops.lock``)."""
    from amarktai_tui.ops.lock import is_held

    return is_held(lock_path(data_dir))


def check_writable(data_dir: Path, *, busy_timeout_s: float = 5.0) -> Check:
    """A new file in the data dir; the ledger's write lock taken and released (only when no
    engine holds the data dir)."""
    name = "writable"
    if not data_dir.is_dir():
        return Check(name, False, f"data dir {data_dir} does not exist", "start amarktai once to create it")
    try:
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".doctor-") as fh:
            fh.write(b"x")
            fh.flush()
    except OSError as exc:
        return Check(
            name,
            False,
            f"cannot create a file in {data_dir}: {exc.strerror}",
            "fix the data dir's permissions",
        )
    path = db_path(data_dir)
    if not path.exists():
        return Check(name, True, f"{data_dir} writable (no ledger yet)", "")
    if engine_running(data_dir):
        if not os.access(path, os.W_OK):
            return Check(name, False, f"{path} is read-only", f"fix the permissions of {path}")
        return Check(name, True, f"{data_dir} writable; the running engine holds the ledger", "")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=busy_timeout_s)) as conn:
            conn.isolation_level = None
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        return Check(
            name,
            False,
            f"cannot take the ledger's write lock: {exc}",
            "close whatever else has the ledger open for writing, or fix its permissions",
        )
    return Check(name, True, f"{data_dir} and the ledger writable", "")


async def check_clock(settings: Settings, ex: str) -> Check:
    """``clock`` for exchange ``ex``: its server time (ccxt ``fetch_time``, no key) against ours."""
    from amarktai_tui.exchanges.clients import make_client
    from amarktai_tui.vault.scrub import scrub

    limit = settings.doctor.max_clock_skew_ms
    conf = settings.exchange(ex)
    fix = f"check the network and [exchanges.{ex}] (api_url, sandbox), then run amarktai doctor again"
    try:
        client = make_client(ex, None, sandbox=conf.sandbox, api_url=conf.api_url, timeout_s=conf.timeout_s)
    except Exception as exc:
        return Check("clock", False, f"{ex}: {type(exc).__name__}: {scrub(str(exc), [])}", fix)
    try:
        if not client.has.get("fetchTime"):
            return Check("clock", True, f"{ex}: its API gives no server time; skew not measured", "")
        t0 = time.time() * 1000
        server = await client.fetch_time()
        t1 = time.time() * 1000
    except Exception as exc:
        return Check(
            "clock", False, f"{ex}: cannot read its time: {type(exc).__name__}: {scrub(str(exc), [])}", fix
        )
    finally:
        await client.close()
    if not isinstance(server, int | float):
        return Check("clock", False, f"{ex}: no server time in its answer", fix)
    skew = float(server) - (t0 + t1) / 2
    detail = f"{ex}: clock skew {skew:+.0f} ms (limit {limit} ms; round trip {t1 - t0:.0f} ms)"
    if abs(skew) < limit:
        return Check("clock", True, detail, "")
    return Check("clock", False, detail, "sync this computer's clock (e.g. timedatectl set-ntp true)")


def check_disk(data_dir: Path, min_free_mb: int) -> Check:
    where = data_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return Check(
            "disk", False, f"cannot read free space at {where}: {exc.strerror}", "check the data dir"
        )
    detail = f"{free // MB:,} MB free at {where} (need {min_free_mb:,} MB)"
    if free >= min_free_mb * MB:
        return Check("disk", True, detail, "")
    return Check("disk", False, detail, "free some space on that disk, or move the data dir (--data-dir)")
