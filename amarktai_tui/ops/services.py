"""Operations services that run beside the engine, in the daemon and in the TUI: the audit log,
the health and metrics server, daily backups, the daily report and alert mails.

``start_services`` starts what the config enables, on the engine's loop, after the engine has
opened; ``Services.close`` stops them in reverse order before the engine closes. A service that
fails to stop is logged; the others still stop. Each service subscribes to the engine's bus
(``engine.bus``) or runs its own task; none of them writes the ledger tables.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from amarktai_tui.config import Settings

if TYPE_CHECKING:
    from amarktai_tui.engine.engine import TradingEngine

log = logging.getLogger("amarktai.services")

Closer = Callable[[], Awaitable[None]]


@dataclass
class Services:
    """The running services: ``close`` stops them, last started first."""

    closers: list[tuple[str, Closer]] = field(default_factory=list)

    def add(self, name: str, closer: Closer) -> None:
        self.closers.append((name, closer))

    async def close(self) -> None:
        while self.closers:
            name, closer = self.closers.pop()
            try:
                await closer()
            except Exception:
                log.exception("service %s failed to stop", name)


async def start_services(
    engine: TradingEngine, settings: Settings, data_dir: Path, *, headless: bool
) -> Services:
    """Start the services the config enables for ``engine`` (``headless``: the daemon, else the TUI).
    If one fails to start, those already started are stopped and the error is raised."""
    services = Services()
    try:
        pass  # each service: services.add("name", await start_x(engine, settings, data_dir))
    except BaseException:
        await services.close()
        raise
    return services
