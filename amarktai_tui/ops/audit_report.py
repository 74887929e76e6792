"""The compliance report of the audit log for a time range: Markdown, self-contained HTML, CSV, JSON.

What it holds (``build_report``): the entry counts by type and by severity, then every critical
entry, the mode changes, the API key changes (added, deleted, tested), the breaker trips and
resets (emergency stops included) and the AI console's actions, each oldest first. The CSV is one
row per entry of the range instead (``write_csv``). Times are UTC; the range is ``start`` <= ts <
``end`` (ms UTC). Nothing here reads a secret: key entries hold a provider id and a masked key id.
"""

from __future__ import annotations

import csv
import html
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from amarktai_tui.ops.audit import AUDIT_TYPES, Severity, iso_time
from amarktai_tui.ops.audit_store import AuditFilter, AuditRow, counts, iter_rows, query

SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("mode_changes", "Mode changes", ("system_mode_changed",)),
    ("key_changes", "API key changes", ("api_key_added", "api_key_deleted", "api_key_tested")),
    (
        "breakers",
        "Breaker trips and resets",
        ("emergency_stop_triggered", "breaker_tripped", "breaker_reset"),
    ),
    ("ai_actions", "AI actions", tuple(t for t in AUDIT_TYPES if t.startswith("ai_action_"))),
)
"""(key, title, types) of the report's sections after the critical entries."""
CSV_COLUMNS = ("id", "ts", "time_utc", "type", "severity", "actor", "bot_id", "bot", "details")


@dataclass(frozen=True, slots=True)
class ComplianceReport:
    """The report of ``start`` <= ts < ``end`` (ms UTC), made at ``generated`` (ms UTC)."""

    start: int
    end: int
    generated: int
    by_type: dict[str, int]
    """Entries per type, every known type listed (0 included), then any unknown ones."""
    by_severity: dict[str, int]
    critical: list[AuditRow]
    sections: dict[str, list[AuditRow]]
    """``SECTIONS`` key -> its entries, oldest first."""

    @property
    def total(self) -> int:
        return sum(self.by_severity.values())


def build_report(conn: sqlite3.Connection, start: int, end: int, generated: int) -> ComplianceReport:
    """Read the report of ``start`` <= ts < ``end`` from ``conn`` (a read-only connection is enough).
    Raises sqlite3.Error."""
    rng = AuditFilter(since=start, until=end)
    pairs = counts(conn, rng)
    by_type = dict.fromkeys(AUDIT_TYPES, 0)
    by_severity = {s.value: 0 for s in Severity}
    for (kind, sev), n in sorted(pairs.items()):
        by_type[kind] = by_type.get(kind, 0) + n
        by_severity[sev] = by_severity.get(sev, 0) + n
    critical = query(
        conn, AuditFilter(since=start, until=end, severities=(Severity.CRITICAL,)), newest_first=False
    )
    sections = {
        key: query(conn, AuditFilter(since=start, until=end, types=types), newest_first=False)
        for key, _title, types in SECTIONS
    }
    return ComplianceReport(start, end, generated, by_type, by_severity, critical, sections)


def details_text(details: Mapping[str, Any], *, width: int = 0) -> str:
    """``{"pair": "BTC/USDT", "args": {"x": 1}}`` -> ``pair=BTC/USDT args={"x": 1}`` (one line); each
    value cut to ``width`` characters when ``width`` > 0."""
    parts = []
    for k, v in details.items():
        text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
        text = " ".join(text.split())
        if width and len(text) > width:
            text = text[: width - 1] + "…"
        parts.append(f"{k}={text}")
    return " ".join(parts)


def to_json(rep: ComplianceReport) -> dict[str, Any]:
    """``{"from", "to" (ISO UTC, end exclusive), "generated", "total", "by_type", "by_severity",
    "critical": [ENTRY], "mode_changes" | "key_changes" | "breakers" | "ai_actions": [ENTRY]}``."""
    return {
        "from": iso_time(rep.start),
        "to": iso_time(rep.end),
        "generated": iso_time(rep.generated),
        "total": rep.total,
        "by_type": rep.by_type,
        "by_severity": rep.by_severity,
        "critical": [r.to_json() for r in rep.critical],
        **{key: [r.to_json() for r in rows] for key, rows in rep.sections.items()},
    }


def _time(ts: int) -> str:
    return iso_time(ts).replace("T", " ").removesuffix("Z")[:19]


def _cells(row: AuditRow) -> list[str]:
    e = row.entry
    return [_time(e.ts), e.severity.value, e.type, e.actor, e.bot or "-", details_text(e.details)]


_ENTRY_HEAD = ["Time (UTC)", "Severity", "Type", "Actor", "Bot", "Details"]


def _md_cell(text: str) -> str:
    return " ".join(text.split()).replace("\\", "\\\\").replace("|", "\\|") or " "


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out.extend("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows)
    return out


def _titled(rep: ComplianceReport) -> list[tuple[str, list[AuditRow]]]:
    titles = {key: title for key, title, _types in SECTIONS}
    return [("Critical entries", rep.critical), *((titles[k], rows) for k, rows in rep.sections.items())]


def to_markdown(rep: ComplianceReport) -> str:
    """The report as a Markdown document."""
    lines = [
        "# Audit compliance report",
        "",
        f"- Range: {iso_time(rep.start)} to {iso_time(rep.end)} (UTC, end exclusive)",
        f"- Generated: {iso_time(rep.generated)}",
        f"- Entries: {rep.total}",
        "",
        "## Entries by severity",
        "",
        *_md_table(["Severity", "Entries"], [[k, str(v)] for k, v in rep.by_severity.items()]),
        "",
        "## Entries by type",
        "",
        *_md_table(["Type", "Entries"], [[k, str(v)] for k, v in rep.by_type.items()]),
    ]
    for title, rows in _titled(rep):
        lines += ["", f"## {title} ({len(rows)})", ""]
        lines += _md_table(_ENTRY_HEAD, [_cells(r) for r in rows]) if rows else ["None in this range."]
    return "\n".join(lines) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #1d2330; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #c9ced8; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eef1f6; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.critical td { background: #fdecec; } tr.warning td { background: #fff6e0; }
.meta { color: #566074; }
"""


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_counts(title: str, counts_: Mapping[str, int]) -> list[str]:
    rows = "".join(f'<tr><td>{_h(k)}</td><td class="n">{v}</td></tr>' for k, v in counts_.items())
    return [f"<h2>{_h(title)}</h2>", f"<table><tr><th>{_h(title.split()[-1].title())}</th>"
            f"<th>Entries</th></tr>{rows}</table>"]  # fmt: skip


def to_html(rep: ComplianceReport) -> str:
    """The report as one self-contained HTML page (inline CSS, no script, no external resource)."""
    title = f"Audit compliance report {iso_time(rep.start)[:10]} to {iso_time(rep.end)[:10]}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_h(title)}</title><style>{_CSS}</style></head><body>",
        "<h1>Audit compliance report</h1>",
        f'<p class="meta">Range: {_h(iso_time(rep.start))} to {_h(iso_time(rep.end))} (UTC, end exclusive)'
        f"<br>Generated: {_h(iso_time(rep.generated))}<br>Entries: {rep.total}</p>",
        *_html_counts("Entries by severity", rep.by_severity),
        *_html_counts("Entries by type", rep.by_type),
    ]
    head = "".join(f"<th>{_h(c)}</th>" for c in _ENTRY_HEAD)
    for section, rows in _titled(rep):
        parts.append(f"<h2>{_h(section)} ({len(rows)})</h2>")
        if not rows:
            parts.append("<p>None in this range.</p>")
            continue
        body = "".join(
            f'<tr class="{_h(r.entry.severity.value)}">'
            + "".join(f"<td>{_h(c)}</td>" for c in _cells(r))
            + "</tr>"
            for r in rows
        )
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_csv(conn: sqlite3.Connection, start: int, end: int, out: TextIO) -> int:
    """One row per entry of ``start`` <= ts < ``end``, oldest first, under a header (``CSV_COLUMNS``;
    ``details`` as JSON); returns the rows written. Raises sqlite3.Error."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    n = 0
    for r in iter_rows(conn, AuditFilter(since=start, until=end)):
        e = r.entry
        details = json.dumps(e.details, sort_keys=True, default=str)
        w.writerow([r.id, e.ts, iso_time(e.ts), e.type, e.severity.value, e.actor, e.bot_id if e.bot_id is not None
                    else "", e.bot or "", details])  # fmt: skip
        n += 1
    return n
