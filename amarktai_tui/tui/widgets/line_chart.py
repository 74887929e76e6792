"""LineChart: a braille line chart with a y-axis, start/end labels and buy/sell markers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from rich.text import Text
from textual.widget import Widget

from amarktai_tui.tui.widgets.braille import cell_of, plot


@dataclass(frozen=True, slots=True)
class Marker:
    """A point to mark on the chart: ``index`` in the series' index space (0..n-1), ``value`` on the y-axis."""

    index: float
    value: float
    kind: Literal["buy", "sell"]


def axis_label(v: float, span: float) -> str:
    """Compact y-axis label: no decimals for wide ranges, more for narrow ones."""
    if span >= 100 or abs(v) >= 10_000:
        return f"{v:,.0f}"
    if span >= 1:
        return f"{v:,.2f}"
    return f"{v:.6g}"


class LineChart(Widget):
    """Draws ``values`` as a braille line; ``markers`` as ▲ (buy) / ▼ (sell) on top of it.

    Colours come from the component classes ``linechart--line``, ``linechart--axis``,
    ``linechart--buy`` and ``linechart--sell`` (set in app.tcss from theme variables).
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "linechart--line",
        "linechart--axis",
        "linechart--buy",
        "linechart--sell",
    }
    DEFAULT_CSS = """
    LineChart { height: 1fr; min-height: 4; }
    LineChart > .linechart--line { color: $primary; }
    LineChart > .linechart--axis { color: $text-muted; }
    LineChart > .linechart--buy { color: $success; text-style: bold; }
    LineChart > .linechart--sell { color: $error; text-style: bold; }
    """

    def __init__(self, empty_text: str = "no data yet", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._values: list[float] = []
        self._markers: list[Marker] = []
        self._x_labels = ("", "")
        self._empty_text = empty_text

    @property
    def values(self) -> tuple[float, ...]:
        """The series drawn."""
        return tuple(self._values)

    @property
    def markers(self) -> tuple[Marker, ...]:
        """The markers drawn over it."""
        return tuple(self._markers)

    def set_series(
        self, values: Sequence[float], markers: Sequence[Marker] = (), x_labels: tuple[str, str] = ("", "")
    ) -> None:
        """Replace what is drawn and repaint."""
        self._values = list(values)
        self._markers = list(markers)
        self._x_labels = x_labels
        self.refresh()

    def render(self) -> Text:
        width, height = self.content_size
        axis = self.get_component_rich_style("linechart--axis")
        if not self._values or width < 12 or height < 3:
            return Text(self._empty_text, style=axis)
        values = self._values
        lo, hi = min(values), max(values)
        marker_values = [m.value for m in self._markers]
        if marker_values:
            lo, hi = min(lo, *marker_values), max(hi, *marker_values)
        if hi == lo:
            pad = abs(hi) * 0.01 or 1.0
            lo, hi = lo - pad, hi + pad
        span = hi - lo
        labels = [axis_label(hi, span), axis_label((hi + lo) / 2, span), axis_label(lo, span)]
        gutter = max(len(s) for s in labels) + 1
        plot_w, plot_h = width - gutter - 1, height - 1
        if plot_w < 4:
            return Text(self._empty_text, style=axis)
        rows = plot(values, plot_w, plot_h, lo, hi)
        grid = [list(r) for r in rows]
        kinds: dict[tuple[int, int], str] = {}
        for m in self._markers:
            col, row = cell_of(m.index, m.value, len(values), plot_w, plot_h, lo, hi)
            grid[row][col] = "▲" if m.kind == "buy" else "▼"
            kinds[(col, row)] = m.kind
        line = self.get_component_rich_style("linechart--line")
        buy = self.get_component_rich_style("linechart--buy")
        sell = self.get_component_rich_style("linechart--sell")
        label_rows = {0: labels[0], plot_h // 2: labels[1], plot_h - 1: labels[2]}
        out = Text(no_wrap=True, overflow="crop")
        for r, chars in enumerate(grid):
            out.append(
                label_rows.get(r, "").rjust(gutter - 1) + " ┤" if r in label_rows else " " * gutter + "│",
                axis,
            )
            start = 0
            for c in range(plot_w + 1):
                kind = kinds.get((c, r)) if c < plot_w else None
                if kind is not None or c == plot_w:
                    out.append("".join(chars[start:c]), line)
                    if kind is not None:
                        out.append(chars[c], buy if kind == "buy" else sell)
                    start = c + 1
            out.append("\n")
        left, right = self._x_labels
        out.append(" " * (gutter + 1) + left.ljust(plot_w - len(right)) + right, axis)
        return out
