"""``amarktai doctor [--json]``: run the readiness checks (``ops.doctor``) and print them.

Human output: one line per check, ``PASS name  detail`` or ``FAIL name  detail -> fix``, then a
summary line. ``--json``: ``{"ok": bool, "checks": [{"name", "ok", "detail", "fix"}]}`` on
stdout and nothing else. Exit 0 only when every check passes, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from amarktai_tui.config import Settings
from amarktai_tui.ops.doctor import doctor_ok, report_json, run_doctor


def run_doctor_command(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """Run ``amarktai doctor``; returns the exit code (0 all pass, 1 otherwise)."""
    checks = asyncio.run(run_doctor(settings, data_dir))
    ok = doctor_ok(checks)
    if args.json:
        json.dump(report_json(checks), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for c in checks:
            print(c.line())
        failed = sum(1 for c in checks if not c.ok)
        print(
            "ready for live trading"
            if ok
            else f"not ready: {failed} check{'' if failed == 1 else 's'} failed"
        )
    return 0 if ok else 1
