"""``amarktai balances [--json] [--exchange ID ...]`` as a real subprocess: keys from a real Secret
Service, the loopback exchanges' URLs from the environment (``AMARKTAI_EXCHANGES__<ID>__API_URL``)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from balances_helpers import save_keys, settings_for
from loopback.accounts import SECRETS, Accounts, q8, running_accounts

CMD = [sys.executable, "-c", "from amarktai_tui.cli import main; main()"]
TIMEOUT_S = 180  # a guard against a hang, not a wait
ASSET_KEYS = ["asset", "free", "used", "total", "value"]
EXCHANGE_KEYS = [
    "exchange",
    "ok",
    "error",
    "assets",
    "total_value",
    "unpriced",
    "fetched_ms",
    "latency_ms",
    "api_health",
]


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


async def amarktai(*args: str | Path, env: dict[str, str], python_flags: tuple[str, ...] = ()) -> Run:
    """``amarktai ARGS`` without blocking this event loop (the loopback servers run in it)."""
    proc = await asyncio.create_subprocess_exec(
        CMD[0],
        *python_flags,
        *CMD[1:],
        *map(str, args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def accounts() -> AsyncIterator[Accounts]:
    """Binance, VALR and OVEX loopback servers with ``loopback.accounts`` keys and balances."""
    async with running_accounts() as running:
        yield running


def url_env(accounts: Accounts) -> dict[str, str]:
    return {f"AMARKTAI_EXCHANGES__{ex.upper()}__API_URL": url for ex, url in accounts.urls.items()}


async def test_json_shape_and_exit_codes(secret_service: str, accounts: Accounts, tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = url_env(accounts)

    r = await amarktai("balances", "--json", "--data-dir", data, env=env)
    assert (r.code, json.loads(r.stdout)) == (0, {"quote": "USDT", "exchanges": []})  # no key saved yet
    assert "no exchange key in the keyring" in r.stderr

    save_keys(settings_for(accounts), data, "binance", "valr", "ovex")
    accounts.ovex.faults.add("5xx", count=1000)
    r = await amarktai("balances", "--json", "--data-dir", data, env=env)
    assert r.code == 1, r.stderr  # OVEX failed; the others are still printed
    doc = json.loads(r.stdout)  # stdout is the JSON document and nothing else
    assert list(doc) == ["quote", "exchanges"] and doc["quote"] == "USDT"
    assert [e["exchange"] for e in doc["exchanges"]] == ["binance", "valr", "ovex"]
    for e in doc["exchanges"]:
        assert list(e) == EXCHANGE_KEYS
        for a in e["assets"]:
            assert list(a) == ASSET_KEYS
            assert all(isinstance(a[k], str) for k in ("free", "used", "total"))
    binance, valr, ovex = doc["exchanges"]
    assert (binance["ok"], valr["ok"], ovex["ok"]) == (True, True, False)
    btc = next(a for a in binance["assets"] if a["asset"] == "BTC")
    assert btc == {
        "asset": "BTC",
        "free": "0.5",
        "used": "0",
        "total": "0.5",
        "value": str(q8(Decimal("0.5") * accounts.binance.book.price("BTCUSDT")).normalize()),
    }
    xyz = next(a for a in binance["assets"] if a["asset"] == "XYZ")
    assert xyz["value"] is None and binance["unpriced"] == ["XYZ"]
    priced = [Decimal(a["value"]) for a in binance["assets"] if a["value"] is not None]
    assert Decimal(binance["total_value"]) == sum(priced)
    assert isinstance(binance["fetched_ms"], int) and isinstance(binance["latency_ms"], int)
    assert ovex["error"].startswith("ExchangeNotAvailable: ") and ovex["total_value"] is None
    assert r.stderr.strip() == f"amarktai balances: ovex: {ovex['error']}"  # one line per failure

    r = await amarktai("balances", "--exchange", "valr", "--exchange", "binance", "--data-dir", data, env=env)
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "Balances in USDT"
    assert any(
        line.startswith("Binance: total ") and "(not counted, no price: XYZ)" in line for line in lines
    )
    assert any(line.startswith("VALR: total ") for line in lines) and "OVEX" not in r.stdout
    assert lines[-1] == "No transfers between exchanges: the app holds no withdrawal rights."

    r = await amarktai("balances", "--exchange", "ovex", "--data-dir", data, env=env)
    assert r.code == 1 and "OVEX: FAILED: ExchangeNotAvailable: " in r.stdout

    r = await amarktai("balances", "--exchange", "binance", "nope", "--json", "--data-dir", data, env=env)
    assert (r.code, r.stdout) == (2, "")
    assert r.stderr.strip() == (
        "amarktai balances: unknown exchange 'nope'; expected one of luno, binance, kucoin, valr, ovex"
    )
    assert not [s for s in SECRETS if s in r.stdout + r.stderr]


async def test_no_secret_in_any_output(secret_service: str, accounts: Accounts, tmp_path: Path) -> None:
    """Wrong secrets: every exchange refuses, the errors name the refusal and never a key."""
    data = tmp_path / "data"
    save_keys(settings_for(accounts), data, "binance", "valr", "ovex")
    accounts.binance.secret = "another-secret"  # signatures no longer match
    accounts.valr.secret = "another-secret"
    accounts.ovex.api_key = "another-bearer"
    r = await amarktai("balances", "--json", "--data-dir", data, env=url_env(accounts))
    assert r.code == 1
    doc = json.loads(r.stdout)
    assert [e["ok"] for e in doc["exchanges"]] == [False, False, False]
    assert all(
        e["error"].startswith(("AuthenticationError: ", "PermissionDenied: ")) for e in doc["exchanges"]
    )
    assert not [s for s in SECRETS if s in r.stdout + r.stderr]
    assert len(r.stderr.strip().splitlines()) == 3


async def test_balances_never_imports_textual(
    secret_service: str, accounts: Accounts, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    save_keys(settings_for(accounts), data, "binance")
    flags = ("-X", "importtime")
    r = await amarktai("balances", "--json", "--data-dir", data, env=url_env(accounts), python_flags=flags)
    assert r.code == 0, r.stderr[-2000:]
    imported = [ln.rsplit("|", 1)[1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")]
    assert "amarktai_tui.ops.balances" in imported  # the probe works
    assert not [m for m in imported if m.startswith(("textual", "amarktai_tui.tui"))]


async def test_no_keyring_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A headless server without a Secret Service: the keyring cannot be opened."""
    env = {"DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path / 'no-bus-here'}"}
    r = await amarktai("balances", "--json", "--data-dir", tmp_path / "data", env=env)
    assert (r.code, r.stdout) == (1, "")
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("amarktai: ") and "Traceback" not in r.stderr
