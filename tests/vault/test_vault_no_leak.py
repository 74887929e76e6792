"""Marker secrets in every provider; key tests (passing and failing), a loopback *live* session and a
paper session run; then every file the runs wrote and every command's output are scanned: no marker
may appear.

The live session trades through the vault: the Binance marker key and secret are read back from the
real keyring (``credentials_from_vault``) into the live broker, and the loopback Binance accepts
exactly those, so every order is signed with the marker secret and carries the marker key. Faults
injected on the way (5xx, a lost answer, a timeout, a 429) run the error paths
that write exception messages to ``bot_errors``, order reasons and the log.

The scan looks for the marker strings themselves: an HMAC signature is a digest of the secret, never
the secret, so finding no marker in the signed requests' traces is what "no leak" means here.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from exchanges.live_helpers import (
    ClockedFeed,
    finish_session,
    ledger,
    live_settings,
    settle_orders,
    slice_files,
    start_ms,
)
from loopback.binance import BinanceLoopback
from loopback.openai_api import OpenAILoopback
from vault_helpers import amarktai_async

from amarktai_tui.config import load_settings
from amarktai_tui.engine.events import EventBus, OrderRejected
from amarktai_tui.engine.live_setup import credentials_from_vault, make_live_broker
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.locations import db_path, logs_dir
from amarktai_tui.ops.daemon import setup_logging
from amarktai_tui.vault.manager import KeyManager
from amarktai_tui.vault.providers import PROVIDERS

BTC_1H = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance" / "BTC_USDT-1h.json"
LIVE_CANDLES = 200  # per pair: a few dozen orders through the loopback exchange
log = logging.getLogger("amarktai.daemon")  # the live session logs refusals as the daemon does


def marker(provider: str, field: str) -> str:
    return f"MARKER{provider}{field.replace('_', '')}7f3e9d"


@dataclass
class Scan:
    """Files read, bytes read, and ``path: marker`` for every hit."""

    files: list[Path]
    size: int
    hits: list[str]


def scan(root: Path, needles: list[str], *, skip: Path | None = None) -> Scan:
    """Every regular file under ``root`` (but ``skip``, the keyring's own storage) searched for ``needles``."""
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and (skip is None or skip not in p.parents)]
    hits, size = [], 0
    for path in files:
        data = path.read_bytes()
        size += len(data)
        hits += [f"{path}: {n}" for n in needles if n.encode() in data]
    return Scan(files, size, hits)


@dataclass
class LiveRun:
    fills: int
    filled_orders: int
    errors: int
    wal_scan: Scan  # the data dir while the ledger was open (its -wal file not yet checkpointed)
    api_health: str  # the exchange API's health as the UI shows it (its last error)


async def live_session(tmp: Path, data: Path, bn: BinanceLoopback, markers: list[str]) -> LiveRun:
    """Bots on BTC/USDT and ETH/USDT trade ``LIVE_CANDLES`` candles through the vault's Binance key."""
    assert bn.url is not None
    files = slice_files(tmp / "candles", LIVE_CANDLES)
    settings = live_settings(tmp, bn.url, bots_per_pair=2)
    creds = credentials_from_vault(settings, data, ["binance"])
    assert creds["binance"] == {"api_key": bn.api_key, "api_secret": bn.secret}  # read back from the keyring
    broker = make_live_broker(settings, ["binance"], creds, resubmit_grace_s=0.0)
    broker.clients["binance"].enableRateLimit = False  # a loopback needs no spacing
    broker.backoff_base_s = 0.01
    bus = EventBus()
    bus.subscribe(OrderRejected, lambda e: log.info("order %s %s: %s", e.client_order_id, e.state, e.reason))
    root = logging.getLogger()
    saved = (root.level, root.handlers[:])
    setup_logging(data, stderr=False)  # the app's own log file, at the app's level
    try:
        # the fee rates cannot be read (every retry a 503): a warning with the exception's message
        bn.faults.add("5xx", count=broker.read_attempts, path="/sapi/v1/asset/tradeFee")
        await broker.start()
        for kind in ("5xx", "lost", "5xx"):  # unknown orders: looked up, resent under the same id
            bn.faults.add(kind, method="POST", path="/api/v3/order")
        bn.faults.add("timeout", method="GET", path="/api/v3/order")
        bn.faults.add("429", method="GET", path="/api/v3/myTrades")
        replay = ReplayArgs([str(f) for f in files], speed=0, until_end=True)
        engine, feed = await open_engine(settings, data, replay, bus, broker=broker)
        try:
            await engine.run(ClockedFeed(feed, bn.book.set_time, settle=lambda: settle_orders(broker)))
            await finish_session(engine, broker)
            api = engine.api_health()  # what the Breakers tab shows, last error included
            assert set(api) == {"binance"} and api["binance"].errors > 0 and api["binance"].latency_p50_ms
            wal = db_path(data).with_name(db_path(data).name + "-wal")
            assert wal.stat().st_size > 0
            wal_scan = scan(data, markers)
            assert wal in wal_scan.files
        finally:
            await broker.close()
            await engine.store.close()
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
    assert not bn.faults.held and sum(bn.faults.injected.values()) >= 6
    orders, fills = ledger(db_path(data))
    trades = {f"binance:{t['id']}" for t in bn.book.state()["trades"]}
    assert fills and {f["fill_id"] for f in fills} <= trades  # real fills, each an exchange trade
    conn = sqlite3.connect(f"file:{db_path(data)}?mode=ro", uri=True)
    try:
        errors = [str(r[0]) for r in conn.execute("SELECT message FROM bot_errors")]
    finally:
        conn.close()
    assert any("ExchangeNotAvailable" in m or "RequestTimeout" in m for m in errors), errors
    assert any("InsufficientFunds" in m for m in errors), errors  # the exchange's own refusal text
    text = (logs_dir(data) / "amarktai.log").read_text()
    assert "fetch_trading_fees failed (ExchangeNotAvailable: binance GET" in text, text[-2000:]
    assert "rejected: Binance refused: InsufficientFunds: binance Account has" in text, text[-2000:]
    filled = [o for o in orders if o["state"] == "filled" and o["exchange_order_id"]]
    assert filled  # orders the exchange accepted and filled
    return LiveRun(len(fills), len(filled), len(errors), wal_scan, repr(api))


async def test_no_marker_secret_reaches_the_ledger_logs_or_outputs(
    secret_service: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    live = tmp_path / "live"
    markers: list[str] = []
    outputs: list[str] = []
    manager = KeyManager(load_settings(None), data)
    async with (
        OpenAILoopback.running("sk-the-right-key-not-ours") as ai,
        BinanceLoopback.running(
            start_ms=start_ms(),
            balances={"USDT": Decimal(10_000)},  # under the bots' capital: buys are refused
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

        run = await live_session(tmp_path, live, bn, markers)
        assert run.wal_scan.hits == []
        outputs.append(run.api_health)

    r = await amarktai_async(
        "--daemon", "--replay", BTC_1H, "--speed", "0", "--until-end", "--data-dir", data
    )
    assert r.code == 0, r.stderr
    outputs.append(r.output)
    for where in (data, live):
        for args in (
            ("ledger", "export", "--format", "json"),
            ("ledger", "export", "--format", "csv"),
            ("report", "--json"),
            ("status", "--json"),
        ):
            r = await amarktai_async(*args, "--data-dir", where)
            assert r.code == 0, r.stderr
            outputs.append(r.output)
            (where / "outputs").mkdir(exist_ok=True)
            (where / "outputs" / f"{'-'.join(args)}.txt").write_text(r.output)  # scanned with the rest
            if where == live and args[0] == "ledger" and args[-1] == "json":
                assert len(json.loads(r.stdout)["fills"]) == run.fills  # the live fills, exported

    assert len(markers) == sum(len(p.secret_fields) for p in PROVIDERS.values())
    assert marker("binance", "api_key") in markers and marker("binance", "api_secret") in markers
    assert any(logs_dir(data).iterdir()) and any(logs_dir(live).iterdir())  # real log files
    everything = scan(tmp_path, markers, skip=tmp_path / "secret-service")
    assert {db_path(live), db_path(data), logs_dir(live) / "amarktai.log"} <= set(everything.files)
    print(
        f"\nno-leak scan: {len(markers)} markers; live session {run.fills} fills of "
        f"{run.filled_orders} filled orders, {run.errors} bot_errors rows; "
        f"{len(run.wal_scan.files)} files ({run.wal_scan.size} bytes) with the ledger open, then "
        f"{len(everything.files)} files ({everything.size} bytes) under the test dir and "
        f"{len(outputs)} command outputs"
    )
    assert everything.hits == []
    assert [m for m in markers for out in outputs if m in out] == []
