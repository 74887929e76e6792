"""Line plots in Unicode braille (2x4 dots per terminal cell); pure functions, no Textual.

``plot`` maps a series onto ``width`` x ``height`` cells: the first value at
the left edge, the last at the right edge, ``lo`` on the bottom dot row and
``hi`` on the top one. When there are more values than dot columns, each
column shows the full min..max range of its values (joined to the previous
column), so a spike is never lost to downsampling.
"""

from __future__ import annotations

from collections.abc import Sequence

_BRAILLE = 0x2800
# bit of the dot at (x within cell 0..1, y within cell 0..3 from the top)
_DOT = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


def plot(values: Sequence[float], width: int, height: int, lo: float, hi: float) -> list[str]:
    """``height`` strings of ``width`` characters drawing ``values`` (braille; an empty cell is a space)."""
    if width <= 0 or height <= 0:
        return []
    cols, rows = 2 * width, 4 * height
    cells = [[0] * width for _ in range(height)]
    span = hi - lo

    def ypix(v: float) -> float:  # dot row from the bottom, 0..rows-1
        if span <= 0:
            return (rows - 1) / 2
        return min(max((v - lo) / span, 0.0), 1.0) * (rows - 1)

    def fill(x: int, ya: float, yb: float) -> None:
        top = round(max(ya, yb))
        bottom = round(min(ya, yb))
        for y in range(bottom, top + 1):
            r = rows - 1 - y
            cells[r // 4][x // 2] |= _DOT[r % 4][x % 2]

    n = len(values)
    if n == 0:
        return [" " * width for _ in range(height)]
    if n == 1:
        fill(0, ypix(values[0]), ypix(values[0]))
    elif n <= cols:
        step = (cols - 1) / (n - 1)
        prev_x, prev_y = 0, ypix(values[0])
        for i in range(1, n):
            x = round(i * step)
            y = ypix(values[i])
            for cx in range(prev_x, x + 1):
                # the segment's y-range within this dot column
                t0 = min(max((cx - 0.5 - prev_x) / (x - prev_x), 0.0), 1.0) if x > prev_x else 0.0
                t1 = min(max((cx + 0.5 - prev_x) / (x - prev_x), 0.0), 1.0) if x > prev_x else 1.0
                fill(cx, prev_y + (y - prev_y) * t0, prev_y + (y - prev_y) * t1)
            prev_x, prev_y = x, y
    else:
        prev_last: float | None = None
        for cx in range(cols):
            a = cx * n // cols
            b = max((cx + 1) * n // cols, a + 1)
            bucket = values[a:b]
            low, high = min(bucket), max(bucket)
            if prev_last is not None:
                low, high = min(low, prev_last), max(high, prev_last)
            fill(cx, ypix(low), ypix(high))
            prev_last = bucket[-1]
    return ["".join(chr(_BRAILLE + c) if c else " " for c in row) for row in cells]


def cell_of(
    index: float, value: float, n: int, width: int, height: int, lo: float, hi: float
) -> tuple[int, int]:
    """The (column, row) cell where the point (``index`` in 0..n-1, ``value``) of a ``plot`` falls."""
    cols, rows = 2 * width, 4 * height
    x = 0.0 if n <= 1 else index * (cols - 1) / (n - 1)
    frac = 0.5 if hi <= lo else min(max((value - lo) / (hi - lo), 0.0), 1.0)
    r = rows - 1 - round(frac * (rows - 1))
    return min(max(round(x) // 2, 0), width - 1), min(max(r // 4, 0), height - 1)
