"""``amarktai optimize``: JSON and table output, and every bad input as one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optimize_helpers import btc_slice, ledger_rows, ledger_with_demo_bots

from amarktai_tui import cli

PROG = "amarktai optimize: "


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return btc_slice(tmp_path_factory.mktemp("candles"))


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    rc = cli.run([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_json_output_and_the_table(capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path) -> None:
    d = tmp_path / "d"
    common = ["optimize", "--strategy", "donchian_breakout", "--data", data, "--trials", "2", "--folds", "2"]
    rc, out, err = _run(capsys, *common, "--seed", "5", "--data-dir", d, "--json")
    assert rc == 0, err
    assert err == ""  # no progress bar off a terminal, no engine logs
    doc = json.loads(out)
    assert doc["status"] == "done" and doc["trials"] == 2 == doc["study_trials"]
    assert doc["strategy"] == "donchian_breakout" and doc["sampler"] == "tpe" and doc["seed"] == 5
    assert doc["objectives"] == ["return"] and doc["streams"] == [["BTC/USDT", "1h"]]
    assert len(doc["windows"]) == 2 and doc["storage"] == f"sqlite:///{(d / 'optuna.sqlite3').absolute()}"
    best = doc["best"]
    assert set(best["params"]) == {"entry_period", "exit_period"}
    assert len(best["in_sample"]["folds"]) == len(best["out_of_sample"]["folds"]) == 2
    assert best["values"] == [pytest.approx(best["in_sample"]["return"])]
    assert doc["top"][0]["number"] == best["number"]
    (row,) = ledger_rows(d, "SELECT id, status FROM optimization_runs")
    assert (row["id"], row["status"]) == (doc["run_id"], "done")

    rc, out, err = _run(capsys, *common, "--seed", "5", "--data-dir", tmp_path / "d2", "--study", "again")
    assert rc == 0, err
    assert "Optimised donchian_breakout on BTC/USDT 1h: 2 trials (tpe, seed 5)" in out
    assert f"Best by in-sample score: trial {best['number']}:" in out
    assert "OUT-OF-SAMPLE" in out and "fold 2" in out


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--strategy", "nope"], "--strategy: unknown strategy 'nope'"),
        (["--trials", "0"], "--trials must be >= 1, got 0"),
        (["--workers", "0"], "--workers must be >= 1, got 0"),
        (["--folds", "0"], "--folds must be 1 to 20"),
        (["--storage", "not a url"], "--storage: not a database URL"),
        (["--storage", "nosuchdb://host/x"], "--storage nosuchdb://host/x: cannot open"),
        (["--storage", "sqlite:////no/such/dir/optuna.db"], "no such directory /no/such/dir"),
        (
            ["--storage", "postgresql://u:hunter2@127.0.0.1:9/db"],
            "--storage postgresql://u:***@127.0.0.1:9/db",
        ),
        (["--apply", "btc-fast"], "--apply btc-fast: no ledger"),
        (["--sampler", "grid"], "invalid choice: 'grid'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path, extra: list[str], expected: str
) -> None:
    d = tmp_path / "d"
    args = ["optimize", "--strategy", "sma_cross", "--data", data, "--data-dir", d, "--trials", "1", *extra]
    rc, out, err = _run(capsys, *args)
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and expected in err, err
    assert "hunter2" not in err
    assert not d.exists()  # no storage, no ledger


@pytest.mark.parametrize("which", ["missing", "malformed", "twice", "short"])
def test_bad_data_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path, which: str
) -> None:
    bad = tmp_path / "bad" / "BTC_USDT-1h.json"
    if which == "malformed":
        rows = json.loads(data.read_text())
        rows[7][2] = rows[7][3] / 2  # high below low
        bad.parent.mkdir()
        bad.write_text(json.dumps(rows))
    if which == "short":  # sma_cross warms up on 301 candles: nothing left for the folds
        bad = btc_slice(tmp_path / "short", 300)
    files = f"{data},{data}" if which == "twice" else str(bad)
    d = tmp_path / "d"
    rc, out, err = _run(capsys, "optimize", "--strategy", "sma_cross", "--data", files, "--data-dir", d)
    assert rc == 2 and out == ""
    assert err.startswith(PROG) and err.count("\n") == 1
    assert {
        "missing": "no such file",
        "malformed": "row 8",
        "twice": "BTC/USDT 1h is given twice",
        "short": "--data: too little data for 3 folds after 301 warm-up candles",
    }[which] in err
    assert not d.exists()


@pytest.mark.parametrize("mode", ["expert", "autonomous"])
def test_apply_submits_the_best_params_through_the_autonomy_door(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path, mode: str
) -> None:
    d = ledger_with_demo_bots(tmp_path / "d", btc_slice(tmp_path / "short", 300))
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[autonomy]\nmode = "{mode}"\n')
    (before,) = ledger_rows(d, "SELECT id, params_json FROM bots WHERE name = 'btc-ema'")
    args = ["optimize", "--strategy", "sma_cross", "--data", data, "--trials", "2", "--folds", "2"]
    rc, out, err = _run(capsys, *args, "--data-dir", d, "--config", cfg, "--apply", "btc-ema", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    (applied,) = doc["applied"]
    assert applied["field"] == "params"
    assert applied["status"] == ("proposed" if mode == "expert" else "applied")
    (adj,) = ledger_rows(d, "SELECT * FROM bot_adjustments")
    assert (adj["id"], adj["bot_id"], adj["source"], adj["field"]) == (
        applied["id"],
        before["id"],
        "optimizer",
        "params",
    )
    assert json.loads(adj["after_json"]) == doc["best"]["params"] == applied["after"]
    assert f"optuna study {doc['study']} trial {doc['best']['number']}" in adj["reason"]
    assert "out-of-sample" in adj["reason"]
    (now,) = ledger_rows(d, "SELECT params_json FROM bots WHERE name = 'btc-ema'")
    expected = before["params_json"] if mode == "expert" else json.dumps(doc["best"]["params"])
    assert json.loads(now["params_json"]) == json.loads(expected)


def test_apply_refuses_an_unknown_bot_or_another_strategy_before_the_study(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path
) -> None:
    d = ledger_with_demo_bots(tmp_path / "d", btc_slice(tmp_path / "short", 300))
    args = ["optimize", "--strategy", "sma_cross", "--data", data, "--data-dir", d, "--trials", "1"]
    for bot, text in (
        ("nope", "--apply: unknown bot 'nope'; bots: btc-donchian, btc-ema, btc-rsi"),
        ("btc-rsi", "--apply btc-rsi: the bot runs rsi_reversion, not sma_cross"),
    ):
        rc, out, err = _run(capsys, *args, "--apply", bot)
        assert rc == 2 and out == "" and err.count("\n") == 1 and text in err, err
    assert not (d / "optuna.sqlite3").exists()
    assert ledger_rows(d, "SELECT id FROM optimization_runs") == []
