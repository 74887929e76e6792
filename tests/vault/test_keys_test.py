"""``amarktai keys test``: real authenticated calls with the real clients against loopback servers.

OpenAI: the real openai SDK against an OpenAI-compatible server. Binance: real ccxt against the
loopback Binance spot API (``[exchanges.binance] api_url`` from the environment), including
its key-permissions endpoint. SMTP: an aiosmtplib login against aiosmtpd.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from loopback.binance import BinanceLoopback, rows
from loopback.openai_api import OpenAILoopback
from vault_helpers import amarktai_async, files_containing, one_line

from amarktai_tui.vault.permissions import WITHDRAW_WARNING
from amarktai_tui.vault.tester import check_smtp

OPENAI_KEY = "sk-loopback-0123456789-abcd"
BN_KEY, BN_SECRET = "bnLoopKey-5555-6666-7777-c0de", "bnLoopSecret-8888-9999-aaaa-bbbb"
START_MS = int(rows("BTCUSDT", "5m")[20_000][0])


def row_of(listing: str, provider: str) -> dict[str, object]:
    return next(r for r in json.loads(listing) if r["provider"] == provider)  # type: ignore[no-any-return]


async def test_openai_key_ok_then_rejected(secret_service: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with OpenAILoopback.running(OPENAI_KEY) as server:
        r = await amarktai_async(
            "keys", "set", "openai", "--data-dir", data, stdin=f"{OPENAI_KEY}\n{server.url}/v1\n"
        )
        assert r.code == 0, r.stderr
        r = await amarktai_async("keys", "test", "openai", "--json", "--data-dir", data)
        assert r.code == 0, r.stderr
        out = json.loads(r.stdout)
        assert (out["status"], out["ok"], out["reason"]) == ("test_ok", True, "")
        assert out["summary"] == f"3 models available at {server.url}/v1"
        assert server.requests == 1

        wrong = "sk-wrong-key-zzzz-9876543210"
        r = await amarktai_async(
            "keys", "set", "openai", "--data-dir", data, stdin=f"{wrong}\n{server.url}/v1\n"
        )
        assert r.code == 0, r.stderr
        r = await amarktai_async("keys", "test", "openai", "--data-dir", data)
        assert r.code == 1
        assert r.stdout.strip() == (
            f"openai: test_failed: HTTP 401 from {server.url}/v1: the key was rejected (invalid_api_key)"
        )
        listing = await amarktai_async("keys", "list", "--json", "--data-dir", data)
        row = row_of(listing.stdout, "openai")
        assert row["status"] == "test_failed" and "HTTP 401" in str(row["reason"])
        assert isinstance(row["last_tested"], int)
    for run in (r, listing):
        assert wrong not in run.output and OPENAI_KEY not in run.output
    assert files_containing(data, [wrong, OPENAI_KEY]) == []


@pytest.fixture
async def binance() -> AsyncIterator[BinanceLoopback]:
    async with BinanceLoopback.running(start_ms=START_MS, api_key=BN_KEY, secret=BN_SECRET) as server:
        yield server


async def test_binance_key_ok_and_withdrawal_warning(
    secret_service: str, binance: BinanceLoopback, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = {"AMARKTAI_EXCHANGES__BINANCE__API_URL": str(binance.url)}
    r = await amarktai_async("keys", "set", "binance", "--data-dir", data, stdin=f"{BN_KEY}\n{BN_SECRET}\n")
    assert r.code == 0, r.stderr

    r = await amarktai_async("keys", "test", "binance", "--json", "--data-dir", data, **env)
    assert r.code == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["status"], out["ok"], out["can_withdraw"]) == ("test_ok", True, False)
    assert out["summary"] == "balance read: 1 asset held"  # the loopback account holds 100,000 USDT
    assert WITHDRAW_WARNING not in r.stderr
    assert ("GET", "/sapi/v1/account/apiRestrictions") in binance.requests

    binance.restrictions["enableWithdrawals"] = True
    r = await amarktai_async("keys", "test", "binance", "--data-dir", data, **env)
    assert r.code == 0, r.stderr  # the key works: it passes, with a loud warning
    assert r.stdout.startswith("binance: test_ok: balance read")
    assert r.stderr.strip() == WITHDRAW_WARNING
    listing = await amarktai_async("keys", "list", "--json", "--data-dir", data)
    assert row_of(listing.stdout, "binance")["can_withdraw"] is True
    text = await amarktai_async("keys", "list", "--data-dir", data)
    assert "YES" in text.stdout.splitlines()[4]  # binance's line: WITHDRAW column
    assert files_containing(data, [BN_KEY, BN_SECRET]) == []


async def test_binance_wrong_secret_fails_without_leaking_it(
    secret_service: str, binance: BinanceLoopback, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = {"AMARKTAI_EXCHANGES__BINANCE__API_URL": str(binance.url)}
    wrong = "bnWrongSecret-0000-1111-2222"
    r = await amarktai_async("keys", "set", "binance", "--data-dir", data, stdin=f"{BN_KEY}\n{wrong}\n")
    assert r.code == 0, r.stderr
    r = await amarktai_async("keys", "test", "binance", "--data-dir", data, **env)
    assert r.code == 1
    assert one_line(r.stdout), r.stdout
    assert r.stdout.startswith("binance: test_failed: AuthenticationError:")
    assert "Signature for this request is not valid" in r.stdout
    listing = await amarktai_async("keys", "list", "--json", "--data-dir", data)
    row = row_of(listing.stdout, "binance")
    assert row["status"] == "test_failed" and row["can_withdraw"] is None
    for run in (r, listing):
        assert wrong not in run.output and BN_KEY not in run.output
    assert files_containing(data, [wrong, BN_KEY]) == []


async def test_exchange_unreachable_is_a_failed_test(secret_service: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    await amarktai_async("keys", "set", "kucoin", "--data-dir", data, stdin="kk-1\nks-2-secret\nkp-3-pass\n")
    r = await amarktai_async(
        "keys",
        "test",
        "kucoin",
        "--data-dir",
        data,
        AMARKTAI_EXCHANGES__KUCOIN__API_URL="http://127.0.0.1:9",
        AMARKTAI_EXCHANGES__KUCOIN__TIMEOUT_S="5",
    )
    assert r.code == 1 and one_line(r.stdout), r.output
    assert r.stdout.startswith("kucoin: test_failed: ")
    assert "ks-2-secret" not in r.output and "kp-3-pass" not in r.output


class _Authenticator:
    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()

    def __call__(
        self, server: SMTP, session: object, envelope: object, mechanism: str, auth_data: object
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.user,
            self.password,
        )
        return AuthResult(success=ok, handled=False)  # aiosmtpd then answers 535 itself


async def test_smtp_login_ok_and_rejected() -> None:
    """aiosmtpd on 127.0.0.1 (plain: a loopback relay) with AUTH; no mail is sent."""
    loop = asyncio.get_running_loop()
    auth = _Authenticator("reports@example.com", "smtp-pass-4321")
    server = await loop.create_server(
        lambda: SMTP(object(), authenticator=auth, auth_require_tls=False), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    try:
        ok = await check_smtp("127.0.0.1", port, "reports@example.com", "smtp-pass-4321", security="none")
        assert ok.ok and ok.summary == f"logged in to 127.0.0.1:{port} as reports@example.com"
        bad = await check_smtp("127.0.0.1", port, "reports@example.com", "wrong-pass-0000", security="none")
        assert not bad.ok
        assert bad.reason.startswith("SMTPAuthenticationError:")
        assert "wrong-pass-0000" not in bad.reason
    finally:
        server.close()
        await server.wait_closed()
