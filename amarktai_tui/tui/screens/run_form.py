"""What the Backtest, Optimise and Evolve screens share: a form whose Run starts a worker.

``RunForm`` is the base of those screens (a ``Screen``; the Evolve dialog names it after
``ModalScreen``, whose CSS Textual finds through the first base only). Its widget ids all start with ``PREFIX`` (``bt``, ``op``, ``ev``):

- ``#P-run`` (button, ``ctrl+r`` or enter in a field) validates the form (``request()`` raises
  ``FormError`` naming the field) and starts the run (``_start``); a second Run while one goes on
  is a warning. ``#P-cancel`` (when the form has one) and ``esc`` cancel a run, else ``esc`` closes.
- ``#P-error`` shows one line; the field it names is marked ``P-invalid`` and focused until edited.
- ``#P-progress`` / ``#P-progress-text``: a bar that pulses over ``STARTING`` at a start.
- ``#P-files`` (comma-separated candle files, ``#P-pair`` / ``#P-timeframe`` when the form has
  them) is checked as typed into ``#P-file-check`` (marked ``P-bad`` when a file is wrong).

Also the data-file helpers the screens use (``split_files``, ``check_files``, ``screen_text``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from rich.text import Text
from textual import on
from textual.screen import Screen
from textual.widgets import Button, Input, Label, ProgressBar, Static

from amarktai_tui.market.errors import CandleFileError
from amarktai_tui.ops.backtest import BacktestUsageError, resolve_streams
from amarktai_tui.tui.screens.new_bot import FormError

RequestT = TypeVar("RequestT")

_FLAGS = (
    ("pass --pair and --timeframe", "fill in Pair and Timeframe"),
    ("--data", "data files"),
    ("--pair", "Pair"),
    ("--timeframe", "Timeframe"),
    ("--params", "params"),
    ("--capital", "capital"),
)


def screen_text(message: str) -> str:
    """A backtest error as one line in the screen's words (the CLI's flag names become field names)."""
    line = message.splitlines()[0] if message else ""
    for flag, field in _FLAGS:
        line = line.replace(flag, field)
    return line


def split_files(text: str) -> list[str]:
    """Comma-separated paths, trimmed, ``~`` expanded, empty ones dropped."""
    return [os.path.expanduser(p.strip()) for p in text.split(",") if p.strip()]


def check_files(files: Sequence[str], pair: str | None, timeframe: str | None) -> list[tuple[bool, str]]:
    """One ``(ok, line)`` per file: its pair, timeframe and size, or what is wrong with it."""
    out: list[tuple[bool, str]] = []
    for f in files:
        try:
            ((p, tf),) = resolve_streams([f], pair, timeframe)
        except (BacktestUsageError, CandleFileError) as exc:
            out.append((False, screen_text(str(exc))))
            continue
        size = os.path.getsize(f)
        out.append((True, f"{p} {tf} · {Path(f).name} · {_size(size)}"))
    return out


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


class RunForm(Screen[None], Generic[RequestT]):
    """The form and run state of a run screen (module doc). ``running`` is True from a Run to the
    end of its worker; ``progressed`` is set at a run's first progress report."""

    PREFIX: ClassVar[str]
    """The start of every widget id and class of the form (``bt``, ``op``, ``ev``)."""
    WORKER_GROUP: ClassVar[str]
    """The group of the run's worker (cancelled by ``esc``)."""
    BUSY_TEXT: ClassVar[str]
    """The warning when Run is pressed while a run goes on."""
    STARTING: ClassVar[str]
    """The progress text while a run starts (the bar pulses)."""
    NO_FILES_TEXT: ClassVar[str] = "no file yet: paths separated by commas"
    """The file check's line while the data files field is empty."""

    def __init__(self, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._bad_field: tuple[str | None, str] = (None, "")
        self.running = False
        self.progressed = asyncio.Event()

    # -- what each screen gives -------------------------------------------------------------------
    def request(self) -> RequestT:
        """The form as the run's request; raises FormError naming the field ("" or None: no one field)."""
        raise NotImplementedError

    def _start(self, request: RequestT) -> None:
        """Start the run's worker (``running`` is already True, the buttons and the bar are set)."""
        raise NotImplementedError

    # -- the form ---------------------------------------------------------------------------------
    def _sel(self, name: str) -> str:
        return f"#{self.PREFIX}-{name}"

    def pair_timeframe(self) -> tuple[str | None, str | None]:
        """The Pair and Timeframe fields (None when empty: from the file names)."""
        pair = self.query_one(self._sel("pair"), Input).value.strip() or None
        timeframe = self.query_one(self._sel("timeframe"), Input).value.strip() or None
        return pair, timeframe

    def files(self) -> list[str]:
        """The data files field, split (``split_files``)."""
        return split_files(self.query_one(self._sel("files"), Input).value)

    def checked_files(self) -> tuple[list[str], str | None, str | None]:
        """The data files with the pair and timeframe, each file readable as one stream; raises
        FormError naming the data files field."""
        field = f"{self.PREFIX}-files"
        files = self.files()
        if not files:
            raise FormError(field, "data files: give at least one candle file (paths separated by commas)")
        pair, timeframe = self.pair_timeframe()
        try:
            resolve_streams(files, pair, timeframe)
        except (BacktestUsageError, CandleFileError) as exc:
            raise FormError(field, screen_text(str(exc))) from None
        return files, pair, timeframe

    @on(Input.Changed)
    def _on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in {f"{self.PREFIX}-{n}" for n in ("files", "pair", "timeframe")}:
            self._check_files()
        if event.input.id != self._bad_field[0] or event.value != self._bad_field[1]:  # edited since
            event.input.remove_class(f"{self.PREFIX}-invalid")

    def _check_files(self) -> None:
        lines = check_files(self.files(), *self.pair_timeframe())
        text = Text()
        for ok, line in lines:
            if text:
                text.append("\n")
            text.append("✓ " if ok else "✗ ", style="bold")
            text.append(line)
        check = self.query_one(self._sel("file-check"), Static)
        check.update(text if lines else self.NO_FILES_TEXT)
        check.set_class(any(not ok for ok, _ in lines), f"{self.PREFIX}-bad")

    def _show_error(self, message: str, field: str | None = None) -> None:
        """One line in ``#P-error``; ``field`` (an id) is marked and focused."""
        self.query_one(self._sel("error"), Static).update(message)
        if field:
            widget = self.query_one(f"#{field}")
            if isinstance(widget, Input):
                self._bad_field = (field, widget.value)
                widget.add_class(f"{self.PREFIX}-invalid")
            widget.focus()

    # -- the run ----------------------------------------------------------------------------------
    @on(Input.Submitted)
    def _on_submitted(self) -> None:
        self.action_run()

    @on(Button.Pressed)
    def _on_button(self, event: Button.Pressed) -> None:
        if event.button.id == f"{self.PREFIX}-run":
            self.action_run()
        elif event.button.id == f"{self.PREFIX}-cancel":
            self.action_cancel_run()

    def action_run(self) -> None:
        if self.running:
            self.notify(self.BUSY_TEXT, severity="warning")
            return
        try:
            request = self.request()
        except FormError as exc:
            self._show_error(str(exc), exc.field)
            return
        self._show_error("")
        self.running = True
        self.progressed.clear()
        self._set_running(True)
        self._start(request)

    def action_cancel_run(self) -> None:
        self.workers.cancel_group(self, self.WORKER_GROUP)

    def action_escape(self) -> None:
        if self.running:
            self.action_cancel_run()
        else:
            self._close()

    def _close(self) -> None:
        self.app.pop_screen()

    def _set_running(self, running: bool) -> None:
        """Run disabled while running, Cancel the other way; at a start the bar pulses."""
        self.query_one(self._sel("run"), Button).disabled = running
        self._set_cancel(running)
        if running:
            self.query_one(self._sel("progress"), ProgressBar).update(total=None, progress=0)
            self.query_one(self._sel("progress-text"), Label).update(self.STARTING)

    def _set_cancel(self, running: bool) -> None:
        self.query_one(self._sel("cancel"), Button).disabled = not running

    def _stop_progress(self, text: str) -> None:
        """The bar stops where it is (it pulses while a run starts), ``text`` beside it."""
        bar = self.query_one(self._sel("progress"), ProgressBar)
        bar.update(total=bar.total or 1, progress=bar.progress if bar.total else 0)
        self.query_one(self._sel("progress-text"), Label).update(text)
