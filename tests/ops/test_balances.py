"""Balances across exchanges (``ops.balances``): keys from a real Secret Service, real ccxt (and our
VALR and OVEX adapters) against the loopback Binance, VALR and OVEX servers, one of them failing.

Every expected figure is computed from the servers' own books (``loopback.accounts``).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from balances_helpers import save_keys, settings_for
from loopback.accounts import KEYS, SECRETS, Accounts, q8, running_accounts

from amarktai_tui.exchanges.api_breaker import ApiBreaker
from amarktai_tui.ops.balances import (
    AssetBalance,
    BalancesReport,
    ExchangeBalances,
    UnknownExchangeError,
    check_exchange_ids,
    fetch_balances,
    price_in,
    read_balances,
    routes,
)

UNCLOSED = "requires to release all resources"  # what ccxt logs for a client never closed


@pytest.fixture
async def accounts() -> AsyncIterator[Accounts]:
    """Binance, VALR and OVEX loopback servers with ``loopback.accounts`` keys and balances."""
    async with running_accounts() as running:
        yield running


def by_asset(e: ExchangeBalances) -> dict[str, AssetBalance]:
    return {a.asset: a for a in e.assets}


def no_secret_in(report: BalancesReport) -> None:
    text = str(report.to_json())
    assert not [s for s in SECRETS if s in text]


async def test_every_keyed_exchange_is_read_and_one_failing_blanks_no_other(
    secret_service: str, accounts: Accounts, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    settings = settings_for(accounts)
    save_keys(settings, data, "ovex", "binance", "valr")
    bn_book = accounts.binance.book
    bn_book.place("rest-1", "BTCUSDT", "sell", "limit", Decimal("0.2"), bn_book.price("BTCUSDT") * 2)
    accounts.ovex.faults.add("5xx", count=1000)  # every OVEX call answers 503

    report = await read_balances(settings, data)

    assert report.quote == "USDT"
    assert [e.exchange for e in report.exchanges] == ["binance", "valr", "ovex"]  # registry order
    binance, valr, ovex = report.exchanges
    assert not report.ok

    # binance: free and used as the server holds them, values at its own prices
    assert binance.ok and binance.error == ""
    assets = by_asset(binance)
    assert list(assets) == ["BTC", "ETH", "USDT", "XYZ"]  # by value, the unpriced last
    for asset, held in bn_book.balances.items():
        if held.total:
            a = assets[asset]
            assert (a.free, a.used, a.total) == (held.free, held.locked, held.total), asset
    assert (assets["BTC"].used, assets["BTC"].free) == (Decimal("0.2"), Decimal("0.3"))
    assert assets["BTC"].value == q8(Decimal("0.5") * bn_book.price("BTCUSDT"))
    assert assets["ETH"].value == q8(Decimal(2) * bn_book.price("ETHUSDT"))
    assert assets["USDT"].value == Decimal(1000)
    assert assets["XYZ"].value is None and binance.unpriced == ("XYZ",)  # named, not counted as 0
    assert binance.total_value == assets["BTC"].value + assets["ETH"].value + Decimal(1000)
    assert isinstance(binance.latency_ms, int) and binance.latency_ms >= 0
    assert isinstance(binance.fetched_ms, int) and binance.health is None

    # valr: no route from ZAR to USDT on its markets (BTCZAR, BTCUSDT, ETHUSDT): unpriced
    assert valr.ok
    v = by_asset(valr)
    assert v["BTC"].value == q8(Decimal("0.1") * accounts.valr.book.price("BTCUSDT"))
    assert v["ETH"].value == q8(accounts.valr.book.price("ETHUSDT"))
    assert v["ZAR"].value is None and v["ZAR"].total == Decimal(180_000)
    assert valr.unpriced == ("ZAR",)
    assert valr.total_value == v["BTC"].value + v["ETH"].value + Decimal(500)

    # ovex: its one-line error, nothing else
    assert not ovex.ok and ovex.assets == () and ovex.total_value is None
    assert ovex.error.startswith("ExchangeNotAvailable: ") and "503" in ovex.error
    assert "\n" not in ovex.error and len(ovex.error) < 240
    assert (ovex.fetched_ms, ovex.latency_ms) == (None, None)
    no_secret_in(report)

    gc.collect()  # ccxt logs a warning for every client dropped without close()
    assert not [r for r in caplog.records if UNCLOSED in r.getMessage() and r.levelno >= logging.WARNING]


async def test_inverse_and_usdt_routes_with_one_exchange_stopped(
    secret_service: str, accounts: Accounts, tmp_path: Path
) -> None:
    """Quote BTC: ZAR and USDT through the inverse pairs (BTC/ZAR, BTC/USDT), ETH through USDT."""
    data = tmp_path / "data"
    settings = settings_for(accounts, "BTC")
    save_keys(settings, data, "binance", "valr", "ovex")
    await accounts.binance.stop()  # connection refused

    report = await read_balances(settings, data)
    binance, valr, ovex = report.exchanges
    assert not binance.ok and binance.error.startswith(("ExchangeNotAvailable: ", "NetworkError: "))
    assert "\n" not in binance.error

    vb = accounts.valr.book
    btc_usdt, btc_zar, eth_usdt = vb.price("BTCUSDT"), vb.price("BTCZAR"), vb.price("ETHUSDT")
    v = by_asset(valr)
    assert valr.ok and valr.unpriced == ()
    assert v["BTC"].value == Decimal("0.1")
    assert v["ZAR"].value == q8(Decimal(180_000) * (1 / btc_zar))
    assert v["USDT"].value == q8(Decimal(500) * (1 / btc_usdt))
    assert v["ETH"].value == q8(Decimal(1) * (eth_usdt / btc_usdt))
    assert valr.total_value == sum(a.value for a in valr.assets if a.value is not None)

    o = by_asset(ovex)
    mid_zar, mid_usdt, mid_eth = (accounts.ovex_mid(m) for m in ("btczar", "btcusdt", "ethusdt"))
    assert ovex.ok and ovex.unpriced == ()
    assert o["BTC"].value == Decimal("0.25")
    assert o["ZAR"].value == q8(Decimal(50_000) * (1 / mid_zar))
    assert o["USDT"].value == q8(Decimal(250) * (1 / mid_usdt))
    assert o["ETH"].value == q8(Decimal(3) * (mid_eth / mid_usdt))
    no_secret_in(report)


async def test_each_exchange_has_its_own_timeout(accounts: Accounts) -> None:
    """OVEX holds its balance answer past its 1 s timeout; Binance (10 s) answers meanwhile."""
    settings = settings_for(accounts, ovex=1.0)
    accounts.ovex.faults.add("timeout", count=1, path="/api/v2/accounts")
    breaker = ApiBreaker("binance")
    breaker.success(0.012)

    report = await fetch_balances(
        settings, {"binance": KEYS["binance"], "ovex": KEYS["ovex"]}, health={"binance": breaker.health()}
    )
    binance, ovex = report.exchanges
    assert binance.ok and by_asset(binance)["USDT"].total == Decimal(1000)
    assert not ovex.ok and ovex.error.startswith("RequestTimeout: ")
    doc = report.to_json()
    assert doc["exchanges"][0]["api_health"] == {
        "state": "closed",
        "consecutive_failures": 0,
        "last_error": "",
        "retry_in_s": 0.0,
        "latency_p50_ms": 12.0,
        "latency_p99_ms": 12.0,
        "calls": 1,
        "errors": 0,
    }
    assert doc["exchanges"][1]["api_health"] is None


async def test_a_requested_exchange_without_a_key_fails_with_a_hint(
    secret_service: str, accounts: Accounts, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = settings_for(accounts)
    save_keys(settings, data, "binance")
    every = await read_balances(settings, data)
    assert [e.exchange for e in every.exchanges] == ["binance"] and every.ok  # only keyed ones
    asked = await read_balances(settings, data, check_exchange_ids(["valr", "binance", "valr"]))
    assert [e.exchange for e in asked.exchanges] == ["binance", "valr"]
    assert asked.exchanges[1].error == "no API key saved for valr: run `amarktai keys set valr`"
    assert not asked.ok


def test_unknown_exchange_ids_are_refused() -> None:
    assert check_exchange_ids(None) is None and check_exchange_ids([]) is None
    with pytest.raises(UnknownExchangeError, match="unknown exchange 'bitstamp'; expected one of luno, "):
        check_exchange_ids(["binance", "bitstamp"])


def test_routes_prefer_direct_then_inverse_then_usdt() -> None:
    symbols = {"BTC/ZAR", "ZAR/ETH", "ETH/USDT", "USDT/ZAR", "SOL/USDT"}
    assert routes("ZAR", "ZAR", symbols) == []
    assert routes("BTC", "ZAR", symbols) == [(("BTC/ZAR", False),)]
    assert routes("ETH", "ZAR", symbols) == [(("ZAR/ETH", True),), (("ETH/USDT", False), ("USDT/ZAR", False))]
    prices = {"BTC/ZAR": Decimal(1_000_000), "ETH/USDT": Decimal(2000), "USDT/ZAR": Decimal(18)}
    assert price_in("ETH", "ZAR", symbols, prices) == Decimal(36_000)  # ZAR/ETH has no price: next route
    assert price_in("SOL", "ZAR", symbols, prices) is None  # SOL/USDT has no price
    assert price_in("DOGE", "ZAR", symbols, prices) is None  # no market at all
    assert price_in("ZAR", "BTC", symbols, prices) == Decimal(1) / Decimal(1_000_000)
