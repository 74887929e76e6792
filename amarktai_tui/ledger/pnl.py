"""FIFO lots and realised/unrealised PnL, long-only spot (pure: no I/O, no clock).

One ``FifoBook`` per (bot, exchange, pair), as DESIGN.md "Money" says:

- a buy opens a lot whose cost basis is ``qty * price + fee`` (fee in quote);
- a sell closes lots oldest first; its proceeds are ``qty * price - fee``
  and its realised PnL is ``proceeds - cost of the closed lot slices``. The
  sell fee is thereby taken off proceeds pro rata over the lots it closes
  (the per-lot split, ``proceeds * closed_qty / qty``, only matters for
  attribution; the total is the same);
- a partially closed lot keeps ``remaining_cost = cost * remaining_qty / qty``
  of its *original* ``cost`` and ``qty`` (so repeated partial closes do not
  accumulate rounding).

Units: quantities in base units, prices in quote per base, money in quote.

Rounding (the only inexact step): a partially closed lot's remaining cost is
computed with 40 significant digits, ROUND_HALF_EVEN, and quantised to
``COST_QUANTUM`` (1e-18 quote). The closed slice's cost is the difference
``old remaining cost - new remaining cost``, so cost is conserved exactly:
``cost_basis + sum(closed costs) == sum(buy costs)`` to the last digit, and
therefore ``sum(realised) + unrealised(mark) == sum(sell proceeds) +
position * mark - sum(buy costs)`` exactly. Every other operation (products,
sums) must be exact; one that would need more than 40 significant digits
raises ``decimal.Inexact`` instead of rounding silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Protocol

from amarktai_tui.domain.types import split_pair

PRECISION = 40
COST_QUANTUM = Decimal("1e-18")
ZERO = Decimal(0)

# Exact arithmetic: any rounding is an error.
_EXACT = Context(
    prec=PRECISION, rounding=ROUND_HALF_EVEN, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow]
)
# The one deliberate rounding: proportional remaining cost, then quantised.
_ROUND = Context(prec=PRECISION, rounding=ROUND_HALF_EVEN)


def canonical(value: Decimal) -> Decimal:
    """``value`` without trailing fractional zeros and never in exponent form.

    ``Decimal("165.150000")`` -> ``165.15``; ``Decimal("0E-18")`` -> ``0``;
    ``Decimal("1.5E+2")`` -> ``150``. Same numeric value, so Decimal
    equality is unchanged; for ``str()`` in the ledger, exports and reports.
    """
    if not value.is_finite():
        return value
    if value == 0:
        return ZERO
    norm = value.normalize(_ROUND)
    if norm.as_tuple().exponent > 0:  # type: ignore[operator]
        return norm.quantize(Decimal(1), context=_ROUND)
    return norm


def _check_positive(name: str, value: Decimal) -> None:
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{name} must be a positive finite Decimal, got {value}")


def fee_in_quote(fee: Decimal, fee_currency: str, base: str, quote: str, price: Decimal) -> Decimal:
    """A fill's fee in quote currency.

    ``fee`` is in ``fee_currency``: a quote fee is returned as is, a base fee
    is converted at the fill ``price`` (``fee * price``), per DESIGN.md "Fees
    in a currency other than quote are converted at the fill price". The
    conversion is reproducible from the fill row (fee, fee_currency, price).
    Currency codes compare case-insensitively.

    Raises ValueError for any other currency (e.g. BNB): the fill price cannot
    convert it, and guessing a rate would make the ledger unverifiable.
    """
    cur = fee_currency.upper()
    if cur == quote.upper():
        return fee
    if cur == base.upper():
        with localcontext(_EXACT):
            return fee * price
    raise ValueError(
        f"fee currency {fee_currency!r} is neither base {base!r} nor quote {quote!r}: "
        "no rate to convert it at the fill price"
    )


@dataclass(frozen=True, slots=True)
class Lot:
    """An open lot (view). ``cost`` includes the buy fee (quote)."""

    qty: Decimal  # base units bought
    price: Decimal  # fill price, quote per base
    cost: Decimal  # qty * price + fee, quote
    remaining_qty: Decimal
    remaining_cost: Decimal
    ts: int  # ms UTC of the buy (0 when not given)


@dataclass(slots=True)
class _MutLot:
    qty: Decimal
    price: Decimal
    cost: Decimal
    remaining_qty: Decimal
    remaining_cost: Decimal
    ts: int


class FifoBook:
    """FIFO lots of one (bot, exchange, pair), long-only spot.

    Not thread-safe; cheap to create (replay a fill list through a new one).
    """

    __slots__ = ("_cost_basis", "_lots", "_position")

    def __init__(self) -> None:
        self._lots: list[_MutLot] = []
        self._position = ZERO
        self._cost_basis = ZERO

    def buy(self, qty: Decimal, price: Decimal, fee: Decimal, ts: int = 0) -> None:
        """Open a lot of ``qty`` base at ``price``; ``fee`` (quote) adds to its cost.

        A negative fee (maker rebate) lowers the cost. Raises ValueError for a
        non-positive qty or price or a non-finite fee.
        """
        _check_positive("quantity", qty)
        _check_positive("price", price)
        if not fee.is_finite():
            raise ValueError(f"fee must be finite, got {fee}")
        with localcontext(_EXACT):
            cost = qty * price + fee
            self._lots.append(_MutLot(qty, price, cost, qty, cost, ts))
            self._position += qty
            self._cost_basis += cost

    def sell(self, qty: Decimal, price: Decimal, fee: Decimal) -> Decimal:
        """Close ``qty`` base at ``price``, oldest lots first; return realised PnL (quote).

        ``realised = (qty * price - fee) - cost of the closed lot slices``.
        Raises ValueError when ``qty`` exceeds the position (exact Decimal
        comparison, no dust tolerance) or for bad inputs; the book is then
        unchanged.
        """
        _check_positive("quantity", qty)
        _check_positive("price", price)
        if not fee.is_finite():
            raise ValueError(f"fee must be finite, got {fee}")
        if qty > self._position:
            raise ValueError(f"sell of {qty} exceeds the position of {self._position}")
        with localcontext(_EXACT):
            proceeds = qty * price - fee
            left = qty
            closed_cost = ZERO
            while left > 0:
                lot = self._lots[0]
                if left >= lot.remaining_qty:
                    left -= lot.remaining_qty
                    closed_cost += lot.remaining_cost
                    self._lots.pop(0)
                    continue
                new_qty = lot.remaining_qty - left
                with localcontext(_ROUND):
                    new_cost = canonical((lot.cost * new_qty / lot.qty).quantize(COST_QUANTUM))
                closed_cost += lot.remaining_cost - new_cost
                lot.remaining_qty = new_qty
                lot.remaining_cost = new_cost
                left = ZERO
            self._position -= qty
            self._cost_basis = canonical(self._cost_basis - closed_cost)
            return canonical(proceeds - closed_cost)

    @property
    def position_qty(self) -> Decimal:
        """Open quantity, base units (0 when flat)."""
        return canonical(self._position)

    @property
    def cost_basis(self) -> Decimal:
        """Sum of the open lots' remaining cost, quote (buy fees included)."""
        return self._cost_basis

    @property
    def avg_entry_price(self) -> Decimal | None:
        """``cost_basis / position_qty`` (quote per base, fees included), None when flat.

        Rounded to 40 significant digits (ROUND_HALF_EVEN): for display only.
        """
        if self._position == 0:
            return None
        with localcontext(_ROUND):
            return self._cost_basis / self._position

    def unrealised(self, mark_price: Decimal) -> Decimal:
        """``position_qty * mark_price - cost_basis``, quote (0 when flat)."""
        with localcontext(_EXACT):
            return canonical(self._position * mark_price - self._cost_basis)

    @property
    def lots(self) -> tuple[Lot, ...]:
        """Open lots, oldest first (immutable copies)."""
        return tuple(Lot(x.qty, x.price, x.cost, x.remaining_qty, x.remaining_cost, x.ts) for x in self._lots)


class FillLike(Protocol):
    """What ``trades_from_fills`` reads from a fill (domain ``Fill`` or a ledger row)."""

    @property
    def bot_id(self) -> int: ...
    @property
    def exchange(self) -> str: ...
    @property
    def pair(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def quantity(self) -> Decimal: ...
    @property
    def price(self) -> Decimal: ...
    @property
    def fee(self) -> Decimal: ...
    @property
    def fee_currency(self) -> str: ...
    @property
    def ts(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Trade:
    """A closed round trip of one bot on one pair: from flat to flat.

    ``qty`` is the total base bought (== sold); ``entry_cost`` the sum of buy
    costs incl. fees, ``exit_proceeds`` the sum of sell proceeds net of fees,
    ``pnl = exit_proceeds - entry_cost`` (== the sum of the sells' FIFO
    realised PnL), ``fees`` all fees of the trade in quote. Times ms UTC.
    """

    bot_id: int
    pair: str
    entry_ts: int
    exit_ts: int
    qty: Decimal
    entry_cost: Decimal
    exit_proceeds: Decimal
    pnl: Decimal
    fees: Decimal
    exchange: str = ""


@dataclass(slots=True)
class _Open:
    entry_ts: int
    qty: Decimal = ZERO
    entry_cost: Decimal = ZERO
    exit_proceeds: Decimal = ZERO
    fees: Decimal = ZERO


def trades_from_fills(fills: Iterable[FillLike]) -> list[Trade]:
    """Closed trades from fills given in ledger order (fills.id), any bots mixed.

    Fills are grouped per (bot, exchange, pair) and replayed through a
    ``FifoBook``; a trade opens at a buy from flat and closes at the sell that
    brings the position back to exactly 0. A still-open trade at the end is
    not returned. Result sorted by ``exit_ts`` (stable). Fees in base are
    converted with ``fee_in_quote``.

    Raises ValueError when a sell exceeds the position or a fee currency
    cannot be converted.
    """
    books: dict[tuple[int, str, str], tuple[FifoBook, _Open | None]] = {}
    out: list[Trade] = []
    for f in fills:
        key = (f.bot_id, f.exchange, f.pair)
        book, cur = books.get(key, (FifoBook(), None))
        base, quote = split_pair(f.pair)
        fee_q = fee_in_quote(f.fee, f.fee_currency, base, quote, f.price)
        with localcontext(_EXACT):
            if f.side == "buy":
                book.buy(f.quantity, f.price, fee_q, f.ts)
                if cur is None:
                    cur = _Open(entry_ts=f.ts)
                cur.qty += f.quantity
                cur.entry_cost += f.quantity * f.price + fee_q
                cur.fees += fee_q
            elif f.side == "sell":
                book.sell(f.quantity, f.price, fee_q)
                assert cur is not None  # a sell from flat raised above
                cur.exit_proceeds += f.quantity * f.price - fee_q
                cur.fees += fee_q
                if book.position_qty == 0:
                    out.append(
                        Trade(
                            bot_id=f.bot_id,
                            pair=f.pair,
                            entry_ts=cur.entry_ts,
                            exit_ts=f.ts,
                            qty=cur.qty,
                            entry_cost=cur.entry_cost,
                            exit_proceeds=cur.exit_proceeds,
                            pnl=cur.exit_proceeds - cur.entry_cost,
                            fees=cur.fees,
                            exchange=f.exchange,
                        )
                    )
                    cur = None
            else:
                raise ValueError(f"bad side {f.side!r}: expected buy or sell")
        books[key] = (book, cur)
    out.sort(key=lambda t: t.exit_ts)
    return out
