"""``keys test``: one real authenticated call per provider.

- exchanges: ``fetch_balance()`` through ``exchanges.clients.make_client`` with the
  ``[exchanges.<id>]`` settings (sandbox, API URL, timeout), then the key's withdrawal
  permission where the exchange reports it (``vault.permissions``);
- openai: ``models.list()`` with the official SDK (``base_url`` from the saved fields);
- smtp: an SMTP login (aiosmtplib) once ``[smtp] host`` is configured;
- fetchai, flokx: no test (NotTestableError).

A failed call is a result, not an exception: ``KeyCheck.ok`` False with a one-line reason
from which every secret value is scrubbed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amarktai_tui.vault.errors import NotTestableError
from amarktai_tui.vault.permissions import withdraw_permission
from amarktai_tui.vault.providers import Provider
from amarktai_tui.vault.scrub import scrub

if TYPE_CHECKING:
    from amarktai_tui.config import Settings

OPENAI_TIMEOUT_S = 20.0
SMTP_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What a key test found.

    ``summary``: what worked (``balance read: 3 assets held``); ``reason``: why it failed
    (one line, no secret); ``can_withdraw``: True/False as the exchange said, None unknown;
    ``note``: a side remark (why the permissions are unknown).
    """

    ok: bool
    summary: str = ""
    reason: str = ""
    can_withdraw: bool | None = None
    note: str = ""


async def check_key(provider: Provider, values: Mapping[str, str], settings: Settings) -> KeyCheck:
    """Test ``provider``'s saved ``values`` with a real authenticated call (see the module doc).

    Raises NotTestableError for a provider without a test or without the settings it needs.
    """
    secrets = [values[n] for n in provider.secret_fields if values.get(n)]
    if not provider.testable:
        raise NotTestableError(f"{provider.id}: no test available (its fields are stored for later use)")
    if provider.kind == "exchange":
        return await _exchange(provider, values, settings, secrets)
    if provider.id == "openai":
        return await _openai(values, secrets)
    if provider.id == "smtp":
        smtp = getattr(settings, "smtp", None)
        host = getattr(smtp, "host", None)
        if not host:
            raise NotTestableError("smtp: not testable until [smtp] host is configured")
        return await check_smtp(
            host,
            int(getattr(smtp, "port", 587)),
            values["username"],
            values["password"],
            security=str(getattr(smtp, "security", "starttls")),
        )
    raise NotTestableError(f"{provider.id}: no test available")


def failure(exc: BaseException, secrets: Sequence[str]) -> str:
    """``ExceptionType: message`` on one line, secrets scrubbed."""
    text = scrub(str(exc), secrets)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _exchange(
    provider: Provider, values: Mapping[str, str], settings: Settings, secrets: Sequence[str]
) -> KeyCheck:
    from amarktai_tui.exchanges.clients import make_client

    conf = settings.exchange(provider.id)
    try:
        client = make_client(
            provider.id, values, sandbox=conf.sandbox, api_url=conf.api_url, timeout_s=conf.timeout_s
        )
    except Exception as exc:
        return KeyCheck(False, reason=failure(exc, secrets))
    try:
        balance = await client.fetch_balance()
        held = sum(1 for v in (balance.get("total") or {}).values() if v)
        can_withdraw, note = await withdraw_permission(provider.id, client, secrets)
    except Exception as exc:
        return KeyCheck(False, reason=failure(exc, secrets))
    finally:
        await client.close()
    summary = f"balance read: {held} asset{'' if held == 1 else 's'} held"
    return KeyCheck(True, summary, can_withdraw=can_withdraw, note=note)


async def _openai(values: Mapping[str, str], secrets: Sequence[str]) -> KeyCheck:
    import openai

    base_url = values.get("base_url") or None
    where = base_url or "api.openai.com"
    client = openai.AsyncOpenAI(
        api_key=values["api_key"], base_url=base_url, max_retries=0, timeout=OPENAI_TIMEOUT_S
    )
    try:
        page = await client.models.list()
    except openai.APIStatusError as exc:
        if exc.status_code in (401, 403):
            code = f" ({scrub(exc.code or '', secrets)})" if exc.code else ""
            return KeyCheck(False, reason=f"HTTP {exc.status_code} from {where}: the key was rejected{code}")
        return KeyCheck(False, reason=f"HTTP {exc.status_code} from {where}: {scrub(exc.message, secrets)}")
    except openai.APIConnectionError as exc:  # APITimeoutError included
        return KeyCheck(False, reason=f"cannot reach {where}: {failure(exc, secrets)}")
    except Exception as exc:
        return KeyCheck(False, reason=failure(exc, secrets))
    finally:
        await client.close()
    n = len(page.data)
    return KeyCheck(True, f"{n} model{'' if n == 1 else 's'} available at {where}")


async def check_smtp(host: str, port: int, username: str, password: str, *, security: str) -> KeyCheck:
    """Log in to ``host:port`` as ``username`` and quit (no mail is sent).

    ``security``: ``ssl`` (TLS from the start, port 465), ``starttls`` (upgrade after EHLO,
    port 587) or ``none`` (plain; a loopback relay).
    """
    import aiosmtplib

    smtp: Any = aiosmtplib.SMTP(
        hostname=host,
        port=port,
        use_tls=security == "ssl",
        start_tls=security == "starttls",
        timeout=SMTP_TIMEOUT_S,
    )
    try:
        await smtp.connect()
        await smtp.login(username, password)
    except Exception as exc:
        return KeyCheck(False, reason=failure(exc, [password]))
    finally:
        if smtp.is_connected:
            try:
                await smtp.quit()
            except Exception:
                smtp.close()
    return KeyCheck(True, f"logged in to {host}:{port} as {username}")
