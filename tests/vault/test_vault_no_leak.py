"""Marker secrets in every provider; key tests (passing and failing) and a paper session run; then
the data dir (ledger, WAL, logs) and every command's output are scanned: no marker may appear.

The loopback *live* session of the issue joins this test once the live broker trades through the
vault's keys.
"""

from __future__ import annotations

import json
from pathlib import Path

from loopback.binance import BinanceLoopback, rows
from loopback.openai_api import OpenAILoopback
from vault_helpers import amarktai_async, files_containing

from amarktai_tui.config import load_settings
from amarktai_tui.vault.manager import KeyManager
from amarktai_tui.vault.providers import PROVIDERS

BTC_1H = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance" / "BTC_USDT-1h.json"


def marker(provider: str, field: str) -> str:
    return f"MARKER{provider}{field.replace('_', '')}7f3e9d"


async def test_no_marker_secret_reaches_the_ledger_logs_or_outputs(
    secret_service: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    markers: list[str] = []
    outputs: list[str] = []
    manager = KeyManager(load_settings(None), data)
    async with (
        OpenAILoopback.running("sk-the-right-key-not-ours") as ai,
        BinanceLoopback.running(
            start_ms=int(rows("BTCUSDT", "5m")[20_000][0]),
            api_key=marker("binance", "api_key"),
            secret=marker("binance", "api_secret"),
        ) as bn,
    ):
        for p in PROVIDERS.values():
            values = {f.name: marker(p.id, f.name) for f in p.fields}
            if p.id == "openai":
                values["base_url"] = f"{ai.url}/v1"  # not a secret: the server's address
            markers += [v for name, v in values.items() if name in p.secret_fields]
            manager.save(p.id, values)  # in-process (the CLI's `keys set` has its own tests)
        env = {
            "AMARKTAI_EXCHANGES__BINANCE__API_URL": str(bn.url),
            "AMARKTAI_EXCHANGES__KUCOIN__API_URL": "http://127.0.0.1:9",
            "AMARKTAI_EXCHANGES__KUCOIN__TIMEOUT_S": "5",
        }
        expected = {"openai": 1, "binance": 0, "kucoin": 1}  # wrong key, right key, unreachable
        for provider, code in expected.items():
            r = await amarktai_async("keys", "test", provider, "--json", "--data-dir", data, **env)
            assert r.code == code, r.output
            outputs.append(r.output)
        r = await amarktai_async("keys", "list", "--json", "--data-dir", data)
        statuses = {row["provider"]: row["status"] for row in json.loads(r.stdout)}
        assert statuses["binance"] == "test_ok" and statuses["openai"] == "test_failed"
        outputs.append(r.output)

    r = await amarktai_async(
        "--daemon", "--replay", BTC_1H, "--speed", "0", "--until-end", "--data-dir", data
    )
    assert r.code == 0, r.stderr
    outputs.append(r.output)
    for args in (("ledger", "export", "--format", "json"), ("report", "--json"), ("status", "--json")):
        r = await amarktai_async(*args, "--data-dir", data)
        assert r.code == 0, r.stderr
        outputs.append(r.output)

    assert len(markers) == sum(len(p.secret_fields) for p in PROVIDERS.values())
    assert any((data / "logs").iterdir())  # the scan covers real log files
    assert files_containing(data, markers) == []
    assert [m for m in markers for out in outputs if m in out] == []
