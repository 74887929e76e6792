"""One writer per database: an advisory lock file in the data dir (fcntl.flock).

The lock is held by an open file descriptor, so it vanishes with the process
(even after kill -9): a stale lock file never blocks a restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class EngineLockedError(RuntimeError):
    """Another engine holds this data dir (message names the pid)."""


class EngineLock:
    """Context manager holding ``<data_dir>/amarktai.lock`` exclusively."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        """Raises EngineLockedError when another process holds the lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise EngineLockedError(
                f"another engine (pid {holder}) is running on {self.path.parent}; "
                "stop it first, or use `amarktai status` to watch it"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> EngineLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_held(path: Path) -> bool:
    """True when a process holds the engine lock at ``path`` (a missing file: False). Takes a
    shared lock for a moment to find out, so it never blocks and never keeps the lock."""
    if not path.exists():
        return False
    with open(path) as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False
