"""The account mode switch end to end, as a user runs it: real CLI processes, the real keyring on a
private Secret Service, a loopback Binance in its own process, a real daemon.

paper -> live is refused for a failing doctor check (an untested key), a wrong phrase and a
missing TOTP code, then accepted; the daemon then starts live (the live-stage bot only,
reconciled first); ``amarktai mode paper`` reaches it over the control socket and it stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from amarktai_tui.config import load_settings
from amarktai_tui.domain.enums import LifecycleStage
from amarktai_tui.ledger.store import LedgerStore, StageChange
from amarktai_tui.locations import db_path
from amarktai_tui.vault.backend import open_backend
from amarktai_tui.vault.manager import KeyManager
from amarktai_tui.vault.store import SecretStore
from amarktai_tui.vault.totp import confirm_enrollment, enroll

TESTS = Path(__file__).resolve().parents[1]
DATA = TESTS.parent.parent / "shared" / "data"
CMD = [sys.executable, "-c", "from amarktai_tui.cli import main; main()"]
KEY, SECRET = "loopback-key", "loopback-secret"


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMARKTAI_")}
    env["PYTHONPATH"] = f"{TESTS}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env["XDG_CONFIG_HOME"] = str(tmp / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp / "xdg-data")
    return env


def amarktai(tmp: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CMD, *args], cwd=tmp, env=_env(tmp), input=stdin, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def binance(tmp_path: Path) -> Iterator[str]:
    """A loopback Binance process whose ``/api/v3/time`` is the wall clock (the doctor compares them)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopback.binance", "--port", "0", "--start-ms", str(int(time.time() * 1000)),
         "--balance", "USDT=100000", "--wall-time"],
        stdout=subprocess.PIPE, text=True, env=_env(tmp_path),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("LISTENING "), line
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def mode_rows(data: Path) -> list[tuple[str, str, str, str]]:
    conn = sqlite3.connect(f"file:{db_path(data)}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT from_mode, to_mode, actor, doctor FROM mode_switches ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


async def _make_live(data: Path, name: str) -> None:
    store = await LedgerStore.open(db_path(data))
    try:
        bot = next(b for b in await store.load_bots() if b.name == name)
        assert bot.id is not None
        await store.change_stage(
            StageChange(
                bot.id, int(time.time() * 1000), bot.stage, LifecycleStage.LIVE, "user", "test: promoted", {}
            )
        )
    finally:
        await store.close()


def test_live_switch_refused_for_each_gate_then_accepted_then_paper_stops_the_live_daemon(
    tmp_path: Path, secret_service: str, binance: str
) -> None:
    data = tmp_path / "data"
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[exchanges.binance]\napi_url = "{binance}"\ntimeout_s = 3\nws_poll_interval_s = 5\n\n'
        '[[bots]]\nname = "btc-live"\nexchange = "binance"\npair = "BTC/USDT"\ntimeframe = "5m"\n'
        'strategy = "sma_cross"\ncapital = "1000"\n\n'
        '[[bots]]\nname = "eth-paper"\nexchange = "binance"\npair = "ETH/USDT"\ntimeframe = "5m"\n'
        'strategy = "sma_cross"\ncapital = "1000"\n'
    )
    c = ["--config", str(cfg), "--data-dir", str(data)]
    # the bots exist after a short paper replay; one of them is then at stage live
    rows = json.loads((DATA / "binance" / "BTC_USDT-5m.json").read_text())[:300]
    replay = tmp_path / "BTC_USDT-5m.json"
    replay.write_text(json.dumps(rows))
    assert (
        amarktai(tmp_path, "--daemon", "--replay", str(replay), "--speed", "0", "--until-end", *c).returncode
        == 0
    )
    asyncio.run(_make_live(data, "btc-live"))
    assert amarktai(tmp_path, "mode", *c).stdout.startswith("paper")

    # 1. a key saved but never tested: the doctor fails, nothing is recorded
    settings = load_settings(cfg)
    KeyManager(settings, data).save("binance", {"api_key": KEY, "api_secret": SECRET})
    got = amarktai(tmp_path, "mode", "live", "--confirm", "CONFIRM_LIVE_TRADING", *c)
    assert got.returncode == 1, got.stderr
    assert "FAIL keys" in got.stdout and "refused" in got.stderr
    assert mode_rows(data) == []

    # 2. the key tested: the doctor passes, but the phrase is wrong
    assert amarktai(tmp_path, "keys", "test", "binance", *c).returncode == 0
    got = amarktai(tmp_path, "mode", "live", "--confirm", "confirm live trading", *c)
    assert got.returncode == 2 and "CONFIRM_LIVE_TRADING" in got.stderr, got.stdout
    assert "FAIL" not in got.stdout and mode_rows(data) == []

    # 3. TOTP enabled: the phrase alone is not enough, a wrong code neither
    vault = SecretStore(open_backend(settings.keys, data))
    secret, _uri = enroll(vault)
    assert confirm_enrollment(vault, pyotp.TOTP(secret).now())
    for extra in ([], ["--totp", "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"]):
        got = amarktai(tmp_path, "mode", "live", "--confirm", "CONFIRM_LIVE_TRADING", *extra, *c)
        assert got.returncode == 2, got.stderr
        assert "TOTP" in got.stderr or "code" in got.stderr
    assert mode_rows(data) == []

    # 4. everything right: recorded with the doctor's checks
    got = amarktai(
        tmp_path, "mode", "live", "--confirm", "CONFIRM_LIVE_TRADING", "--totp", pyotp.TOTP(secret).now(), *c
    )
    assert got.returncode == 0, got.stderr
    ((old, new, actor, doctor),) = mode_rows(data)
    assert (old, new, actor) == ("paper", "live", "cli")
    assert {ch["name"] for ch in json.loads(doctor)} >= {"database", "keys", "clock", "withdraw"}
    assert all(ch["ok"] for ch in json.loads(doctor))
    assert json.loads(amarktai(tmp_path, "mode", "--json", *c).stdout)["mode"] == "live"

    # 5. a replay on a live account is refused; the live daemon runs the live bot only, reconciled
    got = amarktai(tmp_path, "--daemon", "--replay", str(replay), "--speed", "0", "--until-end", *c)
    assert got.returncode == 1 and "replay runs on paper only" in got.stderr
    log = (tmp_path / "daemon.err").open("w")
    daemon = subprocess.Popen([*CMD, "--daemon", *c], cwd=tmp_path, env=_env(tmp_path), stderr=log, text=True)
    try:
        deadline = time.monotonic() + 60
        while "engine started" not in (tmp_path / "daemon.err").read_text():
            assert daemon.poll() is None, (tmp_path / "daemon.err").read_text()
            assert time.monotonic() < deadline, "the live daemon did not start"
            time.sleep(0.1)
        assert "engine started: 1 bots" in (tmp_path / "daemon.err").read_text()
        conn = sqlite3.connect(f"file:{db_path(data)}?mode=ro", uri=True)
        try:
            assert conn.execute("SELECT exchange, ok FROM reconciliations").fetchall() == [("binance", 1)]
        finally:
            conn.close()
        # 6. back to paper: immediate, through the control socket; the live engine stops
        got = amarktai(tmp_path, "mode", "paper", "--reason", "done for today", *c)
        assert got.returncode == 0 and "stopped" in got.stdout, got.stderr
        assert daemon.wait(timeout=60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        log.close()
    assert [r[:3] for r in mode_rows(data)] == [("paper", "live", "cli"), ("live", "paper", "cli")]
    assert amarktai(tmp_path, "mode", *c).stdout.startswith("paper")
