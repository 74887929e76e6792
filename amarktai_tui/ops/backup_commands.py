"""``amarktai backup [--json]`` and ``amarktai restore FILE [--yes]`` (``ops.backup``).

- ``backup``: copies the ledger into ``<data dir>/backups/`` (reason ``manual``), whether or not an
  engine runs (a read of the file), prunes to ``[backup] keep``, prints the path, size and sha256
  (``--json``: one object: path, size, sha256, reason, ts ms UTC, schema_version).
- ``restore FILE``: FILE must be listed in the data dir's ``backups/manifest.json`` with the same
  sha256, pass ``PRAGMA integrity_check``, and no engine may hold the data dir. Asks to confirm on a
  terminal unless ``--yes``; without a terminal ``--yes`` is required. The current ledger is backed
  up first (reason ``pre_restore``).

Exit codes: 0 done; 1 refused or failed (not in the manifest, checksum mismatch, integrity check,
an engine running, no ledger to back up, no room); 2 bad usage (FILE missing, no terminal and no
``--yes``, not confirmed). Every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import TextIO

from amarktai_tui.config import Settings
from amarktai_tui.locations import db_path, lock_path
from amarktai_tui.ops.backup import BackupError, create_backup, restore_backup, verify_backup
from amarktai_tui.ops.lock import is_held


def run_backup(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """Run ``amarktai backup``; returns the exit code (module doc)."""
    try:
        made = create_backup(db_path(data_dir), "manual", keep=settings.backup.keep)
    except (BackupError, OSError, sqlite3.Error) as exc:
        print(f"amarktai backup: {_one_line(exc)}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(made.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{made.path}\n  size {made.size} bytes, schema v{made.schema_version}\n  sha256 {made.sha256}")
    return 0


def run_restore(
    args: argparse.Namespace, settings: Settings, data_dir: Path, stdin: TextIO | None = None
) -> int:
    """Run ``amarktai restore FILE``; returns the exit code (module doc)."""
    stdin = sys.stdin if stdin is None else stdin
    file: Path = args.file
    if not file.is_file():
        print(f"amarktai restore: {file} is not a file", file=sys.stderr)
        return 2
    if not args.yes and not stdin.isatty():
        print("amarktai restore: stdin is not a terminal: add --yes to confirm the restore", file=sys.stderr)
        return 2
    try:
        entry = verify_backup(data_dir, file)
        if is_held(lock_path(data_dir)):
            print(f"amarktai restore: an engine is running on {data_dir}: stop it first, then restore",
                  file=sys.stderr)  # fmt: skip
            return 1
        if not args.yes:
            taken = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(entry.ts // 1000))
            print(
                f"Replace the ledger in {data_dir} with {file.name} ({entry.reason}, taken {taken},"
                f" schema v{entry.schema_version})?\nThe current ledger is backed up first. [y/N] ",
                end="",
                file=sys.stderr,
                flush=True,
            )
            if stdin.readline().strip().lower() not in ("y", "yes"):
                print("amarktai restore: not confirmed: the ledger is unchanged", file=sys.stderr)
                return 2
        restored, pre = restore_backup(data_dir, file, keep=settings.backup.keep)
    except (BackupError, OSError, sqlite3.Error) as exc:
        print(f"amarktai restore: {_one_line(exc)}", file=sys.stderr)
        return 1
    print(f"restored {restored.path.name} into {db_path(data_dir)}")
    if pre is not None:
        print(f"the ledger it replaced is in {pre.path}")
    return 0


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()
    return text[0] if text else type(exc).__name__
