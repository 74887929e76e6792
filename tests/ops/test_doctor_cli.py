"""``amarktai doctor [--json]`` as a real subprocess: every check failing, then fixed one by one
with the app's own commands (``keys test``, ``resume``) against the loopback Binance and a real
Secret Service, until the exit code is 0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from doctor_helpers import (
    BN_KEY,
    BN_SECRET,
    CMD,
    TIMEOUT_S,
    WallClockBinance,
    add_bot,
    add_errors,
    add_reconciliation,
    amarktai_async,
    wall_ms,
)

from amarktai_tui.config import load_settings
from amarktai_tui.vault import status
from amarktai_tui.vault.manager import KeyManager

DAY_MS = 86_400_000


async def doctor(data: Path, **env: str) -> tuple[int, dict[str, Any]]:
    """``amarktai doctor --json``: stdout is one JSON document and nothing else; (exit code, it)."""
    r = await amarktai_async("doctor", "--json", "--data-dir", data, **env)
    assert r.code in (0, 1), r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"ok", "checks"} and out["ok"] is (r.code == 0)
    for c in out["checks"]:
        assert set(c) == {"name", "ok", "detail", "fix"}
        assert isinstance(c["ok"], bool) and c["detail"]
        assert (c["fix"] == "") is c["ok"]
    return r.code, out


def failing(out: dict[str, Any]) -> set[str]:
    return {c["name"] for c in out["checks"] if not c["ok"]}


async def test_each_check_fails_then_all_pass(secret_service: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    now = wall_ms()
    bot = add_bot(data, "btc-live", exchange="binance", stage="live")
    add_bot(data, "eth-paper", exchange="kucoin", stage="paper_training")  # paper: kucoin needs nothing
    KeyManager(load_settings(None), data).save("binance", {"api_key": BN_KEY, "api_secret": BN_SECRET})
    status.mark_tested(data, "binance", ok=True, reason="", can_withdraw=True, ts=now - 3 * DAY_MS)
    add_reconciliation(data, "binance", ok=False, ts=now, drift={"BTC": "ledger 0.5, exchange 0.1"})
    add_errors(data, bot, 10, now - 50 * 60_000)

    async with WallClockBinance.running(offset_ms=-5_000) as server:
        env = {
            "AMARKTAI_EXCHANGES__BINANCE__API_URL": str(server.url),
            "AMARKTAI_DOCTOR__MIN_FREE_MB": str(10**12),
        }
        halt = await amarktai_async("halt", "--reason", "doctor drill", "--data-dir", data)
        assert halt.code == 0, halt.stderr

        code, out = await doctor(data, **env)
        assert code == 1
        assert [c["name"] for c in out["checks"]] == [
            "database", "writable", "keys", "reconcile", "clock", "errors", "breakers", "withdraw", "disk",
        ]  # fmt: skip
        assert failing(out) == {"keys", "reconcile", "clock", "errors", "breakers", "withdraw", "disk"}

        human = await amarktai_async("doctor", "--data-dir", data, **env)
        assert human.code == 1 and human.stderr == ""
        lines = human.stdout.splitlines()
        assert lines[0] == "PASS database  integrity ok"
        assert "FAIL keys  binance key last tested 3 days ago -> run: amarktai keys test binance" in lines
        assert any(line.startswith("FAIL breakers  account breaker tripped: trip 1 halt") for line in lines)
        assert any(line.endswith("-> run: amarktai resume --reason TEXT") for line in lines)
        assert lines[-1] == "not ready: 7 checks failed"

        # a fresh, real key test: the key works (keys passes) but the exchange says it can withdraw
        server.restrictions["enableWithdrawals"] = True
        r = await amarktai_async("keys", "test", "binance", "--data-dir", data, **env)
        assert r.code == 0, r.stderr
        code, out = await doctor(data, **env)
        assert failing(out) == {"reconcile", "clock", "errors", "breakers", "withdraw", "disk"}

        server.restrictions["enableWithdrawals"] = False  # a trade-only key, tested again
        r = await amarktai_async("keys", "test", "binance", "--data-dir", data, **env)
        assert r.code == 0, r.stderr
        add_reconciliation(data, "binance", ok=True, ts=wall_ms(), drift={})  # the next live start's
        server.offset_ms = 0  # the clocks agree
        code, out = await doctor(data, **env)
        assert failing(out) == {"errors", "breakers", "disk"}
        clock = next(c for c in out["checks"] if c["name"] == "clock")
        assert clock["detail"].startswith("binance: clock skew ")

        r = await amarktai_async("resume", "--reason", "drill over", "--data-dir", data)
        assert r.code == 0, r.stderr
        code, out = await doctor(data, **env, AMARKTAI_RISK__ERROR_WINDOW_MINUTES="30")
        assert (code, failing(out)) == (1, {"disk"})

        env.pop("AMARKTAI_DOCTOR__MIN_FREE_MB")
        code, out = await doctor(data, **env, AMARKTAI_RISK__ERROR_WINDOW_MINUTES="30")
        assert (code, failing(out), out["ok"]) == (0, set(), True)
        human = await amarktai_async(
            "doctor", "--data-dir", data, **env, AMARKTAI_RISK__ERROR_WINDOW_MINUTES="30"
        )
        assert human.code == 0 and human.stdout.splitlines()[-1] == "ready for live trading"
        assert all(line.startswith("PASS ") for line in human.stdout.splitlines()[:-1])
    assert BN_SECRET not in human.stdout + json.dumps(out)


async def test_no_ledger_and_bad_usage(tmp_path: Path) -> None:
    code, out = await doctor(tmp_path / "empty")
    assert code == 1 and "database" in failing(out)
    bad = await amarktai_async("doctor", "--jsn", "--data-dir", tmp_path)
    assert bad.code == 2 and bad.stdout == "" and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr


def test_doctor_never_imports_textual(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-X", "importtime", *CMD[1:], "doctor", "--data-dir", tmp_path],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert r.returncode == 1  # no ledger
    mods = [ln.rsplit("|", 1)[1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")]
    assert "amarktai_tui.ops.doctor" in mods
    assert not [m for m in mods if m.startswith(("textual", "amarktai_tui.tui"))]
