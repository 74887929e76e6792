"""Tape: an append-only table (a header line over a RichLog of fixed-width rows).

For lists that grow while a replay runs (fills, closed trades): each row is
rendered once when appended, so a redraw costs the same with 10 or 10,000
rows; a DataTable re-renders every visible cell after each change. The
newest row is at the bottom and the log follows it unless scrolled up.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import RichLog, Static

ROLES = ("up", "down", "muted", "warn", "ok")


def foreground(style: Style) -> Style:
    """``style`` without its background, so a coloured cell sits on its row's background."""
    return Style(color=style.color, bold=style.bold, italic=style.italic, underline=style.underline)


@dataclass(frozen=True, slots=True)
class Column:
    """A tape column: its title, width in cells, and alignment."""

    title: str
    width: int
    right: bool = False


class Tape(Vertical):
    """Header + rows; colours of ``cell(text, role)`` come from the ``tape--<role>`` component classes."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {f"tape--{r}" for r in ROLES}
    DEFAULT_CSS = """
    Tape { height: 1fr; }
    Tape > .tape-header { height: 1; text-style: bold; padding: 0 1; }
    Tape > RichLog { height: 1fr; padding: 0 1; background: $surface; }
    Tape > .tape--up { color: $success; }
    Tape > .tape--down { color: $error; }
    Tape > .tape--muted { color: $text-muted; }
    Tape > .tape--warn { color: $warning; }
    Tape > .tape--ok { color: $success; }
    """

    def __init__(self, columns: Sequence[Column], *, max_rows: int = 500, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = tuple(columns)
        self._max_rows = max_rows
        self.rows = 0
        """Rows held (appended since the last clear, at most ``max_rows``)."""
        self._styles: dict[str, Style] = {}

    def compose(self) -> ComposeResult:
        yield Static(self._line([c.title for c in self.columns]), classes="tape-header")
        yield RichLog(max_lines=self._max_rows, wrap=False, auto_scroll=True, min_width=self._width())

    def _width(self) -> int:
        return sum(c.width for c in self.columns) + 2 * (len(self.columns) - 1)

    def _line(self, cells: Sequence[str | Text]) -> Text:
        out = Text(no_wrap=True, overflow="crop")
        for i, (col, cell) in enumerate(zip(self.columns, cells, strict=True)):
            t = cell.copy() if isinstance(cell, Text) else Text(cell)
            t.truncate(col.width, overflow="ellipsis")
            pad = col.width - t.cell_len
            if col.right:
                t.pad_left(pad)
            else:
                t.pad_right(pad)
            if i:
                out.append("  ")
            out.append_text(t)
        return out

    def cell(self, text: str, role: str) -> Text:
        """``text`` in the colour of ``role`` (up, down, muted, warn, ok)."""
        if role not in ROLES:
            return Text(text)
        style = self._styles.get(role)
        if style is None:  # resolving a component style is slow: once per role until clear()
            style = self._styles[role] = foreground(self.get_component_rich_style(f"tape--{role}"))
        return Text(text, style=style)

    def add_rows(self, rows: Iterable[Sequence[str | Text]]) -> None:
        """Append rows (oldest first) at the bottom, in one write (one render for the batch)."""
        lines = [self._line(row) for row in rows]
        if lines:
            self.query_one(RichLog).write(Text("\n").join(lines), width=self._width(), shrink=False)
            self.rows = min(self.rows + len(lines), self._max_rows)

    def follow(self) -> None:
        """Show the newest rows again after the layout settles (a widget above grew or shrank)."""
        log = self.query_one(RichLog)
        self.call_after_refresh(log.scroll_end, animate=False)

    def clear(self) -> None:
        """Drop every row (and the cached colours: call it after a theme change)."""
        self.query_one(RichLog).clear()
        self.rows = 0
        self._styles.clear()
