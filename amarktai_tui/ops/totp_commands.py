"""``amarktai totp enroll|status|disable``, and the ``--totp CODE`` second factor of other commands.

- ``totp enroll``: prints the QR code (terminal blocks) and the secret once, then asks for a
  current code from the authenticator app (a prompt on a terminal, else one line of stdin);
  TOTP is enabled only when that code is right.
- ``totp status [--json]``: ``{"enabled": bool, "pending": bool, "keyring": str,
  "enabled_ts": int|null}`` (``enabled_ts``: ms UTC, the ledger's record).
- ``totp disable [--totp CODE]``: needs a current code (the prompt on a terminal). When the
  keyring no longer holds a secret but the ledger still records TOTP as enabled (the entry was
  removed with another tool), it only removes that record.

Commands that need the second factor (``keys delete``, ``breakers reset``, ``resume``) take
``--totp CODE``; without it a terminal is prompted when TOTP is enabled.

Exit codes: 0 ok; 1 the keyring or the ledger failed; 2 a user's mistake (a missing or wrong
code, enrolling while enabled, disabling while disabled). Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from amarktai_tui.config import Settings
from amarktai_tui.ledger.schema import SchemaTooNewError
from amarktai_tui.vault.errors import KeyInputError, VaultUnavailable
from amarktai_tui.vault.store import SecretStore
from amarktai_tui.vault.totp import (
    PENDING,
    TotpGate,
    cancel_enrollment,
    confirm_enrollment,
    disable,
    enroll,
    record_enabled,
    recorded_enabled,
    totp_enabled,
)

ATTEMPTS = 3  # codes a terminal may try during enrolment


def ask_code(code: str | None, needed: Callable[[], bool], stdin: TextIO | None = None) -> str | None:
    """``code`` when given; else, on a terminal and when ``needed()``, a prompted code; else None."""
    if code is not None:
        return code
    stdin = sys.stdin if stdin is None else stdin
    if stdin.isatty() and needed():
        return _prompt("TOTP code: ", stdin)
    return None


def _prompt(text: str, stdin: TextIO) -> str | None:
    print(text, end="", file=sys.stderr, flush=True)
    line = stdin.readline()
    return line.strip() or None


def second_factor(code: str | None, settings: Settings, data_dir: Path, what: str) -> int | None:
    """The TOTP gate of a CLI command (``what``: ``breakers reset``, ``resume``): None when it may
    go on, else the exit code after a one-line error on stderr (2 missing or wrong code, 1 the
    keyring or the ledger failed)."""
    gate = TotpGate(settings, data_dir)
    try:
        gate.check(ask_code(code, gate.needed))
    except KeyInputError as exc:
        print(f"amarktai {what}: {exc}", file=sys.stderr)
        return 2
    except (VaultUnavailable, SchemaTooNewError) as exc:
        print(f"amarktai {what}: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"amarktai {what}: ledger in {data_dir} unusable: {exc}", file=sys.stderr)
        return 1
    return None


def run_totp(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """Run ``amarktai totp <action>``; returns the exit code (see the module doc)."""
    from amarktai_tui.vault.manager import KeyManager

    action = args.totp_command
    try:
        store = KeyManager(settings, data_dir).store
        if action == "enroll":
            return _enroll(store, data_dir, sys.stdin)
        if action == "status":
            return _status(store, data_dir, as_json=args.json)
        if action == "disable":
            if not totp_enabled(store) and recorded_enabled(data_dir) is not None:
                record_enabled(data_dir, None)  # the secret is gone: only the ledger's record was left
                print("TOTP is not enabled in the keyring; removed the ledger's stale record of it")
                return 0
            disable(store, ask_code(args.totp, lambda: totp_enabled(store)))
            record_enabled(data_dir, None)
            print("TOTP disabled: its secret is removed from the keyring")
            return 0
    except KeyInputError as exc:
        print(f"amarktai totp {action}: {exc}", file=sys.stderr)
        return 2
    except (VaultUnavailable, SchemaTooNewError) as exc:
        print(f"amarktai: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"amarktai: ledger in {data_dir} unusable: {exc}", file=sys.stderr)
        return 1
    print(f"amarktai totp: unknown action {action!r}", file=sys.stderr)
    return 2


def qr_text(uri: str) -> str:
    """``uri`` as a QR code drawn with Unicode half blocks (two modules per character row)."""
    import segno

    out = io.StringIO()
    segno.make(uri, error="m").terminal(out=out, compact=True)
    return out.getvalue()


def _enroll(store: SecretStore, data_dir: Path, stdin: TextIO) -> int:
    secret, uri = enroll(store)
    print("Scan this QR code with your authenticator app (or type the secret below):")
    print(qr_text(uri), end="")
    print(f"secret: {secret}")
    print("(shown this once; TOTP, 6 digits, 30 s)", flush=True)
    tty = stdin.isatty()
    for _ in range(ATTEMPTS if tty else 1):
        code = _prompt("code from the app to confirm: ", stdin) if tty else (stdin.readline().strip() or None)
        if code is None:
            break
        if confirm_enrollment(store, code):
            record_enabled(data_dir, int(time.time() * 1000))
            print("TOTP enabled: key deletion, breaker resets and the live switch now need a current code")
            return 0
        if tty:
            print("wrong code; try the current one", file=sys.stderr)
    cancel_enrollment(store)
    print(
        "amarktai totp enroll: no matching code: TOTP stays disabled; run `amarktai totp enroll` again",
        file=sys.stderr,
    )
    return 2


def _status(store: SecretStore, data_dir: Path, *, as_json: bool) -> int:
    enabled = totp_enabled(store)
    pending = store.load(PENDING) is not None
    since = recorded_enabled(data_dir)
    if as_json:
        out = {"enabled": enabled, "pending": pending, "keyring": store.name, "enabled_ts": since}
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if enabled:
        when = "" if not since else f" since {time.strftime('%Y-%m-%d %H:%M', time.gmtime(since / 1000))} UTC"
        print(f"TOTP enabled{when} (secret in the keyring: {store.name})")
    else:
        print("TOTP not enabled" + (" (an enrolment was not confirmed)" if pending else ""))
    return 0
