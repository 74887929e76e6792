"""``amarktai balances [--json] [--exchange ID ...]``: every exchange's balances, valued in the quote currency.

Reads every exchange with a key in the keyring (or the ones named with ``--exchange``),
concurrently, each under its own deadline (``ops.balances``). Prints a table per exchange, or
with ``--json`` only the JSON document on stdout (shape: ``ops.balances`` module doc).

Exit codes: 0 every exchange answered; 1 one or more failed (the others are still printed), or
no usable keyring; 2 bad usage (an unknown exchange id). Every error is one line on stderr; no
secret is ever printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from amarktai_tui.config import Settings
from amarktai_tui.exchanges.registry import exchange_info
from amarktai_tui.ops.balances import (
    NO_WITHDRAWALS,
    BalancesReport,
    ExchangeBalances,
    UnknownExchangeError,
    check_exchange_ids,
    read_balances,
)
from amarktai_tui.vault.errors import VaultUnavailable

CENT = Decimal("0.01")


def run_balances(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """Run ``amarktai balances``; returns the exit code (see the module doc)."""
    try:
        exchanges = check_exchange_ids(args.exchange)
    except UnknownExchangeError as exc:
        print(f"amarktai balances: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(read_balances(settings, data_dir, exchanges))
    except VaultUnavailable as exc:
        print(f"amarktai: {exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for line in table_lines(report):
            print(line)
    if not report.exchanges:
        print(
            "amarktai balances: no exchange key in the keyring; save one with `amarktai keys set EXCHANGE`",
            file=sys.stderr,
        )
    for failed in (e for e in report.exchanges if not e.ok):
        print(f"amarktai balances: {failed.exchange}: {failed.error}", file=sys.stderr)
    return 0 if report.ok else 1


def table_lines(report: BalancesReport) -> list[str]:
    """The human-readable report: per exchange a title line, then its assets or its error."""
    out = [f"Balances in {report.quote}"]
    for e in report.exchanges:
        out.append("")
        out.extend(_exchange_lines(e, report.quote))
    out += ["", NO_WITHDRAWALS]
    return out


def _exchange_lines(e: ExchangeBalances, quote: str) -> list[str]:
    name = exchange_info(e.exchange).name
    if not e.ok:
        return [f"{name}: FAILED: {e.error}"]
    total = "-" if e.total_value is None else f"{_money(e.total_value)} {quote}"
    if e.unpriced:
        total += f" (not counted, no price: {', '.join(e.unpriced)})"
    lines = [f"{name}: total {total}; balance read in {e.latency_ms} ms"]
    if e.error:
        lines.append(f"  {e.error}")
    lines.append(f"  {'ASSET':<8} {'FREE':>20} {'USED':>20} {'TOTAL':>20} {'VALUE (' + quote + ')':>18}")
    for a in e.assets:
        value = "unknown" if a.value is None else _money(a.value)
        lines.append(f"  {a.asset:<8} {_qty(a.free):>20} {_qty(a.used):>20} {_qty(a.total):>20} {value:>18}")
    if not e.assets:
        lines.append("  (no assets held)")
    return lines


def _money(d: Decimal) -> str:
    """Quote money with 2 decimals and thousands separators (``10847.935`` -> ``10,847.94``)."""
    return f"{d.quantize(CENT, rounding=ROUND_HALF_EVEN):,.2f}"


def _qty(d: Decimal) -> str:
    """A quantity as the exchange gave it, trailing zeros dropped (``0.50000000`` -> ``0.5``)."""
    text = format(d, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
