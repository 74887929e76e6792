"""``amarktai keys set|list|delete`` as real subprocesses against a real Secret Service."""

from __future__ import annotations

import json
from pathlib import Path

from vault_helpers import amarktai, files_containing, one_line

from amarktai_tui.vault.providers import PROVIDERS

KEY, SECRET = "cliKEY-0000-1111-f3a9", "cliSECRET-2222-3333-4444"


def test_set_from_stdin_then_list_never_shows_the_secret(secret_service: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = amarktai("keys", "set", "binance", "--data-dir", data, stdin=f"{KEY}\n{SECRET}\n")
    assert r.code == 0, r.stderr
    assert "binance: saved in the keyring (Secret Service); status saved_untested" in r.stdout

    r = amarktai("keys", "list", "--json", "--data-dir", data)
    assert r.code == 0, r.stderr
    rows = json.loads(r.stdout)  # stdout is the JSON document and nothing else
    assert [row["provider"] for row in rows] == list(PROVIDERS)
    assert set(rows[0]) == {"provider", "status", "last_tested", "masked", "can_withdraw", "reason"}
    binance = next(row for row in rows if row["provider"] == "binance")
    assert binance == {
        "provider": "binance",
        "status": "saved_untested",
        "last_tested": None,
        "masked": "••••f3a9",
        "can_withdraw": None,
        "reason": "",
    }
    assert all(
        row["status"] == "not_configured" and row["masked"] is None for row in rows if row is not binance
    )

    r2 = amarktai("keys", "list", "--data-dir", data)
    assert r2.code == 0 and "••••f3a9" in r2.stdout and "saved_untested" in r2.stdout
    for run in (r, r2):
        assert KEY not in run.output and SECRET not in run.output
    assert files_containing(data, [KEY, SECRET]) == []


def test_set_with_the_wrong_number_of_lines_is_bad_usage(secret_service: str, tmp_path: Path) -> None:
    r = amarktai("keys", "set", "kucoin", "--data-dir", tmp_path, stdin=f"{KEY}\n{SECRET}\n")
    assert (r.code, one_line(r.stderr)) == (2, True), r.stderr
    assert "kucoin: expected 3 lines on stdin (API key, API secret, API passphrase), got 2" in r.stderr
    assert SECRET not in r.output

    r = amarktai("keys", "set", "ovex", "--data-dir", tmp_path, stdin="a\nb\n")
    assert (r.code, one_line(r.stderr)) == (2, True), r.stderr

    r = amarktai("keys", "set", "binance", "--data-dir", tmp_path, stdin=f"{KEY}\n\n")
    assert (r.code, one_line(r.stderr)) == (2, True), r.stderr
    assert "got 1" in r.stderr

    r = amarktai("keys", "list", "--json", "--data-dir", tmp_path)
    assert {row["status"] for row in json.loads(r.stdout)} == {"not_configured"}


def test_openai_base_url_is_an_optional_second_line(secret_service: str, tmp_path: Path) -> None:
    r = amarktai("keys", "set", "openai", "--data-dir", tmp_path, stdin="sk-test-only-key-abcd\n")
    assert r.code == 0, r.stderr
    r = amarktai("keys", "list", "--json", "--data-dir", tmp_path)
    assert next(row for row in json.loads(r.stdout) if row["provider"] == "openai")["masked"] == "••••abcd"


def test_unknown_provider_is_bad_usage_listing_the_valid_ones(tmp_path: Path) -> None:
    for action in ("set", "test", "delete"):
        r = amarktai("keys", action, "bitstamp", "--data-dir", tmp_path)
        assert (r.code, one_line(r.stderr)) == (2, True), r.stderr
        assert f"unknown provider 'bitstamp'; expected one of {', '.join(PROVIDERS)}" in r.stderr


def test_delete_then_status_not_configured(secret_service: str, tmp_path: Path) -> None:
    amarktai("keys", "set", "luno", "--data-dir", tmp_path, stdin=f"{KEY}\n{SECRET}\n")
    r = amarktai("keys", "delete", "luno", "--data-dir", tmp_path)
    assert (r.code, r.stdout.strip()) == (0, "luno: deleted from the keyring; status not_configured")
    r = amarktai("keys", "delete", "luno", "--data-dir", tmp_path)
    assert (r.code, r.stdout.strip()) == (0, "luno: nothing was saved; status not_configured")
    r = amarktai("keys", "list", "--json", "--data-dir", tmp_path)
    assert (
        next(row for row in json.loads(r.stdout) if row["provider"] == "luno")["status"] == "not_configured"
    )


def test_test_without_a_key_or_without_a_test(secret_service: str, tmp_path: Path) -> None:
    r = amarktai("keys", "test", "binance", "--data-dir", tmp_path)
    assert (r.code, one_line(r.stderr)) == (1, True), r.stderr
    assert "binance: no key saved; run `amarktai keys set binance` first" in r.stderr

    amarktai("keys", "set", "fetchai", "--data-dir", tmp_path, stdin="fetch-key-0001\n")
    r = amarktai("keys", "test", "fetchai", "--data-dir", tmp_path)
    assert (r.code, one_line(r.stderr)) == (2, True), r.stderr
    assert "no test available" in r.stderr

    amarktai("keys", "set", "smtp", "--data-dir", tmp_path, stdin="reports@example.com\nmail-password\n")
    r = amarktai("keys", "test", "smtp", "--data-dir", tmp_path)
    assert (r.code, one_line(r.stderr)) == (2, True), r.stderr
    assert "smtp: not testable until [smtp] host is configured" in r.stderr
