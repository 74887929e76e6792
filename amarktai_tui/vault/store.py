"""Read, write and delete a provider's secrets in the keyring (service ``amarktai``).

Each field is one keyring entry, username ``<provider>:<field>``. Every keyring failure
(a locked collection, a D-Bus error, a corrupt file) becomes VaultUnavailable with a one-line
message that names the backend and the error type, scrubbed of the values involved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from amarktai_tui.ops.redact import register_secrets
from amarktai_tui.vault.backend import describe
from amarktai_tui.vault.errors import KeyInputError, VaultUnavailable
from amarktai_tui.vault.providers import Provider
from amarktai_tui.vault.scrub import scrub

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

SERVICE = "amarktai"
MASK = "••••"
_T = TypeVar("_T")


def username(provider: Provider, field: str) -> str:
    """The keyring username of ``provider``'s ``field``: ``<provider>:<field>``."""
    return f"{provider.id}:{field}"


def masked(value: str) -> str:
    """``••••`` and the last 4 characters (all of a value of 4 or fewer would be shown: mask it whole)."""
    return MASK + value[-4:] if len(value) > 4 else MASK


class SecretStore:
    """The secrets of every provider in one keyring backend."""

    def __init__(self, backend: KeyringBackend) -> None:
        self.backend = backend
        self.name = describe(backend)
        """What the messages call the backend (``Secret Service``, ``encrypted file /path``)."""

    def save(self, provider: Provider, values: Mapping[str, str]) -> None:
        """Store ``values`` (field name -> value; blank optional fields are removed, not stored).

        Raises KeyInputError for a missing required field or an unknown field name (before
        anything is written), VaultUnavailable when the keyring fails.
        """
        known = {f.name for f in provider.fields}
        unknown = sorted(set(values) - known)
        if unknown:
            raise KeyInputError(f"{provider.id}: unknown field(s) {', '.join(unknown)}")
        for f in provider.fields:
            if not f.optional and not values.get(f.name, "").strip():
                raise KeyInputError(f"{provider.id}: {f.label} must not be empty")
        secrets = [values.get(n, "") for n in provider.secret_fields]
        register_secrets(secrets)  # masked in every log line from now on
        for f in provider.fields:
            value = values.get(f.name, "").strip()
            user = username(provider, f.name)
            if value:
                self._call(self.backend.set_password, SERVICE, user, value, secrets=secrets)
            else:
                self._delete_one(user, secrets)

    def load(self, provider: Provider) -> dict[str, str] | None:
        """Every stored field of ``provider`` (absent optional fields left out), or None when a
        required field is missing (nothing usable saved). Raises VaultUnavailable."""
        out: dict[str, str] = {}
        for f in provider.fields:
            user = username(provider, f.name)
            value = self._call(self.backend.get_password, SERVICE, user)
            if value:
                out[f.name] = value
            elif not f.optional:
                return None
        register_secrets(out.get(n) for n in provider.secret_fields)  # masked in every log line
        return out

    def masked(self, provider: Provider) -> str | None:
        """``••••`` + the last 4 characters of the provider's masked field, or None if not saved.

        Computed from the keyring each time, never stored. Raises VaultUnavailable.
        """
        user = username(provider, provider.masked_field)
        value = self._call(self.backend.get_password, SERVICE, user)
        return masked(value) if value else None

    def delete(self, provider: Provider) -> bool:
        """Remove every field of ``provider``; True when something was there. Raises VaultUnavailable."""
        found = False
        for f in provider.fields:
            found |= self._delete_one(username(provider, f.name), ())
        return found

    def _delete_one(self, user: str, secrets: Sequence[str]) -> bool:
        from keyring.errors import PasswordDeleteError

        def delete() -> bool:
            try:
                self.backend.delete_password(SERVICE, user)
            except PasswordDeleteError:
                return False
            return True

        return self._call(delete, secrets=secrets)

    def _call(self, fn: Callable[..., _T], *args: str, secrets: Sequence[str] = ()) -> _T:
        try:
            return fn(*args)
        except VaultUnavailable:
            raise
        except Exception as exc:  # KeyringLocked, InitError, D-Bus and file errors alike
            text = scrub(str(exc), secrets)
            detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            raise VaultUnavailable(f"the keyring ({self.name}) failed: {detail}") from None
