"""The vault in-process against a real Secret Service: the keyring API, the status table, the rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import secretstorage
from vault_helpers import files_containing

from amarktai_tui.config import load_settings
from amarktai_tui.vault.backend import auto_backend, describe
from amarktai_tui.vault.errors import KeyInputError
from amarktai_tui.vault.manager import KeyManager
from amarktai_tui.vault.providers import PROVIDERS, get_provider
from amarktai_tui.vault.store import SERVICE, SecretStore, masked

BINANCE = {"api_key": "bnKEY-0123456789-f3a9", "api_secret": "bnSECRET-abcdefghij-7777"}


def stored_items() -> dict[str, str]:
    """What the Secret Service holds for service ``amarktai``: username attribute -> secret,
    read with secretstorage directly (not through the code under test)."""
    with secretstorage.dbus_init() as conn:
        collection = secretstorage.get_default_collection(conn)
        return {
            item.get_attributes()["username"]: item.get_secret().decode()
            for item in collection.search_items({"service": SERVICE})
        }


@pytest.fixture
def manager(secret_service: str, tmp_path: Path) -> KeyManager:
    return KeyManager(load_settings(None), tmp_path / "data")


def test_auto_picks_the_secret_service(secret_service: str) -> None:
    backend = auto_backend()
    assert describe(backend) == "Secret Service"


def test_save_load_delete_round_trip_through_the_secret_service(secret_service: str) -> None:
    store = SecretStore(auto_backend())
    kucoin = get_provider("kucoin")
    values = {"api_key": "kc-key-0001", "api_secret": "kc-secret-0002", "passphrase": "kc-pass-0003"}
    store.save(kucoin, values)
    assert stored_items() == {
        "kucoin:api_key": "kc-key-0001",
        "kucoin:api_secret": "kc-secret-0002",
        "kucoin:passphrase": "kc-pass-0003",
    }
    assert store.load(kucoin) == values
    assert store.masked(kucoin) == "••••0001"
    assert store.delete(kucoin) is True
    assert stored_items() == {}
    assert store.load(kucoin) is None
    assert store.masked(kucoin) is None
    assert store.delete(kucoin) is False


def test_optional_field_blank_is_not_stored_and_removes_an_old_value(secret_service: str) -> None:
    store = SecretStore(auto_backend())
    openai = get_provider("openai")
    store.save(openai, {"api_key": "sk-one-1111", "base_url": "http://127.0.0.1:1/v1"})
    assert store.load(openai) == {"api_key": "sk-one-1111", "base_url": "http://127.0.0.1:1/v1"}
    store.save(openai, {"api_key": "sk-two-2222", "base_url": ""})
    assert store.load(openai) == {"api_key": "sk-two-2222"}
    assert set(stored_items()) == {"openai:api_key"}


def test_a_missing_required_field_writes_nothing(secret_service: str) -> None:
    store = SecretStore(auto_backend())
    with pytest.raises(KeyInputError, match="API secret must not be empty"):
        store.save(get_provider("binance"), {"api_key": "only-the-key", "api_secret": "  "})
    with pytest.raises(KeyInputError, match="unknown field"):
        store.save(get_provider("binance"), {"api_key": "k", "api_secret": "s", "passphrase": "p"})
    assert stored_items() == {}


def test_masked_shows_only_the_last_four() -> None:
    assert masked("abcdefgh") == "••••efgh"
    assert masked("abcd") == "••••"  # a 4-character value would be shown whole


def test_status_follows_set_test_delete_and_the_ledger_holds_no_secret(
    manager: KeyManager, tmp_path: Path
) -> None:
    from amarktai_tui.vault import status

    rows = {r.provider.id: r for r in manager.rows()}
    assert list(rows) == list(PROVIDERS)
    assert {r.status for r in rows.values()} == {"not_configured"}

    manager.save("binance", BINANCE)
    row = {r.provider.id: r for r in manager.rows()}["binance"]
    assert (row.status, row.masked, row.last_tested, row.can_withdraw) == (
        "saved_untested",
        "••••f3a9",
        None,
        None,
    )
    saved_ts = status.read_all(tmp_path / "data")["binance"].saved_ts
    assert saved_ts is not None

    status.mark_tested(tmp_path / "data", "binance", ok=False, reason="HTTP 401", can_withdraw=None, ts=123)
    row = {r.provider.id: r for r in manager.rows()}["binance"]
    assert (row.status, row.last_tested, row.reason) == ("test_failed", 123, "HTTP 401")
    assert status.read_all(tmp_path / "data")["binance"].saved_ts == saved_ts  # kept by a test

    manager.save("binance", BINANCE)  # saving again clears the old result
    row = {r.provider.id: r for r in manager.rows()}["binance"]
    assert (row.status, row.reason, row.last_tested) == ("saved_untested", "", None)

    assert manager.delete("binance") is True
    assert {r.provider.id: r for r in manager.rows()}["binance"].status == "not_configured"
    db = sqlite3.connect(tmp_path / "data" / "amarktai.sqlite3")
    assert db.execute(
        "SELECT status, saved_ts, tested_ts FROM api_keys WHERE provider='binance'"
    ).fetchone() == (
        "not_configured",
        None,
        None,
    )
    db.close()
    assert files_containing(tmp_path / "data", list(BINANCE.values())) == []


def test_keyring_entry_without_a_row_lists_as_saved_untested(manager: KeyManager, tmp_path: Path) -> None:
    """Keys saved before the ledger existed (or with another data dir) still show up."""
    SecretStore(auto_backend()).save(get_provider("valr"), {"api_key": "valr-key-9999", "api_secret": "s-1"})
    row = {r.provider.id: r for r in manager.rows()}["valr"]
    assert (row.status, row.masked) == ("saved_untested", "••••9999")
    assert not (tmp_path / "data").exists()  # listing creates no ledger
