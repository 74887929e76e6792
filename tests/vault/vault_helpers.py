"""Running ``amarktai keys ...`` as a real subprocess; scanning files for leaked secrets."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CMD = [sys.executable, "-c", "from amarktai_tui.cli import main; main()"]
TIMEOUT_S = 180  # a guard against a hang, not a wait


@dataclass(frozen=True)
class Run:
    """A finished CLI run."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment (the fixtures' DBUS_SESSION_BUS_ADDRESS, XDG dirs) plus ``extra``."""
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def amarktai(*args: str | Path, stdin: str | None = None, **env: str) -> Run:
    """``amarktai ARGS`` with ``stdin`` piped in (so not a terminal: fields are read line by line)."""
    r = subprocess.run(
        [*CMD, *map(str, args)],
        input=stdin if stdin is not None else "",
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    return Run(r.returncode, r.stdout, r.stderr)


async def amarktai_async(*args: str | Path, stdin: str = "", **env: str) -> Run:
    """``amarktai`` as a subprocess without blocking this event loop (a loopback server runs in it)."""
    proc = await asyncio.create_subprocess_exec(
        *CMD,
        *map(str, args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(**env),
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), TIMEOUT_S)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def files_containing(root: Path, needles: list[str]) -> list[str]:
    """``path: needle`` for every file under ``root`` whose bytes contain a needle (UTF-8)."""
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits += [f"{path}: {n}" for n in needles if n.encode() in data]
    return hits


def one_line(text: str) -> bool:
    """A one-line error: a single non-empty line and no traceback."""
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) == 1 and "Traceback" not in text
