"""The TOTP second factor (``vault.totp``, ``amarktai totp``) against a real Secret Service, with
codes from pyotp at fixed times; key deletion and breaker resets refused without a current code
and accepted with one (real subprocesses, a real ledger)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pyotp
import pytest
from vault_helpers import CMD, TIMEOUT_S, amarktai, amarktai_async, cli_env, files_containing, one_line

from amarktai_tui.config import load_settings
from amarktai_tui.locations import db_path
from amarktai_tui.vault import totp
from amarktai_tui.vault.manager import KeyManager
from amarktai_tui.vault.providers import PROVIDERS
from amarktai_tui.vault.store import SecretStore
from amarktai_tui.vault.totp import (
    TotpGate,
    TotpRequired,
    TotpStateError,
    confirm_enrollment,
    disable,
    enroll,
    record_enabled,
    recorded_enabled,
    require_totp,
    totp_enabled,
    verify_totp,
)

T0 = 1_700_000_000.0  # a fixed time (s since the epoch), 20 s into its 30 s step
KEY, SECRET = "totpTestKey-0001-0002-0003", "totpTestSecret-aaaa-bbbb-cccc"


def store_for(data: Path) -> SecretStore:
    return KeyManager(load_settings(None), data).store


def wrong_code(secret: str, at: float) -> str:
    """A 6-digit code that is none of the accepted ones around ``at``."""
    t = pyotp.TOTP(secret)
    taken = {t.at(int(at) + 30 * i) for i in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in taken)


def enable(data: Path) -> str:
    """Enrol and confirm at the wall clock time, as ``amarktai totp enroll`` does; the secret."""
    store = store_for(data)
    secret, _ = enroll(store)
    assert confirm_enrollment(store, pyotp.TOTP(secret).now())
    record_enabled(data, int(time.time() * 1000))
    return secret


def test_enrol_confirm_verify_disable_at_fixed_times(secret_service: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = store_for(data)
    assert not totp_enabled(store)
    require_totp(store, None)  # not enabled: nothing is needed
    assert not verify_totp(store, "123456", now=T0)

    secret, uri = enroll(store, account="alice@desk")
    assert len(secret) == 32 and uri.startswith("otpauth://totp/Amarktai:alice%40desk?secret=")
    assert "issuer=Amarktai" in uri and f"secret={secret}" in uri
    assert not totp_enabled(store)  # pending until a first code is confirmed
    gen = pyotp.TOTP(secret)
    assert not confirm_enrollment(store, wrong_code(secret, T0), now=T0)
    assert not totp_enabled(store)
    assert confirm_enrollment(store, gen.at(int(T0)), now=T0)
    assert totp_enabled(store)
    assert store.load(totp.PENDING) is None
    with pytest.raises(TotpStateError, match="already enabled"):
        enroll(store)
    with pytest.raises(TotpStateError, match="no TOTP enrolment in progress"):
        confirm_enrollment(store, gen.at(int(T0)), now=T0)

    code = gen.at(int(T0))
    assert verify_totp(store, code, now=T0)
    assert verify_totp(store, f" {code[:3]} {code[3:]} ", now=T0)  # spaces as apps show them
    assert verify_totp(store, code, now=T0 + 30)  # one step late: accepted (valid_window=1)
    assert verify_totp(store, code, now=T0 - 30)
    assert not verify_totp(store, code, now=T0 + 90)  # three steps later: expired
    assert not verify_totp(store, wrong_code(secret, T0), now=T0)
    assert not verify_totp(store, "12345", now=T0) and not verify_totp(store, "abcdef", now=T0)

    with pytest.raises(TotpRequired, match="needs a current code"):
        require_totp(store, None, now=T0)
    with pytest.raises(TotpRequired, match="needs a current code"):
        require_totp(store, "  ", now=T0)
    with pytest.raises(TotpRequired, match="wrong TOTP code"):
        require_totp(store, wrong_code(secret, T0), now=T0)
    require_totp(store, code, now=T0)

    with pytest.raises(TotpRequired):
        disable(store, None, now=T0)
    with pytest.raises(TotpRequired):
        disable(store, wrong_code(secret, T0), now=T0)
    assert totp_enabled(store)
    disable(store, code, now=T0)
    assert not totp_enabled(store)
    with pytest.raises(TotpStateError, match="not enabled"):
        disable(store, code, now=T0)
    assert secret not in str(TotpRequired("x"))
    assert files_containing(data, [secret]) == []  # never in the ledger


async def test_cli_enroll_shows_the_qr_and_secret_once_then_confirms(
    secret_service: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    proc = await asyncio.create_subprocess_exec(
        *CMD,
        "totp",
        "enroll",
        "--data-dir",
        str(data),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    assert proc.stdout is not None and proc.stdin is not None
    shown: list[str] = []
    while not shown or not shown[-1].startswith("secret: "):  # the code is typed once the secret shows
        line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT_S)
        assert line, "the enrolment ended before showing the secret"
        shown.append(line.decode().rstrip("\n"))
    secret = shown[-1].removeprefix("secret: ")
    assert any("█" in s or "▀" in s or "▄" in s for s in shown)  # the QR code, in block characters
    proc.stdin.write(f"{pyotp.TOTP(secret).now()}\n".encode())
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    assert proc.returncode == 0, err.decode()
    everything = "\n".join(shown) + "\n" + out.decode() + err.decode()
    assert everything.count(secret) == 1  # shown once, on its own line
    assert "TOTP enabled" in out.decode()

    st = await amarktai_async("totp", "status", "--json", "--data-dir", data)
    assert st.code == 0, st.stderr
    got = json.loads(st.stdout)
    assert (got["enabled"], got["pending"], got["keyring"]) == (True, False, "Secret Service")
    assert isinstance(got["enabled_ts"], int) and recorded_enabled(data) == got["enabled_ts"]
    assert files_containing(data, [secret]) == []

    again = await amarktai_async("totp", "enroll", "--data-dir", data, stdin="")
    assert again.code == 2 and one_line(again.stderr) and "already enabled" in again.stderr

    refused = await amarktai_async("totp", "disable", "--data-dir", data)
    assert refused.code == 2 and one_line(refused.stderr) and "needs a current code" in refused.stderr
    done = await amarktai_async("totp", "disable", "--totp", pyotp.TOTP(secret).now(), "--data-dir", data)
    assert done.code == 0, done.stderr
    assert recorded_enabled(data) is None and not totp_enabled(store_for(data))


async def test_cli_enroll_with_a_wrong_code_stays_disabled(secret_service: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = await amarktai_async("totp", "enroll", "--data-dir", data, stdin="000000\n")
    secret = next(line for line in r.stdout.splitlines() if line.startswith("secret: "))[8:]
    if pyotp.TOTP(secret).verify("000000", valid_window=1):  # one chance in ~300,000
        pytest.skip("000000 happened to be the current code")
    assert r.code == 2 and one_line(r.stderr) and "TOTP stays disabled" in r.stderr
    store = store_for(data)
    assert not totp_enabled(store) and store.load(totp.PENDING) is None
    st = amarktai("totp", "status", "--data-dir", data)
    assert (st.code, st.stdout.strip()) == (0, "TOTP not enabled")


def test_key_deletion_needs_a_current_code(secret_service: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    KeyManager(load_settings(None), data).save("binance", {"api_key": KEY, "api_secret": SECRET})
    secret = enable(data)

    r = amarktai("keys", "delete", "binance", "--data-dir", data)  # stdin is not a terminal: no prompt
    assert r.code == 2 and one_line(r.stderr)
    assert r.stderr.strip() == (
        "amarktai keys delete: TOTP is enabled: this needs a current code from your authenticator app "
        "(--totp CODE)"
    )
    r = amarktai("keys", "delete", "binance", "--totp", wrong_code(secret, time.time()), "--data-dir", data)
    assert r.code == 2 and "wrong TOTP code" in r.stderr
    assert store_for(data).load(PROVIDERS["binance"]) is not None  # still there

    r = amarktai("keys", "delete", "binance", "--totp", pyotp.TOTP(secret).now(), "--data-dir", data)
    assert (r.code, r.stdout.strip()) == (0, "binance: deleted from the keyring; status not_configured")
    assert store_for(data).load(PROVIDERS["binance"]) is None
    assert secret not in r.stdout + r.stderr


async def _ledger(data: Path) -> None:
    from amarktai_tui.ledger.store import LedgerStore

    store = await LedgerStore.open(db_path(data))
    await store.close()


async def test_breaker_reset_and_resume_need_a_current_code(secret_service: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    await _ledger(data)
    secret = enable(data)
    gen = pyotp.TOTP(secret)

    halt = await amarktai_async("halt", "--reason", "drill", "--json", "--data-dir", data)
    assert halt.code == 0, halt.stderr  # stopping never needs a code
    trip = json.loads(halt.stdout)["trip"]["id"]

    r = await amarktai_async("breakers", "reset", str(trip), "--reason", "ok", "--data-dir", data)
    assert r.code == 2 and one_line(r.stderr)
    assert r.stderr.startswith("amarktai breakers reset: TOTP is enabled: this needs a current code")
    r = await amarktai_async(
        "breakers",
        "reset",
        str(trip),
        "--reason",
        "ok",
        "--totp",
        wrong_code(secret, time.time()),
        "--data-dir",
        data,
    )
    assert r.code == 2 and "wrong TOTP code" in r.stderr
    assert _resets(data) == 0
    r = await amarktai_async(
        "breakers", "reset", str(trip), "--reason", "ok", "--totp", gen.now(), "--data-dir", data
    )
    assert r.code == 0, r.stderr
    assert _resets(data) == 1

    halt = await amarktai_async("halt", "--reason", "drill 2", "--data-dir", data)
    assert halt.code == 0, halt.stderr
    r = await amarktai_async("resume", "--reason", "ok", "--data-dir", data)
    assert r.code == 2 and r.stderr.startswith("amarktai resume: TOTP is enabled")
    r = await amarktai_async("resume", "--reason", "ok", "--totp", gen.now(), "--data-dir", data)
    assert r.code == 0, r.stderr
    assert _resets(data) == 2


def _resets(data: Path) -> int:
    with sqlite3.connect(f"file:{db_path(data)}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM breaker_resets").fetchone()[0])


async def test_enabled_but_keyring_gone_fails_closed(secret_service: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    await _ledger(data)
    enable(data)
    gate = TotpGate(load_settings(None), data)
    assert gate.needed()
    off = {"DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path / 'no-bus-here'}"}
    halt = await amarktai_async("halt", "--reason", "drill", "--data-dir", data, **off)
    assert halt.code == 0, halt.stderr
    r = await amarktai_async("resume", "--reason", "ok", "--totp", "123456", "--data-dir", data, **off)
    assert r.code == 1 and one_line(r.stderr)
    assert "TOTP is enabled but its secret cannot be read" in r.stderr
    assert _resets(data) == 0


async def test_without_totp_and_without_a_keyring_resets_need_no_code(
    tmp_path: Path, no_secret_service: None
) -> None:
    data = tmp_path / "data"
    await _ledger(data)
    gate = TotpGate(load_settings(None), data)
    assert not gate.needed()
    gate.check(None)
    assert (await amarktai_async("halt", "--reason", "x", "--data-dir", data)).code == 0
    r = await amarktai_async("resume", "--reason", "ok", "--data-dir", data)
    assert r.code == 0, r.stderr


def test_disable_clears_a_stale_record_when_the_secret_is_gone(secret_service: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    record_enabled(data, 1_700_000_000_000)  # the keyring entry was removed with another tool
    assert TotpGate(load_settings(None), data).needed() is False  # the keyring decides when it answers
    r = amarktai("totp", "disable", "--data-dir", data)
    assert r.code == 0, r.stderr
    assert "stale record" in r.stdout and recorded_enabled(data) is None
    r = amarktai("totp", "disable", "--data-dir", data)
    assert (
        r.code == 2
        and one_line(r.stderr)
        and r.stderr.strip() == "amarktai totp disable: TOTP is not enabled"
    )
