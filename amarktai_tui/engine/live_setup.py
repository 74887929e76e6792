"""Build a live broker: one ccxt client per exchange the bots use, keys from the vault.

Only the engine's start-up path calls this, after the account was switched
to live (issue 5's confirmed switch); the secrets go from the keyring
straight into the ccxt clients and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path

from amarktai_tui.config import Settings
from amarktai_tui.domain.enums import LifecycleStage
from amarktai_tui.exchanges.clients import make_client
from amarktai_tui.exchanges.live import CcxtBroker
from amarktai_tui.ledger.store import LedgerStore


class LiveSetupError(RuntimeError):
    """A live session cannot be built (a missing key); one line naming the exchange and the fix."""


def credentials_from_vault(
    settings: Settings, data_dir: Path, exchanges: Iterable[str]
) -> dict[str, dict[str, str]]:
    """Each exchange's saved key fields from the keyring. Raises LiveSetupError or VaultUnavailable."""
    from amarktai_tui.vault.manager import KeyManager
    from amarktai_tui.vault.providers import get_provider

    store = KeyManager(settings, data_dir).store
    out = {}
    for ex in exchanges:
        values = store.load(get_provider(ex))
        if not values:
            raise LiveSetupError(
                f"no API key saved for {ex}: run `amarktai keys set {ex}` then `keys test {ex}`"
            )
        out[ex] = dict(values)
    return out


def make_live_broker(
    settings: Settings,
    exchanges: Iterable[str],
    credentials: Mapping[str, Mapping[str, str]],
    *,
    price_hint: Callable[[str], Decimal | None] | None = None,
    known_fill_ids: Iterable[str] = (),
    resubmit_grace_s: float | None = None,
) -> CcxtBroker:
    """A CcxtBroker over ``exchanges`` with ``[exchanges.<id>]`` settings (sandbox, api_url, timeouts,
    breaker). ``resubmit_grace_s`` defaults to twice the exchange timeout (the longest of them)."""
    ids = sorted(set(exchanges))
    clients = {}
    for ex in ids:
        cfg = settings.exchange(ex)
        clients[ex] = make_client(
            ex,
            credentials.get(ex),
            sandbox=cfg.sandbox,
            api_url=cfg.api_url,
            timeout_s=cfg.timeout_s,
            websocket=cfg.websocket,
        )
    cfgs = [settings.exchange(ex) for ex in ids] or [settings.exchange("binance")]
    grace = resubmit_grace_s if resubmit_grace_s is not None else 2 * max(c.timeout_s for c in cfgs)
    return CcxtBroker(
        clients,
        poll_interval_s=min(c.poll_interval_s for c in cfgs),
        ws_poll_interval_s=min(c.ws_poll_interval_s for c in cfgs),
        resubmit_grace_s=grace,
        breaker_limits={
            ex: (settings.exchange(ex).breaker_failures, settings.exchange(ex).breaker_cooldown_s)
            for ex in ids
        },
        price_hint=price_hint,
        known_fill_ids=known_fill_ids,
    )


async def open_live_broker(
    settings: Settings,
    data_dir: Path,
    store: LedgerStore,
    price_hint: Callable[[str], Decimal | None],
) -> CcxtBroker:
    """The started live broker of a live session: the exchanges of the bots at stage ``live``.

    ``price_hint(pair)``: the engine's newest close (for market buys sized in quote, Luno's).
    Raises LiveSetupError (no live bot, a missing key), VaultUnavailable, and ccxt errors from
    loading the markets.
    """
    live = [b for b in await store.load_bots() if b.stage is LifecycleStage.LIVE]
    if not live:
        raise LiveSetupError(
            "the account is in live mode but no bot is at stage live: promote one"
            " (`amarktai bots promote NAME`) or switch back (`amarktai mode paper`)"
        )
    exchanges = sorted({b.exchange for b in live})
    creds = credentials_from_vault(settings, data_dir, exchanges)

    broker = make_live_broker(settings, exchanges, creds, price_hint=price_hint)
    try:
        await broker.start(track=False)  # the engine starts tracking once it knows the ledger's fills
    except BaseException:
        await broker.close()
        raise
    return broker
