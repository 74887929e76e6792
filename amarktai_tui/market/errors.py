"""The one error type candle loading raises."""

from __future__ import annotations

import os


class CandleFileError(ValueError):
    """A candle file is missing, unreadable or holds bad data.

    ``str(err)`` is one line naming the file, the row or line (when there is one) and the
    reason, e.g. ``BTC_USDT-5m.json: row 17: high 5.0 < low 6.0``. ``row`` is 1-based:
    the element index in a JSON array or feather table, the physical line in a CSV file
    (``kind`` says which: ``"row"`` or ``"line"``).
    """

    def __init__(
        self, path: str | os.PathLike[str], reason: str, row: int | None = None, kind: str = "row"
    ) -> None:
        self.path = os.fspath(path)
        self.reason = " ".join(reason.split())  # always one line
        self.row = row
        self.kind = kind
        where = f"{self.path}: {kind} {row}: " if row is not None else f"{self.path}: "
        super().__init__(where + self.reason)
