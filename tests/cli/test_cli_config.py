"""Settings: defaults, TOML, environment overrides, one-line errors, bot validation, the example file."""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import BaseModel

from amarktai_tui.config import BotSettings, ConfigError, ExchangeSettings, Settings, load_settings
from amarktai_tui.domain.enums import RiskMode, TradingMode

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), required=True)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg, "one line"
    return msg


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = load_settings(None)
    assert s.general.mode is TradingMode.PAPER and s.general.quote_currency == "USDT"
    assert s.market.source == "exchange" and s.market.exchange == "binance"
    assert s.market.pairs == ["BTC/USDT", "ETH/USDT"] and s.market.timeframe == "5m"
    assert s.paper.starting_balance == Decimal(10_000) and s.paper.slippage_bps == Decimal(5)
    assert s.paper.fee_model == "exchange"
    assert s.bots == []
    assert s.engine.snapshot_interval == "1h"
    # a default file that does not exist means defaults; an explicit one is an error
    assert load_settings(tmp_path / "absent.toml").model_dump() == s.model_dump()
    with pytest.raises(ConfigError, match=r"absent\.toml"):
        load_settings(tmp_path / "absent.toml", required=True)


def test_values_from_a_toml_file(tmp_path: Path) -> None:
    s = load_settings(
        write(
            tmp_path,
            """
[market]
exchange = "kucoin"
pairs = ["ETH/USDT"]
timeframe = "1h"
[paper]
slippage_bps = "2.5"
starting_balance = 2500
fee_model = "fixed"
taker_fee = "0.0007"
[engine]
snapshot_interval = "4h"
[[bots]]
name = "eth-trend"
pair = "ETH/USDT"
timeframe = "1h"
strategy = "donchian_breakout"
risk_mode = "safe"
capital = "750.5"
stop_loss = "0.04"
""",
        ),
        required=True,
    )
    assert s.market.exchange == "kucoin" and s.market.pairs == ["ETH/USDT"] and s.market.timeframe == "1h"
    assert s.paper.slippage_bps == Decimal("2.5") and s.paper.starting_balance == Decimal(2500)
    assert s.paper.fee_model == "fixed" and s.paper.taker_fee == Decimal("0.0007")
    assert s.engine.snapshot_interval == "4h"
    (bot,) = s.bots
    assert (bot.name, bot.strategy, bot.risk_mode) == ("eth-trend", "donchian_breakout", RiskMode.SAFE)
    assert bot.capital == Decimal("750.5") and bot.stop_loss == Decimal("0.04")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[paper]\nslippage_bps = 3\n")
    assert load_settings(path).paper.slippage_bps == Decimal(3)
    monkeypatch.setenv("AMARKTAI_PAPER__SLIPPAGE_BPS", "7.5")
    assert load_settings(path).paper.slippage_bps == Decimal("7.5")
    assert load_settings(None).paper.slippage_bps == Decimal("7.5")
    monkeypatch.setenv("AMARKTAI_PAPER__SLIPPAGE_BPS", "lots")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "paper.slippage_bps" in str(info.value) and "\n" not in str(info.value)


def test_unknown_key_is_rejected_naming_it(tmp_path: Path) -> None:
    assert "paper.slipage_bps" in error_of(tmp_path, "[paper]\nslipage_bps = 3\n")
    assert "bots.0.colour" in error_of(tmp_path, '[[bots]]\nname = "a"\ncolour = "red"\n')
    assert "nonsense" in error_of(tmp_path, "[nonsense]\nx = 1\n")


def test_bad_value_names_the_key(tmp_path: Path) -> None:
    msg = error_of(tmp_path, '[general]\nmode = "sideways"\n')
    assert "general.mode" in msg and "sideways" in msg
    assert "market.exchange" in error_of(tmp_path, '[market]\nexchange = "mtgox"\n')
    assert "market.timeframe" in error_of(tmp_path, '[market]\ntimeframe = "7x"\n')
    assert "paper.slippage_bps" in error_of(tmp_path, "[paper]\nslippage_bps = -1\n")


def test_toml_syntax_error_is_one_line(tmp_path: Path) -> None:
    assert "config.toml" in error_of(tmp_path, "[paper\nslippage_bps = 3\n")


def _bots(*entries: str) -> str:
    return "".join(f"[[bots]]\n{e}\n" for e in entries)


def test_bot_validation(tmp_path: Path) -> None:
    msg = error_of(tmp_path, _bots('name = "a"\nstrategy = "moon_shot"'))
    assert "bots.0" in msg and "moon_shot" in msg
    msg = error_of(tmp_path, _bots('name = "a"\nstrategy = "sma_cross"\nparams = { fast = 50, slow = 10 }'))
    assert "bots.0" in msg and "fast" in msg
    msg = error_of(tmp_path, _bots('name = "a"\nstrategy = "rsi_reversion"\nparams = { speed = 3 }'))
    assert "speed" in msg
    msg = error_of(tmp_path, _bots('name = "twin"', 'name = "solo"', 'name = "twin"'))
    assert "duplicate" in msg and "twin" in msg and "solo" not in msg
    msg = error_of(tmp_path, _bots('name = "a"\nstop_loss = "1.5"'))
    assert "bots.0.stop_loss" in msg
    msg = error_of(tmp_path, _bots('name = "bad name!"'))
    assert "bots.0.name" in msg


def test_exchange_bot_cap(tmp_path: Path) -> None:
    five = [f'name = "l{i}"\nexchange = "luno"\npair = "BTC/ZAR"' for i in range(5)]
    assert len(load_settings(write(tmp_path, _bots(*five))).bots) == 5
    msg = error_of(tmp_path, _bots(*five, 'name = "l5"\nexchange = "luno"\npair = "BTC/ZAR"'))
    assert "luno" in msg and "5" in msg and "6" in msg


def _keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


@pytest.mark.skipif(not EXAMPLE.exists(), reason="config.example.toml not written yet")
def test_the_example_config_loads_and_documents_every_key() -> None:
    s = load_settings(EXAMPLE, required=True)
    # it shows every key with its default
    assert s.model_dump() == load_settings(None).model_dump()
    parsed = tomllib.loads(EXAMPLE.read_text())
    text = EXAMPLE.read_text()
    for section, field in Settings.model_fields.items():
        if section in ("bots", "exchanges"):  # tables shown commented out (none by default)
            sub = BotSettings if section == "bots" else ExchangeSettings
            for key in _keys(sub):
                assert re.search(rf"^#\s*{key}\s*=", text, re.M), f"{section} key {key!r} not documented"
            continue
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        assert section in parsed, f"section [{section}] missing"
        for key in _keys(model):
            assert key in parsed[section], f"{section}.{key} missing from config.example.toml"


@pytest.mark.skipif(not EXAMPLE.exists(), reason="config.example.toml not written yet")
def test_the_example_bot_is_valid(tmp_path: Path) -> None:
    """The commented [[bots]] example, uncommented, is a valid bot."""
    lines = EXAMPLE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "# [[bots]]")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[1:].strip())
    s = load_settings(write(tmp_path, "\n".join(block) + "\n"), required=True)
    (bot,) = s.bots
    assert bot.stop_loss is not None and bot.take_profit is not None and bot.trailing_stop is not None


def test_limit_entries_are_refused_for_ovex_bots_with_the_reason(tmp_path: Path) -> None:
    msg = error_of(tmp_path, _bots('name = "o"\nexchange = "ovex"\npair = "BTC/ZAR"\norder_type = "limit"'))
    assert "bots.0" in msg and "request-for-quote" in msg and "market" in msg
    ok = load_settings(write(tmp_path, _bots('name = "o"\nexchange = "ovex"\npair = "BTC/ZAR"')))
    assert ok.bots[0].order_type == "market"
    assert (
        load_settings(write(tmp_path, _bots('name = "b"\norder_type = "limit"'))).bots[0].order_type
        == "limit"
    )
