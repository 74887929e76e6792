"""``amarktai keys set|list|test|delete PROVIDER``: API keys in the OS keyring.

- ``keys set P``: on a terminal, prompts for each field (secrets without echo); otherwise
  reads the fields from stdin, one per line, in the registry's order (an exchange: API key,
  secret, then passphrase if any). Status ``saved_untested``.
- ``keys list [--json]``: every provider with status, last test (ms UTC), the masked last 4
  characters of its key, whether it can withdraw, the last failure reason. Never a secret.
- ``keys test P [--json]``: a real authenticated call (``vault.tester``); exit 0 when the key
  works, 1 when it does not. A key that can withdraw still passes (exit 0), with a WARNING
  line on stderr and ``can_withdraw`` recorded: the key works, but should be replaced by a
  trade-only one.
- ``keys delete P [--totp CODE]``: removes the keyring entries; status ``not_configured``. With
  TOTP enabled (``vault.totp``) it needs a current code (prompted on a terminal).

Exit codes: 0 ok; 1 runtime failure (no usable keyring, the test failed, nothing saved to
test, the ledger unusable); 2 bad usage (unknown provider, empty or missing field, a
provider without a test, a missing or wrong TOTP code). Every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from amarktai_tui.config import Settings
from amarktai_tui.ledger.schema import SchemaTooNewError
from amarktai_tui.vault.errors import KeyInputError, NotConfiguredError, VaultUnavailable
from amarktai_tui.vault.manager import KeyManager, KeyRow
from amarktai_tui.vault.permissions import WITHDRAW_WARNING
from amarktai_tui.vault.providers import Provider, get_provider


def run_keys(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """Run ``amarktai keys <action>``; returns the exit code (see the module doc)."""
    action = args.keys_command
    try:
        if action == "list":
            return _list(KeyManager(settings, data_dir), as_json=args.json)
        provider = get_provider(args.provider)
        if action == "set":
            return _set(KeyManager(settings, data_dir), provider, sys.stdin)
        if action == "test":
            return _test(KeyManager(settings, data_dir), provider, as_json=args.json)
        if action == "delete":
            return _delete(KeyManager(settings, data_dir), provider, args.totp)
    except KeyInputError as exc:
        print(f"amarktai keys {action}: {exc}", file=sys.stderr)
        return 2
    except (VaultUnavailable, NotConfiguredError, SchemaTooNewError) as exc:
        print(f"amarktai: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"amarktai: ledger in {data_dir} unusable: {exc}", file=sys.stderr)
        return 1
    print(f"amarktai keys: unknown action {action!r}", file=sys.stderr)
    return 2


def read_fields(provider: Provider, stdin: TextIO) -> dict[str, str]:
    """The provider's field values: prompted on a terminal (secrets without echo), else one per
    line from ``stdin`` in registry order (trailing optional fields may be left out).

    Raises KeyInputError when stdin has too few or too many lines.
    """
    if stdin.isatty():
        values = {}
        for f in provider.fields:
            prompt = f"{provider.name} {f.label}{' (optional)' if f.optional else ''}: "
            if f.secret:
                values[f.name] = getpass.getpass(prompt)
            else:
                print(prompt, end="", file=sys.stderr, flush=True)
                values[f.name] = stdin.readline().strip()
        return values
    lines = stdin.read().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    needed = max((i + 1 for i, f in enumerate(provider.fields) if not f.optional), default=0)
    if not needed <= len(lines) <= len(provider.fields):
        names = ", ".join(f.label + (" (optional)" if f.optional else "") for f in provider.fields)
        raise KeyInputError(
            f"{provider.id}: expected {_count(needed, len(provider.fields))} on stdin ({names}), got {len(lines)}"
        )
    return {f.name: line.strip() for f, line in zip(provider.fields, lines, strict=False)}


def _count(low: int, high: int) -> str:
    n = str(low) if low == high else f"{low} to {high}"
    return f"{n} line{'' if high == 1 else 's'}"


def _set(manager: KeyManager, provider: Provider, stdin: TextIO) -> int:
    values = read_fields(provider, stdin)
    manager.save(provider.id, values)
    follow = (
        f"next: amarktai keys test {provider.id}" if provider.testable else "no test exists for this provider"
    )
    print(f"{provider.id}: saved in the keyring ({manager.store.name}); status saved_untested; {follow}")
    _audit(manager, "added", provider, masked=_masked(values.get(provider.masked_field)))
    return 0


def _list(manager: KeyManager, *, as_json: bool) -> int:
    rows = manager.rows()
    if as_json:
        json.dump([r.to_json() for r in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"keyring: {manager.store.name}")
    print(f"{'PROVIDER':<9} {'STATUS':<15} {'LAST TESTED (UTC)':<18} {'KEY':<9} {'WITHDRAW':<8} REASON")
    for r in rows:
        print(
            f"{r.provider.id:<9} {r.status:<15} {_ts(r.last_tested):<18} {r.masked or '-':<9} "
            f"{_withdraw(r):<8} {r.reason}".rstrip()
        )
    return 0


def _test(manager: KeyManager, provider: Provider, *, as_json: bool) -> int:
    outcome = asyncio.run(manager.test(provider.id))
    check, row = outcome.check, outcome.status
    if as_json:
        out = {
            "provider": provider.id,
            "status": row.status,
            "ok": check.ok,
            "summary": check.summary,
            "reason": check.reason,
            "can_withdraw": check.can_withdraw,
            "last_tested": row.tested_ts,
            "note": check.note,
        }
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{provider.id}: {row.status}: {check.summary if check.ok else check.reason}")
    if check.can_withdraw:
        print(WITHDRAW_WARNING, file=sys.stderr)
    elif check.ok and check.note:
        print(f"{provider.id}: {check.note}", file=sys.stderr)
    _audit(manager, "tested", provider, ok=check.ok, status=row.status, can_withdraw=check.can_withdraw)
    return 0 if check.ok else 1


def _delete(manager: KeyManager, provider: Provider, code: str | None) -> int:
    from amarktai_tui.ops.totp_commands import ask_code
    from amarktai_tui.vault.totp import require_totp, totp_enabled

    require_totp(manager.store, ask_code(code, lambda: totp_enabled(manager.store)))  # TotpRequired: exit 2
    found = manager.delete(provider.id)
    print(
        f"{provider.id}: {'deleted from the keyring' if found else 'nothing was saved'}; status not_configured"
    )
    _audit(manager, "deleted", provider, found=found)
    return 0


def _audit(manager: KeyManager, action: str, provider: Provider, **details: Any) -> None:
    """The audit entry of a key change (``ops.audit``): provider id and masked key id, never a secret.
    A failure to record it is a warning line on stderr; the command's own result stands."""
    from amarktai_tui.ops.audit import key_entry, note_offline
    from amarktai_tui.vault.status import now_ms

    note_offline(manager.data_dir, key_entry(action, provider.id, ts=now_ms(), **details))


def _masked(value: str | None) -> str | None:
    from amarktai_tui.vault.store import masked

    return masked(value) if value else None


def _ts(ms: int | None) -> str:
    return "-" if ms is None else f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%d %H:%M}"


def _withdraw(row: KeyRow) -> str:
    return {True: "YES", False: "no", None: "-"}[row.can_withdraw]
