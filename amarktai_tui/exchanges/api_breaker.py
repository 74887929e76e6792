"""A circuit breaker per exchange API, and the health figures shown for it.

The classic three-state breaker (Nygard, *Release It!*, "Circuit Breaker";
the same states as resilience4j and pybreaker):

- ``closed``: calls go through; ``failures`` consecutive failed calls open it.
- ``open``: calls are refused without reaching the exchange for ``cooldown_s``.
- ``half_open``: after the cool-down one probe call is let through; its success
  closes the breaker, its failure opens it again for another ``cooldown_s``.

What counts as a failure is the caller's call: the live broker counts network
errors, timeouts, 5xx and 429 answers and authentication failures, not an
exchange's business refusal of one order (insufficient funds, a bad amount).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class ApiState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class ApiHealth:
    """One exchange's API health now: breaker state, last error, call latency (ms) p50/p99, counts."""

    exchange: str
    state: ApiState
    consecutive_failures: int
    last_error: str
    retry_in_s: float  # seconds until an open breaker lets a probe through (0 otherwise)
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    calls: int
    errors: int


class ApiBreaker:
    """Consecutive-failure breaker for one exchange. ``clock`` returns monotonic seconds."""

    def __init__(
        self,
        exchange: str,
        *,
        failures: int = 5,
        cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or cooldown_s <= 0:
            raise ValueError(
                f"API breaker needs failures >= 1 and cooldown_s > 0 (got {failures}, {cooldown_s})"
            )
        self.exchange = exchange
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.consecutive = 0
        self._opened_at: float | None = None
        self._probing = False
        self.last_error = ""
        self.calls = 0
        self.errors = 0
        self._latency: deque[float] = deque(maxlen=512)

    @property
    def state(self) -> ApiState:
        if self._opened_at is None:
            return ApiState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown_s:
            return ApiState.HALF_OPEN
        return ApiState.OPEN

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one probe at a time is allowed."""
        st = self.state
        if st is ApiState.CLOSED:
            return True
        if st is ApiState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def success(self, latency_s: float | None = None) -> None:
        self.calls += 1
        if latency_s is not None:
            self._latency.append(latency_s * 1000)
        self.consecutive = 0
        self._opened_at = None
        self._probing = False

    def failure(self, error: str) -> bool:
        """Record a failed call; True when this failure opened (or re-opened) the breaker."""
        self.calls += 1
        self.errors += 1
        self.consecutive += 1
        self.last_error = error[:200]
        probing, self._probing = self._probing, False
        if probing or (self._opened_at is None and self.consecutive >= self.threshold):
            self._opened_at = self._clock()
            return True
        return False

    def release_probe(self) -> None:
        """A probe slot was taken but no call went out (nothing to do): free it."""
        self._probing = False

    def retry_in(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))

    def health(self) -> ApiHealth:
        lat = sorted(self._latency)
        p50 = lat[len(lat) // 2] if lat else None
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None
        return ApiHealth(
            self.exchange,
            self.state,
            self.consecutive,
            self.last_error,
            round(self.retry_in(), 1),
            p50,
            p99,
            self.calls,
            self.errors,
        )
