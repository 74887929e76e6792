"""KeyManager: the keyring, the status table and the key tests together (the CLI and the TUI use it).

What ``keys list`` shows per provider: the status is ``not_configured`` whenever the keyring
holds nothing for it (whatever the table says: the entry may have been removed with another
tool); otherwise the table's status, or ``saved_untested`` when the table has no row (keys
saved before the ledger existed, or the ledger was replaced).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amarktai_tui.vault import status
from amarktai_tui.vault.backend import open_backend
from amarktai_tui.vault.errors import NotConfiguredError
from amarktai_tui.vault.providers import PROVIDERS, Provider, get_provider
from amarktai_tui.vault.status import KeyStatus, Status
from amarktai_tui.vault.store import SecretStore
from amarktai_tui.vault.tester import KeyCheck, check_key

if TYPE_CHECKING:
    from amarktai_tui.config import Settings

log = logging.getLogger("amarktai.vault")


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One line of ``keys list``: never a secret, only its last 4 characters (``masked``)."""

    provider: Provider
    status: Status
    last_tested: int | None
    masked: str | None
    can_withdraw: bool | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        """``{"provider", "status", "last_tested" (ms UTC|null), "masked"|null, "can_withdraw"
        (bool|null), "reason"}``: the ``keys list --json`` item."""
        return {
            "provider": self.provider.id,
            "status": self.status,
            "last_tested": self.last_tested,
            "masked": self.masked,
            "can_withdraw": self.can_withdraw,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class TestOutcome:
    """A finished ``keys test``: what the call found and the status row written for it."""

    __test__ = False  # not a pytest test class

    check: KeyCheck
    status: KeyStatus


class KeyManager:
    """Save, list, test and delete keys: secrets in ``store``, status in ``data_dir``'s ledger.

    Every method may raise VaultUnavailable (the keyring failed) and sqlite3.Error /
    SchemaTooNewError (the ledger); the keyring calls block (D-Bus, or an Argon2 derivation
    per secret for the encrypted file): a UI runs them in a thread.
    """

    def __init__(self, settings: Settings, data_dir: Path, store: SecretStore | None = None) -> None:
        """Opens the configured keyring unless ``store`` is given. Raises VaultUnavailable."""
        self.settings = settings
        self.data_dir = data_dir
        self.store = store if store is not None else SecretStore(open_backend(settings.keys, data_dir))

    def rows(self) -> list[KeyRow]:
        """Every provider in registry order (see the module doc for how the status is chosen)."""
        saved = status.read_all(self.data_dir)
        out = []
        for p in PROVIDERS.values():
            masked = self.store.masked(p)
            row = saved.get(p.id, KeyStatus(p.id))
            if masked is None:
                out.append(KeyRow(p, "not_configured", row.tested_ts, None, None, ""))
                continue
            st: Status = "saved_untested" if row.status == "not_configured" else row.status
            out.append(KeyRow(p, st, row.tested_ts, masked, row.can_withdraw, row.reason))
        return out

    def save(self, provider_id: str, values: Mapping[str, str]) -> None:
        """Store ``values`` in the keyring, then mark ``saved_untested``.

        Raises KeyInputError (unknown provider or field, empty required field).
        """
        p = get_provider(provider_id)
        self.store.save(p, values)
        status.mark_saved(self.data_dir, p.id, status.now_ms())
        log.info("key saved: %s (%s)", p.id, self.store.name)

    def delete(self, provider_id: str) -> bool:
        """Remove the keyring entries and mark ``not_configured``; True when something was stored."""
        p = get_provider(provider_id)
        found = self.store.delete(p)
        status.mark_deleted(self.data_dir, p.id, status.now_ms())
        log.info("key deleted: %s", p.id)
        return found

    async def test(self, provider_id: str) -> TestOutcome:
        """Run the provider's key test and record ``test_ok`` / ``test_failed``.

        Raises KeyInputError (unknown provider), NotTestableError (no test for it),
        NotConfiguredError (nothing saved). A failing call is not an error: see ``check.ok``.
        """
        p = get_provider(provider_id)
        if not p.testable:
            await check_key(p, {}, self.settings)  # raises NotTestableError
        values = await asyncio.to_thread(self.store.load, p)
        if values is None:
            raise NotConfiguredError(f"{p.id}: no key saved; run `amarktai keys set {p.id}` first")
        check = await check_key(p, values, self.settings)
        row = await asyncio.to_thread(
            status.mark_tested,
            self.data_dir,
            p.id,
            ok=check.ok,
            reason=check.reason,
            can_withdraw=check.can_withdraw,
            ts=status.now_ms(),
        )
        log.info(
            "key tested: %s %s%s%s",
            p.id,
            row.status,
            f": {check.reason}" if check.reason else "",
            " (the key can withdraw)" if check.can_withdraw else "",
        )
        return TestOutcome(check, row)
