"""One way to build an authenticated ccxt client for any of the five platforms.

Binance, KuCoin and Luno are ccxt built-ins; VALR and OVEX are our adapters
(``exchanges.adapters``), subclasses of ``ccxt.async_support.Exchange`` that
behave like built-ins, so the rest of the app never asks which one it has.

Settings applied here, for every exchange:
- ``enableRateLimit`` on (ccxt's token bucket, the exchange's published weights);
- ccxt's own retry on failure off (``maxRetriesOnFailure = 0``): a private
  call is never repeated behind our back; the broker decides what is safe to retry;
- ``timeout`` from ``[exchanges.<id>] timeout_s``;
- ``sandbox``: ``set_sandbox_mode(True)`` (raises NotSupported where the
  exchange has no testnet: the message names the exchange);
- ``api_url``: the scheme and host of every API URL replaced, paths kept
  (``https://api.binance.com/api/v3`` -> ``http://127.0.0.1:8900/api/v3``;
  websocket URLs keep a websocket scheme: ``wss://...`` -> ``ws://127.0.0.1:8900/...``);
- ``websocket``: the ccxt.pro class (REST and websocket in one client) where
  ccxt has one, so the broker can follow orders with ``watch_orders``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro

from amarktai_tui.exchanges.registry import exchange_info

ADAPTERS: dict[str, str] = {
    "valr": "amarktai_tui.exchanges.adapters.valr:Valr",
    "ovex": "amarktai_tui.exchanges.adapters.ovex:Ovex",
}
"""Exchange id -> ``module:Class`` of our adapter, for platforms ccxt does not ship."""

CREDENTIAL_FIELDS: dict[str, str] = {
    "api_key": "apiKey",
    "api_secret": "secret",
    "passphrase": "password",
    "bearer_key": "apiKey",
}
"""Vault field name -> ccxt credential attribute."""


def exchange_class(exchange_id: str, *, websocket: bool = False) -> type[Any]:
    """The ccxt (async) class for ``exchange_id``: built-in or adapter. Raises KeyError if unknown.

    ``websocket``: the ccxt.pro subclass where ccxt has one (the adapters have none).
    """
    info = exchange_info(exchange_id)
    if info.ccxt_id is not None:
        if websocket and hasattr(ccxt_pro, info.ccxt_id):
            return getattr(ccxt_pro, info.ccxt_id)  # type: ignore[no-any-return]
        return getattr(ccxt_async, info.ccxt_id)  # type: ignore[no-any-return]
    module, _, name = ADAPTERS[exchange_id].partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def make_client(
    exchange_id: str,
    credentials: Mapping[str, str] | None = None,
    *,
    sandbox: bool = False,
    api_url: str | None = None,
    timeout_s: float = 10.0,
    websocket: bool = False,
) -> Any:
    """A new async ccxt client for ``exchange_id`` with the app's settings (see the module doc).

    ``credentials``: vault fields (``api_key``, ``api_secret``, ``passphrase``,
    ``bearer_key``); unknown fields are ignored. The caller closes the client
    (``await client.close()``). Raises KeyError for an unknown exchange and
    ccxt's NotSupported when ``sandbox`` is asked of an exchange without one.
    """
    cls = exchange_class(exchange_id, websocket=websocket)
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": int(timeout_s * 1000),
        "options": {"maxRetriesOnFailure": 0},
    }
    for field, value in (credentials or {}).items():
        attr = CREDENTIAL_FIELDS.get(field)
        if attr is not None and value:
            config[attr] = value
    client = cls(config)
    client.maxRetriesOnFailure = 0
    if exchange_id == "binance":
        client.options["fetchMarkets"] = {"types": ["spot"]}  # spot only: no futures/options calls
    if sandbox:
        client.set_sandbox_mode(True)
    if api_url:
        client.urls["api"] = replace_origin(client.urls["api"], api_url)
    return client


def replace_origin(urls: Any, origin: str) -> Any:
    """Every URL string in ``urls`` (a str, or nested dicts of them) with ``origin`` as scheme+host.

    ``origin`` is ``scheme://host[:port]`` with no path. Paths and queries are kept; a websocket
    URL keeps a websocket scheme (``wss`` for an ``https`` origin, else ``ws``).
    """
    if isinstance(urls, str):
        parts = urlsplit(urls)
        rest = urls[len(f"{parts.scheme}://{parts.netloc}") :] if parts.netloc else urls
        base = origin.rstrip("/")
        if parts.scheme in ("ws", "wss"):
            target = urlsplit(base)
            base = f"{'wss' if target.scheme == 'https' else 'ws'}://{target.netloc}"
        return base + rest
    if isinstance(urls, dict):
        return {k: replace_origin(v, origin) for k, v in urls.items()}
    return urls
