"""Choosing the keyring: no Secret Service (a headless server), $PYTHON_KEYRING_BACKEND, the encrypted file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from vault_helpers import amarktai, files_containing, one_line

from amarktai_tui.config import KeysSettings
from amarktai_tui.vault.backend import OPTIONS, PASSPHRASE_ENV, auto_backend, open_backend
from amarktai_tui.vault.errors import VaultUnavailable

KEY, SECRET = "cfKEY-abcdef-1234", "cfSECRET-uvwxyz-5678"


def test_no_secret_service_names_the_options(no_secret_service: None, tmp_path: Path) -> None:
    with pytest.raises(VaultUnavailable) as err:
        auto_backend()
    assert "no OS keyring is available" in str(err.value)
    assert OPTIONS in str(err.value)
    # keyrings.cryptfile is installed, but its file backends are never chained in behind the user's back
    assert not (tmp_path / "xdg-data" / "python_keyring").exists()

    r = amarktai("keys", "set", "binance", "--data-dir", tmp_path / "data", stdin=f"{KEY}\n{SECRET}\n")
    assert r.code == 1
    assert one_line(r.stderr), r.stderr
    for option in ("Secret Service", 'backend = "cryptfile"', PASSPHRASE_ENV, "PYTHON_KEYRING_BACKEND"):
        assert option in r.stderr
    assert r.stdout == ""
    assert files_containing(tmp_path, [KEY, SECRET]) == []


def test_python_keyring_backend_is_honoured_and_checked(no_secret_service: None, tmp_path: Path) -> None:
    r = amarktai(
        "keys", "list", "--data-dir", tmp_path, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring"
    )
    assert (r.code, one_line(r.stderr)) == (1, True), r.stderr
    assert "PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring disables the keyring" in r.stderr

    r = amarktai("keys", "list", "--data-dir", tmp_path, PYTHON_KEYRING_BACKEND="no_such_module.Keyring")
    assert (r.code, one_line(r.stderr)) == (1, True), r.stderr
    assert "cannot load the keyring named by PYTHON_KEYRING_BACKEND=no_such_module.Keyring" in r.stderr


def test_cryptfile_needs_its_passphrase(tmp_path: Path) -> None:
    with pytest.raises(VaultUnavailable, match=PASSPHRASE_ENV):
        open_backend(KeysSettings(backend="cryptfile"), tmp_path)
    r = amarktai("keys", "list", "--data-dir", tmp_path, AMARKTAI_KEYS__BACKEND="cryptfile")
    assert (r.code, one_line(r.stderr)) == (1, True), r.stderr
    assert f"needs the passphrase in ${PASSPHRASE_ENV}" in r.stderr


def test_cryptfile_round_trip_unattended(no_secret_service: None, tmp_path: Path) -> None:
    """No Secret Service at all: the encrypted file in the data dir, unlocked from the environment."""
    data = tmp_path / "data"
    env = {"AMARKTAI_KEYS__BACKEND": "cryptfile", PASSPHRASE_ENV: "correct horse battery staple"}
    r = amarktai("keys", "set", "valr", "--data-dir", data, stdin=f"{KEY}\n{SECRET}\n", **env)
    assert r.code == 0, r.stderr
    assert f"encrypted file {data / 'keyring.cfg'}" in r.stdout
    keyring_file = data / "keyring.cfg"
    assert stat.S_IMODE(keyring_file.stat().st_mode) == 0o600

    r = amarktai("keys", "list", "--json", "--data-dir", data, **env)
    assert r.code == 0, r.stderr
    valr = next(row for row in json.loads(r.stdout) if row["provider"] == "valr")
    assert (valr["status"], valr["masked"]) == ("saved_untested", "••••1234")
    assert KEY not in r.output and SECRET not in r.output
    assert files_containing(tmp_path, [KEY, SECRET]) == []  # encrypted on disk, nothing in the ledger

    r = amarktai("keys", "list", "--data-dir", data, **{**env, PASSPHRASE_ENV: "wrong"})
    assert (r.code, one_line(r.stderr)) == (1, True), r.stderr
    assert f"${PASSPHRASE_ENV} does not unlock {keyring_file}" in r.stderr

    r = amarktai("keys", "delete", "valr", "--data-dir", data, **env)
    assert (r.code, "deleted from the keyring" in r.stdout) == (0, True), r.output
