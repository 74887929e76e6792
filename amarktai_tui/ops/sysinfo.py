"""What the process uses (psutil), whether the data dir can take writes, and what build this is.

``ProcessSampler.sample`` and ``data_dir_state`` make system calls (a statvfs, a small file
written and removed): cheap, but a UI or a server calls them from a thread or a background
task, never in a request handler. ``build_info`` is computed once and never fails.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

DIST = "amarktai-tui"


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One sample of this process: ``cpu_percent`` since the previous sample (100 = one core
    busy; None until a span of ``MIN_CPU_WINDOW_S`` was measured), ``rss_bytes`` resident memory, ``open_fds`` open file descriptors (files, sockets,
    pipes; handles on Windows), ``threads``; the data dir's disk, bytes free and total."""

    cpu_percent: float | None
    rss_bytes: int
    open_fds: int | None
    threads: int
    disk_free_bytes: int | None
    disk_total_bytes: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


MIN_CPU_WINDOW_S = 0.2
"""CPU use over a shorter span than this is noise: not reported."""


class ProcessSampler:
    """Samples this process; CPU use is measured since the previous sample, or since the sampler
    was made (a sample sooner than ``MIN_CPU_WINDOW_S`` after that repeats the previous figure,
    None at first)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._proc = psutil.Process()
        times = self._proc.cpu_times()
        self._last = (time.monotonic(), float(times.user + times.system))  # (monotonic s, CPU s)
        self._cpu: float | None = None

    def sample(self) -> ProcessInfo:
        """Blocking (system calls); psutil errors on one figure leave it None instead of raising."""
        proc = self._proc
        with proc.oneshot():
            times = proc.cpu_times()
            now, used = time.monotonic(), float(times.user + times.system)
            if now - self._last[0] >= MIN_CPU_WINDOW_S:  # else the previous figure stands
                self._cpu = max(0.0, (used - self._last[1]) / (now - self._last[0]) * 100)
                self._last = (now, used)
            cpu = self._cpu
            rss = int(proc.memory_info().rss)
            threads = int(proc.num_threads())
            fds: int | None
            try:
                fds = int(proc.num_fds()) if hasattr(proc, "num_fds") else int(proc.num_handles())
            except (psutil.Error, OSError):
                fds = None
        free: int | None
        total: int | None
        try:
            usage = shutil.disk_usage(self.data_dir)
            free, total = int(usage.free), int(usage.total)
        except OSError:
            free = total = None
        return ProcessInfo(cpu, rss, fds, threads, free, total)


@dataclass(frozen=True, slots=True)
class DataDirState:
    """Whether the ledger can take writes: bytes free in the data dir, and the error of the
    write probe ("" when a file could be created there and the database file is writable)."""

    free_bytes: int | None
    error: str

    @property
    def writable(self) -> bool:
        return not self.error


def data_dir_state(data_dir: Path, db: Path) -> DataDirState:
    """Probe ``data_dir``: free disk, a small file created and removed there, ``db`` (and its
    ``-wal``) writable by this process. Blocking; never raises."""
    try:
        free: int | None = int(shutil.disk_usage(data_dir).free)
    except OSError:
        free = None
    try:
        fd, name = tempfile.mkstemp(prefix=".write-probe-", dir=data_dir)
        try:
            os.write(fd, b"\0")
        finally:
            os.close(fd)
            os.unlink(name)
        for path in (db, db.with_name(db.name + "-wal")):
            if path.exists() and not os.access(path, os.W_OK):
                return DataDirState(free, f"{path.name} is not writable")
    except OSError as exc:
        return DataDirState(free, f"cannot write in {data_dir}: {exc.strerror or exc}")
    return DataDirState(free, "")


@dataclass(frozen=True, slots=True)
class BuildInfo:
    """``version`` of the installed package, git ``commit`` (12 hex digits) of the source tree
    when it is a git checkout, else None; the Python version and the platform."""

    version: str
    commit: str | None
    python: str
    platform: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@functools.cache
def build_info() -> BuildInfo:
    """This build (computed once; never raises)."""
    try:
        version = metadata.version(DIST)
    except metadata.PackageNotFoundError:
        version = "unknown"
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return BuildInfo(version, git_commit(Path(__file__).resolve().parents[2]), python, _platform())


def _platform() -> str:
    try:
        return f"{platform.system()} {platform.release()} {platform.machine()}".strip() or sys.platform
    except Exception:
        return sys.platform


def git_commit(root: Path) -> str | None:
    """The commit ``root``'s git checkout is at, read from ``.git`` (no git process); None when it
    is not a checkout or anything is unreadable."""
    try:
        git = root / ".git"
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = git.read_text().strip()
            if not text.startswith("gitdir:"):
                return None
            git = (root / text.removeprefix("gitdir:").strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return _sha(head)
        ref = head.removeprefix("ref:").strip()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            loose = base / ref
            if loose.is_file():
                return _sha(loose.read_text().strip())
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name == ref:
                    return _sha(sha)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return None


def _sha(text: str) -> str | None:
    text = text.strip()
    if len(text) >= 40 and all(c in "0123456789abcdef" for c in text[:40]):
        return text[:12]
    return None
