"""``amarktai`` as a subprocess: a finite daemon replay, the read commands, exit codes and messages."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from cli_helpers import BTC_1H, ETH_1H, amarktai, query

from amarktai_tui.ledger.export import EXPORT_FIELDS


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """(tmp, data dir, result) of one ``--daemon --replay BTC,ETH 1h --speed 0 --until-end``."""
    tmp = tmp_path_factory.mktemp("cli")
    data = tmp / "data"
    res = amarktai(
        tmp, "--daemon", "--replay", f"{BTC_1H},{ETH_1H}", "--speed", "0", "--until-end", "--data-dir", data
    )
    return tmp, data, res


def one_line_error(res: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert res.returncode == code, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert res.stdout == ""
    return lines[0]


def test_daemon_replay_until_end_exits_0(
    run_dir: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    _, data, res = run_dir
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout == ""  # logs go to stderr and the log file
    assert "Traceback" not in res.stderr
    assert "engine stopped" in (data / "logs" / "amarktai.log").read_text()
    assert query(data, "SELECT COUNT(*) FROM fills")[0][0] > 100
    assert {r[0] for r in query(data, "SELECT DISTINCT pair FROM fills")} == {"BTC/USDT", "ETH/USDT"}


def test_ledger_verify_exits_0(run_dir: tuple[Path, Path, subprocess.CompletedProcess[str]]) -> None:
    tmp, data, _ = run_dir
    res = amarktai(tmp, "ledger", "verify", "--data-dir", data)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("ledger consistent")
    res = amarktai(tmp, "ledger", "verify", "--json", "--data-dir", data)
    assert res.returncode == 0
    out = json.loads(res.stdout)
    assert out["ok"] is True and out["checks"] > 1000 and out["first_discrepancy"] is None


def test_ledger_verify_exits_1_on_a_tampered_ledger(
    run_dir: tuple[Path, Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    _, data, _ = run_dir
    copy = tmp_path / "copy"
    copy.mkdir()
    src = sqlite3.connect(data / "amarktai.sqlite3")
    dst = sqlite3.connect(copy / "amarktai.sqlite3")
    src.backup(dst)
    src.close()
    # orders are not append-only: shrink one filled order below its fill
    dst.execute("UPDATE orders SET quantity = '0.00000001' WHERE id = (SELECT MIN(id) FROM orders)")
    dst.commit()
    dst.close()
    res = amarktai(tmp_path, "ledger", "verify", "--data-dir", copy)
    assert res.returncode == 1
    assert "INCONSISTENT" in res.stdout and "orders id=1" in res.stdout


def test_export_csv_and_json_agree_and_stdout_is_only_data(
    run_dir: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    tmp, data, _ = run_dir
    c = amarktai(tmp, "ledger", "export", "--format", "csv", "--data-dir", data)
    j = amarktai(tmp, "ledger", "export", "--format", "json", "--data-dir", data)
    assert c.returncode == 0 and j.returncode == 0
    assert c.stderr == "" and j.stderr == ""
    rows = list(csv.reader(io.StringIO(c.stdout)))
    assert tuple(rows[0]) == EXPORT_FIELDS
    assert all(len(r) == len(EXPORT_FIELDS) for r in rows[1:])
    as_csv = [dict(zip(EXPORT_FIELDS, r, strict=True)) for r in rows[1:]]
    doc = json.loads(j.stdout)  # the whole of stdout is one JSON document
    assert list(doc) == ["fills"]
    as_json = doc["fills"]
    assert len(as_csv) == len(as_json) == query(data, "SELECT COUNT(*) FROM fills")[0][0]
    for a, b in zip(as_csv, as_json, strict=True):
        assert isinstance(b["ts"], int) and isinstance(b["bot_id"], int)
        assert a == {k: str(v) for k, v in b.items()}
    # money is exact decimal text
    for b in as_json:
        for k in ("quantity", "price", "fee", "realised_pnl"):
            assert isinstance(b[k], str) and Decimal(b[k]).is_finite()


def test_status_json(run_dir: tuple[Path, Path, subprocess.CompletedProcess[str]]) -> None:
    tmp, data, _ = run_dir
    res = amarktai(tmp, "status", "--json", "--data-dir", data)
    assert res.returncode == 0 and res.stderr == ""
    st = json.loads(res.stdout)
    assert st["engine_running"] is False
    assert st["mode"] == "paper"
    assert len(st["bots"]) == 6
    fills = json.loads(amarktai(tmp, "ledger", "export", "--format", "json", "--data-dir", data).stdout)[
        "fills"
    ]
    assert Decimal(st["realised"]) == sum((Decimal(f["realised_pnl"]) for f in fills), Decimal(0))
    assert st["last_fill_ts"] == max(f["ts"] for f in fills)
    # --data-dir is accepted before the subcommand too
    res2 = amarktai(tmp, "--data-dir", data, "status", "--json")
    assert res2.returncode == 0 and json.loads(res2.stdout)["realised"] == st["realised"]


def test_report_json(run_dir: tuple[Path, Path, subprocess.CompletedProcess[str]]) -> None:
    tmp, data, _ = run_dir
    res = amarktai(tmp, "report", "--json", "--data-dir", data)
    assert res.returncode == 0 and res.stderr == ""
    rep = json.loads(res.stdout)
    st = json.loads(amarktai(tmp, "status", "--json", "--data-dir", data).stdout)
    assert rep["realised"] == st["realised"] and rep["equity"] == st["equity"]
    assert len(rep["bots"]) == 6 and rep["trades"] > 0
    assert rep["quote_currencies"] == ["USDT"]
    res = amarktai(tmp, "report", "weekly", "--json", "--data-dir", data)
    assert res.returncode == 0 and json.loads(res.stdout)["period"] == "weekly"


@pytest.mark.parametrize(
    "command", [["status"], ["status", "--json"], ["ledger", "verify"], ["report", "--json"]]
)
def test_read_commands_exit_1_without_a_ledger(tmp_path: Path, command: list[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for d in (empty, tmp_path / "does-not-exist"):
        msg = one_line_error(amarktai(tmp_path, *command, "--data-dir", d), code=1)
        assert "no ledger" in msg and str(d) in msg


def _malformed(tmp_path: Path) -> Path:
    rows = json.loads(BTC_1H.read_text())[:40]
    rows[16][2] = rows[16][3] - 1.0  # high < low on the 17th row
    p = tmp_path / "bad" / "BTC_USDT-1h.json"
    p.parent.mkdir()
    p.write_text(json.dumps(rows))
    return p


def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    d = tmp_path / "data"
    replay = ["--daemon", "--replay", str(BTC_1H), "--until-end", "--data-dir", str(d)]

    msg = one_line_error(amarktai(tmp_path, "--config", tmp_path / "nope.toml", "status", "--data-dir", d))
    assert "nope.toml" in msg

    bad = tmp_path / "bad.toml"
    bad.write_text('[general]\nmode = "sideways"\n')
    assert "general.mode" in one_line_error(amarktai(tmp_path, "--config", bad, *replay, "--speed", "0"))
    assert "general.mode" in one_line_error(amarktai(tmp_path, "--config", bad, "status", "--data-dir", d))

    assert "--bogus" in one_line_error(amarktai(tmp_path, "--bogus"))
    assert "--bogus" in one_line_error(amarktai(tmp_path, "status", "--bogus"))
    assert "--speed" in one_line_error(amarktai(tmp_path, *replay, "--speed", "-1"))
    assert "--speed" in one_line_error(amarktai(tmp_path, *replay, "--speed", "fast"))
    assert "--timeframe" in one_line_error(amarktai(tmp_path, *replay, "--speed", "0", "--timeframe", "7x"))

    bad_file = _malformed(tmp_path)
    msg = one_line_error(
        amarktai(tmp_path, "--daemon", "--replay", bad_file, "--speed", "0", "--until-end", "--data-dir", d)
    )
    assert "BTC_USDT-1h.json" in msg and "row 17" in msg and "high" in msg and "low" in msg
    assert not (d / "amarktai.sqlite3").exists(), "nothing written for a bad replay file"


@pytest.mark.parametrize("speed", ["nan", "inf"])
def test_non_finite_speed_is_a_usage_error(tmp_path: Path, speed: str) -> None:
    res = amarktai(
        tmp_path,
        "--daemon",
        "--replay",
        BTC_1H,
        "--speed",
        speed,
        "--until-end",
        "--data-dir",
        tmp_path / "d",
    )
    assert "--speed" in one_line_error(res)


def test_negative_speed_without_replay_is_a_usage_error(tmp_path: Path) -> None:
    # a read command, so that a missing check cannot start a daemon against a real exchange
    (tmp_path / "d").mkdir()
    res = amarktai(tmp_path, "--speed", "-1", "status", "--data-dir", tmp_path / "d")
    assert "--speed" in one_line_error(res)


def _imported(stderr: str) -> list[str]:
    """Module names from ``-X importtime`` lines (``import time: self | cumulative | name``)."""
    return [ln.rsplit("|", 1)[1].strip() for ln in stderr.splitlines() if ln.startswith("import time:")]


def test_daemon_never_imports_textual(tmp_path: Path) -> None:
    rows = json.loads(BTC_1H.read_text())[:300]
    small = tmp_path / "small" / "BTC_USDT-1h.json"
    small.parent.mkdir()
    small.write_text(json.dumps(rows))
    res = amarktai(
        tmp_path,
        "--daemon", "--replay", small, "--speed", "0", "--until-end", "--data-dir", tmp_path / "d",
        python_flags=("-X", "importtime"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    mods = _imported(res.stderr)
    assert "amarktai_tui.engine.engine" in mods and "amarktai_tui.ops.daemon" in mods  # the probe works
    assert not [ln for ln in res.stderr.splitlines() if "textual" in ln.lower()]
    assert not [m for m in mods if m.startswith("amarktai_tui.tui")]
    # and neither do the read commands
    for cmd in (["status", "--json"], ["ledger", "verify"], ["ledger", "export"], ["report", "--json"]):
        res = amarktai(tmp_path, *cmd, "--data-dir", tmp_path / "d", python_flags=("-X", "importtime"))
        assert res.returncode == 0, (cmd, res.stderr[-2000:])
        assert not [ln for ln in res.stderr.splitlines() if "textual" in ln.lower()], cmd


def test_version_and_help(tmp_path: Path) -> None:
    res = amarktai(tmp_path, "--version")
    assert res.returncode == 0 and res.stdout.startswith("amarktai ")
    res = amarktai(tmp_path, "--help")
    assert res.returncode == 0 and "--daemon" in res.stdout
