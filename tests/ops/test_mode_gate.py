"""The switch to live is refused for each failing readiness check, and nothing is recorded; with
every check passing (and the phrase) it is accepted. Real parts: a real ledger, the real keyring on
a private Secret Service, a loopback Binance whose clock ticks with the wall clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from doctor_helpers import (
    BN_KEY,
    BN_SECRET,
    WallClockBinance,
    add_bot,
    add_errors,
    add_reconciliation,
    wall_ms,
)

from amarktai_tui.config import ExchangeSettings, Settings
from amarktai_tui.domain.enums import TradingMode
from amarktai_tui.ops.mode import CONFIRM_PHRASE, ModeSwitchRefused, current_mode, switch_mode
from amarktai_tui.vault import status
from amarktai_tui.vault.manager import KeyManager


def _untested(data: Path, s: Settings, srv: WallClockBinance) -> None:
    status.mark_tested(
        data, "binance", ok=False, reason="AuthenticationError: bad key", can_withdraw=None, ts=wall_ms()
    )


def _reconcile(data: Path, s: Settings, srv: WallClockBinance) -> None:
    add_reconciliation(data, "binance", ok=False, ts=wall_ms(), drift={"BTC": "ledger 0.5, exchange 0.1"})


def _clock(data: Path, s: Settings, srv: WallClockBinance) -> None:
    srv.offset_ms = 5_000


def _errors(data: Path, s: Settings, srv: WallClockBinance) -> None:
    add_errors(data, 1, s.risk.error_storm_errors, wall_ms() - 60_000)


def _breakers(data: Path, s: Settings, srv: WallClockBinance) -> None:
    with status.connect(data) as conn:
        conn.execute(
            "INSERT INTO breaker_trips (ts, scope, bot_id, breaker, threshold, value, cause, message)"
            " VALUES (?, 'account', NULL, 'daily_loss', '0.1', '0.12', 'test', 'daily loss 12%')",
            (wall_ms(),),
        )


def _withdraw(data: Path, s: Settings, srv: WallClockBinance) -> None:
    status.mark_tested(data, "binance", ok=True, reason="", can_withdraw=True, ts=wall_ms())


def _disk(data: Path, s: Settings, srv: WallClockBinance) -> None:
    s.doctor.min_free_mb = 10**12


FAILURES: dict[str, Callable[[Path, Settings, WallClockBinance], None]] = {
    "keys": _untested,
    "reconcile": _reconcile,
    "clock": _clock,
    "errors": _errors,
    "breakers": _breakers,
    "withdraw": _withdraw,
    "disk": _disk,
}


@pytest.mark.parametrize("check", [*FAILURES, None])
async def test_live_switch_refused_for_each_failing_check_then_accepted(
    check: str | None, secret_service: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with WallClockBinance.running() as srv:
        settings = Settings(exchanges={"binance": ExchangeSettings(api_url=srv.url, timeout_s=3)})
        assert add_bot(data, "btc-live", exchange="binance", stage="live") == 1
        KeyManager(settings, data).save("binance", {"api_key": BN_KEY, "api_secret": BN_SECRET})
        status.mark_tested(data, "binance", ok=True, reason="", can_withdraw=False, ts=wall_ms())
        if check is None:  # every check passes: the wrong phrase is refused, the right one accepted
            with pytest.raises(ModeSwitchRefused) as wrong:
                await switch_mode(settings, data, TradingMode.LIVE, phrase="confirm_live_trading")
            assert wrong.value.usage and all(c.ok for c in wrong.value.checks)
            done = await switch_mode(settings, data, TradingMode.LIVE, phrase=CONFIRM_PHRASE, reason="test")
            assert done is not None and done.to_mode is TradingMode.LIVE and all(c.ok for c in done.checks)
            assert current_mode(data) is TradingMode.LIVE
            return
        FAILURES[check](data, settings, srv)
        with pytest.raises(ModeSwitchRefused) as refused:
            await switch_mode(settings, data, TradingMode.LIVE, phrase=CONFIRM_PHRASE)
    assert not refused.value.usage
    assert [c.name for c in refused.value.checks if not c.ok] == [check]
    assert str(refused.value).startswith(f"doctor: {check}: ")
    assert current_mode(data) is TradingMode.PAPER
