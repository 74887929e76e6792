"""The provider registry: who needs which secret fields, in which order.

The order of ``Provider.fields`` is a CLI contract (DESIGN.md): ``amarktai keys set
PROVIDER`` with a non-terminal stdin reads the fields one per line in this order (for an
exchange: API key, then secret, then passphrase if any). Every field lives in the keyring
under service ``amarktai``, username ``<provider>:<field>``; a non-secret field (OpenAI's base
URL, the SMTP user name) is stored with the secrets so that one ``keys delete`` removes all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from amarktai_tui.vault.errors import KeyInputError

Kind = Literal["exchange", "ai", "email", "data"]


@dataclass(frozen=True, slots=True)
class Field:
    """One value a provider needs.

    ``secret``: prompted without echo and shown as a password input; ``optional``: may be
    left blank (nothing is stored for it then).
    """

    name: str
    label: str
    secret: bool = True
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider of keys: an exchange, an AI API, the mail account, a data source.

    ``masked_field`` is the field whose last 4 characters ``keys list`` shows (the identifier
    the provider shows you too: the API key, never an API secret). ``testable``: ``keys test``
    can make an authenticated call with it.
    """

    id: str
    name: str
    kind: Kind
    fields: tuple[Field, ...]
    masked_field: str
    testable: bool = True

    def field(self, name: str) -> Field:
        """The field called ``name``. Raises KeyError."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def secret_fields(self) -> tuple[str, ...]:
        """Names of the fields whose values must never appear in a message."""
        return tuple(f.name for f in self.fields if f.secret)


_KEY = Field("api_key", "API key")
_SECRET = Field("api_secret", "API secret")

PROVIDERS: dict[str, Provider] = {
    p.id: p
    for p in (
        Provider(
            "openai",
            "OpenAI",
            "ai",
            (_KEY, Field("base_url", "Base URL (blank: api.openai.com)", secret=False, optional=True)),
            "api_key",
        ),
        Provider("luno", "Luno", "exchange", (Field("api_key", "API key id"), _SECRET), "api_key"),
        Provider("binance", "Binance", "exchange", (_KEY, _SECRET), "api_key"),
        Provider(
            "kucoin", "KuCoin", "exchange", (_KEY, _SECRET, Field("passphrase", "API passphrase")), "api_key"
        ),
        Provider("valr", "VALR", "exchange", (_KEY, _SECRET), "api_key"),
        Provider("ovex", "OVEX", "exchange", (Field("bearer_key", "API bearer key"),), "bearer_key"),
        Provider(
            "smtp",
            "SMTP (reports)",
            "email",
            (Field("username", "User name", secret=False), Field("password", "Password")),
            "username",
        ),
        Provider("fetchai", "Fetch.ai", "data", (_KEY,), "api_key", testable=False),
        Provider("flokx", "flokx", "data", (_KEY,), "api_key", testable=False),
    )
}
"""Every provider, in display order."""


def get_provider(provider_id: str) -> Provider:
    """The provider ``provider_id``. Raises KeyInputError naming the valid ids."""
    try:
        return PROVIDERS[provider_id]
    except KeyError:
        raise KeyInputError(
            f"unknown provider {provider_id!r}; expected one of {', '.join(PROVIDERS)}"
        ) from None
