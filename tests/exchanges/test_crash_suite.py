"""Crash suite: kill -9 a live engine while its orders are in flight, restart, reconcile, repeat.

The loopback Binance runs in its own process (it outlives the engine, as an
exchange does). The engine (``crash_driver.py``) trades real candles through
the real broker; the exchange delays or loses a share of the answers (timeouts,
lost responses, 503s), so orders spend real time in flight. Each round waits
until the ledger holds an order in state ``pending`` (written before its
request left, its outcome not yet known) and kills the engine there with
SIGKILL. The next start reconciles by client order id before any bot trades.
After the last run completes: no client order id accepted twice by the
exchange, no order left unresolved, and the ledger's fills equal to the
exchange's trades.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from live_helpers import compare, ledger, slice_files, start_ms

from amarktai_tui.locations import db_path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
KILLS = int(os.environ.get("AMARKTAI_CRASH_KILLS", "5"))


def _post(url: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def _state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_ctl/state", timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def _pending_orders(db: Path) -> tuple[int, int]:
    """(orders, pending orders) in the ledger now; (0, 0) before it exists."""
    if not db.exists():
        return 0, 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            n, p = conn.execute(
                "SELECT count(*), coalesce(sum(state = 'pending'), 0) FROM orders WHERE gate = ''"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0, 0
    return int(n), int(p)


def test_kill_9_with_orders_in_flight_loses_and_doubles_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "loopback.binance", "--port", "0", "--start-ms", str(start_ms()),
         "--balance", "USDT=1000000", "--split-trades", "2", "--seed", "5"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    t0 = time.perf_counter()
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("LISTENING "), line
        url = line.split()[1]
        _post(
            f"{url}/_ctl/faults",
            {"rate": 0.2, "kinds": ["timeout", "lost", "5xx"], "seed": 3, "path": "/api/v3/order"},
        )
        candles = slice_files(tmp_path / "candles", max(300, 80 * KILLS))[0].parent
        data = tmp_path / "data"
        data.mkdir()
        db = db_path(data)
        cmd = [sys.executable, str(HERE / "crash_driver.py"), str(data), url, str(candles)]
        killed_with_pending = 0
        ends: list[str] = []
        for round_ in range(KILLS):
            before, _ = _pending_orders(db)
            err_path = tmp_path / f"round{round_}.err"
            err = err_path.open("w")
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
            try:
                deadline = time.monotonic() + 120
                while proc.poll() is None and time.monotonic() < deadline:
                    n, pending = _pending_orders(db)
                    if pending and n >= before + 5:
                        os.kill(proc.pid, signal.SIGKILL)
                        killed_with_pending += 1
                        break
                    time.sleep(0.005)  # polls the ledger file from outside; the engine runs regardless
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                err.close()
            if killed_with_pending <= round_:  # the round ended without a kill: keep why
                ends.append(err_path.read_text()[-600:])
        final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert final.returncode == 0 and "DONE" in final.stdout, final.stderr[-2000:]
        state = _state(url)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    elapsed = time.perf_counter() - t0
    orders, fills = ledger(db)
    got = compare(state, orders, fills)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        recon = conn.execute(
            "SELECT count(*), coalesce(sum(resolved), 0), min(ok) FROM reconciliations"
        ).fetchone()
    finally:
        conn.close()
    print(
        f"\ncrash suite: {killed_with_pending} kill -9 with orders pending, {recon[0]} reconciliations resolving "
        f"{recon[1]} orders; {got['orders']} orders, {got['server_orders']} at the exchange, {got['fills']} fills; "
        f"faults {state['faults']}; duplicates {len(got['duplicates'])}; {elapsed:.1f} s"
    )
    assert killed_with_pending == KILLS, ends
    assert recon[0] == KILLS + 1 and recon[1] > 0 and recon[2] == 1  # every start reconciled cleanly
    assert got["duplicates"] == {}
    assert got["unresolved"] == [] and got["rejected_but_placed"] == []
    assert got["missing_fills"] == [] and got["extra_fills"] == [] and got["mismatched"] == []
    assert got["server_orders"] > 0
