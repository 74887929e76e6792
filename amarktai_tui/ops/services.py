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


def _closer(unsubscribe: Callable[[], None]) -> Closer:
    async def close() -> None:
        unsubscribe()

    return close


async def start_services(
    engine: TradingEngine, settings: Settings, data_dir: Path, *, headless: bool
) -> Services:
    """Start the services the config enables for ``engine`` (``headless``: the daemon, else the TUI).
    If one fails to start, those already started are stopped and the error is raised."""
    services = Services()
    try:
        from amarktai_tui.ops.audit import start_audit  # first: the others' events are audited

        audit = await start_audit(engine, settings, data_dir)  # audit.subscribe(cb): each entry recorded
        services.add("audit log", audit.close)
        if settings.backup.daily:
            from amarktai_tui.ops.backup import start_daily_backups

            services.add("daily backups", await start_daily_backups(engine, settings, data_dir))
        from amarktai_tui.ops.looplag import start_monitor  # /health, /metrics and the System pane

        lag = start_monitor()
        services.add("loop lag", lag.stop)
        if settings.health.enabled and (headless or settings.health.tui):
            from amarktai_tui.ops.health import start_health

            services.add("health", (await start_health(engine, settings, data_dir, lag)).close)
        from amarktai_tui.ops.mailer import start_mail  # the daily report and alert mails ([smtp])

        mail = await start_mail(engine.bus, settings, data_dir)
        if mail is not None:
            services.add("mail", mail.close)
            if mail.alerts is not None:  # [smtp] alerts = true: critical audit entries are mailed
                services.add("alert feed", _closer(audit.subscribe(mail.alerts.notify)))
        from amarktai_tui.autonomy.service import start_autonomy  # its Adjuster: changes.adjuster_for(engine)

        services.add("autonomy", (await start_autonomy(engine, settings.autonomy))[0].close)
    except BaseException:
        await services.close()
        raise
    return services
