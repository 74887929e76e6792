"""The daemon as a process: runs past the end of the data, one engine per data dir, SIGTERM, kill -9."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from cli_helpers import (
    BTC_5M,
    amarktai,
    export_json,
    fill_count,
    query,
    start,
    stop_process,
    wait_idle,
    wait_until,
)

DEADLINE_S = 90
LAST_TS = json.loads(BTC_5M.read_text())[-1][0]


def test_daemon_runs_until_sigterm_and_guards_its_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, err = start(tmp_path, "first", "--daemon", "--replay", BTC_5M, "--speed", "0", "--data-dir", data)
    try:
        wait_until(lambda: fill_count(data) > 0, proc, err, DEADLINE_S, "the first fills")

        st = amarktai(tmp_path, "status", "--json", "--data-dir", data)
        assert st.returncode == 0, st.stderr
        status = json.loads(st.stdout)
        assert status["engine_running"] is True
        assert [b["pair"] for b in status["bots"]] == ["BTC/USDT"] * 3

        second = amarktai(
            tmp_path, "--daemon", "--replay", BTC_5M, "--speed", "0", "--data-dir", data, timeout=DEADLINE_S
        )
        assert second.returncode == 1, second.stderr
        assert "another engine" in second.stderr and str(proc.pid) in second.stderr
        assert "Traceback" not in second.stderr
        assert proc.poll() is None, "the first engine is unaffected"

        # without --until-end the daemon keeps running once the data has ended
        wait_idle(proc, err, DEADLINE_S)
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert proc.wait(timeout=DEADLINE_S) == 0, err.read_text()[-2000:]
        assert time.monotonic() - t0 < DEADLINE_S
    finally:
        stop_process(proc)
    assert "Traceback" not in err.read_text()
    assert "engine stopped" in err.read_text()
    # it had processed the whole file and was still running when SIGTERM came
    assert query(data, "SELECT MIN(last_candle_ts) FROM bots")[0][0] == LAST_TS

    verify = amarktai(tmp_path, "ledger", "verify", "--data-dir", data)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    after = json.loads(amarktai(tmp_path, "status", "--json", "--data-dir", data).stdout)
    assert after["engine_running"] is False
    # the lock is free again: a new engine may start; with all data already traded it adds nothing
    n = fill_count(data)
    again = amarktai(
        tmp_path, "--daemon", "--replay", BTC_5M, "--speed", "0", "--until-end", "--data-dir", data
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert fill_count(data) == n


def test_ledger_is_complete_while_the_daemon_idles_after_the_data(tmp_path: Path) -> None:
    rows = json.loads(BTC_5M.read_text())[:6000]
    small = tmp_path / "small" / BTC_5M.name
    small.parent.mkdir()
    small.write_text(json.dumps(rows))
    data = tmp_path / "data"
    proc, err = start(tmp_path, "idle", "--daemon", "--replay", small, "--speed", "0", "--data-dir", data)
    try:
        wait_idle(proc, err, DEADLINE_S)
        idle_fills = fill_count(data)
        idle_last = query(data, "SELECT MIN(last_candle_ts) FROM bots")[0][0]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE_S) == 0
    finally:
        stop_process(proc)
    assert fill_count(data) > 0
    assert (idle_fills, idle_last) == (fill_count(data), rows[-1][0])


def test_sigterm_in_the_middle_of_the_data_exits_0_and_verifies(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, err = start(tmp_path, "mid", "--daemon", "--replay", BTC_5M, "--speed", "0", "--data-dir", data)
    try:
        wait_until(lambda: fill_count(data) > 0, proc, err, DEADLINE_S, "the first fills")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE_S) == 0, err.read_text()[-2000:]
    finally:
        stop_process(proc)
    assert query(data, "SELECT MAX(last_candle_ts) FROM bots")[0][0] < LAST_TS  # stopped mid-data
    assert query(data, "SELECT COUNT(*) FROM orders WHERE state = 'pending'")[0][0] == 0
    verify = amarktai(tmp_path, "ledger", "verify", "--data-dir", data)
    assert verify.returncode == 0, verify.stdout


def test_kill_9_then_restart_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    whole = amarktai(
        tmp_path, "--daemon", "--replay", BTC_5M, "--speed", "0", "--until-end", "--data-dir", ref
    )
    assert whole.returncode == 0, whole.stderr[-2000:]
    expected = export_json(tmp_path, ref)

    data = tmp_path / "data"
    proc, err = start(tmp_path, "crash", "--daemon", "--replay", BTC_5M, "--speed", "0", "--data-dir", data)
    try:
        wait_until(lambda: fill_count(data) >= 20, proc, err, DEADLINE_S, "20 fills")
        proc.kill()  # SIGKILL: no flush, no cleanup
        assert proc.wait(timeout=DEADLINE_S) == -signal.SIGKILL
    finally:
        stop_process(proc)
    crashed_at = query(data, "SELECT MAX(last_candle_ts) FROM bots")[0][0]
    assert crashed_at is not None and crashed_at < LAST_TS, "the crash happened in the middle of the data"
    before = fill_count(data)
    assert 20 <= before < len(expected)

    restart = amarktai(
        tmp_path, "--daemon", "--replay", BTC_5M, "--speed", "0", "--until-end", "--data-dir", data
    )
    assert restart.returncode == 0, restart.stderr[-2000:]
    assert "Traceback" not in restart.stderr

    verify = amarktai(tmp_path, "ledger", "verify", "--data-dir", data)
    assert verify.returncode == 0, verify.stdout
    got = export_json(tmp_path, data)
    coids = [f["client_order_id"] for f in got]
    assert len(coids) == len(set(coids)), "no order filled twice"
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a == b
    n_orders = query(data, "SELECT COUNT(*), COUNT(DISTINCT client_order_id) FROM orders")[0]
    assert n_orders[0] == n_orders[1] == query(ref, "SELECT COUNT(*) FROM orders")[0][0]


def test_engine_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    import os

    from amarktai_tui.ops.lock import EngineLock, EngineLockedError

    path = tmp_path / "d" / "amarktai.lock"
    with EngineLock(path):
        assert path.read_text() == str(os.getpid())
        with pytest.raises(EngineLockedError, match=f"another engine \\(pid {os.getpid()}\\)"):
            EngineLock(path).acquire()
    second = EngineLock(path)
    second.acquire()  # released on exit: the stale file does not block
    second.release()
