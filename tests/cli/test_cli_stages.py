"""``amarktai bots stages|promote|demote``: offline (recorded under the engine lock) and live (over a
running daemon's control socket); the confirmation on a real pseudo-terminal; one-line errors.

Every command runs as a real subprocess against a real ledger made by a daemon replay of real
Binance candles (ETH/USDT 1h, where the RSI-7 bot earns eligibility with the default criteria).
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import CMD, ETH_1H, env_for, query, start, stop_process, wait_until

from amarktai_tui.ops.control import socket_path

DEADLINE_S = 90
CONFIG = """
[risk]
max_consecutive_losses = 1000
bot_max_drawdown = 0.9
account_max_drawdown = 0.9
account_daily_loss = 0.9

[[bots]]
name = "eth-rsi7"
pair = "ETH/USDT"
timeframe = "1h"
strategy = "rsi_reversion"
params = {period = 7, oversold = 25, overbought = 65}
capital = 1000

[[bots]]
name = "eth-ema"
pair = "ETH/USDT"
timeframe = "1h"
strategy = "sma_cross"
params = {fast = 12, slow = 26, kind = "ema"}
capital = 1000
"""


def run(tmp: Path, *args: str | Path, stdin_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """``amarktai ARGS`` with stdin not a terminal (empty, or ``stdin_text``)."""
    return subprocess.run(
        [*CMD, *map(str, args)],
        cwd=tmp,
        env=env_for(tmp),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        input=stdin_text if stdin_text is not None else "",
    )


def run_json(tmp: Path, *args: str | Path) -> dict[str, Any]:
    res = run(tmp, *args, "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)  # stdout is the JSON document and nothing else
    assert isinstance(out, dict)
    return out


def one_line_error(res: subprocess.CompletedProcess[str], code: int) -> str:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr[-2000:])
    assert "Traceback" not in res.stderr and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def base_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished daemon replay of ETH/USDT 1h: eth-rsi7 eligible_for_live, eth-ema paper_training."""
    tmp = tmp_path_factory.mktemp("stages")
    (tmp / "config.toml").write_text(CONFIG)
    data = tmp / "data"
    res = run(tmp, "--config", tmp / "config.toml", "--daemon", "--replay", ETH_1H, "--speed", "0", "--until-end",
              "--data-dir", data)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return tmp


@pytest.fixture
def home(base_ledger: Path, tmp_path: Path) -> Path:
    """A private copy of the base ledger and its config (each test writes to its own)."""
    shutil.copytree(base_ledger, tmp_path, dirs_exist_ok=True)
    return tmp_path


def cfg(home: Path) -> tuple[str, str, str, str]:
    return ("--config", str(home / "config.toml"), "--data-dir", str(home / "data"))


def stages_of(home: Path) -> dict[str, dict[str, Any]]:
    rep = run_json(home, "bots", "stages", *cfg(home))
    return {b["name"]: b for b in rep["bots"]}


def test_stages_shows_each_bots_stage_and_progress_on_every_criterion(home: Path) -> None:
    rep = run_json(home, "bots", "stages", *cfg(home))
    assert rep["engine_running"] is False
    assert rep["criteria"] == {
        "min_days": "7",
        "min_trades": "25",
        "min_win_rate": "0.52",
        "min_return": "0.03",
        "max_drawdown": "0.15",
        "min_profit_factor": "1.2",
    }
    assert rep["floors"] == {"live_max_drawdown": "0.15", "live_min_return": "-0.05"}
    bots = {b["name"]: b for b in rep["bots"]}
    rsi, ema = bots["eth-rsi7"], bots["eth-ema"]
    assert rsi["stage"] == "eligible_for_live" and rsi["ok"] is True and (rsi["met"], rsi["of"]) == (6, 6)
    assert [c["name"] for c in rsi["checks"]] == [
        "trades",
        "win_rate",
        "days",
        "return",
        "max_drawdown",
        "profit_factor",
    ]
    assert rsi["progress"].startswith("trades 49 ok, win rate 75.5% ok, days 228.8 ok, return ")
    assert ema["stage"] == "paper_training" and ema["ok"] is False and ema["met"] < 6
    assert ema["since"] == ema["stage_ts"] == int(json.loads(ETH_1H.read_text())[0][0]) + 3_600_000
    text = run(home, "bots", "stages", *cfg(home))
    assert text.returncode == 0 and text.stderr == ""
    assert "eth-rsi7" in text.stdout and "eligible_for_live" in text.stdout and "6/6" in text.stdout


def test_offline_promote_needs_yes_without_a_terminal_then_records_and_demote_records(home: Path) -> None:
    msg = one_line_error(run(home, "bots", "promote", "eth-rsi7", *cfg(home)), 2)
    assert (
        msg
        == "amarktai bots promote: stdin is not a terminal: add --yes to confirm promoting eth-rsi7 to live"
    )
    assert query(home / "data", "SELECT COUNT(*) FROM stage_changes")[0][0] == 1  # only the engine's

    out = run_json(home, "bots", "promote", "eth-rsi7", "--yes", *cfg(home))
    assert out["applied"] == "recorded" and out["action"] == "promote"
    change = out["change"]
    assert (change["bot"], change["from"], change["to"], change["actor"], change["reason"]) == (
        "eth-rsi7", "eligible_for_live", "live", "cli", "confirmed on the command line",
    )  # fmt: skip
    last_snapshot = query(home / "data", "SELECT MAX(ts) FROM equity_snapshots")[0][0]
    assert change["ts"] == last_snapshot  # ledger time, not the wall clock
    assert {c["name"] for c in change["figures"]["checks"]} >= {"trades", "win_rate", "days"}
    assert change["figures"]["basis"]["since"] == change["ts"]
    assert "recorded; applied when the engine starts" in out["message"]
    live = stages_of(home)["eth-rsi7"]
    assert live["stage"] == "live" and [c["name"] for c in live["checks"]] == ["live_drawdown", "live_return"]
    assert live["ok"] is True and live["progress"] == "live drawdown 0% ok, live return 0% ok"

    again = one_line_error(run(home, "bots", "promote", "1", "--yes", *cfg(home)), 2)
    assert again == "amarktai bots promote: eth-rsi7 is live: only an eligible_for_live bot can be promoted"

    dem = run_json(home, "bots", "demote", "eth-rsi7", "--reason", "needs more paper time", *cfg(home))
    assert (dem["change"]["from"], dem["change"]["to"], dem["change"]["actor"]) == (
        "live",
        "paper_training",
        "cli",
    )
    rows = query(home / "data", "SELECT from_stage, to_stage, actor, reason FROM stage_changes ORDER BY id")
    assert rows[1:] == [
        ("eligible_for_live", "live", "cli", "confirmed on the command line"),
        ("live", "paper_training", "cli", "needs more paper time"),
    ]
    assert query(home / "data", "SELECT stage FROM bots WHERE name = 'eth-rsi7'") == [("paper_training",)]


def test_user_mistakes_are_one_line_and_exit_2(home: Path) -> None:
    c = cfg(home)
    assert one_line_error(run(home, "bots", "promote", "nope", "--yes", *c), 2) == (
        "amarktai bots promote: no bot named or numbered 'nope' (see `amarktai bots stages`)"
    )
    paper = one_line_error(run(home, "bots", "promote", "eth-ema", "--yes", *c), 2)
    assert paper.startswith(
        "amarktai bots promote: eth-ema is paper_training: only an eligible_for_live bot can be promoted (trades "
    )
    assert one_line_error(run(home, "bots", "demote", "eth-ema", "--reason", "x", *c), 2) == (
        "amarktai: eth-ema is paper_training already"
    )
    assert "--reason must not be empty" in one_line_error(
        run(home, "bots", "demote", "eth-rsi7", "--reason", " ", *c), 2
    )
    assert "--reason" in one_line_error(run(home, "bots", "demote", "eth-rsi7", *c), 2)
    assert "NAME_OR_ID" in one_line_error(run(home, "bots", "promote", *c), 2)
    assert query(home / "data", "SELECT COUNT(*) FROM stage_changes")[0][0] == 1  # nothing recorded


def _on_a_terminal(home: Path, answer: bytes, *args: str) -> tuple[int, str]:
    """Run ``amarktai ARGS`` with a pseudo-terminal as stdin; type ``answer`` once it prompts."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*CMD, *args],
            cwd=home,
            env=env_for(home),
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.close(slave)
        assert proc.stderr is not None
        err = b""
        deadline = time.monotonic() + DEADLINE_S
        while b"[y/N]" not in err:  # the prompt (on stderr, so stdout stays the result)
            assert time.monotonic() < deadline, err
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 4096)
                assert chunk, f"exited before prompting: {err!r}"
                err += chunk
        os.write(master, answer)
        out, rest = proc.communicate(timeout=DEADLINE_S)
        return proc.returncode, (err + rest).decode() + out.decode()
    finally:
        os.close(master)


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_promote_asks_on_a_terminal(home: Path) -> None:
    code, text = _on_a_terminal(home, b"n\n", "bots", "promote", "eth-rsi7", *cfg(home))
    assert code == 2 and "Promote eth-rsi7 to live? It trades real money" in text
    assert "not confirmed: eth-rsi7 stays eligible_for_live" in text and "Traceback" not in text
    assert query(home / "data", "SELECT stage FROM bots WHERE name = 'eth-rsi7'") == [("eligible_for_live",)]
    code, text = _on_a_terminal(home, b"y\n", "bots", "promote", "eth-rsi7", "--reason", "asked", *cfg(home))
    assert code == 0, text
    assert (
        "eth-rsi7: eligible_for_live -> live by cli: asked (recorded; applied when the engine starts)" in text
    )
    assert query(home / "data", "SELECT stage FROM bots WHERE name = 'eth-rsi7'") == [("live",)]


def test_live_promote_and_demote_go_through_the_running_daemon(home: Path) -> None:
    data = home / "data"
    # without --until-end the daemon keeps running after the data ends, until SIGTERM
    proc, err = start(home, "daemon", "--config", home / "config.toml", "--daemon", "--replay", ETH_1H,
                      "--speed", "0", "--data-dir", data)  # fmt: skip
    sock = socket_path(data)
    try:
        wait_until(lambda: sock.is_socket(), proc, err, DEADLINE_S, "the control socket")
        shown = run_json(home, "bots", "stages", *cfg(home))
        assert shown["engine_running"] is True

        out = run_json(home, "bots", "promote", "eth-rsi7", "--yes", "--reason", "live test", *cfg(home))
        assert out["applied"] == "live" and "engine running: applied live" in out["message"]
        assert (out["change"]["from"], out["change"]["to"], out["change"]["actor"]) == (
            "eligible_for_live",
            "live",
            "cli",
        )
        # the engine flushed before replying: the change is in its ledger
        assert query(data, "SELECT stage FROM bots WHERE name = 'eth-rsi7'") == [("live",)]
        refused = one_line_error(run(home, "bots", "promote", "eth-ema", "--yes", *cfg(home)), 2)
        assert "only an eligible_for_live bot can be promoted" in refused

        dem = run_json(home, "bots", "demote", "eth-rsi7", "--reason", "back to paper", *cfg(home))
        assert dem["applied"] == "live" and dem["change"]["to"] == "paper_training"
        paper = one_line_error(run(home, "bots", "demote", "eth-rsi7", "--reason", "again", *cfg(home)), 2)
        assert (
            paper == "amarktai: eth-rsi7 is paper_training already"
        )  # the engine's refusal, over the socket
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE_S) == 0, err.read_text()[-2000:]
    finally:
        stop_process(proc)
    assert "Traceback" not in err.read_text()
    rows = query(data, "SELECT to_stage, actor, reason FROM stage_changes ORDER BY id")
    assert rows[1:] == [("live", "cli", "live test"), ("paper_training", "cli", "back to paper")]
    # a new paper track: the demoted bot starts from scratch
    rsi = stages_of(home)["eth-rsi7"]
    assert rsi["stage"] == "paper_training" and rsi["checks"][0]["progress"] == "trades 0/25"


async def test_control_requests_for_stages_in_process(tmp_path: Path) -> None:
    """The control channel's promote/demote against a real engine: refusals are ``refused``."""
    import asyncio
    from decimal import Decimal

    from amarktai_tui.domain.enums import LifecycleStage, RiskMode
    from amarktai_tui.engine.engine import BotSpec, TradingEngine
    from amarktai_tui.exchanges.paper import PaperBroker
    from amarktai_tui.ledger.store import LedgerStore
    from amarktai_tui.locations import db_path
    from amarktai_tui.ops.control import send_command, serve_control, stop_control

    store = await LedgerStore.open(db_path(tmp_path))
    engine = TradingEngine(store, PaperBroker(Decimal(5)), wall_clock_ms=lambda: 1_000)
    specs = [
        BotSpec(n, "binance", "BTC/USDT", "1h", "sma_cross", {}, RiskMode.BALANCED, Decimal(1000))
        for n in "ab"
    ]
    await engine.start(specs)
    path = tmp_path / "ctl.sock"
    server = await serve_control(engine, path)

    async def send(req: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(send_command, path, req, 5.0)

    try:
        assert await send({"cmd": "promote", "reason": "x"}) == {
            "ok": False, "error": "promote needs a bot (name or id)", "refused": True,
        }  # fmt: skip
        assert (await send({"cmd": "promote", "bot": True}))["error"] == "promote needs a bot (name or id)"
        assert await send({"cmd": "demote", "bot": "zz", "reason": "x"}) == {
            "ok": False, "error": "no bot named or numbered 'zz' in this engine", "refused": True,
        }  # fmt: skip
        r = await send({"cmd": "promote", "bot": "a", "reason": "x"})
        assert r["refused"] is True and r["error"].startswith(
            "a is paper_training: only an eligible_for_live bot"
        )
        r = await send({"cmd": "promote", "bot": 2, "reason": "x", "actor": "ai"})
        assert r["error"] == "b: only a person promotes a bot to live (actor user or cli, not 'ai')"
        engine.stages.change(engine.runners[2], LifecycleStage.ELIGIBLE_FOR_LIVE, "engine", "as if earned")
        done = await send({"cmd": "promote", "bot": "2", "reason": "by id"})
        assert done["ok"] is True and done["change"]["bot"] == "b" and done["change"]["to"] == "live"
        back = await send({"cmd": "demote", "bot": "b", "reason": "by name", "actor": "cli"})
        assert back["ok"] is True and back["change"]["from"] == "live"
    finally:
        await stop_control(server)
        await engine.store.close()
    assert query(tmp_path, "SELECT to_stage, actor, reason FROM stage_changes ORDER BY id") == [
        ("eligible_for_live", "engine", "as if earned"),
        ("live", "cli", "by id"),
        ("paper_training", "cli", "by name"),
    ]
