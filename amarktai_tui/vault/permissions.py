"""Can this exchange key withdraw? Asked of the exchange where its API says.

Amarktai only reads balances and places and cancels spot orders; a key that may withdraw
is a risk it never needs, so ``keys test`` warns loudly about one.

Sources:
- Binance: ``GET /sapi/v1/account/apiRestrictions`` (USER_DATA), field ``enableWithdrawals``
  (developers.binance.com, Wallet > Account > Get API Key Permission); ccxt
  ``sapiGetAccountApiRestrictions``.
- KuCoin: ``GET /api/v1/user/api-key`` (Get API Key Info), ``data.permission`` a
  comma-separated list such as ``General,Spot,Withdrawal`` (kucoin.com/docs, Account Info);
  ccxt ``privateGetUserApiKey``.
- VALR: ``GET /v1/account/api-keys/current`` (docs.valr.com, Account > "Get current API key
  info"): ``{"label", "permissions", "addedAt", ...}`` with ``permissions`` a list of levels
  such as ``["View access", "Trade", "Withdraw"]``; the VALR adapter's
  ``privateGetV1AccountApiKeysCurrent``.
- Luno and OVEX publish no call that describes the key itself: unknown (None).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from amarktai_tui.vault.scrub import scrub

WITHDRAW_WARNING = (
    "WARNING: this key can WITHDRAW funds; Amarktai never needs that permission: create a trade-only key"
)


async def _binance(client: Any) -> bool:
    r = await client.sapiGetAccountApiRestrictions()
    return bool(r["enableWithdrawals"])


async def _kucoin(client: Any) -> bool:
    r = await client.privateGetUserApiKey()
    perms = str(r["data"]["permission"]).split(",")
    return any(p.strip().lower().startswith("withdraw") for p in perms)


async def _valr(client: Any) -> bool:
    r = await client.privateGetV1AccountApiKeysCurrent()
    return any(str(p).strip().lower().startswith("withdraw") for p in r["permissions"])


_READERS: dict[str, Callable[[Any], Awaitable[bool]]] = {
    "binance": _binance,
    "kucoin": _kucoin,
    "valr": _valr,
}


async def withdraw_permission(
    exchange_id: str, client: Any, secrets: Sequence[str]
) -> tuple[bool | None, str]:
    """``(can_withdraw, note)`` for an authenticated ccxt ``client`` of ``exchange_id``.

    ``can_withdraw`` is None when the exchange does not say or the call failed; ``note`` then
    says why (one line, ``secrets`` scrubbed), else it is empty. Never raises for an API error.
    """
    reader = _READERS.get(exchange_id)
    if reader is None:
        return None, f"{exchange_id} does not report a key's permissions through its API"
    try:
        return await reader(client), ""
    except Exception as exc:
        detail = scrub(str(exc), secrets, limit=160)
        return None, f"could not read the key's permissions: {type(exc).__name__}: {detail}".rstrip(": ")
