"""Circuit breakers (pure): gauges on marked-to-market equity, trips, resets, and gate D.

Breakers and their defaults (``[risk]`` in config):

===================  =======  =====================================================
breaker              scope    trips when
===================  =======  =====================================================
bot_drawdown         bot      equity > 20% below the bot's equity high-water mark
consecutive_losses   bot      5 closed trades in a row with realised PnL < 0 (net
                              of fees), counted since the breaker's last reset
error_storm          bot      10 errors in the last hour (strategy exceptions,
                              broker or exchange errors; never risk-gate refusals),
                              counted since the breaker's last reset
daily_loss           account  equity > 10% below the equity at the start of the
                              UTC day (new funding that day is added to the start)
account_drawdown     account  equity > 15% below the account's high-water mark
halt                 account  the user's emergency stop
===================  =======  =====================================================

Drawdown = (high-water mark - equity) / high-water mark, a fraction, on
marked-to-market equity (DESIGN.md "Money"). Funding and allocation flows
move the high-water mark with the equity, so moving capital is not a loss.

A trip stops new risk only: gate D refuses orders that do not reduce a
position while a trip covers the bot (its own, or any account trip); exits,
stops and cancels always pass. Resets are manual and re-evaluate at once.

Speed: the engine marks long bots on every candle. ``mark_bot`` and
``mark_account`` compare binary floats against precomputed trip levels and
say when an exact check is due; the exact check (``check_*``) uses the exact
Decimal equity against the high-water mark (tracked as a float: relative
error below 1e-15, converted by its shortest repr).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from amarktai_tui.risk.gates import Gate, Refusal

_TOL = 1e-9  # float pre-check margin: an exact check runs when within this fraction of a trip level


class Breaker(StrEnum):
    BOT_DRAWDOWN = "bot_drawdown"
    CONSECUTIVE_LOSSES = "consecutive_losses"
    ERROR_STORM = "error_storm"
    DAILY_LOSS = "daily_loss"
    ACCOUNT_DRAWDOWN = "account_drawdown"
    HALT = "halt"


class Scope(StrEnum):
    ACCOUNT = "account"
    BOT = "bot"


BOT_BREAKERS = (Breaker.BOT_DRAWDOWN, Breaker.CONSECUTIVE_LOSSES, Breaker.ERROR_STORM)
ACCOUNT_BREAKERS = (Breaker.DAILY_LOSS, Breaker.ACCOUNT_DRAWDOWN, Breaker.HALT)


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Thresholds: drawdowns and daily loss as fractions (0.20 = 20%), counts as integers."""

    bot_max_drawdown: Decimal = Decimal("0.20")
    max_consecutive_losses: int = 5
    error_storm_errors: int = 10
    error_window_ms: int = 3_600_000
    account_daily_loss: Decimal = Decimal("0.10")
    account_max_drawdown: Decimal = Decimal("0.15")
    warning_at: Decimal = Decimal("0.8")  # status "warning" above this share of a threshold


@dataclass(frozen=True, slots=True)
class Trip:
    """A persisted trip. ``threshold``/``value``: fractions for drawdown/loss, counts otherwise."""

    id: int
    ts: int
    scope: Scope
    bot_id: int | None
    breaker: Breaker
    threshold: Decimal
    value: Decimal
    cause: str
    message: str


@dataclass(frozen=True, slots=True)
class Reading:
    """One breaker's state for the pane: ``headroom`` = threshold - value (same units)."""

    scope: Scope
    bot_id: int | None
    breaker: Breaker
    threshold: Decimal
    value: Decimal
    headroom: Decimal
    status: str  # ok | warning | tripped
    trip_id: int | None


@dataclass(slots=True)
class Gauge:
    """One bot's (or the account's) running figures (quote currency, floats for the hot path)."""

    hwm: float
    last: float
    trip_below: float = 0.0  # equity below this level needs an exact drawdown check
    streak: int = 0
    errors: deque[int] = field(default_factory=deque)
    errors_since: int = -(2**62)  # last reset of the error storm breaker


class BreakerBoard:
    """Active trips, gauges, and the checks that create trips. The engine persists both."""

    def __init__(self, settings: BreakerSettings | None = None) -> None:
        self.settings = settings or BreakerSettings()
        self.active: dict[tuple[Breaker, int | None], Trip] = {}
        self.bots: dict[int, Gauge] = {}
        self.account = Gauge(0.0, 0.0)
        self.day_start: Decimal | None = None
        self._day_trip_below = float("-inf")
        self.next_id = 1

    # -- gauges ------------------------------------------------------------------
    def add_bot(self, bot_id: int, equity: float, hwm: float | None = None) -> None:
        g = Gauge(max(equity, hwm or equity), equity)
        self.bots[bot_id] = g
        self._relevel(g, self.settings.bot_max_drawdown)

    def set_account(self, equity: float, hwm: float | None = None) -> None:
        self.account = Gauge(max(equity, hwm or equity), equity)
        self._relevel(self.account, self.settings.account_max_drawdown)

    def set_day_start(self, equity: Decimal) -> None:
        self.day_start = equity
        self._day_trip_below = float(equity) * (1 - float(self.settings.account_daily_loss)) * (1 + _TOL)

    def flow(self, bot_id: int | None, amount: Decimal) -> None:
        """Funding or allocation moved ``amount`` (quote) in or out: shift equity and marks alike."""
        a = float(amount)
        if bot_id is not None:
            g = self.bots[bot_id]
            g.hwm += a
            g.last += a
            self._relevel(g, self.settings.bot_max_drawdown)
        self.account.hwm += a
        self.account.last += a
        self._relevel(self.account, self.settings.account_max_drawdown)
        if self.day_start is not None:
            self.set_day_start(self.day_start + amount)

    @staticmethod
    def _relevel(g: Gauge, threshold: Decimal) -> None:
        g.trip_below = g.hwm * (1 - float(threshold)) * (1 + _TOL)

    def mark_bot(self, bot_id: int, equity: float) -> bool:
        """Record a bot's marked equity (float); True when an exact drawdown check is due."""
        g = self.bots[bot_id]
        self.account.last += equity - g.last
        g.last = equity
        if equity > g.hwm:
            g.hwm = equity
            g.trip_below = equity * (1 - float(self.settings.bot_max_drawdown)) * (1 + _TOL)
            return False
        return equity < g.trip_below

    def mark_account(self) -> bool:
        """Fold the bots' marks into the account gauge; True when an exact account check is due."""
        a = self.account
        if a.last > a.hwm:
            a.hwm = a.last
            a.trip_below = a.last * (1 - float(self.settings.account_max_drawdown)) * (1 + _TOL)
            return a.last < self._day_trip_below
        return a.last < a.trip_below or a.last < self._day_trip_below

    def sync_account(self, equity: Decimal) -> None:
        """Replace the running float sum with the exact account equity (drift control)."""
        self.account.last = float(equity)
        if self.account.last > self.account.hwm:
            self.account.hwm = self.account.last
            self._relevel(self.account, self.settings.account_max_drawdown)

    # -- exact checks (each returns a new Trip, or None) ---------------------------
    def check_bot_drawdown(self, bot_id: int, equity: Decimal, ts: int, cause: str) -> Trip | None:
        g = self.bots[bot_id]
        hwm = _dec(g.hwm)
        if hwm <= 0:
            return None
        dd = (hwm - equity) / hwm
        if dd <= self.settings.bot_max_drawdown:
            return None
        msg = f"equity {equity:.2f} is {dd * 100:.2f}% below its high-water mark {hwm:.2f}"
        return self._trip(ts, bot_id, Breaker.BOT_DRAWDOWN, self.settings.bot_max_drawdown, dd, cause, msg)

    def on_trade_closed(self, bot_id: int, pnl: Decimal, ts: int, cause: str) -> Trip | None:
        """A round trip closed with realised PnL ``pnl`` (quote, net of fees)."""
        g = self.bots[bot_id]
        g.streak = g.streak + 1 if pnl < 0 else 0
        return self.check_streak(bot_id, ts, cause)

    def check_streak(self, bot_id: int, ts: int, cause: str) -> Trip | None:
        n, limit = self.bots[bot_id].streak, self.settings.max_consecutive_losses
        if n < limit:
            return None
        msg = f"{n} losing trades in a row (limit {limit})"
        return self._trip(ts, bot_id, Breaker.CONSECUTIVE_LOSSES, Decimal(limit), Decimal(n), cause, msg)

    def on_error(self, bot_id: int, ts: int, cause: str) -> Trip | None:
        """Count an error (strategy exception, broker or exchange error) at ``ts``."""
        self.bots[bot_id].errors.append(ts)
        return self.check_errors(bot_id, ts, cause)

    def error_count(self, bot_id: int, now: int) -> int:
        g = self.bots[bot_id]
        start = max(now - self.settings.error_window_ms, g.errors_since)
        while g.errors and g.errors[0] <= now - self.settings.error_window_ms:
            g.errors.popleft()
        return sum(1 for t in g.errors if t > start)

    def check_errors(self, bot_id: int, now: int, cause: str) -> Trip | None:
        n, limit = self.error_count(bot_id, now), self.settings.error_storm_errors
        if n < limit:
            return None
        mins = self.settings.error_window_ms // 60_000
        msg = f"{n} errors in the last {mins} min (limit {limit})"
        return self._trip(now, bot_id, Breaker.ERROR_STORM, Decimal(limit), Decimal(n), cause, msg)

    def check_account(self, equity: Decimal, ts: int, cause: str) -> list[Trip]:
        """Daily loss and account drawdown on the exact account ``equity`` (quote)."""
        out: list[Trip] = []
        s = self.settings
        start = self.day_start
        if start is not None and start > 0:
            loss = (start - equity) / start
            if loss > s.account_daily_loss:
                msg = f"equity {equity:.2f} is {loss * 100:.2f}% below the day's start {start:.2f}"
                trip = self._trip(ts, None, Breaker.DAILY_LOSS, s.account_daily_loss, loss, cause, msg)
                if trip is not None:
                    out.append(trip)
        hwm = _dec(self.account.hwm)
        if hwm > 0:
            dd = (hwm - equity) / hwm
            if dd > s.account_max_drawdown:
                msg = f"account equity {equity:.2f} is {dd * 100:.2f}% below its high-water mark {hwm:.2f}"
                trip = self._trip(ts, None, Breaker.ACCOUNT_DRAWDOWN, s.account_max_drawdown, dd, cause, msg)
                if trip is not None:
                    out.append(trip)
        return out

    def halt(self, ts: int, reason: str, cause: str = "user") -> Trip | None:
        """The emergency stop: an account trip that only a reset (``resume``) clears."""
        return self._trip(ts, None, Breaker.HALT, Decimal(0), Decimal(0), cause, f"emergency stop: {reason}")

    def _trip(
        self,
        ts: int,
        bot_id: int | None,
        breaker: Breaker,
        threshold: Decimal,
        value: Decimal,
        cause: str,
        message: str,
    ) -> Trip | None:
        if (breaker, bot_id) in self.active:
            return None  # already tripped: one active trip per breaker and scope
        scope = Scope.ACCOUNT if bot_id is None else Scope.BOT
        trip = Trip(self.next_id, ts, scope, bot_id, breaker, threshold, _q(value), cause, message)
        self.next_id += 1
        self.active[(breaker, bot_id)] = trip
        return trip

    # -- trips ---------------------------------------------------------------------
    def restore(self, trip: Trip) -> None:
        """Load an unreset trip from the ledger (start-up)."""
        self.active[(trip.breaker, trip.bot_id)] = trip
        self.next_id = max(self.next_id, trip.id + 1)

    def trip_by_id(self, trip_id: int) -> Trip | None:
        return next((t for t in self.active.values() if t.id == trip_id), None)

    def reset(self, trip_id: int, ts: int) -> Trip:
        """Clear an active trip (the caller records who and why). Raises KeyError when not active."""
        trip = self.trip_by_id(trip_id)
        if trip is None:
            raise KeyError(f"no active trip with id {trip_id}")
        del self.active[(trip.breaker, trip.bot_id)]
        if trip.bot_id is not None:
            g = self.bots.get(trip.bot_id)
            if g is not None and trip.breaker is Breaker.CONSECUTIVE_LOSSES:
                g.streak = 0
            if g is not None and trip.breaker is Breaker.ERROR_STORM:
                g.errors_since = ts
        return trip

    def covering(self, bot_id: int) -> Trip | None:
        """The trip that stops this bot's new risk: an account trip first, then its own."""
        for (_, bid), trip in self.active.items():
            if bid is None:
                return trip
        for (_, bid), trip in self.active.items():
            if bid == bot_id:
                return trip
        return None

    def gate(self, bot_id: int, *, reduces: bool) -> Refusal | None:
        """Gate D: refuse an order that does not reduce a position while a trip covers the bot."""
        if reduces or not self.active:
            return None
        trip = self.covering(bot_id)
        if trip is None:
            return None
        return Refusal(
            Gate.BREAKER,
            f"breaker {trip.breaker} ({trip.scope}) tripped: {trip.message}",
            {"trip_id": str(trip.id), "breaker": str(trip.breaker), "value": str(trip.value)},
        )

    # -- readings --------------------------------------------------------------------
    def readings(self, now: int) -> list[Reading]:
        """Every breaker's threshold, current value, headroom and status (account rows first)."""
        s = self.settings
        out: list[Reading] = []
        a = self.account
        if self.day_start is not None and self.day_start > 0:
            loss = max(Decimal(0), (self.day_start - _dec(a.last)) / self.day_start)
        else:
            loss = Decimal(0)
        out.append(self._reading(None, Breaker.DAILY_LOSS, s.account_daily_loss, loss))
        out.append(self._reading(None, Breaker.ACCOUNT_DRAWDOWN, s.account_max_drawdown, _dd(a)))
        halted = (Breaker.HALT, None) in self.active
        out.append(self._reading(None, Breaker.HALT, Decimal(0), Decimal(1 if halted else 0)))
        for bot_id, g in self.bots.items():
            out.append(self._reading(bot_id, Breaker.BOT_DRAWDOWN, s.bot_max_drawdown, _dd(g)))
            out.append(
                self._reading(
                    bot_id, Breaker.CONSECUTIVE_LOSSES, Decimal(s.max_consecutive_losses), Decimal(g.streak)
                )
            )
            out.append(
                self._reading(
                    bot_id,
                    Breaker.ERROR_STORM,
                    Decimal(s.error_storm_errors),
                    Decimal(self.error_count(bot_id, now)),
                )
            )
        return out

    def _reading(self, bot_id: int | None, breaker: Breaker, threshold: Decimal, value: Decimal) -> Reading:
        trip = self.active.get((breaker, bot_id))
        value = _q(value)
        if trip is not None:
            status = "tripped"
        elif breaker is not Breaker.HALT and value > threshold * self.settings.warning_at:
            status = "warning"
        else:
            status = "ok"
        scope = Scope.ACCOUNT if bot_id is None else Scope.BOT
        tid = trip.id if trip is not None else None
        return Reading(scope, bot_id, breaker, threshold, value, threshold - value, status, tid)


def _dec(x: float) -> Decimal:
    return Decimal(repr(x))


def _dd(g: Gauge) -> Decimal:
    if g.hwm <= 0:
        return Decimal(0)
    return max(Decimal(0), _q(Decimal(repr((g.hwm - g.last) / g.hwm))))


def _q(x: Decimal) -> Decimal:
    """Six decimal places for stored and shown figures (a fraction to 0.0001%)."""
    return x.quantize(Decimal("0.000001"))
