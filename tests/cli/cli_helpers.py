"""Running ``amarktai`` as a real subprocess, and reading its ledger while it runs."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BTC_1H = DATA / "binance" / "BTC_USDT-1h.json"
ETH_1H = DATA / "binance" / "ETH_USDT-1h.json"
BTC_5M = DATA / "binance" / "BTC_USDT-5m.json"

# the package has no __main__ guard in cli.py: call main() the way the console script does
CMD = [sys.executable, "-c", "from amarktai_tui.cli import main; main()"]


def env_for(tmp: Path) -> dict[str, str]:
    """The current environment without AMARKTAI_*, with user config/data dirs inside ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMARKTAI_")}
    env["XDG_CONFIG_HOME"] = str(tmp / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp / "xdg-data")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def amarktai(
    tmp: Path, *args: str | Path, timeout: float = 180, python_flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, *python_flags, *CMD[1:], *map(str, args)]
    return subprocess.run(
        cmd, cwd=tmp, env=env_for(tmp), capture_output=True, text=True, timeout=timeout, check=False
    )


def start(tmp: Path, name: str, *args: str | Path) -> tuple[subprocess.Popen[bytes], Path]:
    """Start a long-running ``amarktai`` with stdout/stderr going to files (pipes could fill up)."""
    err = tmp / f"{name}.stderr"
    with open(tmp / f"{name}.stdout", "wb") as out, open(err, "wb") as errf:
        proc = subprocess.Popen([*CMD, *map(str, args)], cwd=tmp, env=env_for(tmp), stdout=out, stderr=errf)
    return proc, err


def db(data_dir: Path) -> Path:
    return data_dir / "amarktai.sqlite3"


def query(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read-only query; [] while the ledger does not exist or has no tables yet."""
    if not db(data_dir).exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db(data_dir)}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return []


def fill_count(data_dir: Path) -> int:
    r = query(data_dir, "SELECT COUNT(*) FROM fills")
    return int(r[0][0]) if r else 0


def wait_until(
    cond: Callable[[], bool], proc: subprocess.Popen[bytes], stderr: Path, deadline_s: float, what: str
) -> None:
    """Poll ``cond`` (short waits, bounded by a deadline); fail early if the process died."""
    end = time.monotonic() + deadline_s
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(
                f"process exited {proc.returncode} before {what}: {stderr.read_text()[-2000:]}"
            )
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(0.02)


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process (all its threads), in clock ticks (Linux /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))


def wait_idle(proc: subprocess.Popen[bytes], stderr: Path, deadline_s: float, quiet_s: float = 1.0) -> None:
    """Wait until the process has used no CPU for ``quiet_s`` (a replay at speed 0 is CPU-bound
    until its data ends), polling with a deadline."""
    end = time.monotonic() + deadline_s
    last, since = cpu_ticks(proc.pid), time.monotonic()
    while time.monotonic() - since < quiet_s:
        if proc.poll() is not None:
            raise AssertionError(f"process exited {proc.returncode}: {stderr.read_text()[-2000:]}")
        if time.monotonic() > end:
            raise AssertionError(f"process still busy after {deadline_s}s")
        time.sleep(0.05)
        now = cpu_ticks(proc.pid)
        if now != last:
            last, since = now, time.monotonic()


def export_json(tmp: Path, data_dir: Path) -> list[dict[str, Any]]:
    r = amarktai(tmp, "ledger", "export", "--format", "json", "--data-dir", data_dir)
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout)["fills"])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Cleanup: kill a process this test started, if it is still running."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)
