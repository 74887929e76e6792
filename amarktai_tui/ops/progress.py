"""What a long CLI run (backtest, optimize, evolve) shows on the terminal while it works.

- ``quiet_logs(run_dir)``: the engine's log lines go to ``<run_dir>/logs/amarktai.log`` (secrets
  redacted), not over the progress bar; the caller's handlers are put back after.
- ``progress_bar(label, unit)``: a rich bar on stderr when stderr is a terminal, else nothing (a
  pipe or a CI log gets the result only). It yields ``update(completed, total, **fields)`` or None.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from amarktai_tui.locations import logs_dir


class BarUpdate(Protocol):
    """``update(completed, total, **fields)``: counts of the run's unit; fields fill the unit text."""

    def __call__(self, completed: int, total: int, **fields: str) -> None: ...


@contextlib.contextmanager
def quiet_logs(run_dir: Path) -> Iterator[None]:
    """Root logging to ``<run_dir>/logs/amarktai.log`` only (secrets redacted), restored after."""
    from amarktai_tui.ops import redact

    logs_dir(run_dir).mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    handler = logging.FileHandler(logs_dir(run_dir) / "amarktai.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    redact.install(handler)
    for h in saved:
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for h in saved:
            root.addHandler(h)
        root.setLevel(level)


@contextlib.contextmanager
def progress_bar(label: str, unit: str, **fields: str) -> Iterator[BarUpdate | None]:
    """A transient rich bar ``<label> [bar] done/total <unit> <time left>`` on stderr (a terminal).

    ``unit`` is a rich format string: it may name ``{task.fields[NAME]}`` for each of ``fields``
    (their starting values), which ``update`` replaces. None when stderr is not a terminal.
    """
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        start: dict[str, Any] = dict(fields)  # rich takes any field values
        task = bar.add_task(label, total=None, **start)

        def update(completed: int, total: int, **new_fields: str) -> None:
            values: dict[str, Any] = dict(new_fields)
            bar.update(task, total=max(total, completed, 1), completed=completed, **values)

        yield update
