"""BotRunner: one bot's state on the one path (candle -> signal -> intent; fill -> lots).

Pure and synchronous (no I/O, no awaits): the engine fans a candle out to
every runner on that stream in a plain loop, so 45 bots cost 45 method calls
per candle, not 45 task switches. Time comes from the candles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from amarktai_tui.domain.enums import BotState, OrderType, Side, SignalAction
from amarktai_tui.domain.types import (
    HOLD,
    Candle,
    Fill,
    OrderIntent,
    Signal,
    client_order_id,
    timeframe_to_ms,
)
from amarktai_tui.exchanges.paper import to_decimal
from amarktai_tui.ledger.pnl import FifoBook
from amarktai_tui.ledger.store import BotRecord
from amarktai_tui.risk.sizing import SizeResult, entry_quantity
from amarktai_tui.strategies.base import Strategy
from amarktai_tui.strategies.exits import ExitRules, PositionExitTracker

_ZERO = Decimal(0)
# enum members as module constants: the hot path avoids class attribute lookups
_ENTER, _EXIT = SignalAction.ENTER, SignalAction.EXIT
_BUY, _SELL = Side.BUY, Side.SELL
_RUNNING, _STOPPED, _ERROR = BotState.RUNNING, BotState.STOPPED, BotState.ERROR
_TRIPPED = BotState.CIRCUIT_TRIPPED


@dataclass(slots=True)
class BotStats:
    """Running per-bot figures for the UI (quote currency; recomputable from the ledger)."""

    realised: Decimal = _ZERO
    fees: Decimal = _ZERO
    trades: int = 0  # closed round trips
    wins: int = 0
    fills: int = 0
    gross_win: Decimal = _ZERO  # sum of winning round trips' realised PnL
    gross_loss: Decimal = _ZERO  # sum of losing round trips' |realised PnL|


class BotRunner:
    """Holds one bot's strategy, lots, cash mirror, in-flight order and run state.

    ``cash`` mirrors the broker's balance for this bot (quote); ``book`` its
    FIFO lots. ``in_flight`` is the client order id of the bot's one open
    order (a bot has at most one order in flight).
    """

    __slots__ = (
        "_flat_cache",
        "_trade_pnl",
        "book",
        "cash",
        "closed_pnl",
        "cost_f",
        "entry_ts",
        "exit_requested",
        "fee_rate",
        "flat_f",
        "funding",
        "in_flight",
        "last_ts",
        "long",
        "mark",
        "qty_f",
        "rec",
        "resume_after",
        "sizer",
        "slippage",
        "stats",
        "strategy",
        "tf_ms",
        "tracker",
    )

    def __init__(
        self,
        rec: BotRecord,
        strategy: Strategy,
        *,
        funding: Decimal,
        taker_fee: Decimal,
        slippage: Decimal,
    ) -> None:
        self.rec = rec
        self.strategy = strategy
        self.funding = funding
        self.cash = funding
        self.fee_rate = taker_fee
        self.slippage = slippage
        self.book = FifoBook()
        self.stats = BotStats()
        self.long = False
        self.entry_ts = 0  # open time of the candle the current position was entered on
        self.in_flight: str | None = None
        self.last_ts: int | None = None
        self.resume_after: int | None = rec.last_candle_ts  # candles up to here only warm the strategy
        self.mark: float | None = None
        self.exit_requested: str | None = None
        self.tf_ms = timeframe_to_ms(rec.timeframe)
        self._trade_pnl = _ZERO
        self._flat_cache: tuple[int, Decimal] | None = None
        # float mirrors for the breakers' per-candle mark (exact figures stay Decimal)
        self.flat_f = float(funding)
        self.qty_f = 0.0
        self.cost_f = 0.0
        self.closed_pnl: Decimal | None = None  # the last round trip's PnL, set when a sell closes it
        self.sizer: Callable[[BotRunner, Decimal], SizeResult] | None = None  # the engine's sizing
        rules = ExitRules(rec.stop_loss, rec.take_profit, rec.trailing_stop)
        self.tracker: PositionExitTracker | None = (
            PositionExitTracker(rules) if (rec.stop_loss or rec.take_profit or rec.trailing_stop) else None
        )

    # -- the candle path --------------------------------------------------
    def on_candle(self, c: Candle) -> OrderIntent | None:
        """Feed one closed candle; return an intent to trade, if any. May raise (strategy bug).

        This is the hot path (bots x candles): the common case, a HOLD while
        flat, returns after the strategy call and three attribute tests.
        """
        last = self.last_ts
        if last is not None and c.ts <= last:
            return None
        self.last_ts = c.ts
        self.mark = c.close
        if self.rec.state is _ERROR:
            return None  # its strategy raised: it sits out until resumed
        sig = self.strategy.on_candle(c)
        long = self.long
        if sig is HOLD and not long and self.resume_after is None:
            return None
        tracker = self.tracker
        exit_sig = tracker.check(c) if (tracker is not None and long and c.ts >= self.entry_ts) else None
        if self.resume_after is not None:
            if c.ts <= self.resume_after:
                return None  # already acted on before a restart: warm-up only
            self.resume_after = None
        state = self.rec.state
        if self.in_flight is not None or state is _ERROR:
            return None
        if long:
            if self.exit_requested is not None:
                return self._intent(c, _SELL, Signal(_EXIT, reason=self.exit_requested))
            if exit_sig is None and sig.action is _EXIT and state is not _STOPPED:
                exit_sig = sig
            if exit_sig is not None:
                return self._intent(c, _SELL, exit_sig)
            return None
        if sig.action is _ENTER and (state is _RUNNING or state is _TRIPPED):
            return self._intent(c, _BUY, sig)  # a tripped bot's entry goes to gate D, which refuses it
        return None

    def warm(self, c: Candle) -> None:
        """Feed a history candle (exchange backfill) to the strategy only: no orders, no marks of lots."""
        if self.last_ts is not None and c.ts <= self.last_ts:
            return
        self.last_ts = c.ts
        self.mark = c.close
        self.strategy.on_candle(c)

    def _intent(self, c: Candle, side: Side, sig: Signal) -> OrderIntent | None:
        if side is Side.BUY:
            price = to_decimal(c.close)
            if self.sizer is not None:
                size = self.sizer(self, price)
            else:
                size = entry_quantity(
                    capital=self.rec.capital,
                    cash=self.cash,
                    price=price,
                    risk_mode=self.rec.risk_mode,
                    taker_fee=self.fee_rate,
                    slippage=self.slippage,
                )
            if not size.quantity:
                return None
            qty = size.quantity
        else:
            qty = self.book.position_qty
        limit = None if sig.limit_price is None else to_decimal(sig.limit_price)
        if limit is None and side is Side.BUY and self.rec.order_type == "limit":
            limit = to_decimal(c.close)  # a maker-style entry at the decision close
        return OrderIntent(
            client_order_id=client_order_id(self.rec.id, c.ts, side),
            bot_id=self.rec.id,
            exchange=self.rec.exchange,
            pair=self.rec.pair,
            side=side,
            order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
            quantity=qty,
            limit_price=limit,
            decision_ts=c.ts,
            reason=sig.reason,
            edge_bps=sig.edge_bps,
        )

    # -- the fill path ----------------------------------------------------
    def apply_fill(self, fill: Fill) -> Fill:
        """Book a fill into the FIFO lots; return it with its realised PnL set (quote)."""
        self.stats.fills += 1
        self.stats.fees += fill.fee
        if fill.side is Side.BUY:
            self.book.buy(fill.quantity, fill.price, fill.fee, fill.ts)
            self.cash -= fill.quantity * fill.price + fill.fee
            if not self.long:
                self.entry_ts = fill.ts
                if self.tracker is not None:
                    self.tracker.on_entry(float(fill.price))
            self.long = True
            realised = _ZERO
        else:
            realised = self.book.sell(fill.quantity, fill.price, fill.fee)
            self.cash += fill.quantity * fill.price - fill.fee
            self.stats.realised += realised
            self._trade_pnl += realised
            if self.book.position_qty == 0:
                self.long = False
                self.exit_requested = None
                self.stats.trades += 1
                pnl = self._trade_pnl
                if pnl > 0:
                    self.stats.wins += 1
                    self.stats.gross_win += pnl
                elif pnl < 0:
                    self.stats.gross_loss -= pnl
                self.closed_pnl = pnl
                self._trade_pnl = _ZERO
                if self.tracker is not None:
                    self.tracker.on_exit()
        self.flat_f = float(self.funding + self.stats.realised)
        self.qty_f = float(self.book.position_qty)
        self.cost_f = float(self.book.cost_basis)
        return Fill(
            fill_id=fill.fill_id,
            client_order_id=fill.client_order_id,
            bot_id=fill.bot_id,
            exchange=fill.exchange,
            pair=fill.pair,
            side=fill.side,
            quantity=fill.quantity,
            price=fill.price,
            fee=fill.fee,
            fee_currency=fill.fee_currency,
            ts=fill.ts,
            liquidity=fill.liquidity,
            realised_pnl=realised,
        )

    # -- figures ------------------------------------------------------------
    def mark_price(self) -> Decimal | None:
        return None if self.mark is None else to_decimal(self.mark)

    def unrealised(self) -> Decimal:
        m = self.mark_price()
        return self.book.unrealised(m) if (m is not None and self.long) else _ZERO

    def flat_equity(self) -> Decimal:
        """funding + realised (quote) while flat, cached until the next fill."""
        n = self.stats.fills
        if self._flat_cache is None or self._flat_cache[0] != n:
            self._flat_cache = (n, self.funding + self.stats.realised)
        return self._flat_cache[1]

    def equity_f(self, price: float) -> float:
        """Equity marked at ``price`` in binary floats: the breakers' cheap per-candle pre-check."""
        return self.flat_f + self.qty_f * price - self.cost_f

    def add_funding(self, amount: Decimal) -> None:
        """Funding or allocation moved ``amount`` (quote, signed) into this bot."""
        self.funding += amount
        self.cash += amount
        self._flat_cache = None
        self.flat_f = float(self.funding + self.stats.realised)

    def equity(self) -> Decimal:
        """funding + realised + unrealised (quote), per DESIGN.md's equity rule."""
        return self.funding + self.stats.realised + self.unrealised()

    @property
    def win_rate(self) -> float | None:
        return self.stats.wins / self.stats.trades if self.stats.trades else None
