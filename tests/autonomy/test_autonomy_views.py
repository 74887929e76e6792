"""autonomy.views: the words of a change, and a read that never raises for a missing ledger."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from amarktai_tui.autonomy.adjust_store import Adjustment
from amarktai_tui.autonomy.views import HistoryEntry, change_text, read_view, value_text


def test_change_text_names_only_what_changes() -> None:
    before = {"fast": 12, "slow": 26, "kind": "ema"}
    assert change_text("params", before, {"fast": 9, "slow": 26, "kind": "ema"}) == "fast 12→9"
    assert change_text("params", before, {**before, "slow": 30, "new": 1}) == "new -→1, slow 26→30"
    assert change_text("params", before, dict(before)) == "no change"
    old = {"risk_mode": "balanced", "size_multiplier": "1"}
    assert change_text("risk_mode", old, {"risk_mode": "safe", "size_multiplier": "0.80"}) == (
        "balanced→safe, size x1→x0.8"
    )
    assert change_text("size_multiplier", "1.00", "1.2") == "x1 → x1.2"
    assert change_text("stop_loss", None, "0.025") == "off → 2.5%"
    assert change_text("take_profit", "0.1", "0.05") == "10% → 5%"
    assert change_text("capital", "1000", "1234.5") == "1,000.00 → 1,234.50"
    assert change_text("state", "running", "paused") == "running → paused"
    assert change_text("replace", {}, {"name": "btc-2", "strategy": "sma_cross", "pair": "BTC/USDT"}) == (
        "new bot btc-2 (sma_cross BTC/USDT)"
    )
    assert value_text("size_multiplier", Decimal("0.7000")) == "x0.7"


def test_history_entry_is_revertible_only_while_in_force() -> None:
    def row(status: str, field: str = "stop_loss") -> Adjustment:
        return Adjustment(1, 0, 1, "b", "learning", field, "0.02", "0.03", "r", status, "engine", None)

    assert HistoryEntry(row("applied")).revertible and HistoryEntry(row("accepted")).revertible
    assert not HistoryEntry(row("applied"), reverted_by=2).revertible
    assert not HistoryEntry(row("refused")).revertible and not HistoryEntry(row("rejected")).revertible
    assert not HistoryEntry(row("applied", "replace")).revertible


def test_a_missing_ledger_reads_as_an_error_not_an_exception(tmp_path: Path) -> None:
    view = read_view(tmp_path / "nothing.sqlite3")
    assert view.error is not None and "no ledger yet" in view.error
    assert view.pending == [] and view.history == [] and view.run is None
