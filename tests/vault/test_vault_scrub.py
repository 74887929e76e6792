"""Secret-free error text (``vault.scrub``) and the provider registry's contract."""

from __future__ import annotations

import pytest

from amarktai_tui.vault.errors import KeyInputError
from amarktai_tui.vault.providers import PROVIDERS, get_provider
from amarktai_tui.vault.scrub import scrub


def test_scrub_replaces_secrets_masks_signed_urls_and_flattens() -> None:
    text = (
        "binance GET http://127.0.0.1:9/sapi/v1/capital/config/getall?timestamp=1&recvWindow=10000"
        "&signature=4f9a0b\n503 Service Unavailable\nsignature=77ab key sEcReT-123 and sEcReT-1234 again; "
        "Authorization: Bearer tok.en-XYZ"
    )
    out = scrub(text, ["sEcReT-123", "sEcReT-1234", ""])
    assert "sEcReT" not in out and "4f9a0b" not in out and "77ab" not in out and "tok.en-XYZ" not in out
    assert "signature=****" in out
    assert "getall?… 503" in out and "Bearer ****" in out and "key **** and **** again" in out
    assert "\n" not in out and "  " not in out


def test_scrub_cuts_long_text() -> None:
    out = scrub("x" * 1000, [], limit=50)
    assert len(out) == 50 and out.endswith("…")


def test_field_order_is_the_stdin_contract() -> None:
    order = {p.id: [f.name for f in p.fields] for p in PROVIDERS.values()}
    assert order == {
        "openai": ["api_key", "base_url"],
        "luno": ["api_key", "api_secret"],
        "binance": ["api_key", "api_secret"],
        "kucoin": ["api_key", "api_secret", "passphrase"],
        "valr": ["api_key", "api_secret"],
        "ovex": ["bearer_key"],
        "smtp": ["username", "password"],
        "fetchai": ["api_key"],
        "flokx": ["api_key"],
    }
    assert [p.id for p in PROVIDERS.values() if not p.testable] == ["fetchai", "flokx"]


def test_unknown_provider_names_the_valid_ones() -> None:
    with pytest.raises(KeyInputError, match="unknown provider 'x'; expected one of openai, luno, binance"):
        get_provider("x")
