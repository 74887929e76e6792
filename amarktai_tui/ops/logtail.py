"""The end of the log file (``<data dir>/logs/amarktai.log``), redacted again for display.

The file's lines were masked when written (``ops.redact.RedactFilter``); they are masked once
more here, so a line written by a process that did not know a secret (an older version, another
tool appending to the file) is not shown in clear either. Reads are small and blocking: a UI
calls them from a thread.
"""

from __future__ import annotations

import os
from pathlib import Path

from amarktai_tui.locations import logs_dir
from amarktai_tui.ops.redact import redact

LOG_NAME = "amarktai.log"
MAX_LINE = 2000
"""Characters kept of one line (a traceback line or a dumped payload can be huge)."""


def log_file(data_dir: Path) -> Path:
    """The engine's log file in ``data_dir``."""
    return logs_dir(data_dir) / LOG_NAME


def tail_lines(path: Path, n: int = 200, *, max_bytes: int = 256 * 1024) -> list[str]:
    """The last ``n`` lines of ``path`` (at most its last ``max_bytes``), redacted, oldest first.

    A missing file gives ``[]``; other OSErrors are raised.
    """
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            f.seek(start)
            data = f.read(size - start)
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first line is cut in the middle
    return [_clean(line) for line in lines[-n:]] if n > 0 else []


class LogTail:
    """Follows a log file: ``read_new`` returns the lines appended since the last call.

    The first call returns the last ``initial`` lines. A file that shrank or was replaced
    (rotation, truncation) is read again from its start. Lines come redacted (``ops.redact``).
    """

    def __init__(self, path: Path, *, initial: int = 200, max_bytes: int = 256 * 1024) -> None:
        self.path = path
        self.initial = initial
        self.max_bytes = max_bytes
        self._offset: int | None = None
        self._inode: int | None = None
        self._partial = b""

    def read_new(self) -> list[str]:
        """New complete lines since the last call, oldest first ([] when the file does not exist).

        At most ``max_bytes`` are read per call (older bytes of a burst are skipped). Raises OSError
        for anything but a missing file.
        """
        try:
            with self.path.open("rb") as f:
                st = os.fstat(f.fileno())
                if self._offset is None:
                    lines = tail_lines(self.path, self.initial, max_bytes=self.max_bytes)
                    self._offset, self._inode = st.st_size, st.st_ino
                    return lines
                if st.st_ino != self._inode or st.st_size < self._offset:
                    self._offset, self._inode, self._partial = 0, st.st_ino, b""
                if st.st_size == self._offset:
                    return []
                start = max(self._offset, st.st_size - self.max_bytes)
                if start > self._offset:
                    self._partial = b""  # skipped over: the kept fragment no longer continues
                f.seek(start)
                data = f.read(st.st_size - start)
        except FileNotFoundError:
            self._offset = None
            return []
        self._offset = start + len(data)
        data = self._partial + data
        complete, _, self._partial = data.rpartition(b"\n")
        if not complete:
            return []
        return [_clean(line) for line in complete.decode("utf-8", errors="replace").splitlines()]


def _clean(line: str) -> str:
    return redact(line)[:MAX_LINE]  # masked first: a cut must not leave part of a secret
