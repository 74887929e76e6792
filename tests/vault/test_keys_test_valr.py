"""``amarktai keys test valr``: our VALR adapter (real ccxt over HTTP) against the loopback VALR, which
reports the key's permissions at ``GET /v1/account/api-keys/current`` as docs.valr.com describes."""

from __future__ import annotations

import json
from pathlib import Path

from loopback.valr import ValrLoopback
from vault_helpers import amarktai_async, files_containing

from amarktai_tui.exchanges.clients import make_client
from amarktai_tui.vault.permissions import WITHDRAW_WARNING, withdraw_permission

START_MS = 1_614_556_800_000  # 2021-03-01 00:00 UTC
KEY, SECRET = "valrLoopKey-1234-5678-abcd", "valrLoopSecret-9876-5432-dcba"


async def test_the_adapter_reads_the_keys_permissions() -> None:
    async with ValrLoopback.running(start_ms=START_MS, api_key=KEY, secret=SECRET) as srv:
        client = make_client("valr", {"api_key": KEY, "api_secret": SECRET}, api_url=srv.url)
        try:
            info = await client.privateGetV1AccountApiKeysCurrent()
            assert info["permissions"] == ["View access", "Trade"]
            assert info["addedAt"] == "2021-03-01T00:00:00.000Z"
            assert await withdraw_permission("valr", client, [SECRET]) == (False, "")
            srv.permissions.append("Withdraw")
            assert await withdraw_permission("valr", client, [SECRET]) == (True, "")
        finally:
            await client.close()
        assert srv.requests.count(("GET", "/v1/account/api-keys/current")) == 3


async def test_a_valr_key_that_can_withdraw_passes_with_a_loud_warning(
    secret_service: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with ValrLoopback.running(
        start_ms=START_MS, api_key=KEY, secret=SECRET, permissions=("View access", "Trade", "Withdraw")
    ) as srv:
        env = {"AMARKTAI_EXCHANGES__VALR__API_URL": str(srv.url)}
        r = await amarktai_async("keys", "set", "valr", "--data-dir", data, stdin=f"{KEY}\n{SECRET}\n")
        assert r.code == 0, r.stderr
        r = await amarktai_async("keys", "test", "valr", "--json", "--data-dir", data, **env)
        assert r.code == 0, r.stderr  # the key works: it passes, and the user is warned
        out = json.loads(r.stdout)
        assert (out["status"], out["ok"], out["can_withdraw"]) == ("test_ok", True, True)
        assert out["summary"] == "balance read: 2 assets held"  # 1,000,000 ZAR and 100,000 USDT
        assert r.stderr.strip() == WITHDRAW_WARNING
        assert ("GET", "/v1/account/api-keys/current") in srv.requests
        listing = await amarktai_async("keys", "list", "--json", "--data-dir", data)
        row = next(x for x in json.loads(listing.stdout) if x["provider"] == "valr")
        assert row["status"] == "test_ok" and row["can_withdraw"] is True

        srv.permissions.remove("Withdraw")  # a trade-only key: no warning any more
        r = await amarktai_async("keys", "test", "valr", "--json", "--data-dir", data, **env)
        assert r.code == 0, r.stderr
        assert json.loads(r.stdout)["can_withdraw"] is False and WITHDRAW_WARNING not in r.stderr
    assert SECRET not in r.output + listing.output
    assert files_containing(data, [KEY, SECRET]) == []
