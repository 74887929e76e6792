"""``amarktai backtest``: the replay engine path at full speed into a fresh ledger.

Real data: the first candles of ``../shared/data/binance/{BTC,ETH}_USDT-1h.json``. The main run
(both files, ``--keep``, ``--json``, ``--html``) and an ``amarktai --daemon --replay ... --speed 0
--until-end`` run with the same config are real subprocesses, made once per module.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
from cli.cli_helpers import BTC_1H, CMD, ETH_1H, env_for

from amarktai_tui import cli
from amarktai_tui.config import Settings
from amarktai_tui.ledger import reader
from amarktai_tui.ledger.pnl import canonical
from amarktai_tui.ledger.profits import ProfitService
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.locations import db_path
from amarktai_tui.ops.backtest import BacktestRequest, run_backtest

CANDLES = 1500
# ``amarktai`` that exits 3 if Textual was imported on the way (the core and the CLI never import it)
NO_TEXTUAL = [
    sys.executable,
    "-c",
    "import sys; from amarktai_tui.cli import run; rc = run(sys.argv[1:]); "
    "sys.exit(3 if 'textual' in sys.modules else rc)",
]
STRATEGY = "sma_cross"
PARAMS = {"fast": 10, "slow": 30}
CONFIG = """
[health]
enabled = false

[backup]
daily = false
{bots}
"""
BOT = """
[[bots]]
name = "{name}"
pair = "{pair}"
timeframe = "1h"
strategy = "sma_cross"
params = {{ fast = 10, slow = 30 }}
"""


def _slice(src: Path, dst: Path, n: int = CANDLES) -> Path:
    dst.write_text(json.dumps(json.loads(src.read_text())[:n]))
    return dst


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("data")
    return {
        "btc": _slice(BTC_1H, d / "BTC_USDT-1h.json"),
        "eth": _slice(ETH_1H, d / "ETH_USDT-1h.json"),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Path]) -> dict[str, Any]:
    """The backtest (kept ledger, JSON, HTML) and the daemon replay with an equivalent config."""
    tmp = tmp_path_factory.mktemp("runs")
    bots = BOT.format(name="btc-usdt-1h", pair="BTC/USDT") + BOT.format(name="eth-usdt-1h", pair="ETH/USDT")
    config = tmp / "config.toml"
    config.write_text(CONFIG.format(bots=bots))
    files = f"{data['btc']},{data['eth']}"
    keep, page = tmp / "kept", tmp / "report.html"
    bt_args = [
        "backtest", "--config", config, "--strategy", STRATEGY, "--params", json.dumps(PARAMS),
        "--data", files, "--keep", keep, "--json", "--html", page,
    ]  # fmt: skip
    replay_dir = tmp / "replay"
    rp_args = [
        "--daemon", "--config", config, "--data-dir", replay_dir, "--replay", files, "--speed", "0", "--until-end",
    ]  # fmt: skip
    procs = [
        subprocess.Popen([*cmd, *map(str, a)], cwd=tmp, env=env_for(tmp), stdout=PIPE, stderr=PIPE, text=True)
        for cmd, a in ((NO_TEXTUAL, bt_args), (CMD, rp_args))
    ]  # both at once: the machine has two cores
    bt, rp = (_finish(p) for p in procs)
    return {"bt": bt, "replay": rp, "keep": keep, "replay_dir": replay_dir, "html": page, "tmp": tmp}


def _finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr  # 3: the backtest imported Textual


def _fills(data_dir: Path) -> list[tuple[str, ...]]:
    conn = sqlite3.connect(f"file:{db_path(data_dir)}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT b.name, f.pair, f.side, f.quantity, f.price, f.fee, f.fee_currency, f.realised_pnl, f.ts"
            " FROM fills f JOIN bots b ON b.id = f.bot_id ORDER BY f.id"
        ).fetchall()
    finally:
        conn.close()
    return [tuple(str(x) for x in r) for r in rows]


def test_backtest_equals_replay_fill_for_fill(runs: dict[str, Any]) -> None:
    _ok(runs["bt"])
    _ok(runs["replay"])
    bt, rp = _fills(runs["keep"]), _fills(runs["replay_dir"])
    assert len(bt) >= 20, "too few fills for a meaningful comparison"
    assert {r[1] for r in bt} == {"BTC/USDT", "ETH/USDT"}
    assert bt == rp  # bot, pair, side, qty, price, fee, fee currency, realised PnL, ts: every digit


def test_stdout_is_one_json_object_and_nothing_on_the_terminal(runs: dict[str, Any]) -> None:
    _ok(runs["bt"])
    out = json.loads(runs["bt"].stdout)
    assert isinstance(out, dict)
    assert runs["bt"].stderr == ""  # no log line, no progress bar (stderr is not a terminal)
    assert out["kept"] == str(runs["keep"])


def _dec(value: Any) -> Any:
    return str(canonical(value)) if hasattr(value, "as_tuple") else value


def test_json_figures_equal_profit_service_over_the_kept_ledger(
    runs: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    _ok(runs["bt"])
    out = json.loads(runs["bt"].stdout)
    conn = connect_readonly(str(db_path(runs["keep"])))
    try:
        svc = ProfitService.read(conn)
        fills = reader.fills(conn)
    finally:
        conn.close()
    fig = svc.figures(out["end_ms"])
    for key in ("capital", "equity", "realised", "unrealised", "total", "fees"):
        assert out["figures"][key] == _dec(getattr(fig, key)), key
    assert out["figures"]["return"] == pytest.approx(float(fig.total / fig.capital))
    assert out["stats"] == {k: _dec(v) for k, v in asdict(fig.stats).items()}
    assert out["stats"]["trades"] == len(svc.trades) == len(out["trades"]) > 0
    assert out["fills"] == len(fills)
    assert out["capital_per_bot"] == "1000" and out["figures"]["capital"] == "2000"
    for row, trade in zip(out["trades"], svc.trades, strict=True):
        name = next(b.name for b, _ in svc.bots if b.id == trade.bot_id)
        assert (row["bot"], row["pair"], row["entry_ts"], row["exit_ts"]) == (
            name, trade.pair, trade.entry_ts, trade.exit_ts,
        )  # fmt: skip
        assert (row["qty"], row["pnl"], row["fees"]) == (_dec(trade.qty), _dec(trade.pnl), _dec(trade.fees))
    assert out["params"] == {**PARAMS, "kind": "sma"}
    assert [d["pair"] for d in out["data"]] == ["BTC/USDT", "ETH/USDT"]
    assert out["start_ms"] == json.loads(BTC_1H.read_text())[0][0]
    curve = svc.equity_curve("all", out["end_ms"])[0]
    assert out["equity_curve"] == [[t, _dec(v)] for t, v in curve]
    assert cli.run(["ledger", "verify", "--data-dir", str(runs["keep"])]) == 0, capsys.readouterr()


def test_html_report_is_self_contained(runs: dict[str, Any]) -> None:
    _ok(runs["bt"])
    page = runs["html"].read_text()
    out = json.loads(runs["bt"].stdout)
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page and "<polyline" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert page.count("<tr>") >= len(out["trades"]) + len(out["bots"])
    for trade in out["trades"][:3]:
        assert trade["entry_time"][:16].replace("T", " ") in page


def test_two_files_two_bots_interleaved(runs: dict[str, Any]) -> None:
    _ok(runs["bt"])
    out = json.loads(runs["bt"].stdout)
    assert [b["name"] for b in out["bots"]] == ["btc-usdt-1h", "eth-usdt-1h"]
    assert all(b["trades"] > 0 for b in out["bots"])
    fills = _fills(runs["keep"])
    assert all(f[1] == ("BTC/USDT" if f[0] == "btc-usdt-1h" else "ETH/USDT") for f in fills)
    times = [int(f[-1]) for f in fills]
    assert times == sorted(times)  # one simulated clock over both files
    switches = sum(1 for a, b in itertools.pairwise(fills) if a[1] != b[1])
    assert switches >= 3  # not all of one pair, then all of the other
    assert out["candles"] == 2 * CANDLES


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    rc = cli.run([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_human_table(capsys: pytest.CaptureFixture[str], tmp_path: Path, data: dict[str, Path]) -> None:
    rc, out, err = _run(
        capsys, "backtest", "--strategy", "rsi_reversion", "--data", data["btc"], "--capital", "2500",
        "--data-dir", tmp_path / "never",
    )  # fmt: skip
    assert rc == 0, err
    assert err == ""
    assert "rsi_reversion (period=14, oversold=30.0, overbought=70.0)" in out
    assert "2,500.00 USDT per bot" in out
    for label in ("Equity", "Win rate", "Profit factor", "Sharpe", "Sortino", "Calmar", "Max drawdown"):
        assert label in out
    assert "ENTRY (UTC)" in out or "Trades (0)" in out
    assert not (tmp_path / "never").exists()  # the user's data dir is never touched


def test_api_progress_and_result(tmp_path: Path, data: dict[str, Path]) -> None:
    seen: list[tuple[float, int]] = []
    request = BacktestRequest("donchian_breakout", (str(data["btc"]),), {"entry_period": 24})
    result = asyncio.run(
        run_backtest(Settings(), request, tmp_path / "run", on_progress=lambda f, n: seen.append((f, n)))
    )
    assert seen[-1] == (1.0, CANDLES)
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)
    assert result.candles == CANDLES and result.params == {"entry_period": 24, "exit_period": 10}
    assert result.figures.equity == result.figures.capital + result.figures.total
    assert sum((t.pnl for t in result.trades), result.figures.unrealised) == result.figures.total


def _bad_file(tmp_path: Path) -> Path:
    rows = json.loads(BTC_1H.read_text())[:50]
    rows[7][2] = rows[7][3] / 2  # high below low
    bad = tmp_path / "BAD_USDT-1h.json"
    bad.write_text(json.dumps(rows))
    return bad


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--strategy", "nope"], "unknown strategy 'nope'"),
        (["--strategy", "sma_cross", "--params", "{fast: 1"], "--params is not valid JSON"),
        (["--strategy", "sma_cross", "--params", "[10, 30]"], "--params must be a JSON object"),
        (["--strategy", "sma_cross", "--params", '{"fast": 0}'], "fast=0 is invalid"),
        (["--strategy", "sma_cross", "--params", '{"speed": 3}'], "unknown parameter 'speed'"),
        (["--strategy", "sma_cross", "--params", '{"fast": 40, "slow": 30}'], "fast=40 must be less than"),
        (["--strategy", "sma_cross", "--pair", "BTCUSDT"], "--pair: bad pair"),
    ],
)
def test_bad_usage_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: dict[str, Path], extra: list[str], expected: str
) -> None:
    keep = tmp_path / "keep"
    rc, out, err = _run(capsys, "backtest", "--data", data["btc"], "--keep", keep, *extra)
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("amarktai backtest: ") and expected in err, err
    assert not keep.exists()  # nothing half-written


@pytest.mark.parametrize("which", ["missing", "malformed", "unnamed"])
def test_bad_data_file_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, which: str
) -> None:
    path = {
        "missing": tmp_path / "ETH_USDT-1h.json",
        "malformed": _bad_file(tmp_path),
        "unnamed": _slice(BTC_1H, tmp_path / "candles.json", 50),
    }[which]
    keep = tmp_path / "keep"
    rc, out, err = _run(capsys, "backtest", "--strategy", "sma_cross", "--data", path, "--keep", keep)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and str(path) in err, err
    expected = {"missing": "no such file", "malformed": "row 8", "unnamed": "--pair and --timeframe"}[which]
    assert expected in err
    assert not keep.exists()


def test_keep_refuses_a_directory_with_a_ledger(
    capsys: pytest.CaptureFixture[str], runs: dict[str, Any], data: dict[str, Path]
) -> None:
    before = db_path(runs["keep"]).stat().st_mtime_ns
    rc, out, err = _run(
        capsys, "backtest", "--strategy", "sma_cross", "--data", data["btc"], "--keep", runs["keep"]
    )
    assert rc == 2 and out == "" and "already holds a ledger" in err
    assert db_path(runs["keep"]).stat().st_mtime_ns == before
