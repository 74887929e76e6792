"""The progress bar of the long CLI runs (backtest, optimize, evolve) on a real terminal.

Each command runs as a real subprocess whose stderr is a pseudo-terminal (so rich draws its bar)
and whose stdout is a pipe (so the result stays clean JSON); the data are the first candles of
``../shared/data/binance/BTC_USDT-1h.json``. Without a terminal nothing is drawn.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import threading
from pathlib import Path

import pytest
from cli.cli_helpers import BTC_1H, CMD, env_for

from amarktai_tui.ops.progress import progress_bar

CANDLES = 600
TIMEOUT_S = 300  # a guard against a hang
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours, cursor moves, line erases


@pytest.fixture(scope="module")
def btc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "BTC_USDT-1h.json"
    path.write_text(json.dumps(json.loads(BTC_1H.read_text())[:CANDLES]))
    return path


def _on_a_terminal(tmp: Path, *args: str | Path) -> tuple[int, str, str]:
    """Run ``amarktai ARGS`` with stderr on a pty; returns (exit code, stdout, the pty's text)."""
    master, slave = pty.openpty()
    env = {**env_for(tmp), "COLUMNS": "120", "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        [*CMD, *map(str, args)], cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=slave, text=True
    )
    os.close(slave)
    shown = io.BytesIO()

    def drain() -> None:  # a full pty would block the child: read until it closes its end
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer has closed the pty
                return
            if not chunk:
                return
            shown.write(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    reader.join(TIMEOUT_S)
    os.close(master)
    return proc.returncode, out, ANSI.sub("", shown.getvalue().decode(errors="replace"))


@pytest.mark.parametrize(
    ("args", "bar"),
    [
        (["backtest", "--strategy", "sma_cross"], f"{CANDLES}/{CANDLES} candles"),
        (["optimize", "--strategy", "sma_cross", "--trials", "3", "--folds", "2"], "3/3 trials  best "),
        (["evolve", "--population", "4", "--generations", "1", "--strategies", "sma_cross"], "replays"),
    ],
    ids=["backtest", "optimize", "evolve"],
)
def test_bar_on_a_terminal_and_clean_json_on_stdout(
    tmp_path: Path, btc: Path, args: list[str], bar: str
) -> None:
    rc, out, shown = _on_a_terminal(tmp_path, *args, "--data", btc, "--data-dir", tmp_path / "data", "--json")
    assert rc == 0, shown
    json.loads(out)  # the bar never mixes into the result
    label = args[0]
    assert label in shown and bar in shown
    assert "INFO" not in shown  # the engine's log lines went to the run's log file, not over the bar


def test_no_bar_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar("backtest", "candles") as update:
        assert update is None
    assert capsys.readouterr().err == ""
