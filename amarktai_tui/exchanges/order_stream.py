"""Order updates over an exchange's websocket (ccxt.pro ``watch_orders``), as a wake-up for the tracker.

The stream never books anything itself. Each update names an order (by client
order id); the broker then looks that order up over REST and books its new
fills from ``fetch_my_trades``, the one path that keys every fill by the
exchange's trade id. So a websocket message that is lost, doubled or out of
order can delay a fill but never lose or double it. This is how hummingbot
pairs its user stream with REST polling (a fast poll while the stream is
down, a slow safety-net poll while it is up).

``connection()`` identifies the websocket connection in use: ccxt drops a
closed ``Client`` from ``exchange.clients`` and opens a new one on the next
``watch_orders`` call, so a changed identity means events may have been missed
in between, and the broker then looks up every order of that exchange.

Spot user data on Binance: the WebSocket API's ``userDataStream.subscribe.signature``
and its ``executionReport`` events
(https://developers.binance.com/docs/binance-spot-api-docs/user-data-stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from amarktai_tui.exchanges.errors import why

log = logging.getLogger(__name__)

StreamState = Literal["connecting", "live", "down"]


def supports_order_stream(client: Any) -> bool:
    """True when ``client`` is a ccxt.pro client whose exchange can push order updates."""
    return bool(client.has.get("watchOrders")) and isinstance(getattr(client, "clients", None), dict)


class OrderStream:
    """Follows one exchange's order updates and hands them to ``on_orders``.

    ``on_orders(orders)``: ccxt order structures (``clientOrderId``, ``status``,
    ``filled``...), called on the event loop for every batch. ``on_change()``:
    called when the stream fails (the broker then polls fast until the stream
    is back). Reconnects back off exponentially with full jitter between
    ``backoff_base_s`` and ``backoff_cap_s`` seconds.
    """

    def __init__(
        self,
        exchange: str,
        client: Any,
        on_orders: Callable[[list[dict[str, Any]]], None],
        on_change: Callable[[], None],
        *,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.exchange = exchange
        self.client = client
        self._on_orders = on_orders
        self._on_change = on_change
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self.failed = False  # the last watch ended in an error (cleared by the next update)
        self.last_error = ""
        self.events = 0  # order updates received
        self.failures = 0  # watch calls that ended in an error

    # -- state ---------------------------------------------------------------------
    def connection(self) -> int | None:
        """An identity of the open websocket connection(s), or None when none is open."""
        open_ids = sorted(id(c) for c in self.client.clients.values() if not c.closed())
        # with the failure count: a new connection follows a failure, and id() of a freed client may be reused
        return hash((self.failures, *open_ids)) if open_ids else None

    @property
    def state(self) -> StreamState:
        """``live``: a connection is open; ``down``: the last attempt failed; else ``connecting``."""
        if self.connection() is not None:
            return "live"
        return "down" if self.failed else "connecting"

    # -- life cycle ------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                orders = await self.client.watch_orders()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dropped connection, a refused subscription: poll, then retry
                attempt += 1
                self.failures += 1
                self.failed = True
                self.last_error = why(exc)
                log.info("%s order stream: %s; polling until it is back", self.exchange, self.last_error)
                self._on_change()
                cap = min(self.backoff_cap_s, self.backoff_base_s * 2 ** min(attempt, 16))
                await self._sleep(self._rng.uniform(0, cap))
                continue
            attempt = 0
            self.failed = False
            self.events += len(orders)
            self._on_orders(list(orders))
