"""``amarktai autonomy`` and ``submit_change``: offline (no engine: the ledger under the engine lock)
and, once, against a running daemon (over its control socket)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from changes_helpers import (
    CMD,
    amarktai,
    bot_row,
    copy_ledger,
    env_for,
    replay,
    rows,
    settings,
    write_candles,
)

from amarktai_tui.autonomy.adjust_store import STATUSES
from amarktai_tui.autonomy.changes import AdjustmentError, Change
from amarktai_tui.cli import run
from amarktai_tui.ops import autonomy_commands
from amarktai_tui.ops.autonomy_commands import submit_change

EXPERT = '[health]\nenabled = false\n[autonomy]\nmode = "expert"\n'
AUTO = '[health]\nenabled = false\n[autonomy]\nmode = "autonomous"\n'


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli-base")
    candles = write_candles(tmp / "candles", 1500)

    async def go() -> None:
        engine = await replay(settings(tmp), tmp / "data", candles)
        await engine.close()

    asyncio.run(go())
    return tmp / "data"


@pytest.fixture
def data(base: Path, tmp_path: Path) -> Path:
    return copy_ledger(base, tmp_path / "data")


def cli(
    capsys: pytest.CaptureFixture[str], tmp: Path, data: Path, config: str, *args: str
) -> tuple[int, str, str]:
    cfg = tmp / "cli.toml"
    cfg.write_text(config)
    code = run(["autonomy", *args, "--config", str(cfg), "--data-dir", str(data)])
    out, err = capsys.readouterr()
    return code, out, err


def test_offline_propose_accept_revert_through_the_cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path
) -> None:
    ema = bot_row(data, "btc-ema")
    params = json.loads(ema["params_json"])
    adj = submit_change(
        settings(tmp_path, EXPERT), data, Change(ema["id"], "optimizer", "params", {"fast": 21}, "study 7")
    )
    assert adj.status == "proposed" and adj.after == {**params, "fast": 21}
    assert json.loads(bot_row(data, "btc-ema")["params_json"]) == params

    code, out, err = cli(capsys, tmp_path, data, EXPERT, "status", "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["mode"] == "expert" and status["engine_running"] is False
    assert status["bounds"]["risk_per_trade"] == ["0.005", "0.02"]
    assert [p["id"] for p in status["pending"]] == [adj.id]

    code, out, err = cli(capsys, tmp_path, data, EXPERT, "accept", str(adj.id))
    assert code == 0, err
    assert "accepted: btc-ema params" in out and "recorded; applied when the engine starts" in out
    assert json.loads(bot_row(data, "btc-ema")["params_json"])["fast"] == 21

    code, out, _ = cli(
        capsys, tmp_path, data, EXPERT, "list", "--bot", "btc-ema", "--status", "accepted", "--json"
    )
    [accepted] = json.loads(out)
    assert code == 0 and accepted["ref_id"] == adj.id and accepted["actor"] == "cli"

    code, out, err = cli(capsys, tmp_path, data, EXPERT, "revert", str(accepted["id"]), "--json")
    assert code == 0, err
    reply = json.loads(out)
    assert reply["applied"] == "recorded" and reply["adjustment"]["status"] == "reverted"
    assert json.loads(bot_row(data, "btc-ema")["params_json"]) == params

    code, out, _ = cli(capsys, tmp_path, data, EXPERT, "list")
    assert code == 0 and len(out.strip().splitlines()) == 3 and "reverted" in out
    audit = rows(
        data,
        "SELECT type, actor FROM audit_log WHERE type IN ('adjustment_proposed', 'bot_adjusted') ORDER BY id",
    )
    assert audit == [
        {"type": "adjustment_proposed", "actor": "cli"},
        {"type": "bot_adjusted", "actor": "cli"},
        {"type": "bot_adjusted", "actor": "cli"},
    ]


def test_offline_autonomous_refusals_and_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path
) -> None:
    s = settings(tmp_path, AUTO)
    rsi = bot_row(data, "btc-rsi")
    cap = submit_change(s, data, Change(rsi["id"], "autopilot", "capital", Decimal(100), "poor score"))
    assert cap.status == "refused" and "start the engine" in cap.reason
    prot = submit_change(s, data, Change(rsi["id"], "ai", "account_max_drawdown", "0.9", "more room"))
    assert prot.status == "refused" and "protected" in prot.reason
    m = submit_change(s, data, Change(rsi["id"], "learning", "size_multiplier", "0.5", "win rate 40%"))
    assert m.status == "applied" and Decimal(bot_row(data, "btc-rsi")["size_multiplier"]) == Decimal("0.7")
    assert rows(data, "SELECT COUNT(*) AS n FROM ledger_events WHERE kind = 'allocation'") == [{"n": 0}]
    with pytest.raises(AdjustmentError, match="no bot with id 999"):
        submit_change(s, data, Change(999, "learning", "size_multiplier", "0.8", "x"))

    for args, code_wanted, text in (
        (("accept", "999"), 2, "no adjustment #999"),
        (("reject", str(m.id)), 2, "not a proposal"),
        (("revert", str(cap.id)), 2, "only an applied or accepted"),
        (("list", "--bot", "nope"), 2, "no bot named or numbered 'nope'"),
        (("list", "--limit", "-1"), 2, "--limit"),
        (("mode", "expert"), 2, 'mode = "expert"'),
    ):
        code, out, err = cli(capsys, tmp_path, data, AUTO, *args)
        assert code == code_wanted and text in err and len(err.strip().splitlines()) == 1, (args, err)
        assert "Traceback" not in err
    code, out, _ = cli(capsys, tmp_path, data, AUTO, "mode", "--json")
    assert code == 0 and json.loads(out) == {"mode": "autonomous"}
    code, _, err = cli(capsys, tmp_path, tmp_path / "nothing-here", AUTO, "accept", "1")
    assert code == 1 and "no ledger" in err
    assert autonomy_commands.STATUSES == STATUSES


# -- against a running daemon ----------------------------------------------------------------


@pytest.fixture
def daemon(base: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path, Path]]:
    """A daemon replaying 300 more candles over a copy of the base ledger, idle after the data."""
    data = copy_ledger(base, tmp_path / "data")
    candles = write_candles(tmp_path / "more", 300, start=1500)
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(EXPERT)
    err = tmp_path / "daemon.stderr"
    with open(err, "wb") as errf:
        proc = subprocess.Popen(
            [*CMD, "--daemon", "--replay", str(candles), "--speed", "0", "--config", str(cfg), "--data-dir", str(data)],
            cwd=tmp_path, env=env_for(tmp_path), stdout=subprocess.DEVNULL, stderr=errf,
        )  # fmt: skip
    try:
        yield proc, data, cfg, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def wait_for(
    cond: Callable[[], bool], proc: subprocess.Popen[bytes], err: Path, what: str, deadline_s: float = 60
) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        assert proc.poll() is None, f"daemon exited before {what}: {err.read_text()[-2000:]}"
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_with_a_running_daemon_the_engine_applies_the_change(
    daemon: tuple[subprocess.Popen[bytes], Path, Path, Path], tmp_path: Path
) -> None:
    proc, data, cfg, err = daemon
    wait_for(lambda: "engine started" in err.read_text(), proc, err, "the engine to start")
    ema = bot_row(data, "btc-ema")
    s = settings(tmp_path, EXPERT)
    adj = submit_change(s, data, Change(ema["id"], "learning", "size_multiplier", "0.8", "win rate 42%"))
    assert adj.status == "proposed" and adj.actor == "cli"

    acc = amarktai(tmp_path, "autonomy", "accept", str(adj.id), "--json", "--config", cfg, "--data-dir", data)
    assert acc.returncode == 0, acc.stderr
    reply = json.loads(acc.stdout)
    assert reply["applied"] == "live" and reply["adjustment"]["status"] == "accepted"
    assert Decimal(bot_row(data, "btc-ema")["size_multiplier"]) == Decimal("0.8")  # the engine wrote it

    rev = amarktai(
        tmp_path, "autonomy", "revert", str(reply["adjustment"]["id"]), "--config", cfg, "--data-dir", data
    )
    assert rev.returncode == 0 and "engine running: applied live" in rev.stdout, rev.stderr
    assert Decimal(bot_row(data, "btc-ema")["size_multiplier"]) == Decimal(1)
    again = amarktai(
        tmp_path, "autonomy", "revert", str(reply["adjustment"]["id"]), "--config", cfg, "--data-dir", data
    )
    assert again.returncode == 2 and "reverted already" in again.stderr

    wait_for(
        lambda: len(rows(data, "SELECT id FROM audit_log WHERE actor = 'cli' AND type IN ('adjustment_proposed', 'bot_adjusted')")) == 3,
        proc, err, "the audit entries",
    )  # fmt: skip
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, err.read_text()[-2000:]
    assert "Traceback" not in err.read_text()
