"""Secrets masked out of log lines: known values and the shapes credentials come in.

Two kinds of masking, both replacing the secret with ``****``:

- **Known values**: every secret the vault hands out (``vault.store.SecretStore.load``/``save``
  call ``register_secrets``) is replaced wherever it appears, whatever surrounds it.
- **Patterns**, for secrets never registered here (another process's key, a token echoed by an
  API): the values of credential headers (``Authorization``, ``X-MBX-APIKEY``, ``KC-API-KEY``,
  ``KC-API-SIGN``, ``KC-API-PASSPHRASE``, ``X-VALR-API-KEY``, ...), ``name=value`` and
  ``"name": "value"`` pairs whose name is a credential (``apiKey``, ``secret``, ``password``,
  ``passphrase``, ``token``, ``signature``, ...), ``Bearer`` tokens and ``sk-...`` API keys.

``RedactFilter`` applies both to a log record (its formatted message, exception text and stack)
before any handler writes it; ``ops.daemon.setup_logging`` installs it on every handler.
``redact`` is the same for any text (``ops.logtail`` masks the log file again on display).
The registry is process-wide and thread-safe: the keyring calls run in threads.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

MASK = "****"
MIN_SECRET_LEN = 4
"""Shorter values are not registered: masking every "abc" in the log would hide more than it protects."""

_HEADERS = (
    r"proxy-authorization|authorization|x-mbx-apikey|kc-api-key|kc-api-sign|kc-api-passphrase"
    r"|x-valr-api-key|x-valr-signature|x-api-key|api-key|x-apikey|x-auth-token|cookie|set-cookie"
)
_PAIRS = (
    r"api[_-]?key|apikey|api[_-]?secret|secret[_-]?key|secret|client[_-]?secret|password|passwd"
    r"|passphrase|access[_-]?token|refresh[_-]?token|auth[_-]?token|token|signature|sign"
)
# a value: quoted (to the closing quote), a scheme + credential, or a bare run of characters
_VALUE = (
    r"(?P<q>[\"'])(?P<qv>[^\"'\n]*)(?P=q)"
    r"|(?P<scheme>(?:bearer|basic|token)\s+)(?P<sv>[^\s\"',;&}\])]+)"
    r"|(?P<bv>[^\s\"',;&}\])]+)"
)
_NAMED = re.compile(
    rf"(?i)(?<![a-z0-9])(?P<name>{_HEADERS}|{_PAIRS})(?P<sep>[\"']?\s*[:=]\s*)(?:{_VALUE})",
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}")
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")


class SecretRegistry:
    """Secret values to mask wherever they appear; safe to use from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    def register(self, values: Iterable[str | None]) -> None:
        """Add values (blank ones and those shorter than ``MIN_SECRET_LEN`` are ignored)."""
        new = {v for v in values if v and len(v.strip()) >= MIN_SECRET_LEN}
        with self._lock:
            if new <= self._values:
                return
            self._values = self._values | new
            ordered = sorted(self._values, key=len, reverse=True)  # a longer secret before its prefix
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def clear(self) -> None:
        """Forget every value (tests)."""
        with self._lock:
            self._values = frozenset()
            self._pattern = None

    def __len__(self) -> int:
        return len(self._values)

    def mask(self, text: str) -> str:
        pattern = self._pattern  # one read: a concurrent register swaps the whole pattern
        return text if pattern is None else pattern.sub(MASK, text)


SECRETS = SecretRegistry()
"""The process's registry: the vault registers what it hands out."""


def register_secrets(values: Iterable[str | None]) -> None:
    """Mask these values in every log line from now on (see ``SecretRegistry.register``)."""
    SECRETS.register(values)


def _masked_value(m: re.Match[str]) -> str:
    head = m.group("name") + m.group("sep")
    if m.group("q") is not None:
        return f"{head}{m.group('q')}{MASK}{m.group('q')}"
    if m.group("scheme") is not None:
        return f"{head}{m.group('scheme')}{MASK}"
    return head + MASK


def redact(text: str, registry: SecretRegistry = SECRETS) -> str:
    """``text`` with registered secrets and credential-shaped values replaced by ``****``.

    Idempotent (redacting twice gives the same text); lines and spacing are kept.
    """
    text = registry.mask(text)
    if not any(c in text for c in ":=") and "sk-" not in text and "earer" not in text:
        return text  # the common log line: nothing a pattern could match
    text = _NAMED.sub(_masked_value, text)
    text = _BEARER.sub(rf"\1 {MASK}", text)
    return _SK_KEY.sub(f"sk-{MASK}", text)


class RedactFilter(logging.Filter):
    """Masks secrets in a record before a handler formats it (message with its arguments,
    exception text, stack). Never drops a record; a message that cannot be formatted is left
    for logging to report."""

    def __init__(self, registry: SecretRegistry = SECRETS) -> None:
        super().__init__()
        self.registry = registry

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it when the handler formats it
            return True
        record.msg = redact(message, self.registry)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _EXC_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.registry)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.registry)
        return True


_EXC_FORMATTER = logging.Formatter()


def install(handler: logging.Handler, registry: SecretRegistry = SECRETS) -> None:
    """Add a ``RedactFilter`` to ``handler`` (once)."""
    if not any(isinstance(f, RedactFilter) for f in handler.filters):
        handler.addFilter(RedactFilter(registry))
