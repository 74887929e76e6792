"""Settings and keys for the balances tests against ``loopback.accounts``."""

from __future__ import annotations

from pathlib import Path

from loopback.accounts import KEYS, Accounts

from amarktai_tui.config import ExchangeSettings, Settings, load_settings
from amarktai_tui.vault.manager import KeyManager


def settings_for(accounts: Accounts, quote: str = "USDT", **timeouts: float) -> Settings:
    """Default settings, ``quote`` as the quote currency, each exchange pointed at its server
    (``timeouts``: exchange id -> ``timeout_s``, default 10)."""
    s = load_settings(None)
    s.general.quote_currency = quote
    s.exchanges = {
        ex: ExchangeSettings(api_url=url, timeout_s=timeouts.get(ex, 10.0))
        for ex, url in accounts.urls.items()
    }
    return s


def save_keys(settings: Settings, data: Path, *exchanges: str) -> None:
    """Save the servers' keys in the keyring the way `keys set` does (KeyManager)."""
    manager = KeyManager(settings, data)
    for ex in exchanges:
        manager.save(ex, KEYS[ex])
