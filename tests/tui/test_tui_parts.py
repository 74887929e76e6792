"""The TUI's pure parts: braille plotting, incremental trades, formatting, theme files."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from amarktai_tui.domain.enums import Side
from amarktai_tui.domain.types import Candle, Fill
from amarktai_tui.ledger.pnl import trades_from_fills
from amarktai_tui.market.base import FeedState, FeedStatus
from amarktai_tui.tui import fmt
from amarktai_tui.tui.header import source_text
from amarktai_tui.tui.profits_pane import Wanted, read_figures
from amarktai_tui.tui.screens.bot_detail import fill_markers
from amarktai_tui.tui.themes import (
    BUILTIN_DIR,
    THEME_VARIABLES,
    ThemeFileError,
    choose_theme,
    load_themes,
    theme_from_dict,
)
from amarktai_tui.tui.trades import ClosedTrades
from amarktai_tui.tui.widgets.braille import cell_of, plot

BLANK = " "


def dots(rows: list[str]) -> set[tuple[int, int]]:
    """The lit dots of a plot as (x, y from the top) in dot coordinates."""
    bits = ((0x01, 0, 0), (0x02, 0, 1), (0x04, 0, 2), (0x40, 0, 3), (0x08, 1, 0), (0x10, 1, 1), (0x20, 1, 2))
    bits += ((0x80, 1, 3),)
    out = set()
    for r, line in enumerate(rows):
        for c, ch in enumerate(line):
            code = 0 if ch == BLANK else ord(ch) - 0x2800
            for bit, dx, dy in bits:
                if code & bit:
                    out.add((2 * c + dx, 4 * r + dy))
    return out


# -- braille ----------------------------------------------------------------------
def test_plot_shape_and_empty_series() -> None:
    rows = plot([], 5, 3, 0, 1)
    assert rows == [BLANK * 5] * 3
    rows = plot([1.0, 2.0, 3.0], 7, 4, 1.0, 3.0)
    assert len(rows) == 4 and all(len(r) == 7 for r in rows)


def test_plot_rising_line_goes_from_bottom_left_to_top_right_without_gaps() -> None:
    lit = dots(plot([0.0, 1.0], 4, 2, 0.0, 1.0))  # 8 x 8 dots
    assert (0, 7) in lit and (7, 0) in lit
    assert {x for x, _ in lit} == set(range(8))  # every dot column is drawn
    for x in range(8):  # and the line is continuous: each column touches the next
        ys = {y for xx, y in lit if xx == x}
        nxt = {y for xx, y in lit if xx == x + 1}
        if nxt:
            assert min(abs(a - b) for a in ys for b in nxt) <= 1


def test_plot_flat_series_is_one_row_in_the_middle() -> None:
    lit = dots(plot([5.0] * 10, 5, 2, 5.0, 5.0))
    assert {y for _, y in lit} == {3}  # mid-height: dot row 4 of 0..7 from the bottom


def test_plot_downsampling_keeps_a_spike() -> None:
    values = [0.0] * 1000
    values[500] = 1.0
    lit = dots(plot(values, 10, 3, 0.0, 1.0))
    assert min(y for _, y in lit) == 0 and max(y for _, y in lit) == 11


def test_cell_of_corners() -> None:
    assert cell_of(0, 0.0, 10, 20, 5, 0.0, 1.0) == (0, 4)
    assert cell_of(9, 1.0, 10, 20, 5, 0.0, 1.0) == (19, 0)


# -- closed trades -------------------------------------------------------------------
def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def fill(ts: int, side: Side, qty: str, price: str, pnl: str = "0", bot: int = 1, fee: str = "0.1") -> Fill:
    return Fill(
        fill_id=f"f{ts}{side}",
        client_order_id=f"c{ts}{side}",
        bot_id=bot,
        exchange="binance",
        pair="BTC/USDT",
        side=side,
        quantity=Decimal(qty),
        price=Decimal(price),
        fee=Decimal(fee),
        fee_currency="USDT",
        ts=ts,
        liquidity="taker",
        realised_pnl=Decimal(pnl),
    )


def test_closed_trades_incremental_equals_batch() -> None:
    t = ms("2021-01-01T00:00")
    h = 3_600_000
    fills = [
        fill(t, Side.BUY, "1", "100"),
        fill(t + h, Side.BUY, "1", "100", bot=2),
        fill(t + 2 * h, Side.SELL, "0.5", "110"),
        fill(t + 3 * h, Side.SELL, "0.5", "120"),  # bot 1 flat: one trade
        fill(t + 4 * h, Side.BUY, "2", "90"),
        fill(t + 5 * h, Side.SELL, "1", "95", bot=2),  # bot 2 flat
        fill(t + 6 * h, Side.SELL, "2", "80"),
        fill(t + 7 * h, Side.BUY, "1", "80"),  # still open at the end
    ]
    closed = ClosedTrades()
    for i in range(len(fills) + 1):
        closed.update(fills[:i])
    assert closed.trades == trades_from_fills(fills)
    assert len(closed.trades) == 3


# -- formatting ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "signed", "text"),
    [
        ("1234.5", False, "1,234.50"),
        ("1234.5", True, "+1,234.50"),
        ("-0.004", True, "0.00"),  # no "-0.00"
        ("0.125", False, "0.12"),  # half-even
        ("-98765.435", True, "-98,765.44"),
    ],
)
def test_money(value: str, signed: bool, text: str) -> None:
    assert fmt.money(Decimal(value), signed=signed) == text


def test_qty_ts_duration() -> None:
    assert fmt.qty(Decimal("0.01230000")) == "0.0123"
    assert fmt.qty(Decimal("2")) == "2"
    assert fmt.ts(ms("2021-07-17T21:00")) == "2021-07-17 21:00"
    assert fmt.ts(0) == "-"
    assert fmt.duration(3 * 86_400_000 + 4 * 3_600_000) == "3d 4h"
    assert fmt.duration(25 * 60_000) == "25m"


def test_source_text() -> None:
    assert source_text(None) == "starting..."
    assert source_text(FeedStatus("replay", FeedState.REPLAYING, 0.421, 0.0)) == "REPLAY 42% max speed"
    assert source_text(FeedStatus("replay", FeedState.REPLAYING, 0.5, 60.0)) == "REPLAY 50% 60x"
    assert source_text(FeedStatus("replay", FeedState.ENDED, 1.0, 0.0)) == "REPLAY ended 100%"
    assert source_text(FeedStatus("binance", FeedState.LIVE)) == "binance live"
    retry = FeedStatus("binance", FeedState.RETRYING, detail="timeout, next try in 8 s")
    assert source_text(retry) == "binance retrying (timeout, next try in 8 s)"


def test_fill_markers_sit_on_their_candle() -> None:
    h = 3_600_000
    candles = [Candle("BTC/USDT", "1h", i * h, 1, 2, 0.5, 1.5, 10) for i in range(10, 20)]
    fills = [
        fill(5 * h, Side.BUY, "1", "1"),  # before the window: not drawn
        fill(12 * h, Side.BUY, "1", "1.2"),
        fill(15 * h, Side.SELL, "1", "1.7"),
    ]
    markers = fill_markers(candles, fills)
    assert [(m.index, m.value, m.kind) for m in markers] == [(2.0, 1.2, "buy"), (5.0, 1.7, "sell")]


# -- themes -------------------------------------------------------------------------
def test_builtin_themes_define_the_app_variables() -> None:
    loaded = load_themes(BUILTIN_DIR)
    assert loaded.errors == []
    assert {"amarktai-dark", "amarktai-light", "amarktai-contrast"} <= set(loaded.themes)
    for theme in loaded.themes.values():
        assert set(THEME_VARIABLES) <= set(theme.variables), theme.name
    assert loaded.themes["amarktai-light"].dark is False


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"primary": "#fff", "colour": "#000"}, "unknown key 'colour'"),
        ({"primary": "nope"}, "primary = 'nope' is not a colour"),
        ({"background": "#000"}, "primary colour is missing"),
        ({"primary": "#fff", "dark": "yes"}, "dark must be true or false"),
        ({"primary": "#fff", "variables": {"pnl-up": 3}}, "variables.pnl-up must be a colour string"),
    ],
)
def test_bad_theme_tables_are_named(data: dict[str, object], message: str) -> None:
    with pytest.raises(ThemeFileError, match="mine.toml: " + message):
        theme_from_dict(data, "mine.toml", "mine")


def test_load_themes_reports_broken_files_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text('name = "x"\nprimary = \n')
    (tmp_path / "good.toml").write_text('primary = "#123456"\n[variables]\npnl-up = "#00ff00"\n')
    loaded = load_themes(BUILTIN_DIR, tmp_path, tmp_path / "missing")
    assert "good" in loaded.themes and "amarktai-dark" in loaded.themes
    assert len(loaded.errors) == 1 and loaded.errors[0].startswith("theme file broken.toml:")


def test_choose_theme_falls_back() -> None:
    assert choose_theme("amarktai-light", {"amarktai-light", "amarktai-dark"}) == ("amarktai-light", None)
    name, message = choose_theme("nope", {"amarktai-dark", "textual-dark"})
    assert name == "amarktai-dark" and message == "theme 'nope' not found; using amarktai-dark"
    assert choose_theme("nope", {"textual-dark"})[0] == "textual-dark"


# -- the Profits pane's ledger read ---------------------------------------------------
def test_profit_figures_of_a_missing_ledger_say_so_and_never_cover_the_engine(tmp_path: Path) -> None:
    read = read_figures(tmp_path / "none.sqlite3", ms("2021-07-07T09:00"), "all", Decimal(1000), "USDT")
    assert read.figures is None and read.error is not None and "no ledger" in read.error
    assert read.countdown == "Countdown: no ledger yet"
    assert not read.covers(Wanted(0, None, ms("2021-07-07T09:00"), ended=True, venue="all"))
    assert not (tmp_path / "none.sqlite3").exists()  # a read never creates a ledger
