"""The staggerer (pure): spaces order submissions per exchange instead of dropping them.

Per exchange it enforces three limits, from the exchange table and
``[risk]``:

- at most ``max_in_flight`` submissions awaiting the exchange's answer;
- at least ``min_gap_ms`` between two submissions;
- at most ``burst_orders`` submissions in any rolling ``burst_window_ms``.

An order that cannot go now waits in that exchange's priority queue (exits
before entries, then first come first served) and gets a release time; the
engine asks for due orders with ``release(until)``. An entry that would wait
longer than ``max_wait_ms`` is refused with a reason; an exit always waits
(never trap a position). Time is whatever clock the caller passes (simulated
in replay), in ms UTC.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from amarktai_tui.risk.gates import Gate, Refusal

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ExchangeLimits:
    max_in_flight: int
    min_gap_ms: int


@dataclass(slots=True)
class _Lane(Generic[T]):
    limits: ExchangeLimits
    sent: deque[int] = field(default_factory=deque)  # submission times inside the burst window
    last: int | None = None
    in_flight: int = 0
    queue: list[tuple[int, int, int, T]] = field(default_factory=list)  # (priority, seq, queued_ts, item)


@dataclass(frozen=True, slots=True)
class Released(Generic[T]):
    """An item leaving the queue: ``at`` its submission time, or a ``refusal`` (waited too long)."""

    item: T
    at: int
    refusal: Refusal | None = None


class Staggerer(Generic[T]):
    """Per-exchange submission spacing with a priority queue (see the module docstring)."""

    def __init__(
        self,
        limits: Mapping[str, ExchangeLimits],
        *,
        burst_orders: int = 10,
        burst_window_ms: int = 10_000,
        max_wait_ms: int = 60_000,
    ) -> None:
        self._lanes: dict[str, _Lane[T]] = {ex: _Lane(lim) for ex, lim in limits.items()}
        self.burst_orders = burst_orders
        self.burst_window_ms = burst_window_ms
        self.max_wait_ms = max_wait_ms
        self._seq = 0

    # -- state from the ledger / the broker -------------------------------------
    def record_submit(self, exchange: str, ts: int) -> None:
        """A submission happened at ``ts`` (also used to rebuild from the ledger at start-up)."""
        lane = self._lanes[exchange]
        lane.sent.append(ts)
        lane.last = ts if lane.last is None else max(lane.last, ts)
        while len(lane.sent) > self.burst_orders:
            lane.sent.popleft()

    def begin(self, exchange: str) -> None:
        """A submission is on its way to the exchange (counts against ``max_in_flight``)."""
        self._lanes[exchange].in_flight += 1

    def done(self, exchange: str) -> None:
        """The exchange answered a submission (acknowledged, filled or refused)."""
        lane = self._lanes[exchange]
        lane.in_flight = max(0, lane.in_flight - 1)

    # -- queries -----------------------------------------------------------------
    def next_slot(self, exchange: str, now: int) -> int | None:
        """Earliest time >= ``now`` a submission may go, or None while ``max_in_flight`` is reached."""
        lane = self._lanes[exchange]
        if lane.in_flight >= lane.limits.max_in_flight:
            return None
        t = now
        if lane.last is not None:
            t = max(t, lane.last + lane.limits.min_gap_ms)
        if len(lane.sent) >= self.burst_orders:
            t = max(t, lane.sent[-self.burst_orders] + self.burst_window_ms)
        return t

    def waiting(self, exchange: str | None = None) -> int:
        if exchange is not None:
            return len(self._lanes[exchange].queue)
        return sum(len(lane.queue) for lane in self._lanes.values())

    def burst_usage(self, exchange: str, now: int) -> int:
        """Submissions in the rolling burst window ending at ``now``."""
        lane = self._lanes[exchange]
        return sum(1 for t in lane.sent if now - t < self.burst_window_ms)

    # -- offering and releasing --------------------------------------------------
    def offer(self, exchange: str, item: T, now: int, *, exit_first: bool) -> int | None:
        """Return ``now`` when ``item`` may go at once (its submission is recorded), else queue it.

        ``exit_first`` marks an exit (released before any waiting entry).
        Returns None when the item was queued.
        """
        lane = self._lanes[exchange]
        if not lane.queue and self.next_slot(exchange, now) == now:
            self.record_submit(exchange, now)
            return now
        self._seq += 1
        heapq.heappush(lane.queue, (0 if exit_first else 1, self._seq, now, item))
        return None

    def release(self, until: int) -> list[Released[T]]:
        """Pop every queued item whose slot comes at or before ``until``, in priority order.

        Each released item's submission is recorded at its slot time. An entry
        whose slot comes more than ``max_wait_ms`` after it was queued is
        returned with a refusal instead (and uses no slot).
        """
        out: list[Released[T]] = []
        for exchange, lane in self._lanes.items():
            while lane.queue:
                prio, _, queued, item = lane.queue[0]
                slot = self.next_slot(exchange, queued)
                if slot is None or slot > until:
                    break
                heapq.heappop(lane.queue)
                waited = slot - queued
                if prio == 1 and waited > self.max_wait_ms:
                    out.append(Released(item, slot, _too_long(waited, self.max_wait_ms)))
                    continue
                self.record_submit(exchange, slot)
                out.append(Released(item, slot))
        return out

    def drop(self, pred: Callable[[T], bool]) -> list[T]:
        """Remove and return queued items for which ``pred(item)`` is true (e.g. a halt drops entries)."""
        removed: list[T] = []
        for lane in self._lanes.values():
            keep = [e for e in lane.queue if not pred(e[3])]
            removed.extend(e[3] for e in lane.queue if pred(e[3]))
            if len(keep) != len(lane.queue):
                lane.queue = keep
                heapq.heapify(lane.queue)
        return removed


def _too_long(waited: int, limit: int) -> Refusal:
    return Refusal(
        Gate.STAGGERING,
        f"would wait {waited / 1000:g} s for a submission slot; the limit is {limit / 1000:g} s",
        {"wait_ms": str(waited), "max_wait_ms": str(limit)},
    )
