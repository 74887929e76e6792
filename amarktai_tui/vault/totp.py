"""The optional TOTP second factor (RFC 6238, pyotp): key deletion, breaker resets and the live
switch need a current code once it is enabled.

The shared secret lives in the keyring only (service ``amarktai``, username ``totp:secret``),
like the API keys; it never goes in the ledger, a log line, an exception message or any output
except the enrolment screen (QR code and secret, shown once). Enrolment is two steps:
``enroll`` stores a *pending* secret (``totp_pending:secret``) and returns it with its
``otpauth://`` URI; ``confirm_enrollment`` checks a first code from the authenticator app and
only then makes it the active secret. ``disable`` needs a current code.

Enabled means: the keyring holds the active secret. So that a keyring that cannot be reached
does not silently turn the second factor off, the CLI also records *that* TOTP is enabled (a
time, never the secret) in the ledger's ``kv`` table (``totp.enabled_ts``); ``TotpGate``
refuses when that record says enabled and the keyring cannot be opened.

Codes: 6 digits, 30-second steps, SHA-1 (what every authenticator app reads from the URI); one
step either side of now is accepted (``valid_window=1``) for clock drift and typing time.
"""

from __future__ import annotations

import getpass
import socket
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyotp

from amarktai_tui.locations import db_path
from amarktai_tui.vault.errors import KeyInputError, VaultUnavailable
from amarktai_tui.vault.providers import Field, Provider
from amarktai_tui.vault.store import SecretStore

if TYPE_CHECKING:
    from amarktai_tui.config import Settings
    from amarktai_tui.vault.manager import KeyManager

    Vault = SecretStore | KeyManager

ISSUER = "Amarktai"
VALID_WINDOW = 1
"""Time steps accepted either side of now (30 s each)."""
ENABLED_KEY = "totp.enabled_ts"
"""Ledger ``kv`` key: ms UTC at which TOTP was enabled (absent = not enabled). Never the secret."""

# Not in the provider registry: `keys set|list|delete` never see them.
ACTIVE = Provider("totp", "TOTP second factor", "data", (Field("secret", "TOTP secret"),), "secret", False)
PENDING = Provider(
    "totp_pending", "TOTP enrolment", "data", (Field("secret", "TOTP secret"),), "secret", False
)


class TotpRequired(KeyInputError):
    """TOTP is enabled and the code is missing or wrong (one line, a user's mistake: exit 2)."""


class TotpStateError(KeyInputError):
    """An action that does not fit the current state: enrolling while enabled, confirming with
    no enrolment in progress, disabling while disabled (exit 2)."""


def _store(vault: Vault) -> SecretStore:
    return vault if isinstance(vault, SecretStore) else vault.store


def _secret(vault: Vault, provider: Provider = ACTIVE) -> str | None:
    values = _store(vault).load(provider)
    return values["secret"] if values else None


def _check(secret: str, code: str, now: float | None) -> bool:
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return False
    at = time.time() if now is None else now
    return pyotp.TOTP(secret).verify(code, for_time=int(at), valid_window=VALID_WINDOW)


def totp_enabled(vault: Vault) -> bool:
    """True when the keyring holds an active TOTP secret. Raises VaultUnavailable."""
    return _secret(vault) is not None


def verify_totp(vault: Vault, code: str, *, now: float | None = None) -> bool:
    """True when ``code`` (6 digits; spaces ignored) is the active secret's code at ``now``
    (seconds since the epoch; default the wall clock), one 30 s step either side accepted.
    False when TOTP is not enabled. Raises VaultUnavailable."""
    secret = _secret(vault)
    return secret is not None and _check(secret, code, now)


def require_totp(vault: Vault, code: str | None, *, now: float | None = None) -> None:
    """Nothing when TOTP is not enabled or ``code`` is current; else raises TotpRequired (one
    line: the code is missing, or wrong). Raises VaultUnavailable when the keyring fails."""
    secret = _secret(vault)
    if secret is None:
        return
    if code is None or not code.strip():
        raise TotpRequired(
            "TOTP is enabled: this needs a current code from your authenticator app (--totp CODE)"
        )
    if not _check(secret, code, now):
        raise TotpRequired("wrong TOTP code (check the authenticator app and this computer's clock)")


def default_account() -> str:
    """The account name the authenticator app shows: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "amarktai"
    return f"{user}@{socket.gethostname()}"


def enroll(vault: Vault, issuer: str = ISSUER, account: str | None = None) -> tuple[str, str]:
    """Start an enrolment: a new random secret (160 bits, base32) stored as *pending* in the
    keyring; returns ``(secret, otpauth_uri)`` for the QR code. TOTP is not enabled until
    ``confirm_enrollment`` accepts a first code. A previous pending secret is replaced.

    Raises TotpStateError when TOTP is already enabled, VaultUnavailable.
    """
    if totp_enabled(vault):
        raise TotpStateError("TOTP is already enabled; `amarktai totp disable` first to enrol again")
    secret = pyotp.random_base32(32)
    _store(vault).save(PENDING, {"secret": secret})
    uri = pyotp.TOTP(secret).provisioning_uri(name=account or default_account(), issuer_name=issuer)
    return secret, uri


def confirm_enrollment(vault: Vault, code: str, *, now: float | None = None) -> bool:
    """Check a first ``code`` against the pending secret; when it is current, make the pending
    secret the active one (TOTP is enabled from then on) and return True. A wrong code returns
    False and leaves the enrolment pending.

    Raises TotpStateError when no enrolment is pending, VaultUnavailable.
    """
    store = _store(vault)
    pending = _secret(vault, PENDING)
    if pending is None:
        raise TotpStateError("no TOTP enrolment in progress: run `amarktai totp enroll`")
    if not _check(pending, code, now):
        return False
    store.save(ACTIVE, {"secret": pending})
    store.delete(PENDING)
    return True


def cancel_enrollment(vault: Vault) -> bool:
    """Forget a pending (unconfirmed) secret; True when there was one. Raises VaultUnavailable."""
    return _store(vault).delete(PENDING)


def disable(vault: Vault, code: str | None, *, now: float | None = None) -> None:
    """Remove the active secret (and any pending one) after checking a current ``code``.

    Raises TotpStateError when TOTP is not enabled, TotpRequired for a missing or wrong code,
    VaultUnavailable.
    """
    if not totp_enabled(vault):
        raise TotpStateError("TOTP is not enabled")
    require_totp(vault, code, now=now)
    store = _store(vault)
    store.delete(ACTIVE)
    store.delete(PENDING)


# -- the ledger's record that TOTP is enabled (never the secret) ----------------------------------


def record_enabled(data_dir: Path, ts: int | None) -> None:
    """Record in the ledger that TOTP was enabled at ``ts`` (ms UTC), or remove the record
    (``ts`` None). Creates and migrates the ledger if needed. Raises sqlite3.Error."""
    from amarktai_tui.vault.status import connect

    with connect(data_dir) as conn:
        if ts is None:
            conn.execute("DELETE FROM kv WHERE key = ?", (ENABLED_KEY,))
        else:
            conn.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (ENABLED_KEY, str(ts)),
            )


def recorded_enabled(data_dir: Path) -> int | None:
    """When the ledger says TOTP was enabled (ms UTC), or None (no record, or no ledger yet).
    Raises sqlite3.Error for an unreadable ledger."""
    path = db_path(data_dir)
    if not path.exists():
        return None
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
        conn.execute("PRAGMA busy_timeout=5000")
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='kv'").fetchone():
            return None
        row = conn.execute("SELECT value FROM kv WHERE key = ?", (ENABLED_KEY,)).fetchone()
    try:
        return None if row is None else int(row[0])
    except ValueError:
        return 0  # something is recorded: treat it as enabled


@dataclass(frozen=True, slots=True)
class TotpGate:
    """The second factor for one config and data dir, for callers that have no vault open yet
    (breaker resets, ``amarktai resume``). Both methods block (keyring, SQLite): a UI runs them
    in a thread.
    """

    settings: Settings
    data_dir: Path

    def _vault(self) -> SecretStore:
        from amarktai_tui.vault.backend import open_backend

        return SecretStore(open_backend(self.settings.keys, self.data_dir))

    def needed(self) -> bool:
        """True when a code is needed: the keyring holds an active secret, or (keyring
        unavailable) the ledger records TOTP as enabled. Raises sqlite3.Error."""
        try:
            return totp_enabled(self._vault())
        except VaultUnavailable:
            return recorded_enabled(self.data_dir) is not None

    def check(self, code: str | None, *, now: float | None = None) -> None:
        """Nothing when no code is needed or ``code`` is current. Raises TotpRequired (missing
        or wrong code), VaultUnavailable (TOTP recorded as enabled but the keyring cannot be
        opened: fails closed), sqlite3.Error."""
        try:
            vault = self._vault()
            enabled = totp_enabled(vault)
        except VaultUnavailable as exc:
            if recorded_enabled(self.data_dir) is None:
                return
            raise VaultUnavailable(f"TOTP is enabled but its secret cannot be read: {exc}") from None
        if enabled:
            require_totp(vault, code, now=now)
