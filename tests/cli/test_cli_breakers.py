"""``amarktai breakers``, ``halt``, ``resume``, ``breakers reset``: offline (recorded in the ledger under
the engine lock) and live (over a running daemon's control socket); the control socket in-process."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import BTC_1H, amarktai, query, start, stop_process, wait_until

from amarktai_tui.domain.enums import RiskMode
from amarktai_tui.engine.engine import BotSpec, TradingEngine
from amarktai_tui.exchanges.paper import PaperBroker
from amarktai_tui.ledger.store import LedgerStore
from amarktai_tui.locations import db_path, lock_path
from amarktai_tui.ops.control import (
    MAX_SOCKET_PATH,
    ControlUnavailable,
    send_command,
    serve_control,
    socket_path,
    stop_control,
)
from amarktai_tui.ops.lock import EngineLock

DEADLINE_S = 90
PREFIX = 800  # candles of BTC/USDT 1h in the small replay (past the demo bots' 200-candle warm-up)
TRIP_KEYS = {
    "id",
    "ts",
    "scope",
    "bot_id",
    "bot",
    "breaker",
    "threshold",
    "value",
    "cause",
    "message",
    "reset",
}


def _write_candles(dst: Path, n: int) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    out = dst / BTC_1H.name
    out.write_text(json.dumps(json.loads(BTC_1H.read_text())[:n]))
    return out


@pytest.fixture(scope="module")
def base_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data dir of one finite daemon replay of the first PREFIX candles (no trips)."""
    tmp = tmp_path_factory.mktemp("breakers")
    small = _write_candles(tmp / "small", PREFIX)
    data = tmp / "data"
    res = amarktai(tmp, "--daemon", "--replay", small, "--speed", "0", "--until-end", "--data-dir", data)
    assert res.returncode == 0, res.stderr[-2000:]
    return data


@pytest.fixture
def data(base_ledger: Path, tmp_path: Path) -> Path:
    """A private copy of the base ledger (each test writes to its own)."""
    d = tmp_path / "data"
    shutil.copytree(base_ledger, d)
    return d


def run_json(tmp: Path, *args: str | Path) -> dict[str, Any]:
    """Run a command with --json: exit 0, stdout is one JSON document and nothing else."""
    res = amarktai(tmp, *args, "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)  # raises on anything but JSON
    assert isinstance(out, dict)
    return out


def one_line_error(res: subprocess.CompletedProcess[str], code: int) -> str:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert res.stdout == ""
    return lines[0]


# -- offline: no engine runs; the CLI takes the lock and records -----------------------------------


def test_offline_halt_shows_in_breakers_then_resume_records_a_cli_reset(data: Path, tmp_path: Path) -> None:
    before = run_json(tmp_path, "breakers", "--data-dir", data)
    assert before["engine_running"] is False and before["active"] == [] and before["history"] == []
    g = before["gauges"]  # saved by the replay's last tick
    assert set(g) == {"bots", "account_hwm", "day", "day_start"}
    assert {int(k) for k in g["bots"]} == {r[0] for r in query(data, "SELECT id FROM bots")}
    assert all(isinstance(v, list) and len(v) == 1 and v[0] > 0 for v in g["bots"].values())
    assert g["account_hwm"] > 0 and isinstance(g["day"], int) and Decimal(g["day_start"]) > 0

    halt = run_json(tmp_path, "halt", "--reason", "news spike", "--data-dir", data)
    assert halt["ok"] is True and halt["action"] == "halt" and halt["applied"] == "recorded"
    assert halt["changed"] is True and halt["retripped"] is None
    assert "recorded; applied when the engine starts" in halt["message"]
    trip = halt["trip"]
    assert set(trip) == TRIP_KEYS
    assert trip["breaker"] == "halt" and trip["scope"] == "account" and trip["bot"] is None
    assert trip["cause"] == "cli" and trip["message"] == "emergency stop: news spike (by cli)"
    assert trip["threshold"] == "0" and Decimal(trip["value"]) == 0 and trip["reset"] is None
    # stamped with ledger time: the replay's last candle close, not the wall clock
    last_ts = query(data, "SELECT MAX(ts) FROM equity_snapshots")[0][0]
    assert trip["ts"] == last_ts

    shown = run_json(tmp_path, "breakers", "--data-dir", data)
    assert [t["id"] for t in shown["active"]] == [trip["id"]]
    assert shown["active"][0] == trip and shown["history"] == [trip]

    again = run_json(tmp_path, "halt", "--data-dir", data)
    assert again["changed"] is False and again["trip"]["id"] == trip["id"]
    assert query(data, "SELECT COUNT(*) FROM breaker_trips")[0][0] == 1

    human = amarktai(tmp_path, "breakers", "--data-dir", data)
    assert human.returncode == 0, human.stderr
    assert "HALTED" in human.stdout and "Active trips" in human.stdout and "news spike" in human.stdout

    res = run_json(tmp_path, "resume", "--reason", "x", "--data-dir", data)
    assert res["action"] == "resume" and res["applied"] == "recorded" and res["changed"] is True
    assert res["trip"]["id"] == trip["id"]
    assert res["trip"]["reset"] == {"ts": last_ts, "actor": "cli", "reason": "x"}

    after = run_json(tmp_path, "breakers", "--data-dir", data)
    assert after["active"] == []
    assert after["history"][0]["reset"] == {"ts": last_ts, "actor": "cli", "reason": "x"}
    assert query(data, "SELECT trip_id, actor, reason FROM breaker_resets") == [(trip["id"], "cli", "x")]

    nothing = amarktai(tmp_path, "resume", "--data-dir", data)
    assert nothing.returncode == 0 and nothing.stdout.startswith("not halted"), nothing.stderr
    assert amarktai(tmp_path, "ledger", "verify", "--data-dir", data).returncode == 0


def test_offline_reset_by_id_and_its_errors(data: Path, tmp_path: Path) -> None:
    trip_id = run_json(tmp_path, "halt", "--data-dir", data)["trip"]["id"]
    assert "no reason given" in query(data, "SELECT message FROM breaker_trips")[0][0]

    assert one_line_error(
        amarktai(tmp_path, "breakers", "reset", "99", "--reason", "x", "--data-dir", data), 1
    ) == ("amarktai: no trip with id 99")
    msg = one_line_error(amarktai(tmp_path, "breakers", "reset", str(trip_id), "--data-dir", data), 2)
    assert "--reason" in msg
    for empty in ("", "   "):
        msg = one_line_error(
            amarktai(tmp_path, "breakers", "reset", str(trip_id), "--reason", empty, "--data-dir", data), 2
        )
        assert "--reason must not be empty" in msg
    assert "ID" in one_line_error(
        amarktai(tmp_path, "breakers", "reset", "abc", "--reason", "x", "--data-dir", data), 2
    )
    assert "--reason" in one_line_error(amarktai(tmp_path, "halt", "--reason", "", "--data-dir", data), 2)
    assert query(data, "SELECT COUNT(*) FROM breaker_resets")[0][0] == 0  # nothing was written

    done = run_json(
        tmp_path, "breakers", "reset", str(trip_id), "--reason", "checked the feed", "--data-dir", data
    )
    assert done["action"] == "reset" and done["applied"] == "recorded"
    assert done["trip"]["reset"]["actor"] == "cli" and done["trip"]["reset"]["reason"] == "checked the feed"
    twice = one_line_error(
        amarktai(tmp_path, "breakers", "reset", str(trip_id), "--reason", "y", "--data-dir", data), 1
    )
    assert f"trip {trip_id} was already reset" in twice and "by cli: checked the feed" in twice

    missing = tmp_path / "nowhere"
    assert "no ledger" in one_line_error(amarktai(tmp_path, "halt", "--data-dir", missing), 1)
    assert not missing.exists()  # a typo in --data-dir creates nothing


def test_offline_halt_is_applied_when_the_engine_starts(data: Path, tmp_path: Path) -> None:
    halt = run_json(tmp_path, "halt", "--reason", "maintenance", "--data-dir", data)
    longer = _write_candles(tmp_path / "longer", 3000)
    res = amarktai(
        tmp_path, "--daemon", "--replay", longer, "--speed", "0", "--until-end", "--data-dir", data
    )
    assert res.returncode == 0, res.stderr[-2000:]
    states = query(data, "SELECT state, state_reason FROM bots")
    assert states and all(s == "circuit_tripped" and "maintenance" in why for s, why in states)
    after = halt["trip"]["ts"]
    assert query(data, f"SELECT COUNT(*) FROM fills WHERE side = 'buy' AND ts > {after}")[0][0] == 0
    assert query(data, "SELECT COUNT(*) FROM orders WHERE gate = 'breaker'")[0][0] > 0  # entries refused
    assert run_json(tmp_path, "breakers", "--data-dir", data)["active"][0]["id"] == halt["trip"]["id"]


def test_write_command_waits_for_an_engine_that_holds_the_lock_then_fails_in_one_line(
    data: Path, tmp_path: Path
) -> None:
    with EngineLock(lock_path(data)):  # an engine that is starting, or one without a control socket
        msg = one_line_error(amarktai(tmp_path, "halt", "--data-dir", data), 1)
    assert "does not answer" in msg
    assert query(data, "SELECT COUNT(*) FROM breaker_trips")[0][0] == 0


# -- live: a daemon runs; the commands go over its control socket ------------------------------------


def test_live_halt_and_resume_over_the_control_socket(tmp_path: Path) -> None:
    small = _write_candles(tmp_path / "small", PREFIX)
    data = tmp_path / "data"
    # without --until-end the daemon keeps running after the data ends, until SIGTERM
    proc, err = start(tmp_path, "daemon", "--daemon", "--replay", small, "--speed", "0", "--data-dir", data)
    sock = socket_path(data)
    try:
        wait_until(lambda: sock.is_socket(), proc, err, DEADLINE_S, "the control socket")
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600

        halt = run_json(tmp_path, "halt", "--reason", "live test", "--data-dir", data)
        assert halt["applied"] == "live" and halt["changed"] is True
        assert "engine running: applied live" in halt["message"]
        trip = halt["trip"]
        assert set(trip) == TRIP_KEYS and trip["breaker"] == "halt" and trip["reset"] is None
        # the engine flushed before replying: the trip is in its ledger, its bots are tripped
        assert query(data, "SELECT id, breaker, message FROM breaker_trips") == [
            (trip["id"], "halt", "emergency stop: live test (by cli)")
        ]
        assert {r[0] for r in query(data, "SELECT state FROM bots")} == {"circuit_tripped"}

        shown = run_json(tmp_path, "breakers", "--data-dir", data)
        assert shown["engine_running"] is True and [t["id"] for t in shown["active"]] == [trip["id"]]

        bad = one_line_error(
            amarktai(tmp_path, "breakers", "reset", "99", "--reason", "x", "--data-dir", data), 1
        )
        assert bad == "amarktai: no active trip with id 99"

        res = run_json(tmp_path, "resume", "--reason", "ok", "--data-dir", data)
        assert res["applied"] == "live" and res["changed"] is True and res["retripped"] is None
        assert res["trip"]["id"] == trip["id"] and res["trip"]["reset"]["actor"] == "cli"
        assert query(data, "SELECT trip_id, actor, reason FROM breaker_resets") == [(trip["id"], "cli", "ok")]
        assert {r[0] for r in query(data, "SELECT state FROM bots")} == {"running"}
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE_S) == 0, err.read_text()[-2000:]
    finally:
        stop_process(proc)
    assert "Traceback" not in err.read_text()
    assert not sock.exists()  # removed on shutdown
    assert run_json(tmp_path, "breakers", "--data-dir", data)["history"][0]["reset"]["reason"] == "ok"


# -- the control socket in-process, against a real engine ------------------------------------------------


async def _engine(data_dir: Path) -> TradingEngine:
    store = await LedgerStore.open(db_path(data_dir))
    engine = TradingEngine(store, PaperBroker(Decimal(5)), wall_clock_ms=lambda: 1_000)
    spec = BotSpec("a", "binance", "BTC/USDT", "1h", "sma_cross", {}, RiskMode.BALANCED, Decimal(1000))
    await engine.start([spec])
    return engine


async def test_serve_control_and_send_command(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    path = tmp_path / "ctl.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # left behind by a killed engine: nobody listens
    stale.close()

    async def send(req: dict[str, Any] | bytes) -> dict[str, Any]:
        if isinstance(req, bytes):
            return await asyncio.to_thread(_raw, path, req)
        return await asyncio.to_thread(send_command, path, req, 5.0)

    server = await serve_control(engine, path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        r = await send({"cmd": "halt", "reason": "unit", "actor": "cli"})
        assert r["ok"] is True and r["changed"] is True and r["retripped"] is None
        trip = r["trip"]
        assert (
            trip["breaker"] == "halt"
            and trip["message"] == "emergency stop: unit (by cli)"
            and trip["ts"] == 1_000
        )
        assert engine.runners[1].rec.state.value == "circuit_tripped"
        again = await send({"cmd": "halt"})
        assert again["changed"] is False and again["trip"]["id"] == trip["id"]

        assert await send({"cmd": "reset", "trip_id": 42, "reason": "x"}) == {
            "ok": False,
            "error": "no active trip with id 42",
        }
        assert (await send({"cmd": "reset", "trip_id": trip["id"], "reason": "  "}))[
            "error"
        ] == "a reset needs a reason"
        assert (await send({"cmd": "reset", "trip_id": "1", "reason": "x"}))["ok"] is False
        assert "unknown cmd" in (await send({"cmd": "sell_everything"}))["error"]
        assert (await send(b"not json\n"))["error"] == "request is not a JSON line"
        assert (await send(b"[1, 2]\n"))["ok"] is False

        done = await send({"cmd": "reset", "trip_id": trip["id"], "reason": "fine", "actor": "cli"})
        assert done["ok"] is True and done["changed"] is True
        assert done["trip"]["reset"] == {"ts": 1_000, "actor": "cli", "reason": "fine"}
        assert engine.runners[1].rec.state.value == "running"
        assert (await send({"cmd": "resume"})) == {
            "ok": True,
            "changed": False,
            "trip": None,
            "retripped": None,
        }

        await send({"cmd": "halt", "reason": "second"})
        resumed = await send({"cmd": "resume", "reason": "over"})
        assert resumed["changed"] is True and resumed["trip"]["reset"]["reason"] == "over"
    finally:
        await stop_control(server)
        await engine.store.close()
    assert not path.exists()
    with pytest.raises(ControlUnavailable):
        send_command(path, {"cmd": "halt"}, 1.0)
    rows = query(
        tmp_path,
        "SELECT t.breaker, r.actor, r.reason FROM breaker_trips t JOIN breaker_resets r ON r.trip_id = t.id",
    )
    assert rows == [("halt", "cli", "fine"), ("halt", "cli", "over")]


def _raw(path: Path, line: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(line)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    out = json.loads(buf)
    assert isinstance(out, dict)
    return out


def test_socket_path_is_short_enough_for_a_long_data_dir(tmp_path: Path) -> None:
    short = tmp_path / "d"
    assert socket_path(short) == short.resolve() / "amarktai.sock"
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    p = socket_path(deep)
    assert len(os.fsencode(p)) <= MAX_SOCKET_PATH and not str(p).startswith(str(deep))
    assert socket_path(deep) == p  # the CLI and the engine agree
    assert socket_path(tmp_path / ("x" * 60) / ("z" * 60)) != p
